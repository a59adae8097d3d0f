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

// A page of another site whose name resolves to 127.0.0.1 (DNS rebinding)
// reaches the server from the loopback interface, with its own name as the
// Host and its origin as the Origin: it must not get a token.
func TestDevTokenRefusesOtherHostsAndOrigins(t *testing.T) {
	e := newEnv(t, func(s *Server) { s.DevApp = "acme"; s.AllowedOrigins = []string{"https://app.example", "*"} })
	port := e.srv.URL()[strings.LastIndexByte(e.srv.URL(), ':'):]
	devToken := func(host, origin string) response {
		t.Helper()
		req, err := http.NewRequest("POST", e.srv.URL()+"/v1/dev/token", strings.NewReader(`{"userId":"alice"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		return e.send(req)
	}
	for _, c := range []struct{ host, origin, wantIn string }{
		{"attacker.example", "", `host "attacker.example"`},
		{"attacker.example" + port, "http://attacker.example" + port, "attacker.example"},
		{"localhost.attacker.example" + port, "", "localhost.attacker.example"},
		{"127.0.0.1.attacker.example", "", "127.0.0.1.attacker.example"},
		{"", "http://attacker.example", "http://attacker.example"},
		{"", "null", "null"},
		{"localhost" + port, "https://elsewhere.example", "https://elsewhere.example"}, // "*" does not let any site in
	} {
		resp := devToken(c.host, c.origin)
		if msg := wantError(t, resp, http.StatusForbidden, tidings.EForbidden); !strings.Contains(msg, c.wantIn) {
			t.Errorf("Host %q Origin %q: message %q does not say %q", c.host, c.origin, msg, c.wantIn)
		}
	}
	for _, c := range []struct{ host, origin string }{
		{"", ""},
		{"localhost" + port, "http://localhost" + port},
		{"LOCALHOST", ""},
		{"[::1]" + port, "http://[::1]" + port},
		{"127.0.0.2:1", "http://127.0.0.1:3000"},
		{"", "https://app.example"},
	} {
		if resp := devToken(c.host, c.origin); resp.StatusCode != http.StatusCreated {
			t.Errorf("Host %q Origin %q: %d %s; want 201", c.host, c.origin, resp.StatusCode, resp.body)
		}
	}
}

// GET /v1/dev says whether development sign-in is on for the caller, with
// 200 either way: the page asks it without an error in the console.
func TestDevStatus(t *testing.T) {
	status := func(e *env, host string) string {
		t.Helper()
		req, err := http.NewRequest("GET", e.srv.URL()+"/v1/dev", nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		resp := e.send(req)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /v1/dev = %d %s", resp.StatusCode, resp.body)
		}
		return strings.TrimSpace(string(resp.body))
	}
	if got := status(newEnv(t, nil), ""); got != `{"dev":false}` {
		t.Errorf("dev mode off: %s", got)
	}
	on := newEnv(t, func(s *Server) { s.DevApp = "acme" })
	if got := status(on, ""); got != `{"dev":true}` {
		t.Errorf("dev mode on: %s", got)
	}
	if got := status(on, "attacker.example"); got != `{"dev":false}` {
		t.Errorf("dev mode on, at another host: %s", got)
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
