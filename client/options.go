package client

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"
)

// Mode says who manages the realtime connection.
type Mode int

const (
	// AutoMode (the default): the client opens the connection as soon as
	// it is logged in, reconnects by itself when the network drops, closes
	// it when the application goes to the background and opens it again
	// when it comes back to the foreground.
	AutoMode Mode = iota
	// ManualMode: the application calls Connect, Disconnect and Ping. A
	// connection it opened is reconnected after a network failure while the
	// application is in the foreground; in the background it is kept only
	// while the application pings at least every BackgroundTimeout.
	ManualMode
)

func (m Mode) String() string {
	if m == ManualMode {
		return "manual"
	}
	return "auto"
}

// TokenProvider returns a user access token. The client calls it when it
// needs a token: at the first connection, and again when the token it has
// nears its expiry (read from the JWT's exp claim) or was rejected.
type TokenProvider func(ctx context.Context) (string, error)

// StaticToken returns a TokenProvider that always returns tok. A client
// with a static token cannot refresh it: once it expires, the application
// must log out and in again.
func StaticToken(tok string) TokenProvider {
	return func(context.Context) (string, error) { return tok, nil }
}

// Backoff spaces the attempts to reconnect: the n-th consecutive failure
// waits Initial×Multiplier^n, at most Max, of which a random part (up to
// the fraction Jitter) is taken off so that clients do not all come back
// at once. Zero fields take the defaults of DefaultBackoff; a negative
// Jitter means none.
type Backoff struct {
	Initial    time.Duration // default 500ms
	Max        time.Duration // default 30s
	Multiplier float64       // default 2
	Jitter     float64       // default 0.5; at most 1
}

// DefaultBackoff is the backoff used unless WithBackoff says otherwise.
var DefaultBackoff = Backoff{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Multiplier: 2, Jitter: 0.5}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoff.Initial
	}
	if b.Max <= 0 {
		b.Max = max(DefaultBackoff.Max, b.Initial)
	}
	if b.Multiplier < 1 {
		b.Multiplier = DefaultBackoff.Multiplier
	}
	switch {
	case b.Jitter == 0:
		b.Jitter = DefaultBackoff.Jitter
	case b.Jitter > 1:
		b.Jitter = 1
	}
	return b
}

// Delay returns the wait after the given number of consecutive failures
// (0 for the first one).
func (b Backoff) Delay(failures int) time.Duration {
	b = b.withDefaults()
	d := float64(b.Initial)
	for i := 0; i < failures && d < float64(b.Max); i++ {
		d *= b.Multiplier
	}
	d = min(d, float64(b.Max))
	d -= d * max(b.Jitter, 0) * rand.Float64()
	return time.Duration(d)
}

// Defaults of the options.
const (
	DefaultDevice            = "default"
	DefaultRefreshMargin     = time.Minute
	DefaultBackgroundTimeout = 30 * time.Second
	DefaultKeepAlive         = 30 * time.Second
	DefaultKeepAliveTimeout  = 10 * time.Second
	DefaultDialTimeout       = 30 * time.Second
	DefaultMaxQueue          = 10000
)

// options is the configuration of a Client, set once by New.
type options struct {
	provider          TokenProvider
	static            bool
	token             string // the token of WithToken
	device            string
	mode              Mode
	backoff           Backoff
	httpClient        *http.Client
	ownHTTP           bool
	logger            *slog.Logger
	cursor            CursorStore
	clock             Clock
	refreshMargin     time.Duration
	backgroundTimeout time.Duration
	keepAlive         time.Duration
	keepAliveTimeout  time.Duration
	dialTimeout       time.Duration
	maxQueue          int
	eventListeners    []func(Event)
	statusListeners   []func(StatusChange)
}

// Option configures a Client (see New).
type Option func(*options)

// WithToken logs the client in with a fixed access token: in auto mode,
// New opens the realtime connection at once. See StaticToken.
func WithToken(token string) Option {
	return func(o *options) { o.provider, o.static, o.token = StaticToken(token), true, token }
}

// WithTokenProvider logs the client in with a token provider, called for
// a first token and again whenever the token nears its expiry: in auto
// mode, New opens the realtime connection at once.
func WithTokenProvider(p TokenProvider) Option {
	return func(o *options) { o.provider, o.static, o.token = p, false, "" }
}

// WithDevice names this installation of the application (1 to 64
// letters, digits, _ and -; default "default"). The server keeps one
// cursor per user and device: give each installation its own name.
// AddAccount takes it too (default: the client's device).
func WithDevice(name string) Option { return func(o *options) { o.device = name } }

// WithMode chooses who manages the realtime connection (default AutoMode).
func WithMode(m Mode) Option { return func(o *options) { o.mode = m } }

// WithBackoff sets how reconnection attempts are spaced.
func WithBackoff(b Backoff) Option { return func(o *options) { o.backoff = b } }

// WithHTTPClient sets the HTTP client of the REST API (default: a client
// of the client's own, with the settings of http.DefaultTransport). Its
// transport's TLS settings are used for the realtime connection too.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.httpClient = c } }

// WithLogger sets where the client logs (default: nowhere).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithCursorStore keeps the last processed ref in s, so that a restarted
// program resumes after the last update it processed (see FileCursor).
// It is the default account's store; AddAccount takes it too, for the
// account added.
func WithCursorStore(s CursorStore) Option { return func(o *options) { o.cursor = s } }

// WithClock sets the clock of the client's timers (default SystemClock).
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// WithRefreshMargin sets how long before its expiry a token is refreshed
// (default one minute). A token is never refreshed before half its
// lifetime has passed, so that short-lived tokens are not refreshed in a
// loop.
func WithRefreshMargin(d time.Duration) Option { return func(o *options) { o.refreshMargin = d } }

// WithBackgroundTimeout sets how long a manual-mode connection is kept in
// the background without a Ping (default 30s).
func WithBackgroundTimeout(d time.Duration) Option {
	return func(o *options) { o.backgroundTimeout = d }
}

// WithKeepAlive sets how often the client pings an open connection to
// detect a dead network (default 30s; 0 or less disables it) and how long
// it waits for the answer before dropping the connection (default 10s).
func WithKeepAlive(interval, timeout time.Duration) Option {
	return func(o *options) { o.keepAlive, o.keepAliveTimeout = interval, timeout }
}

// WithMaxQueue bounds the updates received and waiting for the listeners
// (default 10000). Past it, the client drops the connection and resumes
// later from the last processed update, so that a slow listener never
// makes memory grow without bound.
func WithMaxQueue(n int) Option { return func(o *options) { o.maxQueue = n } }

// WithEventListener registers an event listener before the client starts,
// as AddEventListener would (and for good: it cannot be removed).
func WithEventListener(l func(Event)) Option {
	return func(o *options) { o.eventListeners = append(o.eventListeners, l) }
}

// WithStatusListener registers a status listener before the client starts,
// so that it sees the first status change too.
func WithStatusListener(l func(StatusChange)) Option {
	return func(o *options) { o.statusListeners = append(o.statusListeners, l) }
}

func (o *options) setDefaults() {
	if o.device == "" {
		o.device = DefaultDevice
	}
	o.backoff = o.backoff.withDefaults()
	if o.httpClient == nil {
		t, ok := http.DefaultTransport.(*http.Transport)
		if ok {
			t = t.Clone()
		} else {
			t = &http.Transport{Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}
		}
		o.httpClient, o.ownHTTP = &http.Client{Transport: t}, true
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.clock == nil {
		o.clock = SystemClock{}
	}
	if o.refreshMargin <= 0 {
		o.refreshMargin = DefaultRefreshMargin
	}
	if o.backgroundTimeout <= 0 {
		o.backgroundTimeout = DefaultBackgroundTimeout
	}
	if o.keepAliveTimeout <= 0 {
		o.keepAliveTimeout = DefaultKeepAliveTimeout
	}
	if o.dialTimeout <= 0 {
		o.dialTimeout = DefaultDialTimeout
	}
	if o.maxQueue <= 0 {
		o.maxQueue = DefaultMaxQueue
	}
}
