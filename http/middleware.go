package http

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/token"
)

// requestInfo is what the middleware learns about a request as it goes
// down the handlers, for the access log and metrics to report once it has
// been served. One is made per request by requestID; the handlers below
// fill it in on the same goroutine before the outer ones read it.
type requestInfo struct {
	id    string // the request id
	route string // the route's pattern; "" when no route matched
	appID string // the caller's app; "" before authentication
}

type infoKey struct{}

// infoFromContext returns the request's info, or a throwaway one if the
// request did not go through requestID.
func infoFromContext(ctx context.Context) *requestInfo {
	if info, ok := ctx.Value(infoKey{}).(*requestInfo); ok {
		return info
	}
	return &requestInfo{}
}

// requestAttrs returns the log attributes identifying r.
func requestAttrs(r *http.Request) []slog.Attr {
	info := infoFromContext(r.Context())
	return []slog.Attr{
		slog.String("request_id", info.id),
		slog.String("method", r.Method),
		slog.String("route", routeLabel(info.route)),
		slog.String("app", info.appID),
	}
}

func errAttr(err error) slog.Attr { return slog.String("err", err.Error()) }

func routeLabel(pattern string) string {
	if pattern == "" {
		return "unmatched"
	}
	return pattern
}

// requestIDPattern is what an X-Request-Id given by the client must look
// like to be kept (so that it is safe to log and echo).
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// requestID gives every request an id: the client's X-Request-Id if it is
// reasonable, a new one otherwise. It is sent back in X-Request-Id and
// logged with everything the request logs.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !requestIDPattern.MatchString(id) {
			id = tidings.NewID()
		}
		w.Header().Set("X-Request-Id", id)
		ctx := context.WithValue(r.Context(), infoKey{}, &requestInfo{id: id})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// metrics are the HTTP metrics.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newMetrics creates the HTTP metrics and registers them in reg. If reg
// already has them (another Server registered them), those are used.
func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_http_requests_total",
			Help: "HTTP requests served, by method, route pattern and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tidings_http_request_duration_seconds",
			Help:    "Time to serve HTTP requests, by method and route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
	}
	m.requests = register(reg, m.requests)
	m.duration = register(reg, m.duration)
	return m
}

func register[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
		return c
	case errors.As(err, &are):
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(fmt.Sprintf("http: registering metrics: %v", err))
}

// methodLabel returns the method as a metric label, folding unknown
// methods together so that clients cannot create series at will.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// quietRoutes are the routes polled by probes and scrapers, whose access
// log lines are at debug level so as not to drown the others.
var quietRoutes = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// observe writes the access log line and the metrics of every request.
// It logs the route pattern, never the credentials.
func (s *Server) observe(m *metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		elapsed := time.Since(start)

		status := sw.statusOrOK()
		info := infoFromContext(r.Context())
		route := routeLabel(info.route)
		method := methodLabel(r.Method)
		m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
		m.duration.WithLabelValues(method, route).Observe(elapsed.Seconds())

		level := slog.LevelInfo
		if quietRoutes[info.route] {
			level = slog.LevelDebug
		}
		s.logger().LogAttrs(r.Context(), level, "request",
			slog.String("request_id", info.id),
			slog.String("method", r.Method),
			slog.String("route", route),
			slog.Int("status", status),
			slog.Duration("duration", elapsed),
			slog.Int64("bytes", sw.bytes),
			slog.String("app", info.appID),
		)
	})
}

// statusWriter remembers the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) statusOrOK() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// recoverPanics turns a panic in a handler into a logged 500 internal
// error, so that one bad request cannot take the server down.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v) // net/http's way to abort a response; let it do so
			}
			s.logger().LogAttrs(r.Context(), slog.LevelError, "panic serving request",
				append(requestAttrs(r),
					slog.String("panic", fmt.Sprint(v)),
					slog.String("stack", string(debug.Stack())))...)
			if sw.status == 0 {
				s.writeJSON(sw, r, http.StatusInternalServerError,
					errorResponse{Error: errorBody{Code: tidings.EInternal, Message: "internal error"}})
			}
		}()
		next.ServeHTTP(sw, r)
	})
}

// securityHeaders sets the headers every API response carries: no MIME
// sniffing, no framing, no caching of private data, and a policy that
// forbids running anything should a response be opened in a browser.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; sandbox")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// serverKeyPrefix starts every app server key.
const serverKeyPrefix = "tsk_"

// authenticate finds out who makes r from its Authorization header, checks
// that this kind of caller may use the route, and returns r's context
// carrying the caller.
func (s *Server) authenticate(r *http.Request, kind authKind) (context.Context, error) {
	ctx := r.Context()
	cred, err := bearer(r)
	if err != nil {
		return nil, err
	}

	var caller tidings.Caller
	if strings.HasPrefix(cred, serverKeyPrefix) {
		app, err := s.Apps.FindAppByServerKey(ctx, cred)
		switch tidings.ErrorCode(err) {
		case "":
		case tidings.EUnauthenticated, tidings.ENotFound:
			return nil, tidings.Errorf(tidings.EUnauthenticated, "invalid server key")
		default:
			return nil, err
		}
		caller = tidings.Caller{AppID: app.ID, Server: true}
		if caller, err = s.onBehalfOf(r, caller); err != nil {
			return nil, err
		}
	} else {
		if r.Header.Get(onBehalfOfHeader) != "" {
			return nil, tidings.Errorf(tidings.EForbidden, "only the app server key may act on behalf of a user (%s); a user access token acts as its own user", onBehalfOfHeader)
		}
		now := s.now()
		c, issued, ok := s.tokens.get(cred, now)
		if !ok {
			v, err := token.VerifyToken(ctx, s.Apps, cred, now)
			if err != nil {
				return nil, err
			}
			c, issued = v.Caller, v.IssuedAt
			s.tokens.put(cred, c, issued, v.ExpiresAt, now)
		}
		caller = c
		// The token may outlive its user, or the app may have deactivated
		// them or revoked their tokens since: check, asking as the app's
		// server, which may see every user.
		server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: caller.AppID, Server: true})
		u, err := s.Users.FindUserByID(server, caller.UserID)
		if tidings.ErrorCode(err) == tidings.ENotFound {
			return nil, tidings.Errorf(tidings.EUnauthenticated, "the user of this access token does not exist")
		} else if err != nil {
			return nil, err
		}
		if err := u.AcceptsToken(issued); err != nil {
			return nil, err
		}
	}
	infoFromContext(ctx).appID = caller.AppID

	switch {
	case kind == authServer && !caller.Server && r.Header.Get(onBehalfOfHeader) != "":
		return nil, tidings.Errorf(tidings.EForbidden, "this endpoint is the app's own: call it with the server key and no %s header", onBehalfOfHeader)
	case kind == authServer && !caller.Server:
		return nil, tidings.Errorf(tidings.EForbidden, "this endpoint needs the app server key; a user access token cannot call it")
	case kind == authUser && caller.Server:
		return nil, tidings.Errorf(tidings.EForbidden, "this endpoint needs a user access token, or the server key with a %s header naming the user to act for", onBehalfOfHeader)
	}
	return tidings.NewContextWithCaller(ctx, caller), nil
}

// onBehalfOfHeader names the user a request made with the server key acts
// for: the customer's backend does what that user could do, as that user
// (their permissions, their rate limits, events with them as the actor).
const onBehalfOfHeader = "Tidings-On-Behalf-Of"

// onBehalfOf returns the caller of a request made with the app's server
// key: the app's server, or the user named by the Tidings-On-Behalf-Of
// header, who must exist. A device's realtime routes (polling, replies)
// stay the user's own.
func (s *Server) onBehalfOf(r *http.Request, server tidings.Caller) (tidings.Caller, error) {
	userID, ok := r.Header[http.CanonicalHeaderKey(onBehalfOfHeader)]
	if !ok {
		return server, nil
	}
	if len(userID) != 1 || userID[0] == "" {
		return server, tidings.Errorf(tidings.EInvalid, "the %s header must name one user id", onBehalfOfHeader)
	}
	if strings.HasPrefix(r.URL.Path, "/v1/realtime/") {
		return server, tidings.Errorf(tidings.EForbidden, "the realtime routes serve a user's own devices: the server key cannot poll or reply on behalf of a user")
	}
	ctx := tidings.NewContextWithCaller(r.Context(), server)
	u, err := s.Users.FindUserByID(ctx, userID[0])
	if tidings.ErrorCode(err) == tidings.ENotFound {
		return server, tidings.Errorf(tidings.ENotFound, "the user %q named by %s does not exist", userID[0], onBehalfOfHeader)
	} else if err != nil {
		return server, err
	}
	if u.DeactivatedAt != nil {
		return server, tidings.Errorf(tidings.EForbidden, "the user %q named by %s is deactivated: reactivate them first", userID[0], onBehalfOfHeader)
	}
	return tidings.Caller{AppID: server.AppID, UserID: userID[0]}, nil
}

// bearer returns the credential of r's "Authorization: Bearer" header.
// Credentials are never read from the URL.
func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", tidings.Errorf(tidings.EUnauthenticated, "missing credentials: send an Authorization: Bearer header with the server key or a user access token")
	}
	scheme, cred, _ := strings.Cut(h, " ")
	cred = strings.TrimSpace(cred)
	if !strings.EqualFold(scheme, "Bearer") || cred == "" {
		return "", tidings.Errorf(tidings.EUnauthenticated, "the Authorization header must be \"Bearer <credential>\"")
	}
	return cred, nil
}
