package client

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// DefaultAccount is the name of the account that Login, WithToken and
// WithTokenProvider log in, and that the methods of Client act as.
const DefaultAccount = "default"

// ackDelay bounds how long an update processed waits before its
// acknowledgement is sent: replies are cumulative, so one reply per
// account every ackDelay (or every ackEvery updates) acknowledges all
// the updates processed meanwhile.
const ackDelay = 250 * time.Millisecond

// ackEvery bounds the updates processed before an acknowledgement is sent
// while more keep coming.
const ackEvery = 64

// calls are what a Client and an Account do as a user: the REST API and
// the commands of the realtime connection. A Client does them as its
// default account, whichever it is at the time of the call.
type calls struct {
	c *Client
	a *Account // nil: the client's default account
}

// account returns the account the calls act as; nil when it is logged out.
func (u calls) account() *Account {
	if u.a == nil {
		return u.c.account(DefaultAccount)
	}
	if u.a.removed.Load() {
		return nil
	}
	return u.a
}

// Account is one user on the realtime connection of a Client: the
// connection carries several accounts (a personal and a work profile,
// say), each authenticated with its own token, on its own device, with
// its own stream of updates, cursor and acknowledgements. Get one with
// Client.AddAccount; the user that Login logs in is the account named
// DefaultAccount ("default"), and the methods of Client act as that one.
//
// An Account has the REST methods of Client (Me, CreateConversation,
// SendMessage, MarkRead…) and Socket, acting as its user. Its updates
// reach the client's event listeners with EventInfo.Account set to its
// name. After Logout, its methods return ErrNotLoggedIn (REST) or
// ErrNotConnected (Socket).
type Account struct {
	calls

	name   string
	device string
	cursor CursorStore
	tokens *tokenSource

	// Under c.mu; written by the supervisor's goroutine only (except the
	// identity, learnt before the account is added).
	appID    string
	userID   string
	tokenExp time.Time
	live     bool  // authenticated on the open connection
	err      error // why it gave up connecting (a token rejected)

	// lastRef is the ref of the last update the listeners processed.
	lastRef atomic.Int64
	// resumeLatest asks the next authentication to resume with new
	// updates only (after a resync the server could not name a ref for).
	resumeLatest atomic.Bool
	removed      atomic.Bool // logged out

	cursorMu     sync.Mutex
	cursorLoaded bool

	presence presenceSet // the users it follows (presence.go)

	// The acknowledgement waiting to be sent.
	ackMu   sync.Mutex
	ackItem *item // the last update processed and not yet acknowledged
	ackN    int   // updates processed since the last acknowledgement
	ackT    Timer
	ackGen  uint64
	acked   int64 // the last ref acknowledged

	m acctState
}

// acctState is the supervisor's part of an account: only its goroutine
// touches it.
type acctState struct {
	auth       *attempt // the authentication under way
	resync     bool     // waiting for the listeners to process a ResyncRequired
	refreshing bool
	failures   int    // consecutive failed authentications on an open connection
	token      string // the token authenticated on the connection
	retry      slot
	refresh    slot
}

func (c *Client) newAccount(name string, p TokenProvider, static bool, device string, cursor CursorStore) *Account {
	a := &Account{name: name, device: device, cursor: cursor,
		tokens: newTokenSource(p, static, c.opts.clock, c.opts.refreshMargin)}
	a.calls = calls{c: c, a: a}
	return a
}

// AddAccount logs a user in on the client's realtime connection, under
// name (1 to 64 letters, digits, _ and -), next to the accounts already
// there: it checks the token with the server (GET /v1/me), then, when
// the connection is open, returns once the account is authenticated on
// it (its Socket works). Otherwise the account is authenticated when the
// connection opens (at once in auto mode, at the next Connect in manual
// mode): Account.WaitConnected waits for that. When it fails, nothing
// is added.
//
// opts give the account's credentials, WithToken or WithTokenProvider
// (required), and optionally WithDevice (default: the client's device)
// and WithCursorStore (default: none; give each account a store of its
// own). Other options are refused. AddAccount with DefaultAccount is
// Login. A name already taken is ErrAlreadyLoggedIn.
func (c *Client) AddAccount(ctx context.Context, name string, opts ...Option) (*Account, error) {
	if !devicePattern.MatchString(name) {
		return nil, fmt.Errorf("client: account name %q is not valid: use 1 to 64 letters, digits, _ and -", name)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	p, static, device, cursor := o.provider, o.static, o.device, o.cursor
	o.provider, o.static, o.token, o.device, o.cursor = nil, false, "", "", nil
	if !reflect.ValueOf(o).IsZero() {
		return nil, errors.New("client: AddAccount takes only WithToken, WithTokenProvider, WithDevice and WithCursorStore")
	}
	if p == nil {
		return nil, errors.New("client: AddAccount needs WithToken or WithTokenProvider")
	}
	if device == "" {
		device = c.opts.device
	}
	if !devicePattern.MatchString(device) {
		return nil, fmt.Errorf("client: device name %q is not valid: use 1 to 64 letters, digits, _ and -", device)
	}
	a := c.newAccount(name, p, static, device, cursor)
	if _, err := c.login(ctx, a); err != nil {
		return nil, err
	}
	if c.Status() != StatusConnected {
		return a, nil // authenticated when the connection opens
	}
	// Authenticated on the open connection: its Socket works on return.
	if err := a.WaitConnected(ctx); err != nil {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeConfirmTimeout)
		defer cancel()
		_ = a.Logout(lctx)
		return nil, err
	}
	return a, nil
}

// Accounts returns the accounts of the client, in the order they were
// added (the default account among them when logged in).
func (c *Client) Accounts() []*Account {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Account(nil), c.accts...)
}

// Account returns the account of that name, nil if there is none.
func (c *Client) Account(name string) *Account { return c.account(name) }

func (c *Client) account(name string) *Account {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.accts {
		if a.name == name {
			return a
		}
	}
	return nil
}

// Name returns the account's name.
func (a *Account) Name() string { return a.name }

// Device returns the account's device name.
func (a *Account) Device() string { return a.device }

// UserID returns the id of the account's user ("" while not known: it is
// read from the token, or learnt at login).
func (a *Account) UserID() string {
	a.c.mu.Lock()
	defer a.c.mu.Unlock()
	return a.userID
}

// TokenExpiry returns when the token the server accepted for the account
// expires (zero before its first authentication). It moves forward each
// time the client refreshes the token.
func (a *Account) TokenExpiry() time.Time {
	a.c.mu.Lock()
	defer a.c.mu.Unlock()
	return a.tokenExp
}

// LastRef returns the ref of the last update of the account the listeners
// processed ("" if none).
func (a *Account) LastRef() string {
	if n := a.lastRef.Load(); n > 0 {
		return protocol.FormatRef(n)
	}
	return ""
}

// Connected reports whether the account is authenticated on the open
// realtime connection: its updates flow and Socket works.
func (a *Account) Connected() bool {
	a.c.mu.Lock()
	defer a.c.mu.Unlock()
	return a.live
}

// WaitConnected waits until the account is authenticated on the realtime
// connection. It returns at once ErrNotLoggedIn after Logout, ErrClosed
// after Close, ErrNotConnected when the client is not trying to connect
// (wrapping the reason of the last failure, such as the server's *Error
// refusing the account's token); and ctx's error if ctx ends first.
func (a *Account) WaitConnected(ctx context.Context) error {
	c := a.c
	for {
		c.mu.Lock()
		live, why, st, cwhy, ch := a.live, a.err, c.status, c.statusErr, c.statusCh
		c.mu.Unlock()
		switch {
		case live:
			return nil
		case a.removed.Load():
			return ErrNotLoggedIn
		case st == StatusClosed:
			return ErrClosed
		case why != nil:
			return fmt.Errorf("%w: %w", ErrNotConnected, why)
		case st == StatusDisconnected && cwhy != nil:
			return fmt.Errorf("%w: %w", ErrNotConnected, cwhy)
		case st == StatusDisconnected:
			return ErrNotConnected
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Logout ends the account: the updates it processed are acknowledged,
// then the server is told (the logout command), and the account's
// updates stop; the other accounts of the connection are not affected.
// Once the last account is logged out the connection closes, as a clean
// end (it is not reopened). Updates received and not yet delivered are
// dropped (they were not acknowledged: the next login of the same user
// and device gets them). Logging out twice does nothing. The error is
// the server's, if it failed the logout; the account is ended on the
// client's side whatever it is.
func (a *Account) Logout(ctx context.Context) error {
	c := a.c
	if c.isClosed() {
		return ErrClosed
	}
	a.flushAck()
	var cn *conn
	var last bool
	if err := c.call(func(m *machine) { cn, last = m.removeAccount(a) }); err != nil {
		return err
	}
	if cn == nil {
		return nil
	}
	_, err := cn.command(ctx, a.name, protocol.CmdLogout, struct{}{})
	if last {
		// The server closes it too, with 1000, once it has answered.
		cn.close(protocol.CloseNormal, "")
	}
	if errors.Is(err, ErrConnectionLost) {
		return nil // the account ended with the connection
	}
	return err
}

// processed records that the listeners processed the update it: its
// acknowledgement is sent after ackDelay, or at once when ackEvery
// updates wait for one.
func (a *Account) processed(it *item) {
	a.ackMu.Lock()
	defer a.ackMu.Unlock()
	a.ackItem = it
	a.ackN++
	if a.ackN >= ackEvery {
		a.sendAckLocked()
		return
	}
	if a.ackT == nil {
		gen := a.ackGen
		a.ackT = a.c.opts.clock.AfterFunc(ackDelay, func() {
			a.ackMu.Lock()
			defer a.ackMu.Unlock()
			if a.ackGen == gen {
				a.sendAckLocked()
			}
		})
	}
}

// flushAck sends the acknowledgement waiting, if any, now.
func (a *Account) flushAck() {
	a.ackMu.Lock()
	defer a.ackMu.Unlock()
	a.sendAckLocked()
}

// dropAck forgets the acknowledgement waiting (a resync replaces it).
func (a *Account) dropAck() {
	a.ackMu.Lock()
	defer a.ackMu.Unlock()
	a.stopAckTimerLocked()
	a.ackItem, a.ackN = nil, 0
}

func (a *Account) stopAckTimerLocked() {
	if a.ackT != nil {
		a.ackT.Stop()
		a.ackT = nil
	}
	a.ackGen++
}

// sendAckLocked saves the cursor, then acknowledges the last update
// processed to the server, on the connection where the account is
// authenticated now, else on the one the update came from.
func (a *Account) sendAckLocked() {
	a.stopAckTimerLocked()
	it := a.ackItem
	if it == nil {
		return
	}
	a.ackItem, a.ackN = nil, 0
	ref := it.ev.Info().Ref
	a.c.saveCursor(a, ref)
	a.acked = it.seq
	cn := it.conn
	a.c.mu.Lock()
	if a.live && a.c.cur != nil {
		cn = a.c.cur
	}
	a.c.mu.Unlock()
	// The connection may be gone: the next one resumes after ref, and
	// reack acknowledges it there.
	_ = cn.reply(a.name, ref)
}

// reack acknowledges again, on cn where the account was just
// authenticated, the last ref acknowledged: the reply may have been lost
// with the previous connection, and the server's cursor moves only with
// replies. (An acknowledgement waiting goes to cn anyway.)
func (a *Account) reack(cn *conn) {
	a.ackMu.Lock()
	defer a.ackMu.Unlock()
	if a.acked > 0 && a.ackItem == nil {
		_ = cn.reply(a.name, protocol.FormatRef(a.acked))
	}
}

// flushAcks sends the acknowledgements waiting, of every account.
func (c *Client) flushAcks() {
	for _, a := range c.Accounts() {
		a.flushAck()
	}
}

// wireAccount is the account field of a frame: empty for the default
// account, as the server takes it.
func wireAccount(name string) string {
	if name == DefaultAccount {
		return ""
	}
	return name
}

// login adds the account a, once the server accepted its token.
func (c *Client) login(ctx context.Context, a *Account) (*tidings.User, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	if c.account(a.name) != nil {
		return nil, ErrAlreadyLoggedIn
	}
	var u tidings.User
	if err := c.rest(ctx, a, "GET", "/v1/me", nil, nil, &u); err != nil {
		return nil, err
	}
	if tok, _, err := a.tokens.get(ctx); err == nil {
		c.learnIdentity(a, tok)
	}
	c.mu.Lock()
	if a.userID == "" {
		a.userID = u.ID
	}
	c.mu.Unlock()
	var err error
	if cerr := c.call(func(m *machine) { err = m.addAccount(a) }); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	return &u, nil
}
