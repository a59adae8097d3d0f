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
	c    *Client
	ws   *gws.Conn
	done chan struct{}
	v2   bool // speaks tidings.v2 (protocol.SubprotocolV2), as the server chose

	nextID   atomic.Uint64
	dropping atomic.Bool // no longer takes updates (queue full, or closing)
	replied  atomic.Bool // a reply was sent
	wmu      sync.Mutex  // pairs each write with its deadline

	mu      sync.Mutex
	pending map[string]chan *protocol.Frame
	// sends are the message.send commands with a clientId waiting for their
	// answer, in tidings.v2: an answer with a ref stands for the message's
	// update, which the connection gets in no other way (see ownEcho).
	// Kept until the answer comes, even when the command's caller gave up.
	sends    map[string]ownSend
	accounts map[string]*Account // by name: those authenticated on it, or being
	err      error               // why it ended
	ended    bool
	// Updates wait in held until the connection is taken as the client's
	// (live): the listeners learn that it is connected before they get
	// its first update, the replay of what came while it was away.
	held []*item
	live bool
}

// authResult is the result of an account's authentication.
type authResult struct {
	a   *Account
	tok string
	res *protocol.AuthResult
	err error
}

// dial opens a realtime connection and authenticates the accounts on it,
// one after the other, each resuming after the last update of its own the
// listeners processed. The connection is returned if at least one account
// is authenticated; err is then nil, and results say how each fared.
func (c *Client) dial(ctx context.Context, accts []*Account) (*conn, []authResult, error) {
	results := make([]authResult, len(accts))
	var firstErr error
	fail := func(err error) {
		var rs *resyncError
		if firstErr == nil || (errors.As(firstErr, &rs) && !errors.As(err, &rs)) {
			firstErr = err
		}
	}
	ok := false
	for i, a := range accts {
		r := authResult{a: a}
		if r.tok, _, r.err = a.tokens.get(ctx); r.err != nil {
			fail(r.err)
		} else {
			ok = true
		}
		results[i] = r
	}
	if !ok {
		return nil, results, firstErr
	}
	cn, err := c.open(ctx)
	if err != nil {
		for i := range results {
			if results[i].err == nil {
				results[i].err = err
			}
		}
		return nil, results, err
	}
	ok = false
	for i := range results {
		r := &results[i]
		if r.err != nil {
			continue
		}
		if ctx.Err() != nil {
			r.err = ctx.Err()
		} else {
			r.res, r.err = c.authenticate(ctx, cn, r.a, r.tok)
		}
		if r.err != nil {
			fail(r.err)
		} else {
			ok = true
		}
	}
	if !ok {
		cn.close(protocol.CloseNormal, "")
		return nil, results, firstErr
	}
	return cn, results, nil
}

// authenticate authenticates a on cn with tok, resuming after the last
// update of a the listeners processed.
func (c *Client) authenticate(ctx context.Context, cn *conn, a *Account, tok string) (*protocol.AuthResult, error) {
	c.learnIdentity(a, tok)
	c.loadCursor(ctx, a)
	args := protocol.AuthArgs{Token: tok, Device: a.device}
	if a.resumeLatest.Load() {
		args.ResumeAfter = "latest"
	} else if ref := a.lastRef.Load(); ref > 0 {
		args.ResumeAfter = protocol.FormatRef(ref)
	}
	// Its updates may follow the answer at once, in the same message.
	cn.mu.Lock()
	cn.accounts[a.name] = a
	cn.mu.Unlock()
	raw, err := cn.command(ctx, a.name, protocol.CmdAuth, args)
	var res protocol.AuthResult
	if err == nil {
		err = json.Unmarshal(raw, &res)
	}
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			switch {
			case e.Code == tidings.EUnauthenticated:
				a.tokens.reject(tok, err)
			case e.Code == tidings.EResyncRequired:
				// Also when the server does not know our ref (another
				// server, or a database restored from a backup).
				return nil, &resyncError{ref: e.Ref, err: err}
			}
		}
		return nil, err
	}
	c.resubscribePresence(ctx, a, cn)
	if args.ResumeAfter == "latest" {
		// Unless the first updates were processed already.
		if n, ok := protocol.ParseRef(res.ResumedAfter); ok {
			a.lastRef.CompareAndSwap(0, n)
		}
		a.resumeLatest.Store(false)
	}
	return &res, nil
}

// loadCursor reads the account's cursor store once per login, before its
// first authentication.
func (c *Client) loadCursor(ctx context.Context, a *Account) {
	if a.cursor == nil {
		return
	}
	a.cursorMu.Lock()
	defer a.cursorMu.Unlock()
	if a.cursorLoaded {
		return
	}
	cur, err := a.cursor.LoadCursor(ctx)
	if err != nil {
		c.opts.logger.Warn("tidings: could not load the cursor", "err", err)
		if ctx.Err() != nil {
			return // try again at the next attempt
		}
	}
	a.cursorLoaded = true
	c.mu.Lock()
	app, user := a.appID, a.userID
	c.mu.Unlock()
	if cur.Ref == "" || cur.UserID != user || cur.AppID != app || cur.Device != a.device {
		return
	}
	if n, ok := protocol.ParseRef(cur.Ref); ok && n > a.lastRef.Load() {
		a.lastRef.Store(n)
	}
}

// learnIdentity reads the app and user of an account from its token.
func (c *Client) learnIdentity(a *Account, tok string) {
	cl, ok := parseClaims(tok)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a.userID == "" {
		a.userID = cl.Sub
	}
	if a.appID == "" {
		a.appID = cl.App
	}
}

// open dials the server and upgrades to WebSocket; the connection's read
// loop runs in a goroutine of its own when it returns.
func (c *Client) open(ctx context.Context) (*conn, error) {
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
	cn := &conn{c: c, done: make(chan struct{}), pending: make(map[string]chan *protocol.Frame),
		sends: make(map[string]ownSend), accounts: make(map[string]*Account)}
	header := http.Header{}
	// tidings.v2 if the server speaks it (servers before it choose v1).
	header.Set("Sec-WebSocket-Protocol", protocol.SubprotocolV2+", "+protocol.Subprotocol)
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
	cn.v2 = ws.SubProtocol() == protocol.SubprotocolV2
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

// command sends a command for an account ("" for none, as ping) and
// waits for its answer: its result, or an *Error when the server answered
// with an error.
func (cn *conn) command(ctx context.Context, account, name string, data any) (json.RawMessage, error) {
	return cn.commandWith(ctx, account, name, data, nil)
}

// commandWith is command; own, when set, is recorded under the command's
// id in sends before the command is written.
func (cn *conn) commandWith(ctx context.Context, account, name string, data any, own *ownSend) (json.RawMessage, error) {
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
	if own != nil {
		cn.sends[id] = *own
	}
	cn.mu.Unlock()
	defer func() {
		cn.mu.Lock()
		delete(cn.pending, id)
		cn.mu.Unlock()
	}()
	f := &protocol.Frame{Type: protocol.TypeCommand, ID: id, Command: name, Account: wireAccount(account), Data: raw}
	if err := cn.write(f); err != nil {
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

// reply acknowledges the updates of an account up to ref.
func (cn *conn) reply(account, ref string) error {
	cn.replied.Store(true)
	return cn.write(&protocol.Frame{Type: protocol.TypeReply, Ref: ref, Account: wireAccount(account)})
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
	_, _ = cn.command(ctx, "", protocol.CmdPing, struct{}{})
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
		var err error
		if cn.v2 {
			f, err = protocol.DecodeV2(line)
		} else {
			err = json.Unmarshal(line, &f)
		}
		if err != nil {
			cn.c.opts.logger.Warn("tidings: the server sent a frame that cannot be read", "err", err)
			continue
		}
		switch f.Type {
		case protocol.TypeAnswer:
			cn.mu.Lock()
			ch := cn.pending[f.ID]
			own, isSend := cn.sends[f.ID]
			delete(cn.sends, f.ID)
			cn.mu.Unlock()
			if isSend && f.Error == nil {
				cn.ownEcho(own, f.Result)
			}
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

// ownSend is a message.send of a tidings.v2 connection waiting for its
// answer (conn.sends).
type ownSend struct {
	account        string // as the frame names it
	conversationID string
	nm             tidings.NewMessage
}

// ownEcho queues, for a message.send answered in tidings.v2 with the ref
// of the message's update, the update that the server left out: made
// from the command and the answer, in the place of the answer among the
// updates, as the server put it (docs/protocol.md, "tidings.v2").
func (cn *conn) ownEcho(own ownSend, result json.RawMessage) {
	var r2 protocol.SendResultV2
	if err := json.Unmarshal(result, &r2); err != nil {
		return
	}
	r, ref := r2.V1()
	if ref == "" || r.Duplicate {
		return // the update follows, if any
	}
	m := r.Message(own.conversationID, own.nm)
	payload, err := json.Marshal(tidings.NewMessagePayload(m, ""))
	if err != nil {
		return
	}
	ev, err := json.Marshal(protocol.Event{Name: tidings.EventMessageSent, Time: m.SentAt, ConversationID: m.ConversationID,
		Payload: payload})
	if err != nil {
		return
	}
	cn.update(&protocol.Frame{Type: protocol.TypeUpdate, Account: own.account, Ref: ref, Silent: true, Event: ev})
}

// update queues an update for the listeners.
func (cn *conn) update(f *protocol.Frame) {
	if cn.dropping.Load() {
		return
	}
	name := f.Account
	if name == "" {
		name = DefaultAccount
	}
	cn.mu.Lock()
	a := cn.accounts[name]
	cn.mu.Unlock()
	if a == nil || a.removed.Load() {
		return
	}
	cn.c.mu.Lock()
	app := a.appID
	cn.c.mu.Unlock()
	ev, seq, ok := decodeUpdate(f, app)
	if !ok {
		cn.c.opts.logger.Warn("tidings: the server sent an update that cannot be read")
		return
	}
	if _, closed := ev.(*AccountClosed); closed {
		c := cn.c
		c.goTracked(func() { _ = c.call(func(m *machine) { m.accountClosed(cn, a) }) })
	}
	it := &item{kind: itemEvent, ev: ev, seq: seq, conn: cn, acct: a}
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
