package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/ratelimit"
	"github.com/tidings/tidings/token"
)

// Transport carries the frames of one connection.
type Transport interface {
	// Write queues one encoded frame. It returns false when the queue of
	// the connection is full: the peer reads too slowly.
	Write(frame []byte) bool
	// Close closes the connection with a close code and a reason.
	Close(code int, reason string)
}

// Client is one connection: it authenticates accounts and runs their
// commands. The transport calls Handle for each frame the peer sends, one
// at a time, and Gone when the connection has ended. Commands run in the
// order they come, one at a time, but for message.send, whose commit the
// next commands do not wait for (see send).
type Client struct {
	node *Node
	t    Transport
	v2   bool // speaks tidings.v2 (protocol.SubprotocolV2); else tidings.v1

	mu          sync.Mutex
	accounts    accounts
	closed      bool
	connectedAt time.Time
	lastActive  time.Time // last command or reply
	authing     int       // auth commands running (see authenticate)
	tokens      float64   // command rate limit bucket
	refilled    time.Time
	// checkAt (unix nanoseconds of the node's clock) is no later than the
	// first time check may have something to do: the node's tick checks
	// only the clients whose checkAt has passed, not every client every
	// second. Lowered (under mu) when an account is added or removed.
	checkAt atomic.Int64
	// Its place in the node's checks (checkQueue), guarded by node.checks.mu.
	checkIndex int   // 1 + its index in the heap; 0: not in it
	queuedAt   int64 // the time it is queued under
	checkGone  bool  // ended: never queued again

	// sends holds a token per message.send in flight (see send); made by
	// the first send, so that a connection that never sends (most of the
	// idle ones) does not carry it.
	sends chan struct{}
}

// maxSendsInFlight bounds the message.send commands of one connection
// waiting for their commit at once; the next one waits for a place.
const maxSendsInFlight = 64

// Connect returns the client of a new connection speaking tidings.v1.
func (n *Node) Connect(t Transport) *Client { return n.ConnectVersion(t, protocol.Subprotocol) }

// ConnectVersion returns the client of a new connection speaking the
// version of the protocol named by subprotocol: protocol.SubprotocolV2, or
// else tidings.v1.
func (n *Node) ConnectVersion(t Transport, subprotocol string) *Client {
	now := n.Now()
	c := &Client{node: n, t: t, v2: subprotocol == protocol.SubprotocolV2,
		connectedAt: now, lastActive: now, tokens: n.CommandBurst, refilled: now}
	c.checkAt.Store(now.Add(n.AuthTimeout).UnixNano())
	n.mu.Lock()
	closing := n.closing
	if !closing {
		n.clients[c] = struct{}{}
	}
	n.mu.Unlock()
	if !closing {
		n.checks.schedule(c, c.checkAt.Load())
	}
	if closing {
		c.closed = true
		t.Close(protocol.CloseGoingAway, "the server is shutting down: reconnect")
		return c
	}
	n.metrics.connections.Inc()
	return c
}

// Gone ends the client after its connection ended.
func (c *Client) Gone() { c.end(true) }

// SlowConsumer ends the client whose connection's peer reads too slowly
// (its transport could not write for a while): the connection is closed
// with 4009, and the log keeps what it did not get.
func (c *Client) SlowConsumer() {
	c.close(protocol.CloseSlowConsumer, "updates are not read fast enough: reconnect and resume")
}

// close ends the client and closes its connection.
func (c *Client) close(code int, reason string) {
	if c.end(true) {
		if _, poll := c.t.(*pollTransport); code == protocol.CloseSlowConsumer && !poll {
			c.node.metrics.slow.Inc()
		}
		c.t.Close(code, reason)
	}
}

// end unregisters the client and its sessions and, with flush, stores
// their cursors (Shutdown stores those of all clients at once); it reports
// whether it was the first to end the client.
func (c *Client) end(flush bool) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	sessions := c.accounts
	c.accounts = nil
	c.mu.Unlock()
	n := c.node
	n.mu.Lock()
	delete(n.clients, c)
	n.mu.Unlock()
	n.checks.remove(c)
	n.metrics.connections.Dec()
	var keys []deviceKey
	for _, s := range sessions {
		n.endSession(s)
		keys = append(keys, s.cursorKey())
	}
	if flush && len(keys) > 0 {
		n.flushCursors(context.Background(), keys...)
	}
	return true
}

// endSession stops a session's deliveries and takes it off the index.
func (n *Node) endSession(s *Session) {
	s.mu.Lock()
	s.closed = true
	s.pending = nil
	s.mu.Unlock()
	n.unregister(s)
	n.stopTypingOf(s)
}

// check closes the client if it has overstayed: no account authenticated
// within AuthTimeout, idle past IdleTimeout, or its last token expired.
func (c *Client) check(now time.Time) {
	n := c.node
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	var expired []*Session
	kept := c.accounts[:0]
	for _, s := range c.accounts {
		s.mu.Lock()
		if now.After(s.expires) {
			expired = append(expired, s)
		} else {
			kept = append(kept, s)
		}
		s.mu.Unlock()
	}
	clear(c.accounts[len(kept):])
	c.accounts = kept
	noAccount := len(c.accounts) == 0
	authLate := noAccount && len(expired) == 0 && c.authing == 0 && now.Sub(c.connectedAt) > n.AuthTimeout
	idle := n.IdleTimeout > 0 && now.Sub(c.lastActive) > n.IdleTimeout
	// The next time there may be something to do: the first token to
	// expire, the end of the time to authenticate, the idle timeout
	// (which later commands push back: check then finds nothing, and
	// looks again later).
	next := time.Time{}
	sooner := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, s := range c.accounts {
		s.mu.Lock()
		sooner(s.expires)
		s.mu.Unlock()
	}
	if noAccount && c.authing == 0 { // else the auth's end looks
		sooner(c.connectedAt.Add(n.AuthTimeout))
	}
	if n.IdleTimeout > 0 {
		sooner(c.lastActive.Add(n.IdleTimeout))
	}
	c.checkAt.Store(next.UnixNano())
	c.mu.Unlock()

	for _, s := range expired {
		n.endSession(s)
		n.flushCursors(context.Background(), s.cursorKey())
		c.t.Write(n.liveFrame(c.v2, s.account, s.app, protocol.EventAccountEnds, nil, "",
			protocol.AccountClosedPayload{Account: s.account, Reason: protocol.ReasonTokenExpired}))
	}
	switch {
	case len(expired) > 0 && noAccount:
		c.close(protocol.CloseTokenExpired, "the access token expired: authenticate again with a fresh one")
	case authLate:
		c.close(protocol.CloseAuthTimeout, "no account authenticated in time")
	case idle:
		c.close(protocol.CloseIdle, "idle for too long: send a ping command to stay connected")
	}
}

// checkSoonerLocked makes the node's tick check the client by t.
func (c *Client) checkSoonerLocked(t time.Time) {
	if at := t.UnixNano(); at < c.checkAt.Load() {
		c.checkAt.Store(at)
		c.node.checks.schedule(c, at)
	}
}

// Handle processes one frame from the peer.
func (c *Client) Handle(data []byte) {
	if ref, account, ok := parseReply(data); ok {
		c.reply(ref, account)
		return
	}
	c.handle(data, false)
}

// HandleWarm is Handle on one of the node's warm workers (see goWarm),
// waited for: a transport that would otherwise start a goroutine per
// frame, to keep its reading goroutine's stack small, hands the frame
// over here instead. An auth then runs on that worker, without a second
// hand-off, and the frame's decoding does not grow a fresh goroutine's
// stack. A panic is logged and the connection goes on. When the node is
// shutting down, the frame is handled on a goroutine of its own, as
// Handle would be (an auth is then refused).
func (c *Client) HandleWarm(data []byte) {
	// A reply (most of what a receiving client sends) is handled here, on
	// the caller's goroutine: it is parsed by hand and moves a cursor in
	// memory, shallow enough for a reader's small stack, and the hand-off
	// to a worker and back would cost more than handling it.
	if ref, account, ok := parseReply(data); ok {
		c.reply(ref, account)
		return
	}
	done := make(chan struct{})
	handle := func(warm bool) func() {
		return func() {
			defer close(done)
			defer c.recoverPanic("frame", func() {})
			c.handle(data, warm)
		}
	}
	if !c.node.goWarm(handle(true)) {
		go handle(false)()
	}
	<-done
}

// handle processes one frame; warm says whether it runs on a warm worker
// (HandleWarm), where an auth runs without a hand-off.
func (c *Client) handle(data []byte, warm bool) {
	f, send, fast := parseSendFrame(data)
	if !fast {
		if err := json.Unmarshal(data, &f); err != nil {
			c.close(protocol.CloseBadFrame, "a frame is not valid JSON")
			return
		}
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.lastActive = c.node.Now()
	c.mu.Unlock()
	switch f.Type {
	case protocol.TypeCommand:
		if fast {
			c.command(&f, warm, &send)
		} else {
			c.command(&f, warm, nil)
		}
	case protocol.TypeReply:
		c.reply(f.Ref, f.Account)
	default:
		c.close(protocol.CloseBadFrame, fmt.Sprintf("unknown frame type %q", f.Type))
	}
}

// reply handles a reply frame: the account's session acknowledges every
// update up to ref, in memory (noted by the node's tick, which stores
// cursors every second; see Session.replied).
func (c *Client) reply(ref, account string) {
	seq, ok := protocol.ParseRef(ref)
	now := c.node.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.lastActive = now
	var s *Session
	if ok {
		s = c.accounts.get(accountName(account))
	}
	c.mu.Unlock()
	if !ok {
		c.close(protocol.CloseBadFrame, "a reply has no valid ref")
		return
	}
	if s != nil {
		s.replied(seq)
	}
}

// recoverPanic, deferred on the goroutines the client starts (the
// transport recovers its own), logs a panic with its stack and runs
// then, instead of letting it end the whole server.
func (c *Client) recoverPanic(what string, then func()) {
	if r := recover(); r != nil {
		c.node.Logger.Error("realtime: panic", "in", what, "panic", r, "stack", string(debug.Stack()))
		then()
	}
}

// accounts are the sessions of a client, one per account name: a slice,
// not a map, since a connection has one account or a few.
type accounts []*Session

// get returns the session of the account name, nil if none.
func (as accounts) get(name string) *Session {
	for _, s := range as {
		if s.account == name {
			return s
		}
	}
	return nil
}

// set adds s, or puts it in the place of the session of its account.
func (as *accounts) set(s *Session) {
	for i, o := range *as {
		if o.account == s.account {
			(*as)[i] = s
			return
		}
	}
	*as = append(*as, s)
}

// remove removes the session of the account name, if any.
func (as *accounts) remove(name string) {
	for i, o := range *as {
		if o.account == name {
			*as = slices.Delete(*as, i, i+1)
			return
		}
	}
}

// defaultAccount is the account of frames that name none.
const defaultAccount = "default"

func accountName(a string) string {
	if a == "" {
		return defaultAccount
	}
	return a
}

func (c *Client) session(account string) *Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.accounts.get(accountName(account))
}

// allow takes a token from the command rate limit bucket.
func (c *Client) allow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.node.Now()
	c.tokens = min(c.node.CommandBurst, c.tokens+now.Sub(c.refilled).Seconds()*c.node.CommandRate)
	c.refilled = now
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}

func (c *Client) answer(id string, result any, err error) {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = tidings.Errorf(tidings.EUnavailable, "the server could not answer in time: retry")
	}
	if err != nil && tidings.ErrorCode(err) == tidings.EInternal {
		c.node.Logger.Error("realtime command failed", "err", err)
	}
	if !c.t.Write(encodeAnswer(c.v2, id, result, err)) {
		// An answer is never dropped silently: the peer reads too slowly.
		c.SlowConsumer()
	}
}

// decode reads command arguments strictly.
func decode(data json.RawMessage, v any) error {
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return tidings.JSONError("the command's data", err)
	}
	return nil
}

// command runs a command frame; warm says whether it runs on a warm
// worker already (HandleWarm). send is a message.send's arguments when
// parseSendFrame read them (f has no data then), else nil.
func (c *Client) command(f *protocol.Frame, warm bool, send *sendCommand) {
	if f.ID == "" {
		c.close(protocol.CloseBadFrame, "a command has no id")
		return
	}
	if !c.allow() {
		c.answer(f.ID, nil, tidings.Errorf(tidings.ERateLimited, "too many commands: at most %g per second", c.node.CommandRate))
		return
	}
	n := c.node
	switch f.Command {
	case protocol.CmdAuth:
		ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
		defer cancel()
		if warm {
			c.authenticate(ctx, f)
			return
		}
		// On a warm worker, waited for: auth goes deep (token, store),
		// and the stack it grows would otherwise stay with the
		// connection's reading goroutine, idle for hours (and be grown
		// anew on every connect by a fresh goroutine).
		done := make(chan struct{})
		started := n.goWarm(func() {
			defer close(done)
			c.authenticate(ctx, f)
		})
		if !started {
			c.answer(f.ID, nil, tidings.Errorf(tidings.EUnavailable, "the server is shutting down: reconnect"))
			return
		}
		<-done
		return
	case protocol.CmdPing:
		c.answer(f.ID, protocol.PingResult{Time: n.Now().UTC().Format(time.RFC3339Nano)}, nil)
		return
	}
	s := c.session(f.Account)
	if s == nil {
		c.answer(f.ID, nil, tidings.Errorf(tidings.EUnauthenticated, "account %q is not authenticated on this connection: send auth first", accountName(f.Account)))
		return
	}
	if f.Command != protocol.CmdLogout {
		// The user's budget, shared with their REST requests.
		if err := n.Limits.AllowUser(s.app, s.user, ratelimit.Request); err != nil {
			c.answer(f.ID, nil, err)
			return
		}
	}
	if f.Command == protocol.CmdSend {
		if send != nil {
			c.sendMessage(f.ID, send.conversationID, send.nm, s)
		} else {
			c.send(f.ID, f.Data, s)
		}
		return
	}
	ctx := tidings.NewContextWithCaller(n.commandContext(), tidings.Caller{AppID: s.app, UserID: s.user})
	var result any
	var err error
	switch f.Command {
	case protocol.CmdLogout:
		c.mu.Lock()
		c.accounts.remove(s.account)
		c.checkNextTickLocked()
		none := len(c.accounts) == 0
		c.mu.Unlock()
		n.endSession(s)
		n.flushCursors(ctx, s.cursorKey())
		c.answer(f.ID, struct{}{}, nil)
		if none {
			c.close(protocol.CloseNormal, "logged out")
		}
		return
	case protocol.CmdMarkDelivered, protocol.CmdMarkRead:
		var a protocol.MarkArgs
		if err = decode(f.Data, &a); err == nil {
			if f.Command == protocol.CmdMarkRead {
				result, err = n.Messages.MarkRead(ctx, a.ConversationID, a.Seq)
			} else {
				result, err = n.Messages.MarkDelivered(ctx, a.ConversationID, a.Seq)
			}
		}
	case protocol.CmdTypingStart, protocol.CmdTypingStop:
		var a protocol.TypingArgs
		if err = decode(f.Data, &a); err == nil {
			err = n.setTyping(s, a.ConversationID, f.Command == protocol.CmdTypingStart)
			result = struct{}{}
		}
	case protocol.CmdPresenceSubscribe:
		var a protocol.PresenceSubscribeArgs
		if err = decode(f.Data, &a); err == nil {
			if err = n.subscribePresence(ctx, s, f.ID, a.UserIDs); err == nil {
				return // answered
			}
		}
	case protocol.CmdPresenceUnsubscribe:
		var a protocol.PresenceSubscribeArgs
		if err = decode(f.Data, &a); err == nil {
			err = n.unsubscribePresence(s, a.UserIDs)
			result = struct{}{}
		}
	case protocol.CmdPresenceGet:
		var a protocol.PresenceArgs
		if err = decode(f.Data, &a); err == nil {
			result, err = n.presenceOf(ctx, s, a.ConversationID)
		}
	default:
		err = tidings.Errorf(tidings.EInvalid, "unknown command %q", f.Command)
	}
	c.answer(f.ID, result, err)
}

// send runs a message.send beside the connection's next frames, so that a
// client may pipeline its sends: it returns once the message's write is
// queued in the store (or has failed before), and the answer follows when
// the write commits. Writes commit in the order they are queued, so the
// messages of one connection keep the order it sent them in, while those
// sent back to back share a commit instead of waiting each for the last.
func (c *Client) send(id string, data json.RawMessage, s *Session) {
	var a protocol.SendArgs
	if err := decode(data, &a); err != nil {
		c.answer(id, nil, err)
		return
	}
	nm := tidings.NewMessage{ClientID: a.ClientID, Metadata: a.Metadata, Alert: a.Alert}
	if len(a.Parts) > 0 { // none: the validation says so
		if err := decode(a.Parts, &nm.Parts); err != nil {
			c.answer(id, nil, err)
			return
		}
	}
	c.sendMessage(id, a.ConversationID, nm, s)
}

// sendMessage is send with its arguments decoded.
func (c *Client) sendMessage(id, conversationID string, nm tidings.NewMessage, s *Session) {
	n := c.node
	// Commands run one at a time (the transport's Handle): only this
	// goroutine makes or reads c.sends here.
	if c.sends == nil {
		c.sends = make(chan struct{}, maxSendsInFlight)
	}
	sends := c.sends
	sends <- struct{}{}
	// In tidings.v2, the answer to a send with a clientId may take the
	// place of the message's update (see ownSend): recorded before the
	// write, whose update may come before its result.
	var own *ownSend
	if c.v2 && nm.ClientID != "" {
		own = &ownSend{id: id, conversationID: conversationID, nm: nm}
		own.nm.Parts = slices.Clone(nm.Parts)
		s.addOwnSend(own)
	}
	answer := func(result any, err error) {
		if own == nil || s.takeOwnSend(own) {
			c.answer(id, result, err)
		}
	}
	queued := make(chan struct{})
	var once sync.Once
	mark := func() { once.Do(func() { close(queued) }) }
	started := n.goTracked(func() {
		defer func() { <-sends }()
		defer mark()
		defer c.recoverPanic("message.send", func() {
			answer(nil, tidings.Errorf(tidings.EInternal, "the server failed to send the message"))
		})
		ctx := tidings.NewContextWithCaller(n.commandContext(), tidings.Caller{AppID: s.app, UserID: s.user})
		ctx = tidings.NewContextWithQueued(ctx, mark)
		// What the client sent, which the answer leaves out when the
		// message has it unchanged (a store may not keep its slice as is).
		sent := nm
		sent.Parts = slices.Clone(nm.Parts)
		m, created, err := n.Messages.SendMessage(ctx, conversationID, nm)
		if err != nil {
			answer(nil, err)
			return
		}
		if own != nil && created {
			// The store published the message's event before it
			// returned (when it publishes at commit): once the node has
			// dispatched it, the update was answered in its place, or
			// did not reach the session live (it replays, or the event
			// comes later: a cluster, PostgreSQL's publisher) and the
			// answer goes without ref, the update following.
			select {
			case <-n.afterDispatch():
			case <-ctx.Done():
			}
		}
		answer(protocol.NewSendResult(sent, m, created), nil)
	})
	if !started {
		<-sends
		answer(nil, tidings.Errorf(tidings.EUnavailable, "the server is shutting down: reconnect"))
		return
	}
	<-queued
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// deviceName checks a device name given by a client ("" is "default").
func deviceName(device string) (string, error) {
	if device == "" {
		return "default", nil
	}
	if !namePattern.MatchString(device) {
		return "", tidings.Errorf(tidings.EInvalid, "device names are 1 to 64 letters, digits, _ and -")
	}
	return device, nil
}

// authenticate runs an auth command. The auth timeout does not close the
// connection while an auth of its runs: a server slow to answer (a
// reconnect storm, a slow store) must not close clients that sent their
// auth in time, which would only reconnect and add to the load. An auth
// that ends past the timeout with no account authenticated closes it
// then.
func (c *Client) authenticate(ctx context.Context, f *protocol.Frame) {
	c.mu.Lock()
	c.authing++
	c.mu.Unlock()
	defer func() {
		n := c.node
		c.mu.Lock()
		c.authing--
		late := c.authing == 0 && len(c.accounts) == 0 && !c.closed && n.Now().Sub(c.connectedAt) > n.AuthTimeout
		c.mu.Unlock()
		if late {
			c.close(protocol.CloseAuthTimeout, "no account authenticated in time")
		}
	}()
	defer c.recoverPanic("auth", func() {
		c.answer(f.ID, nil, tidings.Errorf(tidings.EInternal, "the server failed to authenticate the account"))
	})
	c.auth(ctx, f)
}

// auth authenticates an account (or refreshes its token), then replays
// what it missed and turns it live.
func (c *Client) auth(ctx context.Context, f *protocol.Frame) {
	n := c.node
	var a protocol.AuthArgs
	if err := decode(f.Data, &a); err != nil {
		c.answer(f.ID, nil, err)
		return
	}
	account := accountName(f.Account)
	if !namePattern.MatchString(account) {
		c.answer(f.ID, nil, tidings.Errorf(tidings.EInvalid, "account names are 1 to 64 letters, digits, _ and -"))
		return
	}
	device, err := deviceName(a.Device)
	if err != nil {
		c.answer(f.ID, nil, err)
		return
	}
	v, u, pt, closes, err := n.verify(ctx, a.Token, device)
	if err != nil {
		c.answer(f.ID, nil, err)
		return
	}
	caller, expires := v.Caller, v.ExpiresAt
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: caller.AppID, Server: true})
	result := protocol.AuthResult{Account: account, AppID: caller.AppID, UserID: caller.UserID, Device: device,
		ExpiresAt: expires.UTC().Format(time.RFC3339)}

	// A second auth for the account refreshes its token.
	if s := c.session(account); s != nil {
		if s.app != caller.AppID || s.user != caller.UserID {
			c.answer(f.ID, nil, tidings.Errorf(tidings.EConflict, "account %q is signed in as another user: logout first", account))
			return
		}
		s.mu.Lock()
		s.expires, s.issued = expires, v.IssuedAt
		result.Device, result.ResumedAfter = s.device, protocol.FormatRef(s.lastSent.Load())
		s.mu.Unlock()
		c.mu.Lock()
		c.checkSoonerLocked(expires) // a token may replace one that expires later
		c.mu.Unlock()
		c.answer(f.ID, result, nil)
		return
	}
	tooMany := func() {
		c.answer(f.ID, nil, tidings.Errorf(tidings.ERateLimited, "too many connections for this user (at most %d)", n.MaxConnsPerUser))
		c.mu.Lock()
		none := len(c.accounts) == 0
		c.mu.Unlock()
		if none {
			c.close(protocol.CloseTooManyConns, "too many connections for this user")
		}
	}
	if n.PresenceStore == nil && n.userSessions(caller.AppID, caller.UserID) >= n.MaxConnsPerUser {
		tooMany()
		return
	}
	after, latest, err := n.resumePoint(ctx, caller, device, a.ResumeAfter, pt)
	if err != nil {
		c.answer(f.ID, nil, err)
		return
	}
	s := &Session{client: c, account: account, app: caller.AppID, user: caller.UserID, device: device,
		profile: u.Summary(), expires: expires, issued: v.IssuedAt, replaying: true}
	if n.PresenceStore != nil {
		// Counted in the whole cluster: the limit, and whether the user
		// comes online. register and unregister undo it.
		first, err := n.PresenceStore.Connect(ctx, caller.AppID, caller.UserID, n.NodeID, n.MaxConnsPerUser)
		if tidings.ErrorCode(err) == tidings.ERateLimited {
			tooMany()
			return
		} else if err != nil {
			c.answer(f.ID, nil, err)
			return
		}
		s.counted, s.first = true, first
	}
	if err := n.register(ctx, s); err != nil {
		c.answer(f.ID, nil, err)
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		n.endSession(s)
		return
	}
	c.accounts.set(s)
	c.checkSoonerLocked(expires)
	c.mu.Unlock()
	// The app may have ended the user's access (CloseUser) after the user
	// was read above but before the session was indexed, where CloseUser
	// finds sessions: read them again, now that it would find this one.
	// CloseUser is called once the change is stored, so when no closeUser
	// ran on this node since before the read, the read saw the change or
	// the closeUser to come finds this session: no second read is needed
	// (one store query less per connect). A CloseUser whose update this
	// node never gets is caught by checkAccess, as before.
	if n.closes.Load() != closes {
		if err := n.stillAccepted(server, caller.UserID, v.IssuedAt); err != nil {
			c.mu.Lock()
			if c.accounts.get(account) == s {
				c.accounts.remove(account)
				c.checkNextTickLocked()
			}
			c.mu.Unlock()
			n.endSession(s)
			c.answer(f.ID, nil, err)
			return
		}
	}
	result.ResumedAfter = protocol.FormatRef(after)
	c.answer(f.ID, result, nil)
	if after >= latest && s.liveAt(after) {
		return // nothing to replay: no read of the log
	}
	// The replay runs beside the connection's reads, which go on meanwhile
	// (pongs, replies, commands): a long replay paced by a slow reader
	// must not look like a dead peer. It may outlast the command's
	// timeout, and ends with the node or the session.
	started := n.goTracked(func() {
		defer c.recoverPanic("replay", func() {
			c.close(protocol.CloseGoingAway, "could not replay updates: reconnect")
		})
		if err := s.replay(n.ctx, after); err != nil {
			if n.ctx.Err() == nil {
				n.Logger.Error("replay failed", "err", err, "app", s.app, "user", s.user)
			}
			c.close(protocol.CloseGoingAway, "could not replay updates: reconnect")
		}
	})
	if !started {
		c.close(protocol.CloseGoingAway, "the server is shutting down: reconnect")
	}
}

// ConnectReader is an AppService that reads in one go (sqlite: one
// query) what an auth needs before its session registers, from the store
// of the node's Users and Log too.
type ConnectReader interface {
	// ReadConnect returns the app (at least its ID and signing secrets),
	// its user userID (nil when the app has no such user), the log's
	// newest seq and the cursor of the user's device, as FindAppByID,
	// Users.FindUserByID (as the app's server), Log.LastEventSeq and
	// Log.Cursor would; ENotFound if there is no such app.
	ReadConnect(ctx context.Context, appID, userID, device string) (app *tidings.App, user *tidings.User, latest, cursor int64, err error)
}

// logPoint is the log's newest seq and a device's cursor, when read
// (read) with the app and the user (ConnectReader).
type logPoint struct {
	latest, cursor int64
	read           bool
}

// verify checks an access token (decoded once) against its app, and
// reads its user, who must accept it (not deactivated, not revoked). When
// Apps is a ConnectReader, the app and the user are read together, with
// the log's newest seq and the device's cursor (pt); else one after the
// other. Nothing is cached: a rotated signing secret, a deactivation or a
// revocation takes effect on the next auth. closes is n.closes as it was
// before the user was read (see auth).
func (n *Node) verify(ctx context.Context, tok, device string) (v token.Verified, u *tidings.User, pt logPoint, closes uint64, err error) {
	p, err := token.Parse(tok)
	if err != nil {
		return v, nil, pt, 0, err
	}
	closes = n.closes.Load()
	var app *tidings.App
	if r, ok := n.Apps.(ConnectReader); ok {
		app, u, pt.latest, pt.cursor, err = r.ReadConnect(ctx, p.App, p.Subject, device)
		pt.read = err == nil
	} else {
		app, err = n.Apps.FindAppByID(ctx, p.App)
	}
	if tidings.ErrorCode(err) == tidings.ENotFound {
		return v, nil, pt, 0, tidings.Errorf(tidings.EUnauthenticated, "access token names an unknown app")
	} else if err != nil {
		return v, nil, pt, 0, fmt.Errorf("token: find app: %w", err)
	}
	// Nothing read is used before the token is verified: what was read
	// with the app is of the app and user the token names.
	if v, err = p.Verify(app, n.Now()); err != nil {
		return v, nil, pt, 0, err
	}
	if !pt.read {
		server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: v.AppID, Server: true})
		u, err = n.Users.FindUserByID(server, v.UserID)
		if tidings.ErrorCode(err) == tidings.ENotFound {
			u, err = nil, nil
		} else if err != nil {
			return v, nil, pt, 0, err
		}
	}
	if u == nil {
		return v, nil, pt, 0, tidings.Errorf(tidings.EUnauthenticated, "the user of this token does not exist")
	}
	if err := u.AcceptsToken(v.IssuedAt); err != nil { // not deactivated, not revoked
		return v, nil, pt, 0, err
	}
	return v, u, pt, closes, nil
}

// KeptChecker is an EventLog that says whether the events after a seq
// are all kept (nil) or not (EResyncRequired, as UserEvents would), with
// no read of the events: resumePoint checks with it when the node's Log
// has it.
type KeptChecker interface {
	Kept(ctx context.Context, after int64) error
}

// resumePoint says after which ref a session starts: the one the client
// asked for, else the device's cursor, else (a new device) the newest ref.
// A device without a cursor gets one at once, at the point it starts from
// (asked for or the newest): from then on only its replies move it, so
// what it is sent and does not acknowledge comes again next time.
// EResyncRequired (with the newest ref) when what follows it is no longer
// kept, or when it is newer than the newest ref (state from another
// server, or from wiped data). latest is the log's newest seq, read
// first (or with the app and the user: pt).
func (n *Node) resumePoint(ctx context.Context, caller tidings.Caller, device, resumeAfter string, pt logPoint) (after, latest int64, err error) {
	latest, cursor := pt.latest, pt.cursor
	if !pt.read {
		if latest, err = n.Log.LastEventSeq(ctx); err == nil {
			cursor, err = n.Log.Cursor(ctx, caller.AppID, caller.UserID, device)
		}
		if err != nil {
			return 0, 0, err
		}
	}
	newest := latest // where a new device starts
	if n.clustered() {
		// Not past what this node delivered: what follows comes live.
		newest = min(latest, n.position())
	}
	key := deviceKey{caller.AppID, caller.UserID, device}
	// Acknowledged on this node but maybe not stored yet.
	cursor = max(cursor, n.ackedInMemory(key))
	after, check := newest, true // check: whether what follows after may have been pruned
	switch resumeAfter {
	case "latest":
		check = false
	case "":
		if cursor != 0 {
			after = cursor
		} else {
			check = false
		}
	default:
		var ok bool
		if after, ok = protocol.ParseRef(resumeAfter); !ok {
			return 0, 0, tidings.Errorf(tidings.EInvalid, "%q is not a ref", resumeAfter)
		}
		if after > latest {
			// A ref this server never gave: the client kept state from
			// another server or from data since wiped. Rebuilding is all
			// that can bring it back in step.
			err := tidings.Errorf(tidings.EResyncRequired, "ref %s is newer than the newest ref %d: rebuild your state from the REST API and resume from the newest ref", resumeAfter, latest)
			return 0, 0, &resyncError{err: err, latest: newest}
		}
	}
	if check && after < latest {
		// (The log keeps its newest event: one from it on is kept.)
		var err error
		if k, ok := n.Log.(KeptChecker); ok {
			err = k.Kept(ctx, after)
		} else {
			_, err = n.Log.UserEvents(ctx, caller.AppID, caller.UserID, after, 1)
		}
		if err != nil {
			if tidings.ErrorCode(err) == tidings.EResyncRequired {
				return 0, 0, &resyncError{err: err, latest: newest}
			}
			return 0, 0, err
		}
	}
	if cursor == 0 && after > 0 {
		cur := tidings.Cursor{AppID: caller.AppID, UserID: caller.UserID, Device: device, Seq: after}
		if err := n.Log.SaveCursors(ctx, []tidings.Cursor{cur}); err != nil {
			return 0, 0, err
		}
	}
	return after, latest, nil
}
