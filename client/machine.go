package client

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// The connection supervisor: one goroutine (run) owns the state of the
// realtime connection, in a machine. The methods of Client change it by
// sending functions to that goroutine (call), and so do the timers and the
// goroutines that dial, refresh tokens and ping, with their results. After
// each function the machine reconciles what is with what is wanted: it
// opens, closes or reopens the connection, arms or stops timers, and
// updates the status.

// machine is the state of the connection supervisor; only run's goroutine
// touches it.
type machine struct {
	c        *Client
	accounts []*Account // in the order they were added

	manualWant bool // manual mode: the application asked for a connection
	background bool

	conn      *conn    // the open connection, with at least one account authenticated
	dial      *attempt // the attempt under way
	connected bool     // a connection was open since it was wanted: a new one is a reconnection
	failures  int      // consecutive failed attempts
	lastErr   error    // why the last connection ended or attempt failed

	retry, bg, keep slot

	pinging bool
	waiters []chan error // Connect calls waiting for the attempt
	closing bool
}

// attempt is a connection or an authentication under way.
type attempt struct{ cancel context.CancelFunc }

// slot holds one timer of the machine. Each arming gets a new generation,
// so that a timer that fires after it was stopped or replaced does nothing.
type slot struct {
	t   Timer
	gen uint64
}

func (s *slot) armed() bool { return s.t != nil }

// run is the supervisor's goroutine.
func (c *Client) run(m *machine) {
	defer close(c.loopDone)
	for {
		var connDone <-chan struct{}
		if m.conn != nil {
			connDone = m.conn.done
		}
		select {
		case f := <-c.reqs:
			f(m)
		case <-connDone:
			m.connLost()
		case <-c.ctx.Done():
			m.shutdown()
			return
		}
		m.reconcile()
	}
}

// call runs f on the supervisor's goroutine, reconciles, and returns once
// done; ErrClosed if the client is closed.
func (c *Client) call(f func(m *machine)) error {
	done := make(chan struct{})
	g := func(m *machine) {
		defer close(done)
		f(m)
		m.reconcile()
	}
	select {
	case c.reqs <- g:
	case <-c.loopDone:
		return ErrClosed
	}
	<-done
	return nil
}

// goTracked runs f in a goroutine that Close waits for.
func (c *Client) goTracked(f func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
}

func (m *machine) arm(s *slot, d time.Duration, f func(m *machine)) {
	m.disarm(s)
	gen := s.gen
	s.t = m.c.opts.clock.AfterFunc(d, func() {
		_ = m.c.call(func(m *machine) {
			if s.t != nil && s.gen == gen {
				s.t = nil
				f(m)
			}
		})
	})
}

func (m *machine) disarm(s *slot) {
	if s.t != nil {
		s.t.Stop()
		s.t = nil
	}
	s.gen++
}

// wanted reports whether a should be connected: it did not give up (a
// token rejected).
func (m *machine) wanted(a *Account) bool { return a.err == nil }

// ready reports whether a can be authenticated now.
func (m *machine) ready(a *Account) bool { return a.err == nil && !a.m.resync }

// want reports whether a connection should be open: for an account that
// did not give up.
func (m *machine) want() bool {
	if m.closing || !slices.ContainsFunc(m.accounts, m.wanted) {
		return false
	}
	if m.c.opts.mode == ManualMode {
		return m.manualWant
	}
	return !m.background
}

// addAccount adds a, unless its name is taken.
func (m *machine) addAccount(a *Account) error {
	if slices.ContainsFunc(m.accounts, func(b *Account) bool { return b.name == a.name }) {
		return ErrAlreadyLoggedIn
	}
	if len(m.accounts) == 0 {
		m.failures, m.lastErr = 0, nil
	}
	m.accounts = append(m.accounts, a)
	m.c.mu.Lock()
	m.c.accts = append(m.c.accts, a)
	m.c.changedLocked()
	m.c.mu.Unlock()
	return nil
}

// removeAccount removes a (logout). It returns the connection on which a
// is authenticated, for the logout command; last says whether a was the
// last account: the connection is then the caller's, to close.
func (m *machine) removeAccount(a *Account) (cn *conn, last bool) {
	i := slices.Index(m.accounts, a)
	if i < 0 {
		return nil, false
	}
	m.accounts = slices.Delete(m.accounts, i, i+1)
	a.removed.Store(true)
	m.disarm(&a.m.retry)
	m.disarm(&a.m.refresh)
	wasLive := a.live
	m.c.mu.Lock()
	m.c.accts = slices.DeleteFunc(m.c.accts, func(b *Account) bool { return b == a })
	a.live = false
	m.c.changedLocked()
	m.c.mu.Unlock()
	if wasLive && m.conn != nil {
		cn = m.conn
	}
	if len(m.accounts) > 0 {
		return cn, false
	}
	m.manualWant = false
	m.resolve(ErrNotLoggedIn)
	if cn != nil {
		m.connGone() // the connection is the caller's now: no reconnection
	}
	return cn, true
}

// clearFailed lets the accounts that gave up try again.
func (m *machine) clearFailed() {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	for _, a := range m.accounts {
		a.err = nil
		a.m.failures = 0
	}
}

// setLive records whether a is authenticated on the open connection.
func (m *machine) setLive(a *Account, live bool) {
	if a.live == live {
		return
	}
	m.c.mu.Lock()
	a.live = live
	m.c.changedLocked()
	m.c.mu.Unlock()
	if !live {
		m.disarm(&a.m.refresh)
		a.m.token = ""
	}
}

func (m *machine) setBackground(on bool) {
	m.background = on
	if !on {
		m.clearFailed()
	}
	m.c.mu.Lock()
	m.c.inBackground = on
	m.c.mu.Unlock()
}

// resolve answers the Connect calls waiting.
func (m *machine) resolve(err error) {
	for _, w := range m.waiters {
		w <- err
	}
	m.waiters = nil
}

// reconcile makes the connection, the accounts, the timers and the status
// follow what is wanted.
func (m *machine) reconcile() {
	if m.want() {
		if m.conn == nil && m.dial == nil && !m.retry.armed() && slices.ContainsFunc(m.accounts, m.ready) {
			m.startDial()
		}
		if m.conn != nil {
			for _, a := range m.accounts {
				if m.ready(a) && !a.live && a.m.auth == nil && !a.m.retry.armed() {
					m.startAuth(a)
				}
			}
		}
	} else {
		if m.dial != nil {
			m.dial.cancel()
			m.dial = nil
		}
		m.disarm(&m.retry)
		if m.conn != nil {
			m.dropConn(protocol.CloseNormal, "")
		}
		m.connected, m.failures = false, 0
		m.resolve(ErrNotConnected)
	}
	if m.c.opts.mode == ManualMode && m.background && m.manualWant {
		if !m.bg.armed() {
			m.armBackground()
		}
	} else {
		m.disarm(&m.bg)
	}
	m.updateStatus()
}

func (m *machine) updateStatus() {
	var s Status
	switch {
	case m.closing:
		s = StatusClosed
	case m.conn != nil:
		s = StatusConnected
	case m.want() && m.connected:
		s = StatusReconnecting
	case m.want():
		s = StatusConnecting
	default:
		s = StatusDisconnected
	}
	m.c.setStatus(s, m.lastErr)
}

func (m *machine) armBackground() {
	m.arm(&m.bg, m.c.opts.backgroundTimeout, func(m *machine) {
		m.c.opts.logger.Info("tidings: no ping in the background: disconnecting")
		m.manualWant, m.lastErr = false, ErrBackgroundTimeout
		m.resolve(ErrBackgroundTimeout)
	})
}

// startDial opens a connection in a new goroutine, which authenticates
// the accounts ready, in order, and reports to dialed.
func (m *machine) startDial() {
	c := m.c
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.dialTimeout)
	d := &attempt{cancel: cancel}
	m.dial = d
	var accts []*Account
	for _, a := range m.accounts {
		if m.ready(a) {
			accts = append(accts, a)
			m.disarm(&a.m.retry)
			a.m.auth = d
		}
	}
	c.goTracked(func() {
		defer cancel()
		cn, results, err := c.dial(ctx, accts)
		if c.call(func(m *machine) { m.dialed(d, cn, results, err) }) != nil && cn != nil {
			cn.close(protocol.CloseNormal, "")
		}
	})
}

// dialed takes the result of an attempt.
func (m *machine) dialed(d *attempt, cn *conn, results []authResult, err error) {
	if m.dial != d { // abandoned meanwhile
		for _, r := range results {
			if r.a.m.auth == d {
				r.a.m.auth = nil
			}
		}
		if cn != nil {
			m.c.goTracked(func() { cn.close(protocol.CloseNormal, "") })
		}
		return
	}
	m.dial = nil
	c := m.c
	if err == nil {
		c.opts.logger.Info("tidings: connected", "accounts", len(results))
		m.conn, m.connected, m.failures, m.lastErr = cn, true, 0, nil
		c.mu.Lock()
		c.cur = cn
		c.mu.Unlock()
		for _, r := range results {
			m.authDone(cn, r, d)
		}
		m.resolve(nil)
		m.armKeepAlive()
		m.updateStatus() // connected, before the connection's first update
		cn.goLive()
		return
	}
	for _, r := range results {
		m.authDone(nil, r, d) // resyncs and tokens rejected
	}
	if c.ctx.Err() != nil { // failed because the client is closing
		m.resolve(ErrClosed)
		return
	}
	var rs *resyncError
	if errors.As(err, &rs) && !slices.ContainsFunc(m.accounts, m.ready) {
		return // the listeners rebuild the application's state, then we resume
	}
	c.opts.logger.Warn("tidings: could not connect", "err", err, "failures", m.failures+1)
	m.lastErr = err
	if !m.want() || (c.opts.mode == ManualMode && !m.connected) {
		// Every account gave up (their tokens were rejected), or the
		// application's Connect failed.
		if c.opts.mode == ManualMode {
			m.manualWant = false
		}
		m.resolve(err)
		return
	}
	m.arm(&m.retry, c.opts.backoff.Delay(m.failures), func(*machine) {})
	m.failures++
}

// startAuth authenticates a on the open connection, in a new goroutine
// which reports to authDone.
func (m *machine) startAuth(a *Account) {
	c, cn := m.c, m.conn
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.dialTimeout)
	at := &attempt{cancel: cancel}
	a.m.auth = at
	c.goTracked(func() {
		defer cancel()
		r := authResult{a: a}
		r.tok, _, r.err = a.tokens.get(ctx)
		if r.err == nil {
			r.res, r.err = c.authenticate(ctx, cn, a, r.tok)
		}
		_ = c.call(func(m *machine) { m.authDone(cn, r, at) })
	})
}

// authDone takes the result of an account's authentication on cn (nil
// when the connection attempt failed).
func (m *machine) authDone(cn *conn, r authResult, at *attempt) {
	a, c := r.a, m.c
	if a.m.auth != at {
		return
	}
	a.m.auth = nil
	if a.removed.Load() {
		if r.err == nil && cn != nil && cn == m.conn {
			// Logged out while it authenticated: end it on the server too.
			c.goTracked(func() {
				ctx, cancel := context.WithTimeout(c.ctx, closeConfirmTimeout)
				defer cancel()
				_, _ = cn.command(ctx, a.name, protocol.CmdLogout, struct{}{})
			})
		}
		return
	}
	if cn != m.conn {
		return // the connection ended meanwhile
	}
	var rs *resyncError
	switch {
	case r.err == nil:
		c.opts.logger.Info("tidings: account authenticated", "account", a.name, "user", r.res.UserID,
			"device", r.res.Device, "resumedAfter", r.res.ResumedAfter)
		exp, _ := time.Parse(time.RFC3339, r.res.ExpiresAt)
		a.m.token, a.m.failures = r.tok, 0
		c.mu.Lock()
		a.tokenExp = exp
		if a.userID == "" {
			a.userID, a.appID = r.res.UserID, r.res.AppID
		}
		c.mu.Unlock()
		m.setLive(a, true)
		m.armRefresh(a)
		c.goTracked(func() { a.reack(cn) })
	case errors.As(r.err, &rs):
		// The listeners rebuild the application's state, then we resume.
		c.opts.logger.Warn("tidings: the server no longer has the updates after the last one processed: resync",
			"account", a.name, "ref", rs.ref)
		a.m.resync = true
		info := EventInfo{Name: EventResyncRequired, Account: a.name, Time: c.opts.clock.Now()}
		c.q.push(&item{kind: itemResync, ev: &ResyncRequired{EventInfo: info, Ref: rs.ref}, acct: a}, 0)
	case errors.Is(r.err, errTokenRejected):
		c.opts.logger.Warn("tidings: account gave up: its token was rejected", "account", a.name, "err", r.err)
		c.mu.Lock()
		a.err = r.err
		c.changedLocked()
		c.mu.Unlock()
		m.lastErr = r.err
	case cn != nil && c.ctx.Err() == nil:
		c.opts.logger.Warn("tidings: could not authenticate the account", "account", a.name, "err", r.err)
		m.arm(&a.m.retry, c.opts.backoff.Delay(a.m.failures), func(*machine) {})
		a.m.failures++
	}
}

// accountClosed takes the end of an account by the server (its token
// expired): it is authenticated again, with a fresh token if its provider
// gives one.
func (m *machine) accountClosed(cn *conn, a *Account) {
	if cn != m.conn || a.removed.Load() || !a.live {
		return
	}
	m.c.opts.logger.Info("tidings: the server ended the account", "account", a.name)
	m.setLive(a, false)
}

// connLost handles the end of the open connection.
func (m *machine) connLost() {
	cn := m.conn
	m.connGone()
	m.lastErr = cn.reason()
	m.c.opts.logger.Info("tidings: connection lost", "err", m.lastErr)
	if m.c.opts.mode == ManualMode && m.background {
		m.manualWant = false // in the background, the application reconnects itself
	}
	if m.want() {
		m.arm(&m.retry, m.c.opts.backoff.Delay(m.failures), func(*machine) {})
		m.failures++
	}
}

// connGone forgets the open connection: no account is authenticated any more.
func (m *machine) connGone() {
	m.conn = nil
	m.c.mu.Lock()
	m.c.cur = nil
	m.c.mu.Unlock()
	m.disarm(&m.keep)
	for _, a := range m.accounts {
		m.setLive(a, false)
		m.disarm(&a.m.retry)
		a.m.failures = 0
	}
}

// dropConn closes the open connection, once the updates processed are
// acknowledged.
func (m *machine) dropConn(code int, reason string) {
	cn := m.conn
	m.connGone()
	c := m.c
	c.goTracked(func() {
		c.flushAcks()
		cn.close(code, reason)
	})
}

func (m *machine) shutdown() {
	m.closing = true
	m.resolve(ErrClosed)
	m.reconcile() // closes the connection, stops the attempt and timers
	m.disarm(&m.keep)
	m.disarm(&m.bg)
	for _, a := range m.accounts {
		m.disarm(&a.m.retry)
		m.disarm(&a.m.refresh)
	}
}

// armRefresh schedules the refresh of a's token.
func (m *machine) armRefresh(a *Account) {
	at := a.tokens.refreshAt(a.m.token)
	if at.IsZero() {
		return
	}
	d := max(at.Sub(m.c.opts.clock.Now()), time.Second)
	m.arm(&a.m.refresh, d, func(m *machine) { m.startRefresh(a) })
}

// startRefresh gets a new token for a and authenticates it on the open
// connection: the server takes a second auth of the same account as a
// token refresh.
func (m *machine) startRefresh(a *Account) {
	if m.conn == nil || !a.live || a.m.refreshing {
		return
	}
	a.m.refreshing = true
	c, cn, old := m.c, m.conn, a.m.token
	c.goTracked(func() {
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.dialTimeout)
		defer cancel()
		tok, _, err := a.tokens.get(ctx)
		var res *protocol.AuthResult
		if err == nil && tok != old {
			var raw json.RawMessage
			raw, err = cn.command(ctx, a.name, protocol.CmdAuth, protocol.AuthArgs{Token: tok, Device: a.device})
			if err == nil {
				res = new(protocol.AuthResult)
				err = json.Unmarshal(raw, res)
			} else if ErrorCode(err) == tidings.EUnauthenticated {
				a.tokens.reject(tok, err)
			}
		}
		_ = c.call(func(m *machine) { m.refreshed(a, cn, tok, res, err) })
	})
}

func (m *machine) refreshed(a *Account, cn *conn, tok string, res *protocol.AuthResult, err error) {
	a.m.refreshing = false
	if m.conn != cn || !a.live || a.removed.Load() {
		return
	}
	c := m.c
	if err == nil && res != nil {
		a.m.token = tok
		exp, _ := time.Parse(time.RFC3339, res.ExpiresAt)
		c.mu.Lock()
		a.tokenExp = exp
		c.mu.Unlock()
		c.opts.logger.Debug("tidings: token refreshed", "account", a.name, "expiresAt", res.ExpiresAt)
		m.armRefresh(a)
		return
	}
	if err != nil {
		c.opts.logger.Warn("tidings: token refresh failed", "account", a.name, "err", err)
	}
	// Try again, well before the expiry if there is time.
	c.mu.Lock()
	left := a.tokenExp.Sub(c.opts.clock.Now())
	c.mu.Unlock()
	m.arm(&a.m.refresh, min(max(left/4, time.Second), 30*time.Second), func(m *machine) { m.startRefresh(a) })
}

// armKeepAlive schedules the next keepalive ping.
func (m *machine) armKeepAlive() {
	if m.c.opts.keepAlive > 0 {
		m.arm(&m.keep, m.c.opts.keepAlive, (*machine).keepAlive)
	}
}

// keepAlive pings the open connection; a ping not answered in time means
// a dead network: the connection is dropped (and reopened).
func (m *machine) keepAlive() {
	if m.conn == nil {
		return
	}
	m.armKeepAlive()
	if m.pinging {
		return
	}
	m.pinging = true
	c, cn := m.c, m.conn
	c.goTracked(func() {
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.keepAliveTimeout)
		_, err := cn.command(ctx, "", protocol.CmdPing, struct{}{})
		cancel()
		var e *Error
		if err != nil && c.ctx.Err() == nil && !errors.As(err, &e) {
			cn.abort(errors.New("client: keepalive ping not answered in time"))
		}
		_ = c.call(func(m *machine) { m.pinging = false })
	})
}
