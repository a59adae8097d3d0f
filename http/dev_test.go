package http

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tidings/tidings"
)

func TestDevTokenIsOffByDefault(t *testing.T) {
	e := newEnv(t, nil)
	resp := e.do("POST", "/v1/dev/token", map[string]any{"userId": "alice"})
	wantError(t, resp, http.StatusNotFound, tidings.ENotFound)
}

func TestDevTokenSignsInByName(t *testing.T) {
	e := newEnv(t, func(s *Server) { s.DevApp = "acme" })

	// An existing user gets a token, which works as a user token.
	resp := e.do("POST", "/v1/dev/token", map[string]any{"userId": "alice"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/dev/token for alice = %d %s", resp.StatusCode, resp.body)
	}
	var tok tokenResponse
	if err := json.Unmarshal(resp.body, &tok); err != nil || tok.Token == "" || tok.UserID != "alice" {
		t.Fatalf("answer %s: %v", resp.body, err)
	}
	me := e.do("GET", "/v1/me", nil, bearerHeader(tok.Token)...)
	if me.StatusCode != http.StatusOK || !strings.Contains(string(me.body), `"displayName":"Alice"`) {
		t.Fatalf("GET /v1/me with the dev token = %d %s", me.StatusCode, me.body)
	}

	// A new user is created, with the name given.
	resp = e.do("POST", "/v1/dev/token", map[string]any{"userId": "dave", "displayName": "Dave"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/dev/token for a new user = %d %s", resp.StatusCode, resp.body)
	}
	if err := json.Unmarshal(resp.body, &tok); err != nil {
		t.Fatal(err)
	}
	me = e.do("GET", "/v1/me", nil, bearerHeader(tok.Token)...)
	if me.StatusCode != http.StatusOK || !strings.Contains(string(me.body), `"displayName":"Dave"`) {
		t.Fatalf("GET /v1/me as the new user = %d %s", me.StatusCode, me.body)
	}

	// A bad id is refused as for POST /v1/users.
	resp = e.do("POST", "/v1/dev/token", map[string]any{"userId": ""})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("POST /v1/dev/token without a user id = %d %s", resp.StatusCode, resp.body)
	}
}

func TestDevTokenOnlyFromLoopback(t *testing.T) {
	s := NewServer()
	s.DevApp = "default"
	req := httptest.NewRequest("POST", "/v1/dev/token", strings.NewReader(`{"userId":"alice"}`))
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = "192.0.2.7:40000"
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), `"forbidden"`) {
		t.Fatalf("dev token from another host = %d %s; want 403 forbidden", rec.Code, rec.Body)
	}
}

func TestWebServesPagesOutsideTheAPI(t *testing.T) {
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("page " + r.URL.Path))
	})
	e := newEnv(t, func(s *Server) { s.Web = page })
	if resp := e.do("GET", "/", nil); resp.StatusCode != 200 || string(resp.body) != "page /" {
		t.Errorf("GET / = %d %q", resp.StatusCode, resp.body)
	}
	if resp := e.do("GET", "/sdk/tidings.js", nil); string(resp.body) != "page /sdk/tidings.js" {
		t.Errorf("GET /sdk/tidings.js = %d %q", resp.StatusCode, resp.body)
	}
	// The API keeps its own answers: routes, JSON 404s and 405s.
	if resp := e.do("GET", "/healthz", nil); resp.StatusCode != 200 || strings.HasPrefix(string(resp.body), "page") {
		t.Errorf("GET /healthz = %d %q", resp.StatusCode, resp.body)
	}
	wantError(t, e.do("GET", "/v1/nothing", nil), http.StatusNotFound, tidings.ENotFound)
	wantError(t, e.do("POST", "/", nil), http.StatusNotFound, tidings.ENotFound)
	wantError(t, e.do("PUT", "/v1/me", nil), http.StatusMethodNotAllowed, tidings.EMethodNotAllowed)
}
