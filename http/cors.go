package http

import (
	"net/http"
	"strings"

	"github.com/tidings/tidings"
)

// Cross-origin requests (CORS). A web app served from another origin than
// the API's calls it with a bearer token, never with cookies, so allowing
// an origin lets its pages send requests they could not make otherwise
// but gives them no credential they did not already hold.

// corsMaxAge is how long (seconds) a browser may reuse a preflight answer.
const corsMaxAge = "600"

// originAllowed says whether pages of origin may call the API: origins
// listed in AllowedOrigins, or any with "*". Without a list, none (pages
// served by the server itself are same-origin and need no permission).
func (s *Server) originAllowed(origin string) bool {
	for _, o := range s.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// cors answers preflight requests and marks the responses to allowed
// origins as readable by them.
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		allowed := s.originAllowed(origin)
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if preflight {
			infoFromContext(r.Context()).route = "preflight"
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if !allowed {
				s.writeError(w, r, tidings.Errorf(tidings.EForbidden,
					"origin %s may not call this API: add it to the server's allowed origins (--allowed-origins)", origin))
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PATCH, DELETE")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", "X-Request-Id, Content-Disposition")
		}
		next.ServeHTTP(w, r)
	})
}
