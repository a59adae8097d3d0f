// Package http serves the Tidings REST API over the domain services.
//
// Every route is listed once, in the route table (routes.go), together
// with the kind of credential it needs; the OpenAPI document served at
// /v1/openapi.json (openapi.json) describes the same routes, and a test
// keeps the two in step.
//
// Requests authenticate with "Authorization: Bearer <credential>", where
// the credential is either the app's server key ("tsk_…") or a user access
// token (a JWT, see package token). Every error is answered with the same
// JSON shape:
//
//	{"error": {"code": "not_found", "message": "conversation not found"}}
//
// where code is one of the tidings.E* codes.
package http

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/ratelimit"
)

// Defaults of the Server's limits and timeouts.
const (
	DefaultMaxBodyBytes      = 1 << 20
	DefaultMaxFileBytes      = tidings.DefaultMaxFileBytes
	DefaultMaxTokenTTL       = 24 * time.Hour
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 2 * time.Minute // long enough to upload a large file
	DefaultWriteTimeout      = 2 * time.Minute // long enough to download one
	DefaultIdleTimeout       = 2 * time.Minute
)

// Server is the HTTP server of the API. Create it with NewServer, set the
// services and any option, then call Open (or mount Handler yourself).
// Fields must not change once Handler or Open has been called.
type Server struct {
	// Addr is the TCP address to listen on, e.g. "127.0.0.1:8080";
	// "127.0.0.1:0" picks a free port (see URL).
	Addr string

	Apps          tidings.AppService
	Users         tidings.UserService
	Conversations tidings.ConversationService
	Messages      tidings.MessageService
	Files         tidings.FileService
	// Push serves the push routes (/v1/push/…, a conversation's mute);
	// nil: they are 404.
	Push tidings.PushService

	// Webhooks serves /v1/webhooks (404 without); WebhooksChanged, if
	// set, is called after an endpoint is changed through the API (to
	// wake the dispatcher).
	Webhooks        tidings.WebhookService
	WebhooksChanged func()

	// BeforeSend serves /v1/app/before-send (404 without);
	// BeforeSendChanged, if set, is called with the app's id after its
	// hook is changed through the API (to forget what the sends
	// remember of it).
	BeforeSend        tidings.BeforeSendService
	BeforeSendChanged func(appID string)

	// Realtime serves WebSocket connections at GET /v1/realtime (package
	// ws); Poller, the polling transport. Without them those routes are 404.
	Realtime http.Handler
	Poller   Poller
	// Sessions, when set, closes the realtime sessions of a user the app
	// deactivates, deletes or whose tokens it revokes (realtime.Node).
	Sessions UserSessions

	// AllowedOrigins lists the origins (scheme://host[:port]) of web
	// pages that may call the API from another origin (CORS); "*" allows
	// any. Empty allows none: pages the server serves itself need none.
	AllowedOrigins []string

	// Web serves the web pages (package web): the GET and HEAD requests
	// to paths outside /v1/ that no route matches. Nil serves none.
	Web http.Handler

	// DevApp turns development mode on: POST /v1/dev/token then creates
	// users and mints their tokens in this app, without credentials, for
	// requests from the loopback interface. Empty (the default) is off.
	DevApp string

	// Logger receives the access log and the errors the API hides from
	// clients. It never receives credentials.
	Logger *slog.Logger

	// Ready reports whether the server can serve requests (e.g. pings the
	// database); GET /readyz answers 503 while it fails. Nil means always
	// ready.
	Ready func(ctx context.Context) error

	// Limits, when set, limits the requests of each user and app (429
	// rate_limited, with Retry-After). Give the realtime node the same
	// Limiter, so that a user has one budget over both. Nil limits none.
	Limits *ratelimit.Limiter

	// MaxBodyBytes limits JSON request bodies (default 1 MiB).
	MaxBodyBytes int64
	// MaxFileBytes limits uploads (default 25 MiB). The FileService
	// enforces its own limit too.
	MaxFileBytes int64
	// MaxTokenTTL is both the default and the maximum lifetime of the
	// access tokens minted through the API (default 24h).
	MaxTokenTTL time.Duration

	// MaxBodyReads bounds the request bodies read at once (default 64);
	// past it a request waits up to a second for its turn, then is
	// answered 503 with Retry-After. BodyTimeout (default 30s) plus the
	// body's size at BodyMinRate bytes a second (default 64 KiB) is the
	// time allowed to read a body, within ReadTimeout.
	MaxBodyReads int
	BodyTimeout  time.Duration
	BodyMinRate  int64

	// Timeouts of the underlying http.Server (see its documentation).
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration

	// Registry holds the metrics served on /metrics. NewServer creates one
	// with the Go and process collectors; the HTTP metrics are registered
	// in it when the handler is built.
	Registry *prometheus.Registry

	// Now returns the current time (for token expiry); time.Now by default.
	Now func() time.Time

	tokens    tokenCache    // user access tokens verified recently
	bodyTurns chan struct{} // one token per body being read

	handlerOnce    sync.Once
	handler        http.Handler
	metricsHandler http.Handler

	mu  sync.Mutex
	ln  net.Listener
	srv *http.Server
}

// NewServer returns a Server with the default limits and timeouts, a
// discarding logger and a new metrics registry.
func NewServer() *Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return &Server{
		Logger:            slog.New(slog.DiscardHandler),
		MaxBodyBytes:      DefaultMaxBodyBytes,
		MaxFileBytes:      DefaultMaxFileBytes,
		MaxTokenTTL:       DefaultMaxTokenTTL,
		MaxBodyReads:      DefaultMaxBodyReads,
		BodyTimeout:       DefaultBodyTimeout,
		BodyMinRate:       DefaultBodyMinRate,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		ReadTimeout:       DefaultReadTimeout,
		WriteTimeout:      DefaultWriteTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		Registry:          reg,
		Now:               time.Now,
	}
}

// Handler returns the whole API, middleware included. It is built on the
// first call; later calls return the same handler.
func (s *Server) Handler() http.Handler {
	s.handlerOnce.Do(func() { s.handler = s.buildHandler() })
	return s.handler
}

// Open starts listening on Addr and serves in a new goroutine. It returns
// once the listener is bound, so URL is usable when it returns nil.
func (s *Server) Open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("http: server already open")
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("http: listen: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		ReadTimeout:       s.ReadTimeout,
		WriteTimeout:      s.WriteTimeout,
		IdleTimeout:       s.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.logger().Handler(), slog.LevelWarn),
	}
	go func(srv *http.Server) {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger().Error("http server stopped", "err", err)
		}
	}(s.srv)
	return nil
}

// URL returns the base URL of the open server, e.g.
// "http://127.0.0.1:8080", or "" if it is not open.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	addr, ok := s.ln.Addr().(*net.TCPAddr)
	if !ok {
		return "http://" + s.ln.Addr().String()
	}
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(addr.Port))
}

// Shutdown stops accepting connections and waits for the requests in
// flight to finish, or for ctx to be done. It does nothing if the server
// is not open. A Server cannot be opened again after Shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// maxBodyBytes, maxFileBytes and maxTokenTTL return the configured limits,
// or the defaults for a Server not made by NewServer.
func (s *Server) maxBodyBytes() int64 {
	if s.MaxBodyBytes <= 0 {
		return DefaultMaxBodyBytes
	}
	return s.MaxBodyBytes
}

func (s *Server) maxFileBytes() int64 {
	if s.MaxFileBytes <= 0 {
		return DefaultMaxFileBytes
	}
	return s.MaxFileBytes
}

func (s *Server) maxTokenTTL() time.Duration {
	if s.MaxTokenTTL <= 0 {
		return DefaultMaxTokenTTL
	}
	return s.MaxTokenTTL
}
