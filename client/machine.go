package client

import (
	"context"
	"encoding/json"
	"errors"
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
	c    *Client
	sess *session // nil when logged out

	manualWant bool // manual mode: the application asked for a connection
	background bool
	gaveUp     bool // auto mode: stopped after a fatal failure

	conn      *conn        // the open, authenticated connection
	dial      *dialAttempt // the attempt under way
	connected bool         // a connection was open since it was wanted: a new one is a reconnection
	failures  int          // consecutive failed attempts
	lastErr   error        // why the last connection ended or attempt failed

	retry, bg, refresh, keep slot

	resyncPending bool // waiting for the listeners to process a ResyncRequired
	refreshing    bool
	pinging       bool
	waiters       []chan error // Connect calls waiting for the attempt
	closing       bool
}

type dialAttempt struct{ cancel context.CancelFunc }

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

// want reports whether a connection should be open.
func (m *machine) want() bool {
	if m.sess == nil || m.closing {
		return false
	}
	if m.c.opts.mode == ManualMode {
		return m.manualWant
	}
	return !m.background && !m.gaveUp
}

func (m *machine) setSession(s *session) {
	m.sess, m.gaveUp, m.failures, m.lastErr, m.resyncPending = s, false, 0, nil, false
	m.c.mu.Lock()
	m.c.sess = s
	m.c.mu.Unlock()
}

func (m *machine) setBackground(on bool) {
	m.background = on
	if !on {
		m.gaveUp = false
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

// reconcile makes the connection, the timers and the status follow what
// is wanted.
func (m *machine) reconcile() {
	if m.want() {
		if m.conn == nil && m.dial == nil && !m.retry.armed() && !m.resyncPending {
			m.startDial()
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

// startDial opens a connection in a new goroutine, which reports to dialed.
func (m *machine) startDial() {
	c := m.c
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.dialTimeout)
	d := &dialAttempt{cancel: cancel}
	m.dial = d
	sess := m.sess
	c.goTracked(func() {
		defer cancel()
		cn, res, err := c.dial(ctx, sess)
		if c.call(func(m *machine) { m.dialed(d, cn, res, err) }) != nil && cn != nil {
			cn.close(protocol.CloseNormal, "")
		}
	})
}

// dialed takes the result of an attempt.
func (m *machine) dialed(d *dialAttempt, cn *conn, res *protocol.AuthResult, err error) {
	if m.dial != d { // abandoned meanwhile
		if cn != nil {
			m.c.goTracked(func() { cn.close(protocol.CloseNormal, "") })
		}
		return
	}
	m.dial = nil
	c := m.c
	if err == nil {
		c.opts.logger.Info("tidings: connected", "user", res.UserID, "device", res.Device, "resumedAfter", res.ResumedAfter)
		m.conn, m.connected, m.failures, m.lastErr = cn, true, 0, nil
		exp, _ := time.Parse(time.RFC3339, res.ExpiresAt)
		c.mu.Lock()
		c.cur, c.tokenExp = cn, exp
		if m.sess.userID == "" {
			m.sess.userID, m.sess.appID = res.UserID, res.AppID
		}
		c.mu.Unlock()
		m.resolve(nil)
		m.armRefresh()
		m.armKeepAlive()
		m.updateStatus() // connected, before the connection's first update
		cn.goLive()
		return
	}
	var rs *resyncError
	if errors.As(err, &rs) {
		// The listeners rebuild the application's state, then we resume.
		c.opts.logger.Warn("tidings: the server no longer has the updates after the last one processed: resync", "ref", rs.ref)
		m.resyncPending = true
		info := EventInfo{Name: EventResyncRequired, Time: c.opts.clock.Now()}
		c.q.push(&item{kind: itemResync, ev: &ResyncRequired{EventInfo: info, Ref: rs.ref}, sess: m.sess}, 0)
		return
	}
	if c.ctx.Err() != nil { // failed because the client is closing
		m.resolve(ErrClosed)
		return
	}
	c.opts.logger.Warn("tidings: could not connect", "err", err, "failures", m.failures+1)
	m.lastErr = err
	fatal := errors.Is(err, errTokenRejected)
	if fatal || (c.opts.mode == ManualMode && !m.connected) {
		if c.opts.mode == ManualMode {
			m.manualWant = false
		} else {
			m.gaveUp = true
		}
		m.resolve(err)
		return
	}
	m.arm(&m.retry, c.opts.backoff.Delay(m.failures), func(*machine) {})
	m.failures++
}

// connLost handles the end of the open connection.
func (m *machine) connLost() {
	cn := m.conn
	m.conn = nil
	m.c.mu.Lock()
	m.c.cur = nil
	m.c.mu.Unlock()
	m.disarm(&m.refresh)
	m.disarm(&m.keep)
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

// dropConn closes the open connection.
func (m *machine) dropConn(code int, reason string) {
	cn := m.conn
	m.conn = nil
	m.c.mu.Lock()
	m.c.cur = nil
	m.c.mu.Unlock()
	m.disarm(&m.refresh)
	m.disarm(&m.keep)
	m.c.goTracked(func() { cn.close(code, reason) })
}

func (m *machine) shutdown() {
	m.closing = true
	m.resolve(ErrClosed)
	m.reconcile() // closes the connection, stops the attempt and timers
	m.disarm(&m.refresh)
	m.disarm(&m.keep)
	m.disarm(&m.bg)
}

// armRefresh schedules the refresh of the connection's token.
func (m *machine) armRefresh() {
	at := m.sess.tokens.refreshAt(m.conn.token)
	if at.IsZero() {
		return
	}
	d := max(at.Sub(m.c.opts.clock.Now()), time.Second)
	m.arm(&m.refresh, d, (*machine).startRefresh)
}

// startRefresh gets a new token and authenticates it on the open
// connection: the server takes a second auth of the same account as a
// token refresh.
func (m *machine) startRefresh() {
	if m.conn == nil || m.refreshing {
		return
	}
	m.refreshing = true
	c, cn, sess, old := m.c, m.conn, m.sess, m.conn.token
	c.goTracked(func() {
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.dialTimeout)
		defer cancel()
		tok, _, err := sess.tokens.get(ctx)
		var res *protocol.AuthResult
		if err == nil && tok != old {
			var raw json.RawMessage
			raw, err = cn.command(ctx, protocol.CmdAuth, protocol.AuthArgs{Token: tok, Device: c.opts.device})
			if err == nil {
				res = new(protocol.AuthResult)
				err = json.Unmarshal(raw, res)
			} else if ErrorCode(err) == tidings.EUnauthenticated {
				sess.tokens.reject(tok, err)
			}
		}
		_ = c.call(func(m *machine) { m.refreshed(cn, tok, res, err) })
	})
}

func (m *machine) refreshed(cn *conn, tok string, res *protocol.AuthResult, err error) {
	m.refreshing = false
	if m.conn != cn {
		return
	}
	c := m.c
	if err == nil && res != nil {
		cn.token = tok
		exp, _ := time.Parse(time.RFC3339, res.ExpiresAt)
		c.mu.Lock()
		c.tokenExp = exp
		c.mu.Unlock()
		c.opts.logger.Debug("tidings: token refreshed", "expiresAt", res.ExpiresAt)
		m.armRefresh()
		return
	}
	if err != nil {
		c.opts.logger.Warn("tidings: token refresh failed", "err", err)
	}
	// Try again, well before the expiry if there is time.
	c.mu.Lock()
	left := c.tokenExp.Sub(c.opts.clock.Now())
	c.mu.Unlock()
	m.arm(&m.refresh, min(max(left/4, time.Second), 30*time.Second), (*machine).startRefresh)
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
		_, err := cn.command(ctx, protocol.CmdPing, struct{}{})
		cancel()
		var e *Error
		if err != nil && c.ctx.Err() == nil && !errors.As(err, &e) {
			cn.abort(errors.New("client: keepalive ping not answered in time"))
		}
		_ = c.call(func(m *machine) { m.pinging = false })
	})
}
