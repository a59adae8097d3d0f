// Package ws is the WebSocket transport of the realtime protocol, on the
// gws library (github.com/lxzan/gws, which passes the Autobahn suite).
//
// Each connection reads frames on a goroutine of its own (the HTTP
// request's returns after the upgrade) and hands them to its
// realtime.Client. Writes are queued per connection and written by one
// writer goroutine per core, each serving its share of the connections:
// the frames waiting when a connection's turn comes go out in one
// WebSocket message, separated by '\n', so a burst costs one write while a
// lone frame is not delayed, and no goroutine is started per write. While
// the node delivers a batch of events, writers wait for its end
// (BeginBatch, EndBatch), so that each connection gets the whole batch in
// one write. A write never waits for a slow peer: what the socket does not
// take at once is written by a goroutine of that connection's own
// (lingerConn). One goroutine pings every connection
// in turn and closes those that stopped answering. After its close frame
// the server reads on until the peer closes too (lingerConn), so that what
// the peer still sends does not reset the connection before it has read
// the close frame.
package ws

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/lxzan/gws"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/realtime"
)

// Handler upgrades HTTP requests to realtime WebSocket connections.
type Handler struct {
	Node   *realtime.Node
	Logger *slog.Logger
	// AllowedOrigins lists the origins (scheme://host[:port]) from which
	// browsers may connect; "*" allows any. Requests without an Origin
	// header (clients that are not browsers) are always allowed, and so
	// are pages of the server's own host (the Host of the request).
	AllowedOrigins []string
	// PingInterval is how often the server pings (default 25s); a
	// connection from which nothing (not even a pong) arrived for
	// PingInterval+PongTimeout (default 10s) is closed as dead.
	PingInterval time.Duration
	PongTimeout  time.Duration
	// MaxFrameBytes bounds a frame from the client (default 256 KiB).
	MaxFrameBytes int
	// WriteQueue bounds the frames waiting to be written to one connection
	// (default 4096); past it the connection is closed as a slow consumer.
	WriteQueue int
	// WriteTimeout bounds how long a connection whose socket is full may
	// take nothing (less than 64 KiB) of what waits for it (default 10s):
	// past it, it is closed as a slow consumer.
	WriteTimeout time.Duration
	// Writers is how many goroutines write the connections' frames, each
	// to its share of the connections (default GOMAXPROCS).
	Writers int

	writers []*writer    // write the connections' frames; one per core
	next    atomic.Int64 // spreads the connections over the writers
	// frames counts the frames queued (conn.Write), batchFrom its value
	// at the start of the batch under way; bigBatches: the last batch of
	// events was large (see bigBatch).
	frames, batchFrom atomic.Int64
	bigBatches        atomic.Bool

	once      sync.Once
	upgraders [3]*gws.Upgrader // without a subprotocol, with tidings.v1, with tidings.v2
	mu        sync.Mutex
	wheel     *pingWheel // the connections, by when the heartbeat looks at them; guarded by mu
	stop      chan struct{}
	done      chan struct{}
}

func (h *Handler) init() {
	h.once.Do(func() {
		if h.Logger == nil {
			h.Logger = slog.Default()
		}
		if h.PingInterval <= 0 {
			h.PingInterval = 25 * time.Second
		}
		if h.PongTimeout <= 0 {
			h.PongTimeout = 10 * time.Second
		}
		if h.MaxFrameBytes <= 0 {
			h.MaxFrameBytes = 256 << 10
		}
		if h.WriteQueue <= 0 {
			h.WriteQueue = 4096
		}
		if h.WriteTimeout <= 0 {
			h.WriteTimeout = 10 * time.Second
		}
		for i, sub := range [][]string{nil, {protocol.Subprotocol}, {protocol.SubprotocolV2}} {
			h.upgraders[i] = gws.NewUpgrader((*events)(h), &gws.ServerOption{
				ReadMaxPayloadSize: h.MaxFrameBytes,
				// Client frames are small commands; a larger one is read
				// past the buffer. Each connection holds its buffer.
				ReadBufferSize: readBufferSize,
				NewSession:     func() gws.SessionStorage { return new(oneValue) },
				// Off: gws would also check every text frame the server
				// writes, once per receiver (about 2 % of the CPU with one
				// publisher and 1,000 subscribers), and what the server
				// writes is valid by construction. The clients' text frames
				// are checked in OnMessage instead. (Close reasons are not
				// checked: the server ignores them.)
				CheckUtf8Enabled: false,
				HandshakeTimeout: 10 * time.Second,
				SubProtocols:     sub,
				Recovery:         gws.Recovery,
			})
		}
		h.wheel = newPingWheel(h.PingInterval, h.PongTimeout, time.Now().UnixNano())
		h.stop = make(chan struct{})
		h.done = make(chan struct{})
		if h.Writers <= 0 {
			h.Writers = runtime.GOMAXPROCS(0)
		}
		h.writers = make([]*writer, h.Writers)
		for i := range h.writers {
			h.writers[i] = &writer{wake: make(chan struct{}, 1)}
			go h.writers[i].run(h.stop)
		}
		go h.heartbeat()
	})
}

// Close stops the heartbeat and the writers. Connections are closed by the
// node's Close.
func (h *Handler) Close() {
	h.init()
	close(h.stop)
	<-h.done
}

// ServeHTTP upgrades the request and serves the connection until it ends.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.init()
	if !h.originAllowed(r) {
		writeError(w, http.StatusForbidden, tidings.EForbidden, "this origin may not open realtime connections")
		return
	}
	if msg := badHandshake(r); msg != "" {
		writeError(w, http.StatusBadRequest, tidings.EInvalid, msg)
		return
	}
	// A client that names subprotocols names ours (checked above): the
	// newest it names is spoken. One that names none speaks tidings.v1.
	up := h.upgraders[0]
	switch {
	case headerHas(r.Header, "Sec-WebSocket-Protocol", protocol.SubprotocolV2):
		up = h.upgraders[2]
	case r.Header.Get("Sec-WebSocket-Protocol") != "":
		up = h.upgraders[1]
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeError(w, http.StatusInternalServerError, "internal", "this connection cannot be upgraded")
		return
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	lc := newLingerConn(nc, h.WriteTimeout)
	if n := brw.Reader.Buffered(); n > 0 { // sent right after the request
		b, _ := brw.Reader.Peek(n)
		lc.prefix = append([]byte(nil), b...)
	}
	socket, err := up.UpgradeFromConn(lc, bufio.NewReaderSize(lc, readBufferSize), r)
	if err != nil {
		return // gws has answered the handshake's failure
	}
	// OnOpen, then frames, then OnClose, on a goroutine of its own: the
	// request's goroutine returns, and with it net/http's buffers and the
	// request, which an idle connection would otherwise keep (8 KiB and
	// more each).
	go socket.ReadLoop()
}

// badHandshake says what is wrong with a WebSocket handshake request, so
// that it is answered in the API's error shape before the library takes
// the connection over ("" when nothing is).
func badHandshake(r *http.Request) string {
	switch {
	case !headerHas(r.Header, "Connection", "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
		return "this endpoint speaks WebSocket only (Upgrade: websocket); see docs/protocol.md, or use /v1/realtime/poll"
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return "WebSocket version 13 is required"
	case r.Header.Get("Sec-WebSocket-Key") == "":
		return "Sec-WebSocket-Key is missing"
	case r.Header.Get("Sec-WebSocket-Protocol") != "" && !headerHas(r.Header, "Sec-WebSocket-Protocol", protocol.Subprotocol) &&
		!headerHas(r.Header, "Sec-WebSocket-Protocol", protocol.SubprotocolV2):
		return "the subprotocols spoken here are " + protocol.Subprotocol + " and " + protocol.SubprotocolV2
	}
	return ""
}

// headerHas reports whether a comma-separated header lists token.
func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, item := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(item), token) {
				return true
			}
		}
	}
	return false
}

// writeError answers a refused handshake in the API's error shape.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(protocol.ErrorResponse{Error: protocol.Error{Code: code, Message: msg}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

func (h *Handler) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	// The server's own pages (the web chat at /) are always allowed.
	if u, err := url.Parse(origin); err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	for _, o := range h.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// heartbeat pings the connections that have been quiet for a
// PingInterval and closes those quiet for longer than it plus PongTimeout.
// It looks only at the connections due (h.wheel), each at most one slot
// (a second, or half of PingInterval) after its time.
func (h *Handler) heartbeat() {
	defer close(h.done)
	t := time.NewTimer(h.wheel.wait(time.Now().UnixNano()))
	defer t.Stop()
	// The connections to ping and to close, gathered under h.mu and
	// served after it, so that pings do not hold up connects and closes.
	var taken, due, dead []*conn
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		h.mu.Lock()
		taken = h.wheel.take(now, taken[:0])
		for _, c := range taken {
			switch at, ping, gone := h.nextLook(c, now); {
			case gone:
				dead = append(dead, c)
				h.wheel.add(c, at)
			case ping:
				c.lastPing.Store(now)
				due = append(due, c)
				h.wheel.add(c, at)
			default:
				h.wheel.add(c, at)
			}
		}
		clear(taken)
		t.Reset(h.wheel.wait(time.Now().UnixNano()))
		h.mu.Unlock()
		for i, c := range dead {
			go c.Close(protocol.ClosePingTimeout, "no pong in time")
			dead[i] = nil
		}
		for i, c := range due {
			c.ping()
			due[i] = nil
		}
		dead, due = dead[:0], due[:0]
	}
}

// nextLook says what the heartbeat does with c now: close it (gone: quiet
// for longer than PingInterval+PongTimeout), ping it (quiet for longer
// than PingInterval, and not pinged for as long), or nothing; and when to
// look at it next: the first time one of these could be due, given that
// nothing arrives meanwhile (what arrives only makes it later). A
// connection being closed is looked at again after PongTimeout, and
// closed again (Close does nothing the second time) until it is gone.
func (h *Handler) nextLook(c *conn, now int64) (at int64, ping, gone bool) {
	pi, pt := int64(h.PingInterval), int64(h.PongTimeout)
	seen, pinged := c.lastSeen.Load(), c.lastPing.Load()
	quiet := now - seen
	switch {
	case quiet > pi+pt:
		return now + pt, false, true
	case quiet > pi && now-pinged > pi:
		pinged, ping = now, true
	}
	// Strictly after: the checks above compare with '>'.
	at = seen + pi + pt + 1 // dead, unless a frame comes
	if quiet <= pi {
		at = seen + pi + 1 // to ping
	} else if p := pinged + pi + 1; p < at {
		at = p // to ping again, still quiet
	}
	return at, ping, false
}

// ping writes a ping. A write that cannot block (lingerConn) is made
// here, on the heartbeat's goroutine: gws serializes it with the
// connection's other writes, and an idle connection then costs no
// goroutine per ping. Blocking writes go through gws's queue.
func (c *conn) ping() {
	if c.lc != nil && c.lc.raw != nil {
		c.control(func() { c.ws.WritePing(nil) })
		return
	}
	c.ws.Async(func() { c.control(func() { c.ws.WritePing(nil) }) })
}

// lingerConn is the network connection under a WebSocket.
//
// Its Close ends what the server sends (a FIN after the close frame) but
// goes on reading, for up to linger after the last thing the peer sent
// (and maxLingers lingers in all), until the peer closes too; the
// connection is closed for good when the reading ends (see
// events.OnClose). Closing at once while the peer still sends (replies,
// pings: a reader that is slow does not know yet) would reset the
// connection, and a reset makes the peer's system discard what it had not
// read yet: the close frame first. So a peer that still reads what came
// before the close frame, and replies meanwhile, is not cut in the middle
// of it.
//
// Its Write never blocks the writer that calls it: it writes what the
// socket takes at once, and when the peer's window is full, the rest
// (and what is written meanwhile) goes out on a goroutine of its own
// (drain), within linger. The connection's writer is told when that is
// done (onDrained) and leaves the connection alone meanwhile, so that one
// slow reader never holds up the others of its writer.
type lingerConn struct {
	net.Conn
	prefix  []byte // read by net/http past the handshake request
	linger  time.Duration
	raw     syscall.RawConn // nil: writes block
	closing atomic.Bool
	broken  atomic.Bool // a write failed: the peer cannot read what follows
	cutting atomic.Bool // the peer is dead: drain gives up

	// tryWrite's state, for writeFd (c.writeFn).
	wp      []byte
	wn      int
	werr    error
	writeFd func(fd uintptr) bool

	// Read's state, for readFd (c.readFn).
	rp     []byte
	rn     int
	rerr   error
	readFd func(fd uintptr) bool

	wmu        sync.Mutex
	draining   atomic.Bool // drain runs: writes go to backlog (changed under wmu)
	backlog    []byte      // what drain has yet to write
	closeAfter bool        // Close came while draining: drain closes when done
	onDrained  func()      // called when drain has written everything
	onStalled  func()      // called when a write of drain's did not end within linger (once)
	stalled    bool        // onStalled was called

	// After the half-close: shutTimer closes the connection for good once
	// the peer has sent nothing for linger, or at lingerEnd.
	lingerMu  sync.Mutex
	shutTimer *time.Timer
	lingerEnd time.Time
}

// maxLingers bounds how long a connection half-closed by the server may be
// kept open by a peer that goes on sending: maxLingers lingers.
const maxLingers = 4

func newLingerConn(nc net.Conn, linger time.Duration) *lingerConn {
	c := &lingerConn{Conn: nc, linger: linger}
	c.writeFd, c.readFd = c.writeFn, c.readFn
	if sc, ok := nc.(syscall.Conn); ok && rawIO {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	return c
}

var errBroken = errors.New("ws: an earlier write to the connection failed")

func (c *lingerConn) Write(p []byte) (int, error) {
	if c.broken.Load() {
		return 0, errBroken
	}
	// Only Write starts a drain, and gws serializes its writes: seen
	// false here, no drain runs, nor starts before this write is done.
	if c.draining.Load() {
		c.wmu.Lock()
		if c.draining.Load() {
			c.backlog = append(c.backlog, p...)
			c.wmu.Unlock()
			return len(p), nil
		}
		c.wmu.Unlock()
	}
	// Not draining: no other goroutine writes.
	n, err := c.tryWrite(p)
	if err != nil {
		c.broken.Store(true)
		return n, err
	}
	if n < len(p) {
		c.wmu.Lock()
		c.draining.Store(true)
		c.backlog = append(c.backlog[:0], p[n:]...)
		c.wmu.Unlock()
		go c.drain()
	}
	return len(p), nil
}

// tryWrite writes what the socket takes without waiting.
func (c *lingerConn) tryWrite(p []byte) (int, error) {
	if c.raw == nil {
		return c.Conn.Write(p)
	}
	// The state of the write is in c, and writeFd made once: a closure
	// over locals would be allocated at every write. One write at a time
	// (gws serializes its writes; drain writes through c.Conn).
	c.wp, c.wn, c.werr = p, 0, nil
	err := c.raw.Write(c.writeFd)
	n, werr := c.wn, c.werr
	c.wp = nil
	if err == nil {
		err = werr
	}
	return n, err
}

// writeFn writes c.wp from c.wn on, what the socket takes at once.
func (c *lingerConn) writeFn(fd uintptr) bool {
	for c.wn < len(c.wp) {
		m, e := sysWrite(fd, c.wp[c.wn:])
		if m > 0 {
			c.wn += m
		}
		if e == syscall.EINTR {
			continue
		}
		if e != nil && e != syscall.EAGAIN {
			c.werr = e
		}
		if e != nil || m <= 0 {
			break
		}
	}
	return true
}

// busy says whether drain runs: the connection's writer waits for it.
func (c *lingerConn) busy() bool {
	return c.draining.Load()
}

// drain writes the backlog, waiting for the peer, within linger per write.
func (c *lingerConn) drain() {
	for {
		c.wmu.Lock()
		b := c.backlog
		c.backlog = nil
		if len(b) == 0 || c.broken.Load() {
			c.Conn.SetWriteDeadline(time.Time{}) // the next writes do not wait
			c.draining.Store(false)
			closeAfter := c.closeAfter
			c.wmu.Unlock()
			if closeAfter {
				c.closeWrite()
			}
			if f := c.onDrained; f != nil && !closeAfter {
				f()
			}
			return
		}
		c.wmu.Unlock()
		// A drainChunk at a time, each within linger: a peer that takes
		// the backlog steadily, however slowly, is not cut; one that
		// takes (next to) nothing for linger is.
		for len(b) > 0 {
			c.Conn.SetWriteDeadline(time.Now().Add(c.linger))
			if c.cutting.Load() {
				c.Conn.SetWriteDeadline(time.Now())
			}
			n, err := c.Conn.Write(b[:min(len(b), drainChunk)])
			b = b[n:]
			if err != nil {
				if !c.stall(b, err) {
					c.broken.Store(true)
					c.Conn.Close() // the reader ends, and with it the connection
				}
				break
			}
		}
	}
}

// drainChunk is the most drain writes within one linger.
const drainChunk = 64 << 10

// stall handles a write of drain's that timed out: the peer did not take
// a drainChunk of the backlog within linger, so it reads too slowly. The
// first time, unless the connection is cut (a dead peer) or its close
// frame is written already, the connection is closed as a slow consumer
// (onStalled): what is left waits, ahead of the close frame, for one more
// linger. It reports whether drain goes on.
func (c *lingerConn) stall(rest []byte, err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) || c.cutting.Load() || c.closing.Load() {
		return false
	}
	c.wmu.Lock()
	f := c.onStalled
	if c.stalled || f == nil {
		c.wmu.Unlock()
		return false
	}
	c.stalled = true
	c.backlog = append(rest, c.backlog...)
	c.wmu.Unlock()
	go f() // it writes the close frame, through Write: not under wmu
	return true
}

// cut makes the drain under way, if any, fail at once: the peer is dead.
func (c *lingerConn) cut() {
	c.cutting.Store(true)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.draining.Load() || c.raw == nil {
		c.Conn.SetWriteDeadline(time.Now())
	}
}

// SetWriteDeadline bounds the writes that wait: only drain's do, and it
// sets its own, unless writes block (no raw connection).
func (c *lingerConn) SetWriteDeadline(t time.Time) error {
	if c.raw == nil {
		return c.Conn.SetWriteDeadline(t)
	}
	return nil
}

// Read reads through the raw connection (the system call itself, in
// readFn), not net.Conn's Read: parked in a read, the connection's reading
// goroutine then fits in a 2 KiB stack instead of 4 KiB (net.Conn.Read's
// frames, from net.conn to poll.FD and the system call, are deeper than
// RawConn's). Deadlines and closing work as for net.Conn.Read. One Read
// at a time (gws's read loop).
func (c *lingerConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	if c.raw == nil || len(p) == 0 {
		return c.Conn.Read(p)
	}
	c.rp, c.rn, c.rerr = p, 0, nil
	err := c.raw.Read(c.readFd)
	n, rerr := c.rn, c.rerr
	c.rp = nil
	switch {
	case err != nil:
		return 0, err // a deadline passed, or the connection was closed
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	if c.closing.Load() {
		c.lingerOn()
	}
	return n, nil
}

// lingerOn gives a half-closed connection whose peer has just sent
// something one more linger, up to lingerEnd.
func (c *lingerConn) lingerOn() {
	c.lingerMu.Lock()
	defer c.lingerMu.Unlock()
	if c.shutTimer == nil {
		return // not half-closed yet
	}
	end := time.Now().Add(c.linger)
	if end.After(c.lingerEnd) {
		end = c.lingerEnd
	}
	c.Conn.SetReadDeadline(end)
	c.shutTimer.Reset(time.Until(end))
}

// readFn reads into c.rp what the socket holds; it reports false (wait,
// then call again) when it holds nothing yet.
func (c *lingerConn) readFn(fd uintptr) bool {
	for {
		n, err := sysRead(fd, c.rp)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case nil:
			c.rn = n
		default:
			c.rerr = err
		}
		return true
	}
}

// Close half-closes the connection, once what is written is sent, and
// bounds the reads still to come.
func (c *lingerConn) Close() error {
	if !c.closing.CompareAndSwap(false, true) {
		return nil
	}
	c.wmu.Lock()
	if c.draining.Load() && !c.broken.Load() {
		c.closeAfter = true
		c.wmu.Unlock()
		return nil
	}
	c.wmu.Unlock()
	return c.closeWrite()
}

func (c *lingerConn) closeWrite() error {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok || c.broken.Load() {
		return c.Conn.Close()
	}
	err := cw.CloseWrite()
	c.lingerMu.Lock()
	now := time.Now()
	c.lingerEnd = now.Add(maxLingers * c.linger)
	c.Conn.SetReadDeadline(now.Add(c.linger))
	c.shutTimer = time.AfterFunc(c.linger, c.shut) // also when nothing reads it (a failed handshake)
	c.lingerMu.Unlock()
	return err
}

// shut closes the connection for good.
func (c *lingerConn) shut() { c.Conn.Close() }

// writer writes the frames queued on its connections, one connection
// after the other: the connections are spread over one writer per core,
// so that the frames of one event go out on every core, with no goroutine
// started per write. A connection's frames queued while its writer was
// busy with others go out together, in one write.
type writer struct {
	mu       sync.Mutex
	ready    []*conn
	held     []*conn // scheduled during a batch of events: ready at its end
	batching bool    // between BeginBatch and EndBatch
	wake     chan struct{}
	parts    [][]byte // run's scratch for writeQueued
}

// add schedules connections' writes now, batch or not (a drain that
// ended hands its connection back).
func (w *writer) add(cs ...*conn) {
	w.mu.Lock()
	w.ready = append(w.ready, cs...)
	w.mu.Unlock()
	w.signal()
}

// schedule schedules a connection's write, for the end of the batch of
// events under way if there is one: one lock per write queued, on this
// writer only.
func (w *writer) schedule(c *conn) {
	w.mu.Lock()
	if w.batching {
		w.held = append(w.held, c)
		w.mu.Unlock()
		return
	}
	w.ready = append(w.ready, c)
	w.mu.Unlock()
	w.signal()
}

func (w *writer) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// setBatching starts a batch, or ends it and hands the connections held
// meanwhile to the writer.
func (w *writer) setBatching(on bool) {
	w.mu.Lock()
	w.batching = on
	held := len(w.held) > 0 && !on
	if held {
		w.ready = append(w.ready, w.held...)
		clear(w.held)
		w.held = w.held[:0]
	}
	w.mu.Unlock()
	if held {
		w.signal()
	}
}

func (w *writer) run(stop <-chan struct{}) {
	var batch, again []*conn
	for {
		select {
		case <-stop:
			return
		case <-w.wake:
		}
		for {
			w.mu.Lock()
			batch, w.ready = w.ready, batch[:0]
			w.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			for i, c := range batch {
				if c.writeQueued(false, &w.parts) {
					again = append(again, c)
				}
				batch[i] = nil
			}
			if len(again) > 0 {
				w.mu.Lock()
				w.ready = append(w.ready, again...)
				w.mu.Unlock()
				clear(again)
				again = again[:0]
			}
		}
	}
}

// conn is one WebSocket connection: the realtime.Transport of its client.
type conn struct {
	h           *Handler
	ws          *gws.Conn
	lc          *lingerConn // under ws
	w           *writer     // writes its frames
	writerIndex int
	client      *realtime.Client
	wmu         sync.Mutex   // one writeQueued at a time, so that frames keep their order
	written     [][]byte     // guarded by wmu: the array of frames written last, emptied, for c.spare
	lastSeen    atomic.Int64 // unix nanoseconds of the last frame from the peer
	lastPing    atomic.Int64
	refused     atomic.Bool // the peer sent a frame the protocol forbids: its frames are no longer read
	slot        int64       // in h.wheel (0: not in it); guarded by h.mu
	slotIndex   int

	mu        sync.Mutex
	queue     [][]byte
	spare     [][]byte // the backing array of the last queue written, reused
	scheduled bool
	closed    bool
	aborted   bool          // closed at once (slow or dead peer): what is queued is dropped
	held      bool          // frames wait for Release before the writer runs (a replay's batch)
	drained   chan struct{} // signalled when the queue shrinks or the connection closes; made by the first WaitRoom that waits
}

// readBufferSize is the read buffer of a connection: it is held for the
// connection's whole life, idle or not. Client frames are mostly small
// (replies, pongs, short commands): one such frame is read at once with
// its header, and a larger payload is read past the buffer, straight
// into gws's pooled message buffer (one more read per frame, for a
// frame that costs far more to handle).
const readBufferSize = 256

// oneValue is the session storage of a connection (gws.SessionStorage):
// it only ever holds the conn, and costs less than gws's map.
type oneValue struct {
	mu    sync.Mutex
	key   string
	value any
}

func (o *oneValue) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.key == "" {
		return 0
	}
	return 1
}

func (o *oneValue) Load(key string) (any, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if key == "" || key != o.key {
		return nil, false
	}
	return o.value, true
}

func (o *oneValue) Delete(key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if key == o.key {
		o.key, o.value = "", nil
	}
}

// Store keeps one value: storing another key replaces it.
func (o *oneValue) Store(key string, value any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.key, o.value = key, value
}

func (o *oneValue) Range(f func(key string, value any) bool) {
	o.mu.Lock()
	k, v := o.key, o.value
	o.mu.Unlock()
	if k != "" {
		f(k, v)
	}
}

// maxMessage bounds the frames coalesced into one WebSocket message.
const maxMessage = 64 << 10

var newline = []byte("\n")

// Write queues a frame; the connection's writer sends the frames queued
// when it runs in one message.
func (c *conn) Write(frame []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return true // the client is being ended: nothing to report
	}
	if len(c.queue) >= c.h.WriteQueue {
		return false
	}
	c.queue = append(c.queue, frame)
	c.h.frames.Add(1)
	c.scheduleLocked()
	return true
}

// scheduleLocked starts the writer for what is queued, unless it is
// started already or held.
func (c *conn) scheduleLocked() {
	if c.scheduled || c.held || len(c.queue) == 0 {
		return
	}
	c.scheduled = true
	c.h.writerOf(c).schedule(c)
}

// writerOf is the writer of c's next write: its own, or while batches
// are large (see bigBatch) one of the first half of the writers.
func (h *Handler) writerOf(c *conn) *writer {
	if h.bigBatches.Load() {
		return h.writers[c.writerIndex%h.bigWriters()]
	}
	return c.w
}

// bigWriters is how many writers write the large batches: the first
// half (at least one).
func (h *Handler) bigWriters() int { return (len(h.writers) + 1) / 2 }

// Hold makes the frames written next wait for Release, to go out in one
// write (realtime.Holder: a replay hands over its updates a batch at a
// time).
func (c *conn) Hold() {
	c.mu.Lock()
	c.held = true
	c.mu.Unlock()
}

// Release starts the writer for the frames written since Hold.
func (c *conn) Release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = false
	c.scheduleLocked()
}

// BeginBatch makes the connections written to wait for EndBatch before
// their writer runs (realtime.Batcher): the node is about to deliver
// several events, and each connection then gets their frames in one
// write instead of one write per event.
func (h *Handler) BeginBatch() {
	h.init()
	h.batchFrom.Store(h.frames.Load())
	for _, w := range h.writers {
		w.setBatching(true)
	}
}

// EndBatch starts the writers of the connections written to since
// BeginBatch: one hand-over per writer, of all its connections. The
// connections of a large batch (bigBatch frames or more: a message to a
// large room, many messages at saturation) go to half the writers
// instead (see bigBatch).
func (h *Handler) EndBatch() {
	h.init()
	if len(h.writers) > 1 {
		// Until the next batch, the connections written to outside
		// batches (a lone event's receivers) go to the same writers.
		big := h.frames.Load()-h.batchFrom.Load() >= bigBatch
		h.bigBatches.Store(big)
		if big {
			h.endBigBatch()
			return
		}
	}
	for _, w := range h.writers {
		w.setBatching(false)
	}
}

// bigBatch is the number of frames queued in one batch of events
// (deliveries, mostly) from which the batch's connections are written by
// half the writers (at least one), each with an even share of them,
// rather than each connection by its own writer; so are the connections
// written to outside batches, until a batch is small again. Fewer
// writers go through more connections each, so each connection's turn
// comes later and more of its frames go out in each write: less CPU per
// delivery for the server and for the clients reading. On two cores, one
// writer took 1,000 subscribers at saturation from 649,000 to 850,000
// deliveries a second, and 10,000 from 483,000 to 707,000, but made the
// p99 of 5-member rooms at 1,000 messages a second worse by a third: their
// batches are small, and stay spread over every writer (docs/benchmarks.md,
// "Large batches to half the writers").
const bigBatch = 256

// endBigBatch ends a large batch: its connections, held by every writer,
// are handed to the first half of the writers in even shares.
func (h *Handler) endBigBatch() {
	var all []*conn
	for _, w := range h.writers {
		w.mu.Lock()
		w.batching = false
		all = append(all, w.held...)
		clear(w.held)
		w.held = w.held[:0]
		w.mu.Unlock()
	}
	k := h.bigWriters()
	per := (len(all) + k - 1) / k
	for i := 0; i < k && i*per < len(all); i++ {
		h.writers[i].add(all[i*per : min((i+1)*per, len(all))]...)
	}
}

// writeQueued writes the queued frames, up to maxMessage bytes, in one
// message, and reports whether frames remain. Unless forced, it leaves
// them queued while the connection drains what the peer has not taken
// yet: the drain schedules the connection again when it is done. parts,
// when not nil, is scratch space of the caller's for the message's parts.
func (c *conn) writeQueued(force bool, parts *[][]byte) (more bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !force && c.lc != nil && c.lc.busy() {
		return false
	}
	c.mu.Lock()
	if c.aborted {
		c.queue, c.spare, c.written, c.scheduled = nil, nil, nil, false
		c.mu.Unlock()
		return false
	}
	if c.lc == nil || c.lc.raw == nil { // writes may block: bound them
		// Under c.mu, so that Close's deadline for an abort comes after it.
		c.ws.SetWriteDeadline(time.Now().Add(c.h.WriteTimeout))
	}
	if c.spare == nil {
		c.spare, c.written = c.written, nil
	}
	q := c.queue
	n, size := 0, 0
	for n < len(q) && (n == 0 || size+len(q[n]) <= maxMessage) {
		size += len(q[n]) + 1
		n++
	}
	batch := q[:n:n]
	whole := n == len(q) // the queue's array is free once written
	if whole {
		// Writes queued meanwhile go to the array written last time.
		c.queue, c.spare = c.spare, nil
	} else {
		c.queue = q[n:]
	}
	c.signalDrained()
	more = len(c.queue) > 0
	if !more {
		c.scheduled = false
	}
	c.mu.Unlock()
	switch len(batch) {
	case 0:
	case 1:
		c.ws.WriteMessage(gws.OpcodeText, batch[0])
	default:
		var p [][]byte
		if parts != nil {
			p = (*parts)[:0]
		}
		for i, f := range batch {
			if i > 0 {
				p = append(p, newline)
			}
			p = append(p, f)
		}
		c.ws.Writev(gws.OpcodeText, p...)
		if parts != nil {
			clear(p) // the frames are not kept alive by the scratch
			*parts = p[:0]
		}
	}
	if whole && cap(q) <= maxSpare {
		clear(batch)
		c.written = q[:0] // the next call makes it the spare
	}
	return more
}

// maxSpare bounds the array of frames a connection keeps for its next
// writes: a burst's larger queue is left to the collector.
const maxSpare = 32

// control writes a control frame (ping, pong) with a fresh write
// deadline: the one of the last flush may have passed long ago on a quiet
// connection, and a write past it fails and cuts the connection. Nothing
// is written once the connection was aborted.
func (c *conn) control(write func()) {
	c.mu.Lock()
	if c.aborted {
		c.mu.Unlock()
		return
	}
	c.ws.SetWriteDeadline(time.Now().Add(c.h.WriteTimeout))
	c.mu.Unlock()
	write()
}

// signalDrained wakes a WaitRoom that waits; c.mu is held.
func (c *conn) signalDrained() {
	if c.drained == nil {
		return // nothing ever waited: most connections never do
	}
	select {
	case c.drained <- struct{}{}:
	default:
	}
}

// WaitRoom waits until less than half the write queue is taken, so that a
// replay keeps pace with the connection (realtime.RoomWaiter), and returns
// how many frames the replay may add: up to half the queue, the other half
// is for the answers to commands and the live updates that come
// meanwhile. It returns 0 when it gives up: after WriteTimeout without
// anything drained while the socket takes frames at once (while it does
// not, drain's write decides: see lingerConn.stall), or when the
// connection closes or ctx ends.
func (c *conn) WaitRoom(ctx context.Context) int {
	half := max(c.h.WriteQueue/2, 1)
	var timer *time.Timer
	for {
		c.mu.Lock()
		queued, closed := len(c.queue), c.closed
		if c.drained == nil {
			c.drained = make(chan struct{}, 1)
		}
		drained := c.drained
		c.mu.Unlock()
		switch {
		case closed:
			return 0
		case queued < half:
			return half - queued
		}
		if timer == nil {
			timer = time.NewTimer(c.h.WriteTimeout)
			defer timer.Stop()
		}
		select {
		case <-drained:
			// Something was written: the peer reads. Wait on, anew.
			timer.Reset(c.h.WriteTimeout)
		case <-timer.C:
			if c.lc != nil && c.lc.busy() {
				// The socket's backlog is being written (lingerConn.drain):
				// the peer takes it, however slowly, or drain's write times
				// out and closes the connection as a slow consumer
				// (onStalled), with one more linger for what is ahead of the
				// close frame. Giving up here too would race that: the close
				// frame, queued behind the backlog, would be cut with it.
				timer.Reset(c.h.WriteTimeout)
				continue
			}
			return 0
		case <-ctx.Done():
			return 0
		}
	}
}

// Close closes the connection with a code, after the frames already
// queued (but at once for a slow or dead peer, whose queue will not
// drain).
func (c *conn) Close(code int, reason string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	// A slow consumer's queue will not drain, nor a dead peer's: it is
	// dropped. A slow consumer still reads, only slowly: the write under
	// way ends (within its WriteTimeout), then the close frame goes, so
	// that the peer gets whole frames and a clean 4009. A dead peer's
	// write is cut at once.
	drop := code == protocol.CloseSlowConsumer || code == protocol.ClosePingTimeout
	abort := code == protocol.ClosePingTimeout
	if drop {
		c.aborted, c.queue = true, nil
	}
	if abort {
		// Unblock a write stuck on the peer. Not the reads: a failed read
		// would end the connection before the close frame is written.
		if c.lc != nil {
			c.lc.cut()
		} else {
			c.ws.SetWriteDeadline(time.Now())
		}
	}
	c.signalDrained()
	c.mu.Unlock()
	closeFrame := func() {
		// What is queued goes first, even when its writer is not due yet
		// (held for the end of a batch of events).
		for c.writeQueued(true, nil) {
		}
		c.ws.SetWriteDeadline(time.Now().Add(c.h.WriteTimeout))
		c.ws.WriteClose(uint16(code), []byte(reason))
	}
	if abort {
		go closeFrame()
		return
	}
	c.ws.Async(closeFrame)
}

// closeInvalidText is the close code for a text frame that is not UTF-8
// (RFC 6455, 7.4.1: 1007, invalid frame payload data).
const closeInvalidText = 1007

// events receives the connection events of gws.
type events Handler

func (e *events) OnOpen(socket *gws.Conn) {
	h := (*Handler)(e)
	c := &conn{h: h, ws: socket}
	c.writerIndex = int(h.next.Add(1) % int64(len(h.writers)))
	c.w = h.writers[c.writerIndex]
	if lc, ok := socket.NetConn().(*lingerConn); ok {
		c.lc = lc
		lc.wmu.Lock()
		lc.onDrained = func() { h.writerOf(c).add(c) }
		lc.onStalled = func() { c.client.SlowConsumer() }
		lc.wmu.Unlock()
	}
	now := time.Now().UnixNano()
	c.lastSeen.Store(now)
	c.lastPing.Store(now)
	socket.Session().Store("conn", c)
	c.client = h.Node.ConnectVersion(c, socket.SubProtocol())
	h.mu.Lock()
	h.wheel.add(c, now+int64(h.PingInterval)+1)
	h.mu.Unlock()
}

func connOf(socket *gws.Conn) *conn {
	v, _ := socket.Session().Load("conn")
	c, _ := v.(*conn)
	return c
}

func (e *events) OnClose(socket *gws.Conn, err error) {
	if lc, ok := socket.NetConn().(*lingerConn); ok {
		lc.shut() // nothing reads it any more
	}
	if c := connOf(socket); c != nil {
		h := (*Handler)(e)
		h.mu.Lock()
		h.wheel.remove(c)
		h.mu.Unlock()
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.client.Gone()
	}
}

func (e *events) OnPing(socket *gws.Conn, payload []byte) {
	c := connOf(socket)
	if c == nil {
		socket.WritePong(payload)
		return
	}
	c.lastSeen.Store(time.Now().UnixNano())
	payload = append([]byte(nil), payload...) // gws reuses it after OnPing
	socket.Async(func() { c.control(func() { socket.WritePong(payload) }) })
}

func (e *events) OnPong(socket *gws.Conn, payload []byte) {
	if c := connOf(socket); c != nil {
		c.lastSeen.Store(time.Now().UnixNano())
	}
}

func (e *events) OnMessage(socket *gws.Conn, message *gws.Message) {
	defer message.Close()
	c := connOf(socket)
	if c == nil {
		return
	}
	c.lastSeen.Store(time.Now().UnixNano())
	if c.refused.Load() {
		return // closing: what the peer sent after its bad frame is not handled
	}
	if message.Opcode != gws.OpcodeText {
		c.refused.Store(true)
		c.Close(protocol.CloseBadFrame, "frames are JSON text")
		return
	}
	if !utf8.Valid(message.Bytes()) {
		// RFC 6455, 8.1: text that is not UTF-8 fails the connection.
		c.refused.Store(true)
		c.Close(closeInvalidText, "text frames must be UTF-8")
		return
	}
	c.handle(message.Bytes())
}

// handle hands a frame to the client, which handles it on one of the
// node's warm workers and returns when it is done
// (realtime.Client.HandleWarm): handling goes deep (JSON, the store), and
// the stack it would grow on the reading goroutine stays with it for the
// connection's life (the runtime halves a stack only when less than a
// quarter of it is in use), while parked in a read the reader fits in
// 2 KiB. On a warm worker, whose stack has grown already, neither the
// frame's decoding nor an auth grows a fresh goroutine's stack, and an
// auth needs no second hand-off. A panic is logged and the connection
// goes on, as gws does for a panic in OnMessage.
func (c *conn) handle(frame []byte) {
	c.client.HandleWarm(frame) // HandleWarm keeps no reference to it
}
