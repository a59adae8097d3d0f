package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// writeTimeout bounds one write to the realtime connection.
const writeTimeout = 10 * time.Second

// closeConfirmTimeout bounds how long Close waits for the server to
// confirm that it took the last acknowledgements.
const closeConfirmTimeout = 2 * time.Second

// maxMessageBytes bounds a WebSocket message from the server.
const maxMessageBytes = 16 << 20

// errQueueFull ends a connection whose updates the listeners do not
// process fast enough (see WithMaxQueue).
var errQueueFull = errors.New("client: too many updates waiting for the listeners")

// resyncError says that the server cannot resume after the ref asked.
type resyncError struct {
	ref string // the newest ref, "" if unknown
	err error
}

func (e *resyncError) Error() string { return e.err.Error() }
func (e *resyncError) Unwrap() error { return e.err }

// conn is one realtime connection. Its frames are read by gws's read loop,
// in a goroutine of its own; writes come from any goroutine.
type conn struct {
	c     *Client
	sess  *session
	ws    *gws.Conn
	token string // the token authenticated on it; the supervisor's
	done  chan struct{}

	nextID   atomic.Uint64
	dropping atomic.Bool // no longer takes updates (queue full, or closing)
	replied  atomic.Bool // a reply was sent
	wmu      sync.Mutex  // pairs each write with its deadline

	mu      sync.Mutex
	pending map[string]chan *protocol.Frame
	err     error // why it ended
	ended   bool
	// Updates wait in held until the connection is taken as the client's
	// (live): the listeners learn that it is connected before they get
	// its first update, the replay of what came while it was away.
	held []*item
	live bool
}

// dial opens a realtime connection and authenticates the session on it,
// resuming after the last update the listeners processed.
func (c *Client) dial(ctx context.Context, sess *session) (*conn, *protocol.AuthResult, error) {
	tok, _, err := sess.tokens.get(ctx)
	if err != nil {
		return nil, nil, err
	}
	c.learnIdentity(sess, tok)
	c.loadCursor(ctx, sess)
	cn, err := c.open(ctx, sess)
	if err != nil {
		return nil, nil, err
	}
	args := protocol.AuthArgs{Token: tok, Device: c.opts.device}
	if sess.resumeLatest.Load() {
		args.ResumeAfter = "latest"
	} else if ref := sess.lastRef.Load(); ref > 0 {
		args.ResumeAfter = protocol.FormatRef(ref)
	}
	raw, err := cn.command(ctx, protocol.CmdAuth, args)
	var res protocol.AuthResult
	if err == nil {
		err = json.Unmarshal(raw, &res)
	}
	if err != nil {
		cn.close(protocol.CloseNormal, "")
		var e *Error
		if errors.As(err, &e) {
			switch {
			case e.Code == tidings.EUnauthenticated:
				sess.tokens.reject(tok, err)
			case e.Code == tidings.EResyncRequired:
				// Also when the server does not know our ref (another
				// server, or a database restored from a backup).
				return nil, nil, &resyncError{ref: e.Ref, err: err}
			}
		}
		return nil, nil, err
	}
	cn.token = tok
	c.resubscribePresence(ctx, sess, cn)
	if args.ResumeAfter == "latest" {
		// Unless the first updates were processed already.
		if n, ok := protocol.ParseRef(res.ResumedAfter); ok {
			sess.lastRef.CompareAndSwap(0, n)
		}
		sess.resumeLatest.Store(false)
	}
	return cn, &res, nil
}

// loadCursor reads the cursor store once per session, before the first
// connection.
func (c *Client) loadCursor(ctx context.Context, sess *session) {
	if c.opts.cursor == nil {
		return
	}
	sess.cursorMu.Lock()
	defer sess.cursorMu.Unlock()
	if sess.cursorLoaded {
		return
	}
	cur, err := c.opts.cursor.LoadCursor(ctx)
	if err != nil {
		c.opts.logger.Warn("tidings: could not load the cursor", "err", err)
		if ctx.Err() != nil {
			return // try again at the next attempt
		}
	}
	sess.cursorLoaded = true
	c.mu.Lock()
	app, user := sess.appID, sess.userID
	c.mu.Unlock()
	if cur.Ref == "" || cur.UserID != user || cur.AppID != app || cur.Device != c.opts.device {
		return
	}
	if n, ok := protocol.ParseRef(cur.Ref); ok && n > sess.lastRef.Load() {
		sess.lastRef.Store(n)
	}
}

// learnIdentity reads the app and user of a session from its token.
func (c *Client) learnIdentity(sess *session, tok string) {
	cl, ok := parseClaims(tok)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if sess.userID == "" {
		sess.userID = cl.Sub
	}
	if sess.appID == "" {
		sess.appID = cl.App
	}
}

// open dials the server and upgrades to WebSocket; the connection's read
// loop runs in a goroutine of its own when it returns.
func (c *Client) open(ctx context.Context, sess *session) (*conn, error) {
	u, err := url.Parse(c.wsURL)
	if err != nil {
		return nil, err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), map[string]string{"ws": "80", "wss": "443"}[u.Scheme])
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("client: dial: %w", err)
	}
	if u.Scheme == "wss" {
		cfg := c.tlsConfig()
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("client: TLS handshake: %w", err)
		}
		nc = tc
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	cn := &conn{c: c, sess: sess, done: make(chan struct{}), pending: make(map[string]chan *protocol.Frame)}
	header := http.Header{}
	header.Set("Sec-WebSocket-Protocol", protocol.Subprotocol)
	header.Set("User-Agent", "tidings-go-client")
	ws, _, err := gws.NewClientFromConn((*connEvents)(cn), &gws.ClientOption{
		Addr:               c.wsURL,
		RequestHeader:      header,
		HandshakeTimeout:   c.opts.dialTimeout,
		ReadMaxPayloadSize: maxMessageBytes,
	}, nc)
	if !stop() {
		if err == nil {
			ws.NetConn().Close()
		}
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("client: WebSocket handshake: %w", err)
	}
	cn.ws = ws
	c.goTracked(ws.ReadLoop)
	return cn, nil
}

// tlsConfig returns the TLS settings of the HTTP client's transport, if
// any, for the realtime connection.
func (c *Client) tlsConfig() *tls.Config {
	if t, ok := c.opts.httpClient.Transport.(*http.Transport); ok && t.TLSClientConfig != nil {
		return t.TLSClientConfig.Clone()
	}
	return &tls.Config{}
}

// command sends a command and waits for its answer: its result, or an
// *Error when the server answered with an error.
func (cn *conn) command(ctx context.Context, name string, data any) (json.RawMessage, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	id := strconv.FormatUint(cn.nextID.Add(1), 10)
	ch := make(chan *protocol.Frame, 1)
	cn.mu.Lock()
	if cn.ended {
		cn.mu.Unlock()
		return nil, ErrConnectionLost
	}
	cn.pending[id] = ch
	cn.mu.Unlock()
	defer func() {
		cn.mu.Lock()
		delete(cn.pending, id)
		cn.mu.Unlock()
	}()
	if err := cn.write(&protocol.Frame{Type: protocol.TypeCommand, ID: id, Command: name, Data: raw}); err != nil {
		return nil, ErrConnectionLost
	}
	select {
	case f := <-ch:
		if f.Error != nil {
			return nil, &Error{Code: f.Error.Code, Message: f.Error.Message, Ref: f.Error.Ref}
		}
		return f.Result, nil
	case <-cn.done:
		return nil, ErrConnectionLost
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// reply acknowledges the updates up to ref.
func (cn *conn) reply(ref string) error {
	cn.replied.Store(true)
	return cn.write(&protocol.Frame{Type: protocol.TypeReply, Ref: ref})
}

// confirmReplies waits, within closeConfirmTimeout, until the server has
// processed the replies sent: it answers a ping after the frames that came
// before it.
func (cn *conn) confirmReplies() {
	if !cn.replied.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeConfirmTimeout)
	defer cancel()
	_, _ = cn.command(ctx, protocol.CmdPing, struct{}{})
}

func (cn *conn) write(f *protocol.Frame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return cn.writeWith(func() error { return cn.ws.WriteMessage(gws.OpcodeText, b) })
}

// writeWith runs a write of the socket with a fresh deadline.
func (cn *conn) writeWith(w func() error) error {
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	_ = cn.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	return w()
}

// close closes the connection with a close frame and returns at once if
// the network does not take it.
func (cn *conn) close(code int, reason string) {
	cn.dropping.Store(true)
	cn.setReason(errors.New("client: connection closed by the client"))
	_ = cn.ws.SetWriteDeadline(time.Now().Add(time.Second))
	_ = cn.ws.WriteClose(uint16(code), []byte(reason))
	_ = cn.ws.NetConn().Close()
}

// abort ends the connection at once, without a close frame.
func (cn *conn) abort(why error) {
	cn.dropping.Store(true)
	cn.setReason(why)
	_ = cn.ws.NetConn().Close()
}

func (cn *conn) setReason(err error) {
	cn.mu.Lock()
	if cn.err == nil {
		cn.err = err
	}
	cn.mu.Unlock()
}

// reason returns why the connection ended.
func (cn *conn) reason() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.err
}

// connEvents receives the events of gws for a conn.
type connEvents conn

func (e *connEvents) OnOpen(*gws.Conn) {}

func (e *connEvents) OnClose(_ *gws.Conn, err error) {
	cn := (*conn)(e)
	var ce *gws.CloseError
	if errors.As(err, &ce) {
		err = &CloseError{Code: int(ce.Code), Reason: string(ce.Reason)}
	} else if err == nil {
		err = errors.New("client: connection closed")
	} else {
		err = fmt.Errorf("client: connection lost: %w", err)
	}
	cn.setReason(err)
	cn.mu.Lock()
	cn.ended = true
	cn.mu.Unlock()
	close(cn.done)
}

func (e *connEvents) OnPing(socket *gws.Conn, payload []byte) {
	cn := (*conn)(e)
	_ = cn.writeWith(func() error { return socket.WritePong(payload) })
}

func (e *connEvents) OnPong(*gws.Conn, []byte) {}

// OnMessage reads the frames of a message: answers go to the commands
// waiting for them, updates to the delivery queue.
func (e *connEvents) OnMessage(_ *gws.Conn, message *gws.Message) {
	defer message.Close()
	cn := (*conn)(e)
	data := message.Bytes()
	for len(data) > 0 {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var f protocol.Frame
		if err := json.Unmarshal(line, &f); err != nil {
			cn.c.opts.logger.Warn("tidings: the server sent a frame that is not JSON", "err", err)
			continue
		}
		switch f.Type {
		case protocol.TypeAnswer:
			cn.mu.Lock()
			ch := cn.pending[f.ID]
			cn.mu.Unlock()
			if ch != nil {
				select {
				case ch <- &f:
				default:
				}
			}
		case protocol.TypeUpdate:
			cn.update(&f)
		}
	}
}

// update queues an update for the listeners.
func (cn *conn) update(f *protocol.Frame) {
	if (f.Account != "" && f.Account != "default") || cn.dropping.Load() {
		return
	}
	ev, seq, ok := decodeUpdate(f)
	if !ok {
		cn.c.opts.logger.Warn("tidings: the server sent an update that cannot be read")
		return
	}
	it := &item{kind: itemEvent, ev: ev, seq: seq, conn: cn, sess: cn.sess}
	cn.mu.Lock()
	var ok2 bool
	if cn.live {
		ok2 = cn.c.q.push(it, cn.c.opts.maxQueue)
	} else if limit := cn.c.opts.maxQueue; limit <= 0 || len(cn.held) < limit {
		cn.held, ok2 = append(cn.held, it), true
	}
	cn.mu.Unlock()
	if !ok2 {
		cn.tooSlow()
	}
}

// goLive hands the updates held so far to the listeners, and the next ones
// as they come. The supervisor calls it once the connection is the
// client's and the status listeners are told so: they learn that it is
// connected before they get its first update (the replay of what came
// while it was away).
func (cn *conn) goLive() {
	cn.mu.Lock()
	held := cn.held
	cn.held, cn.live = nil, true
	ok := true
	for _, it := range held {
		if ok = cn.c.q.push(it, cn.c.opts.maxQueue); !ok {
			break
		}
	}
	cn.mu.Unlock()
	if !ok {
		cn.tooSlow()
	}
}

// tooSlow drops the connection when the delivery queue is full.
func (cn *conn) tooSlow() {
	if cn.c.q.isClosed() {
		return // the client is closing: the update is not acknowledged
	}
	// Drop the connection rather than the update: the next one resumes
	// after the last update processed.
	cn.c.opts.logger.Warn("tidings: listeners too slow: dropping the connection", "queue", cn.c.opts.maxQueue)
	cn.abort(errQueueFull)
}
