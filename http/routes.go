package http

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/ratelimit"
)

// authKind is the kind of credential a route needs.
type authKind int

const (
	authNone   authKind = iota // no credential
	authServer                 // the app server key
	authUser                   // a user access token
	authAny                    // either
)

// handlerFunc is an API handler: it writes a successful response, or
// returns an error, which the caller writes in the error shape.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// route is one entry of the route table.
type route struct {
	method  string
	pattern string // a ServeMux path pattern, e.g. "/v1/users/{userId}"
	auth    authKind
	handler handlerFunc
}

// routes is the route table: every route of the API, once. The OpenAPI
// document must list exactly these (see TestOpenAPIMatchesRoutes).
func (s *Server) routes() []route {
	return []route{
		{"GET", "/healthz", authNone, s.handleHealthz},
		{"GET", "/readyz", authNone, s.handleReadyz},
		{"GET", "/metrics", authNone, s.handleMetrics},
		{"GET", "/v1/openapi.json", authNone, handleOpenAPI},

		{"GET", "/v1/app", authServer, s.handleGetApp},
		{"PATCH", "/v1/app", authServer, s.handleUpdateApp},
		{"GET", "/v1/app/before-send", authServer, s.handleGetBeforeSend},
		{"PUT", "/v1/app/before-send", authServer, s.handleSetBeforeSend},
		{"DELETE", "/v1/app/before-send", authServer, s.handleDeleteBeforeSend},

		{"POST", "/v1/users", authServer, s.handleCreateUser},
		{"GET", "/v1/users", authServer, s.handleListUsers},
		{"GET", "/v1/users/{userId}", authAny, s.handleGetUser},
		{"PATCH", "/v1/users/{userId}", authAny, s.handleUpdateUser},
		{"POST", "/v1/users/{userId}/tokens", authServer, s.handleCreateToken},
		{"DELETE", "/v1/users/{userId}/tokens", authServer, s.handleRevokeTokens},
		{"POST", "/v1/users/{userId}/deactivate", authServer, s.handleDeactivateUser},
		{"POST", "/v1/users/{userId}/reactivate", authServer, s.handleReactivateUser},
		{"DELETE", "/v1/users/{userId}", authServer, s.handleDeleteUser},
		{"GET", "/v1/me", authUser, s.handleMe},

		{"POST", "/v1/conversations", authAny, s.handleCreateConversation},
		{"GET", "/v1/conversations", authAny, s.handleListConversations},
		{"GET", "/v1/conversations/{conversationId}", authAny, s.handleGetConversation},
		{"PATCH", "/v1/conversations/{conversationId}", authAny, s.handleUpdateConversation},
		{"DELETE", "/v1/conversations/{conversationId}", authAny, s.handleDeleteConversation},
		{"POST", "/v1/conversations/{conversationId}/undelete", authAny, s.handleUndeleteConversation},

		{"GET", "/v1/conversations/{conversationId}/participants", authAny, s.handleListParticipants},
		{"POST", "/v1/conversations/{conversationId}/participants", authAny, s.handleAddParticipant},
		{"PATCH", "/v1/conversations/{conversationId}/participants/{userId}", authAny, s.handleUpdateParticipant},
		{"DELETE", "/v1/conversations/{conversationId}/participants/{userId}", authAny, s.handleRemoveParticipant},
		{"POST", "/v1/conversations/{conversationId}/join", authUser, s.handleJoin},
		{"POST", "/v1/conversations/{conversationId}/leave", authUser, s.handleLeave},

		{"POST", "/v1/conversations/{conversationId}/messages", authAny, s.handleSendMessage},
		{"GET", "/v1/conversations/{conversationId}/messages", authAny, s.handleListMessages},
		{"GET", "/v1/conversations/{conversationId}/messages/{messageId}", authAny, s.handleGetMessage},
		{"PATCH", "/v1/conversations/{conversationId}/messages/{messageId}", authAny, s.handleEditMessage},
		{"DELETE", "/v1/conversations/{conversationId}/messages/{messageId}", authAny, s.handleDeleteMessage},
		{"POST", "/v1/conversations/{conversationId}/delivered", authUser, s.handleMarkDelivered},
		{"POST", "/v1/conversations/{conversationId}/read", authUser, s.handleMarkRead},

		{"POST", "/v1/conversations/{conversationId}/files", authAny, s.handleUploadFile},
		{"GET", "/v1/conversations/{conversationId}/files/{fileId}", authAny, s.handleDownloadFile},

		// Push notifications (docs/push.md).
		{"POST", "/v1/push/targets", authUser, s.handleRegisterPushTarget},
		{"GET", "/v1/push/targets", authUser, s.handleListPushTargets},
		{"DELETE", "/v1/push/targets/{targetId}", authUser, s.handleDeletePushTarget},
		{"GET", "/v1/push/settings", authUser, s.handleGetPushSettings},
		{"PATCH", "/v1/push/settings", authUser, s.handleUpdatePushSettings},
		{"PUT", "/v1/conversations/{conversationId}/mute", authUser, s.handleMute},
		{"DELETE", "/v1/conversations/{conversationId}/mute", authUser, s.handleMute},
		{"GET", "/v1/push/vapid-public-key", authAny, s.handleVAPIDPublicKey},
		{"GET", "/v1/push/config", authServer, s.handleGetPushConfig},
		{"PATCH", "/v1/push/config", authServer, s.handleUpdatePushConfig},

		{"GET", "/v1/realtime", authNone, s.handleRealtime},
		{"GET", "/v1/realtime/poll", authUser, s.handlePoll},
		{"POST", "/v1/realtime/replies", authUser, s.handleReply},
		{"POST", "/v1/conversations/{conversationId}/typing", authUser, s.handleTyping},
		{"GET", "/v1/conversations/{conversationId}/presence", authUser, s.handlePresence},

		{"POST", "/v1/webhooks", authServer, s.handleCreateWebhook},
		{"GET", "/v1/webhooks", authServer, s.handleListWebhooks},
		{"GET", "/v1/webhooks/{webhookId}", authServer, s.handleGetWebhook},
		{"PATCH", "/v1/webhooks/{webhookId}", authServer, s.handleUpdateWebhook},
		{"DELETE", "/v1/webhooks/{webhookId}", authServer, s.handleDeleteWebhook},
		{"GET", "/v1/webhooks/{webhookId}/attempts", authServer, s.handleListWebhookAttempts},
		{"POST", "/v1/webhooks/{webhookId}/replay", authServer, s.handleReplayWebhook},

		{"GET", "/v1/dev", authNone, s.handleDevStatus},
		{"POST", "/v1/dev/token", authNone, s.handleDevToken},
	}
}

// buildHandler registers the route table on a ServeMux and wraps it in the
// middleware. From the outside in: request id, access log and metrics,
// panic recovery, security headers, routing (with JSON 404 and 405), and
// per route authentication.
func (s *Server) buildHandler() http.Handler {
	if s.Registry == nil {
		s.Registry = prometheus.NewRegistry()
	}
	n := s.MaxBodyReads
	if n <= 0 {
		n = DefaultMaxBodyReads
	}
	s.bodyTurns = make(chan struct{}, n)
	m := newMetrics(s.Registry)
	s.metricsHandler = promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{})
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.method+" "+rt.pattern, s.routeHandler(rt))
	}
	var h http.Handler = s.serveMux(mux)
	h = s.cors(h)
	h = securityHeaders(h)
	h = s.recoverPanics(h)
	h = s.observe(m, h)
	h = requestID(h)
	return h
}

// routeHandler returns the handler of one route: it records the route for
// the access log and metrics, authenticates the caller as the route needs,
// bounds the reading of the request's body (admitBody), and writes the
// error the route's handler returns.
func (s *Server) routeHandler(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := infoFromContext(r.Context())
		info.route = rt.pattern
		if rt.auth != authNone {
			ctx, err := s.authenticate(r, rt.auth)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			r = r.WithContext(ctx)
			if err := s.limit(r, rt); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		done, err := s.admitBody(w, r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		defer done()
		if err := rt.handler(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// limitedRoutes are the routes that cost more than a request: their own
// budgets are taken too.
var limitedRoutes = map[string]ratelimit.Action{
	"POST /v1/conversations":                               ratelimit.CreateConversation,
	"POST /v1/conversations/{conversationId}/participants": ratelimit.AddParticipant,
}

// freeRoutes take nothing from the budgets: acknowledgements, which do
// not count on the socket either, and polls, which receive as an open
// socket does (at no cost) and are bounded by the connections a user may
// hold: a poll that comes back at once with updates, in a busy
// conversation, must not eat the budget its user sends with.
var freeRoutes = map[string]bool{"POST /v1/realtime/replies": true, "GET /v1/realtime/poll": true}

// limit takes the request from the caller's budgets (Limits), or returns
// the rate_limited error to answer (429, with Retry-After).
func (s *Server) limit(r *http.Request, rt route) error {
	caller, ok := tidings.CallerFromContext(r.Context())
	switch {
	case s.Limits == nil || !ok || freeRoutes[rt.method+" "+rt.pattern]:
		return nil
	case caller.Server:
		return s.Limits.AllowServer(caller.AppID)
	}
	return s.Limits.AllowUser(caller.AppID, caller.UserID, limitedRoutes[rt.method+" "+rt.pattern])
}

// serveMux serves r through mux, answering the requests no route matches
// with JSON errors instead of ServeMux's plain text: 404 not_found for an
// unknown path, 405 method_not_allowed (with an Allow header) for a known
// path with another method.
func (s *Server) serveMux(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			// ServeHTTP, not h, so that r gets its path values.
			mux.ServeHTTP(w, r)
			return
		}
		if s.Web != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
			r.URL.Path != "/v1" && !strings.HasPrefix(r.URL.Path, "/v1/") {
			infoFromContext(r.Context()).route = "web"
			s.Web.ServeHTTP(w, r)
			return
		}
		// No route: let ServeMux decide what it would answer, and rewrite
		// its 404 and 405 in the JSON shape. Anything else (a redirect to
		// the cleaned path) passes through as it is.
		rec := &recorder{header: make(http.Header)}
		h.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusNotFound:
			s.writeError(w, r, tidings.Errorf(tidings.ENotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", rec.header.Get("Allow"))
			s.writeError(w, r, tidings.Errorf(tidings.EMethodNotAllowed, "%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, rec.header.Get("Allow")))
		default:
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
			_, _ = w.Write(rec.body)
		}
	})
}

// recorder is a minimal ResponseWriter that keeps what is written to it.
type recorder struct {
	header http.Header
	status int
	body   []byte
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	r.body = append(r.body, p...)
	return len(p), nil
}
