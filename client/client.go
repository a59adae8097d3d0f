package client

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// Status is the state of the realtime connection.
type Status int

const (
	// StatusDisconnected: no connection, and none is being opened.
	StatusDisconnected Status = iota
	// StatusConnecting: a first connection is being opened.
	StatusConnecting
	// StatusConnected: the connection is open and authenticated; updates
	// flow.
	StatusConnected
	// StatusReconnecting: the connection was lost and the client is
	// opening a new one (waiting between attempts, with backoff).
	StatusReconnecting
	// StatusClosed: the client was closed.
	StatusClosed
)

func (s Status) String() string {
	switch s {
	case StatusDisconnected:
		return "disconnected"
	case StatusConnecting:
		return "connecting"
	case StatusConnected:
		return "connected"
	case StatusReconnecting:
		return "reconnecting"
	case StatusClosed:
		return "closed"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// StatusChange is what status listeners receive.
type StatusChange struct {
	Status Status
	// Err says why, for StatusDisconnected and StatusReconnecting: the
	// reason the connection ended (a *CloseError when the server closed
	// it, ErrBackgroundTimeout…) or the last attempt failed (an *Error
	// when the server refused the token…). Nil when the application asked.
	Err error
}

// Client is a connection to a Tidings server for one user: the realtime
// connection, which delivers updates to the listeners, and the REST API.
// Create it with New. A Client is safe for concurrent use. Close it when
// done: it stops every goroutine it started.
type Client struct {
	opts    options
	baseURL string // REST base, without a trailing slash
	wsURL   string

	ctx      context.Context // canceled by Close
	cancel   context.CancelFunc
	reqs     chan func(*machine)
	loopDone chan struct{}
	wg       sync.WaitGroup // goroutines other than the loop and the delivery

	q            *queue
	deliveryDone chan struct{}
	events       listenerSet[Event]
	statuses     listenerSet[StatusChange]
	closeOnce    sync.Once

	mu           sync.Mutex
	closed       bool
	status       Status
	statusErr    error
	statusCh     chan struct{} // closed and replaced on every status change
	sess         *session
	cur          *conn
	tokenExp     time.Time
	inBackground bool
}

// session is one login: a user's credentials and cursor.
type session struct {
	tokens *tokenSource
	appID  string
	userID string

	// lastRef is the ref of the last update the listeners processed.
	lastRef atomic.Int64
	// resumeLatest asks the next connection to resume with new updates
	// only (after a resync the server could not name a ref for).
	resumeLatest atomic.Bool

	cursorMu     sync.Mutex
	cursorLoaded bool

	presence presenceSet // the users it follows (presence.go)
}

var devicePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// New returns a client of the Tidings server at serverURL (its base URL,
// e.g. "https://chat.example.com"). With WithToken or WithTokenProvider
// the client is logged in at once and, in auto mode, opens the realtime
// connection in the background; otherwise call Login.
//
// New does no network I/O: watch the status (AddStatusListener,
// WaitConnected) to know when the connection is open.
func New(serverURL string, opts ...Option) (*Client, error) {
	o := options{keepAlive: DefaultKeepAlive}
	for _, opt := range opts {
		opt(&o)
	}
	o.setDefaults()
	if !devicePattern.MatchString(o.device) {
		return nil, fmt.Errorf("client: device name %q is not valid: use 1 to 64 letters, digits, _ and -", o.device)
	}
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: server URL %q must be an absolute http or https URL", serverURL)
	}
	u.RawQuery, u.Fragment = "", ""
	base := strings.TrimRight(u.String(), "/")
	wsu := *u
	wsu.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	wsu.Path = strings.TrimRight(u.Path, "/") + "/v1/realtime"
	wsu.RawPath = ""

	c := &Client{
		opts: o, baseURL: base, wsURL: wsu.String(),
		reqs: make(chan func(*machine)), loopDone: make(chan struct{}),
		q: newQueue(), deliveryDone: make(chan struct{}), statusCh: make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	for _, l := range o.eventListeners {
		c.events.add(l)
	}
	for _, l := range o.statusListeners {
		c.statuses.add(l)
	}
	m := &machine{c: c}
	if o.provider != nil {
		sess := c.newSession(o.provider, o.static)
		c.learnIdentity(sess, o.token)
		m.setSession(sess)
	}
	m.reconcile() // the first status, and the first attempt in auto mode
	go c.run(m)
	go c.deliver()
	return c, nil
}

func (c *Client) newSession(p TokenProvider, static bool) *session {
	return &session{tokens: newTokenSource(p, static, c.opts.clock, c.opts.refreshMargin)}
}

// Mode returns the connection mode the client was created with.
func (c *Client) Mode() Mode { return c.opts.mode }

// Device returns the device name of the client.
func (c *Client) Device() string { return c.opts.device }

// UserID returns the id of the logged-in user ("" when not logged in, or
// not known yet: it is read from the token, or learnt at login or at the
// first connection).
func (c *Client) UserID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		return ""
	}
	return c.sess.userID
}

// TokenExpiry returns when the token accepted by the server on the
// realtime connection expires (zero before the first connection). It moves
// forward each time the client refreshes the token.
func (c *Client) TokenExpiry() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tokenExp
}

// LastRef returns the ref of the last update the listeners processed in
// this login ("" if none).
func (c *Client) LastRef() string {
	s := c.session()
	if s == nil || s.lastRef.Load() == 0 {
		return ""
	}
	return fmt.Sprint(s.lastRef.Load())
}

// Status returns the current state of the realtime connection.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// WaitConnected waits while the client opens the realtime connection,
// and returns nil once it is open. It returns an error at once when the
// client is not trying to connect (StatusDisconnected): ErrNotLoggedIn
// before Login, ErrClosed after Close, else ErrNotConnected wrapping the
// reason of the last failure (e.g. the server's *Error refusing the
// token); and ctx's error if ctx ends first.
func (c *Client) WaitConnected(ctx context.Context) error {
	for {
		c.mu.Lock()
		st, why, ch, sess := c.status, c.statusErr, c.statusCh, c.sess
		c.mu.Unlock()
		switch {
		case st == StatusConnected:
			return nil
		case st == StatusClosed:
			return ErrClosed
		case sess == nil:
			return ErrNotLoggedIn
		case st == StatusDisconnected && why != nil:
			return fmt.Errorf("%w: %w", ErrNotConnected, why)
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

// AddEventListener registers a listener of updates and returns a function
// that removes it. Listeners are called one at a time, in the order they
// were added, from one goroutine of the client: every listener gets every
// update, once, in the order of the user's stream. An update is
// acknowledged to the server (and saved in the cursor store) only after
// every listener has returned, so a program that crashes in a listener
// gets the update again when it restarts. While no event listener is
// registered, updates wait (see also WithEventListener).
//
// Listeners may add and remove listeners, and call any method of the
// client but Close (which waits for the listener to return: call it from
// another goroutine). A listener added during the delivery of an update
// gets the updates that follow it; a listener removed is not called once
// the function that removes it has returned.
func (c *Client) AddEventListener(l func(Event)) (remove func()) {
	remove = c.events.add(l)
	c.q.wake()
	return remove
}

// AddStatusListener registers a listener of the connection status and
// returns a function that removes it. Status listeners are called from
// the same goroutine as event listeners, in order (the last change, to
// StatusClosed, from the goroutine that calls Close).
func (c *Client) AddStatusListener(l func(StatusChange)) (remove func()) {
	return c.statuses.add(l)
}

// Login logs the user of token in: it checks the token with the server
// (GET /v1/me) and returns the user's profile. In auto mode the client
// then opens the realtime connection in the background. The token cannot
// be refreshed: use LoginWith a TokenProvider for that.
func (c *Client) Login(ctx context.Context, token string) (*tidings.User, error) {
	return c.login(ctx, StaticToken(token), true)
}

// LoginWith is Login with a token provider, called again whenever the
// token nears its expiry.
func (c *Client) LoginWith(ctx context.Context, p TokenProvider) (*tidings.User, error) {
	return c.login(ctx, p, false)
}

func (c *Client) login(ctx context.Context, p TokenProvider, static bool) (*tidings.User, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	if c.session() != nil {
		return nil, ErrAlreadyLoggedIn
	}
	sess := c.newSession(p, static)
	var u tidings.User
	if err := c.rest(ctx, sess, "GET", "/v1/me", nil, nil, &u); err != nil {
		return nil, err
	}
	if tok, _, err := sess.tokens.get(ctx); err == nil {
		c.learnIdentity(sess, tok)
	}
	if sess.userID == "" {
		sess.userID = u.ID
	}
	var err error
	if cerr := c.call(func(m *machine) {
		if m.sess != nil {
			err = ErrAlreadyLoggedIn
			return
		}
		m.setSession(sess)
	}); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// Logout closes the realtime connection and forgets the credentials.
// Updates received and not yet delivered are dropped (they were not
// acknowledged: the next login of the same user and device gets them).
func (c *Client) Logout() error {
	return c.call(func(m *machine) {
		if m.sess == nil {
			return
		}
		m.setSession(nil)
		m.manualWant = false
		m.resolve(ErrNotLoggedIn)
	})
}

// Connect opens the realtime connection (manual mode) and returns once it
// is open and authenticated, or the attempt failed. It returns
// ErrAlreadyConnected if the connection is open, ErrNotLoggedIn before
// Login, ErrAutoMode in auto mode, and the server's *Error if it refused
// the token. While the connection is being opened again after a network
// failure, Connect waits for that attempt.
func (c *Client) Connect(ctx context.Context) error {
	if c.isClosed() {
		return ErrClosed
	}
	var wait chan error
	var err error
	if cerr := c.call(func(m *machine) {
		switch {
		case c.opts.mode == AutoMode:
			err = ErrAutoMode
		case m.sess == nil:
			err = ErrNotLoggedIn
		case m.conn != nil:
			err = ErrAlreadyConnected
		default:
			if !m.manualWant {
				m.manualWant, m.connected, m.failures, m.lastErr = true, false, 0, nil
			}
			wait = make(chan error, 1)
			m.waiters = append(m.waiters, wait)
		}
	}); cerr != nil {
		return cerr
	}
	if err != nil {
		return err
	}
	select {
	case err := <-wait:
		return err
	case <-ctx.Done():
	}
	// Abandon the attempt, unless someone else waits for it too.
	_ = c.call(func(m *machine) {
		for i, w := range m.waiters {
			if w == wait {
				m.waiters = append(m.waiters[:i], m.waiters[i+1:]...)
				break
			}
		}
		if len(m.waiters) == 0 && m.conn == nil && !m.connected {
			m.manualWant = false
		}
	})
	select {
	case err := <-wait:
		return err
	default:
		return ctx.Err()
	}
}

// Disconnect closes the realtime connection (manual mode). It returns
// ErrAutoMode in auto mode; disconnecting when not connected does nothing.
func (c *Client) Disconnect() error {
	if c.isClosed() {
		return ErrClosed
	}
	var err error
	if cerr := c.call(func(m *machine) {
		if c.opts.mode == AutoMode {
			err = ErrAutoMode
			return
		}
		m.manualWant, m.lastErr = false, nil
		m.resolve(ErrNotConnected)
	}); cerr != nil {
		return cerr
	}
	return err
}

// Ping sends a ping command on the realtime connection and waits for the
// answer. In manual mode, in the background, it also keeps the
// connection: the client drops it after the background timeout (30s)
// without a Ping. It returns ErrNotConnected when there is no connection.
func (c *Client) Ping(ctx context.Context) error {
	if c.isClosed() {
		return ErrClosed
	}
	var cn *conn
	if err := c.call(func(m *machine) {
		cn = m.conn
		if cn != nil && m.bg.armed() {
			m.armBackground()
		}
	}); err != nil {
		return err
	}
	if cn == nil {
		return ErrNotConnected
	}
	_, err := cn.command(ctx, protocol.CmdPing, struct{}{})
	return err
}

// EnterBackground tells the client that the application went to the
// background. In auto mode the connection is closed at once; in manual
// mode it is kept while the application calls Ping at least every
// background timeout (30s), and dropped after.
func (c *Client) EnterBackground() error {
	return c.call(func(m *machine) { m.setBackground(true) })
}

// EnterForeground tells the client that the application is in the
// foreground again. In auto mode the connection is opened again; in manual
// mode the background timeout stops (call Connect if the connection was
// dropped).
func (c *Client) EnterForeground() error {
	return c.call(func(m *machine) { m.setBackground(false) })
}

// InBackground reports whether the application said it is in the
// background.
func (c *Client) InBackground() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inBackground
}

// Close closes the realtime connection, stops every goroutine of the
// client and waits for them, including a listener call in progress: do
// not call it from a listener. The updates the listeners processed are
// acknowledged before the connection closes (Close waits a moment for the
// server to confirm), so that the next connection of the same user and
// device does not get them again; updates received
// and not yet delivered are not delivered (nor acknowledged). Close always
// returns nil; calling it again does nothing.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		// Stop the delivery first: once the listener call in progress
		// returns, it acknowledges what was processed on the connection,
		// still open.
		c.q.close()
		<-c.deliveryDone
		c.mu.Lock()
		cn := c.cur
		c.mu.Unlock()
		if cn != nil {
			cn.confirmReplies()
		}
		c.cancel()
		<-c.loopDone
		c.wg.Wait()
		// The last status changes (to StatusClosed) came after the
		// delivery goroutine stopped.
		for _, it := range c.q.rest() {
			c.statuses.call(it.status)
		}
		if c.opts.ownHTTP {
			c.opts.httpClient.CloseIdleConnections()
		}
	})
	return nil
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *Client) session() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

// current returns the open connection, or an error saying why there is none.
func (c *Client) current() (*conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return nil, ErrClosed
	case c.cur == nil:
		return nil, ErrNotConnected
	}
	return c.cur, nil
}

// setStatus records a status and tells the listeners if it changed.
func (c *Client) setStatus(s Status, err error) {
	c.mu.Lock()
	if s == c.status {
		c.mu.Unlock()
		return
	}
	if s != StatusDisconnected && s != StatusReconnecting {
		err = nil
	}
	c.status, c.statusErr = s, err
	close(c.statusCh)
	c.statusCh = make(chan struct{})
	c.mu.Unlock()
	c.opts.logger.Debug("tidings: connection status", "status", s.String(), "err", err)
	c.q.push(&item{kind: itemStatus, status: StatusChange{Status: s, Err: err}}, 0)
}
