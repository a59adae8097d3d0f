package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

func TestHealthzAndReadyz(t *testing.T) {
	ready := errors.New("database is not reachable")
	e := newEnv(t, func(s *Server) {
		s.Ready = func(context.Context) error { return ready }
	})

	resp := e.do("GET", "/healthz", nil)
	if resp.StatusCode != 200 || strings.TrimSpace(string(resp.body)) != `{"status":"ok"}` {
		t.Errorf("healthz = %d %s", resp.StatusCode, resp.body)
	}

	resp = e.do("GET", "/readyz", nil)
	msg := wantError(t, resp, 503, tidings.EUnavailable)
	if strings.Contains(msg, "database") {
		t.Errorf("readyz leaks the internal error: %q", msg)
	}
	if !strings.Contains(e.logs.String(), "database is not reachable") {
		t.Error("the reason for not being ready is not logged")
	}

	ready = nil
	if resp := e.do("GET", "/readyz", nil); resp.StatusCode != 200 {
		t.Errorf("readyz when ready = %d %s", resp.StatusCode, resp.body)
	}
}

func TestUnknownPathIsJSON404(t *testing.T) {
	e := newEnv(t, nil)
	for _, path := range []string{"/", "/v1/nope", "/v1/users/alice/nope", "/v2/users"} {
		resp := e.do("GET", path, nil, bearerHeader(e.acme.ServerKey)...)
		wantError(t, resp, 404, tidings.ENotFound)
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff header", path)
		}
	}
}

func TestWrongMethodIsJSON405(t *testing.T) {
	e := newEnv(t, nil)
	resp := e.do("PUT", "/v1/users", "{}", bearerHeader(e.acme.ServerKey)...)
	wantError(t, resp, 405, tidings.EMethodNotAllowed)
	allow := resp.Header.Get("Allow")
	for _, m := range []string{"GET", "POST"} {
		if !strings.Contains(allow, m) {
			t.Errorf("Allow = %q; want it to list %s", allow, m)
		}
	}

	resp = e.do("DELETE", "/healthz", nil)
	wantError(t, resp, 405, tidings.EMethodNotAllowed)
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.tokenFor(e.acme, "alice")

	t.Run("missing", func(t *testing.T) {
		resp := e.do("GET", "/v1/me", nil)
		wantError(t, resp, 401, tidings.EUnauthenticated)
		if got := resp.Header.Get("WWW-Authenticate"); got != "Bearer" {
			t.Errorf("WWW-Authenticate = %q; want Bearer", got)
		}
	})
	t.Run("not bearer", func(t *testing.T) {
		resp := e.do("GET", "/v1/me", nil, "Authorization", "Basic YWxpY2U6cHc=")
		wantError(t, resp, 401, tidings.EUnauthenticated)
		if resp.Header.Get("WWW-Authenticate") != "Bearer" {
			t.Error("no WWW-Authenticate header")
		}
	})
	t.Run("empty bearer", func(t *testing.T) {
		wantError(t, e.do("GET", "/v1/me", nil, "Authorization", "Bearer "), 401, tidings.EUnauthenticated)
	})
	t.Run("bad server key", func(t *testing.T) {
		msg := wantError(t, e.do("GET", "/v1/users", nil, bearerHeader("tsk_wrong")...), 401, tidings.EUnauthenticated)
		if strings.Contains(msg, "tsk_wrong") {
			t.Errorf("message %q echoes the key", msg)
		}
	})
	t.Run("garbage token", func(t *testing.T) {
		wantError(t, e.do("GET", "/v1/me", nil, bearerHeader("abc.def.ghi")...), 401, tidings.EUnauthenticated)
	})
	t.Run("token in the URL is ignored", func(t *testing.T) {
		wantError(t, e.do("GET", "/v1/me?access_token="+alice+"&token="+alice, nil), 401, tidings.EUnauthenticated)
	})
	t.Run("case-insensitive scheme", func(t *testing.T) {
		if resp := e.do("GET", "/v1/me", nil, "Authorization", "bearer "+alice); resp.StatusCode != 200 {
			t.Errorf("status = %d %s", resp.StatusCode, resp.body)
		}
	})
	t.Run("user token", func(t *testing.T) {
		resp := e.do("GET", "/v1/me", nil, bearerHeader(alice)...)
		if resp.StatusCode != 200 {
			t.Fatalf("status = %d %s", resp.StatusCode, resp.body)
		}
		var u tidings.User
		if err := json.Unmarshal(resp.body, &u); err != nil || u.ID != "alice" {
			t.Errorf("GET /v1/me = %s (%v); want alice", resp.body, err)
		}
	})
	t.Run("expired token", func(t *testing.T) {
		e.setClock(2 * time.Hour)
		defer e.setClock(0)
		msg := wantError(t, e.do("GET", "/v1/me", nil, bearerHeader(alice)...), 401, tidings.EUnauthenticated)
		if !strings.Contains(msg, "expired") {
			t.Errorf("message = %q; want it to say the token expired", msg)
		}
	})
	t.Run("token of a deleted user", func(t *testing.T) {
		e.users.add("acme", &tidings.User{ID: "dave"})
		tok := e.tokenFor(e.acme, "dave")
		if resp := e.do("GET", "/v1/me", nil, bearerHeader(tok)...); resp.StatusCode != 200 {
			t.Fatalf("status = %d before deletion", resp.StatusCode)
		}
		e.users.delete("acme", "dave")
		wantError(t, e.do("GET", "/v1/me", nil, bearerHeader(tok)...), 401, tidings.EUnauthenticated)
	})
	t.Run("token signed with another app's secret", func(t *testing.T) {
		forged := e.tokenFor(&tidings.App{ID: "acme", SigningSecret: e.other.SigningSecret}, "alice")
		wantError(t, e.do("GET", "/v1/me", nil, bearerHeader(forged)...), 401, tidings.EUnauthenticated)
	})
}

func TestCredentialKindPerRoute(t *testing.T) {
	e := newEnv(t, nil)
	alice := bearerHeader(e.tokenFor(e.acme, "alice"))
	server := bearerHeader(e.acme.ServerKey)

	// The server key cannot call user routes.
	for _, rt := range []struct{ method, path string }{
		{"GET", "/v1/me"},
		{"POST", "/v1/conversations/c1/read"},
	} {
		msg := wantError(t, e.do(rt.method, rt.path, nil, server...), 403, tidings.EForbidden)
		if !strings.Contains(msg, "user access token") {
			t.Errorf("%s %s: message %q does not say a user access token is needed", rt.method, rt.path, msg)
		}
	}
	// User tokens cannot call server routes.
	for _, rt := range []struct{ method, path string }{
		{"GET", "/v1/users"},
		{"POST", "/v1/users"},
		{"POST", "/v1/users/alice/tokens"},
	} {
		msg := wantError(t, e.do(rt.method, rt.path, nil, alice...), 403, tidings.EForbidden)
		if !strings.Contains(msg, "server key") {
			t.Errorf("%s %s: message %q does not say the server key is needed", rt.method, rt.path, msg)
		}
	}
	// Both may read a user; a user may update only their own profile.
	for _, h := range [][]string{server, alice} {
		if resp := e.do("GET", "/v1/users/bob", nil, h...); resp.StatusCode != 200 {
			t.Errorf("GET /v1/users/bob = %d %s", resp.StatusCode, resp.body)
		}
	}
	wantError(t, e.do("PATCH", "/v1/users/bob", `{"displayName":"Bobby"}`, alice...), 403, tidings.EForbidden)
	if resp := e.do("PATCH", "/v1/users/alice", `{"displayName":"Alicia"}`, alice...); resp.StatusCode != 200 {
		t.Errorf("PATCH own profile = %d %s", resp.StatusCode, resp.body)
	}
	if resp := e.do("PATCH", "/v1/users/bob", `{"displayName":"Bobby"}`, server...); resp.StatusCode != 200 {
		t.Errorf("PATCH by server = %d %s", resp.StatusCode, resp.body)
	}
}

func TestStrictJSON(t *testing.T) {
	e := newEnv(t, func(s *Server) { s.MaxBodyBytes = 1000 })
	server := bearerHeader(e.acme.ServerKey)
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
		mention    string // a word the message must contain
	}{
		{"unknown field", `{"id":"u1","nickname":"x"}`, 400, tidings.EInvalidJSON, "nickname"},
		{"server-set field", `{"id":"u1","createdAt":"2024-01-01T00:00:00Z"}`, 400, tidings.EInvalidJSON, "createdAt"},
		{"wrong type", `{"id":"u1","displayName":42}`, 400, tidings.EInvalidJSON, "displayName"},
		{"wrong nested type", `{"id":"u1","identifier":{"value":1,"kind":"email"}}`, 400, tidings.EInvalidJSON, "identifier.value"},
		{"not an object", `["u1"]`, 400, tidings.EInvalidJSON, "object"},
		{"syntax error", `{"id":"u1",}`, 400, tidings.EInvalidJSON, "valid JSON"},
		{"truncated", `{"id":"u1"`, 400, tidings.EInvalidJSON, "valid JSON"},
		{"trailing data", `{"id":"u1"} x`, 400, tidings.EInvalidJSON, "single JSON value"},
		{"two values", `{"id":"u1"}{"id":"u2"}`, 400, tidings.EInvalidJSON, "single JSON value"},
		{"empty", ``, 400, tidings.EInvalidJSON, "empty"},
		{"too large", `{"id":"u1","displayName":"` + strings.Repeat("x", 1000) + `"}`, 413, tidings.ETooLarge, "1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := wantError(t, e.do("POST", "/v1/users", tc.body, server...), tc.status, tc.code)
			if !strings.Contains(msg, tc.mention) {
				t.Errorf("message = %q; want it to mention %q", msg, tc.mention)
			}
		})
	}
	if _, ok := e.users.users["acme"]["u1"]; ok {
		t.Error("a rejected request created a user")
	}

	t.Run("too large without Content-Length", func(t *testing.T) {
		body := `{"id":"u1","displayName":"` + strings.Repeat("x", 5000) + `"}`
		req, _ := http.NewRequest("POST", e.srv.URL()+"/v1/users", io.MultiReader(strings.NewReader(body)))
		req.ContentLength = -1 // chunked
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+e.acme.ServerKey)
		wantError(t, e.send(req), 413, tidings.ETooLarge)
	})
	t.Run("content type", func(t *testing.T) {
		for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1", "nonsense/"} {
			req, _ := http.NewRequest("POST", e.srv.URL()+"/v1/users", strings.NewReader(`{"id":"u2"}`))
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			req.Header.Set("Authorization", "Bearer "+e.acme.ServerKey)
			wantError(t, e.send(req), 415, tidings.EUnsupportedType)
		}
		resp := e.do("POST", "/v1/users", `{"id":"u3"}`, append(server, "Content-Type", "application/json; charset=UTF-8")...)
		if resp.StatusCode != 201 {
			t.Errorf("charset=UTF-8: status = %d %s", resp.StatusCode, resp.body)
		}
	})
	t.Run("valid", func(t *testing.T) {
		resp := e.do("POST", "/v1/users", `{"id":"u4","displayName":"U Four","identifier":{"value":"u4@example.com","kind":"email"},"metadata":{"plan":"pro"}}`, server...)
		if resp.StatusCode != 201 {
			t.Fatalf("status = %d %s", resp.StatusCode, resp.body)
		}
		var u tidings.User
		if err := json.Unmarshal(resp.body, &u); err != nil {
			t.Fatal(err)
		}
		if u.ID != "u4" || u.DisplayName != "U Four" || u.Identifier == nil || u.Identifier.Kind != "email" || string(u.Metadata) != `{"plan":"pro"}` {
			t.Errorf("created user = %+v", u)
		}
	})
	t.Run("optional body may be empty", func(t *testing.T) {
		resp := e.do("POST", "/v1/users/alice/tokens", nil, server...)
		if resp.StatusCode != 201 {
			t.Errorf("status = %d %s", resp.StatusCode, resp.body)
		}
	})
}

func TestErrorCodesMapToStatuses(t *testing.T) {
	e := newEnv(t, nil)
	alice := bearerHeader(e.tokenFor(e.acme, "alice"))
	for code, status := range map[string]int{
		tidings.EInvalid:          400,
		tidings.EInvalidJSON:      400,
		tidings.ETooLarge:         413,
		tidings.EUnauthenticated:  401,
		tidings.EForbidden:        403,
		tidings.ENotFound:         404,
		tidings.EConflict:         409,
		tidings.EUnsupportedType:  415,
		tidings.EMethodNotAllowed: 405,
		tidings.ERateLimited:      429,
		tidings.EUnavailable:      503,
	} {
		e.convs.setErr(tidings.Errorf(code, "the %s message", code))
		resp := e.do("GET", "/v1/conversations/c1", nil, alice...)
		if msg := wantError(t, resp, status, code); msg != "the "+code+" message" {
			t.Errorf("%s: message = %q; want the service's message", code, msg)
		}
	}

	// Errors that are not *tidings.Error, and internal ones, are logged
	// and hidden behind a generic message.
	for _, err := range []error{
		errors.New("sql: connection to /var/lib/secret.db refused"),
		tidings.Errorf(tidings.EInternal, "sql: connection to /var/lib/secret.db refused"),
		tidings.Errorf("no_such_code", "sql: connection to /var/lib/secret.db refused"),
	} {
		e.convs.setErr(err)
		resp := e.do("GET", "/v1/conversations/c1", nil, alice...)
		msg := wantError(t, resp, 500, tidings.EInternal)
		if strings.Contains(msg, "secret") {
			t.Errorf("message %q leaks the internal error", msg)
		}
		id := resp.Header.Get("X-Request-Id")
		found := false
		for _, l := range e.logs.lines(t) {
			if msg, _ := l["err"].(string); l["request_id"] == id && strings.Contains(msg, "secret.db") {
				found = true
			}
		}
		if !found {
			t.Errorf("internal error %v not logged with request id %q", err, id)
		}
	}
}

func TestPanicIsRecovered(t *testing.T) {
	e := newEnv(t, nil)
	alice := bearerHeader(e.tokenFor(e.acme, "alice"))
	resp := e.do("GET", "/v1/conversations/c1/messages/m1", nil, alice...)
	wantError(t, resp, 500, tidings.EInternal)
	if !strings.Contains(e.logs.String(), "boom: a bug in the service") {
		t.Error("panic not logged")
	}
	// The server keeps serving.
	if resp := e.do("GET", "/healthz", nil); resp.StatusCode != 200 {
		t.Errorf("healthz after panic = %d", resp.StatusCode)
	}
}

func TestQueryParameters(t *testing.T) {
	e := newEnv(t, nil)
	alice := bearerHeader(e.tokenFor(e.acme, "alice"))
	for _, path := range []string{
		"/v1/conversations?limit=abc",
		"/v1/conversations?limit=-1",
		"/v1/conversations?limit=0",
		"/v1/conversations?limit=201",
		"/v1/conversations?includeDeleted=maybe",
		"/v1/conversations/c1/messages?before=x",
		"/v1/conversations/c1/messages?before=0",
		"/v1/conversations/c1/messages?after=-5",
		"/v1/conversations/c1/messages?before=10&after=2",
		"/v1/conversations/c1/messages?limit=1.5",
	} {
		wantError(t, e.do("GET", path, nil, alice...), 400, tidings.EInvalid)
	}
	wantError(t, e.do("GET", "/v1/users?limit=x", nil, bearerHeader(e.acme.ServerKey)...), 400, tidings.EInvalid)

	// Good parameters reach the service.
	if resp := e.do("GET", "/v1/conversations?limit=7&cursor=abc&includeDeleted=true", nil, alice...); resp.StatusCode != 200 {
		t.Fatalf("status = %d %s", resp.StatusCode, resp.body)
	} else if strings.TrimSpace(string(resp.body)) != `{"conversations":[]}` {
		t.Errorf("empty page = %s; want an empty array, not null", resp.body)
	}
	if got, want := e.convs.lastFilter(), (tidings.ConversationFilter{Cursor: "abc", Limit: 7, IncludeDeleted: true}); got != want {
		t.Errorf("filter = %+v; want %+v", got, want)
	}

	for _, tc := range []struct {
		query         string
		before, after int64 // -1: nil
		limit         int
	}{
		{"", -1, -1, 50},
		{"?before=10&limit=5", 10, -1, 5},
		{"?after=0", -1, 0, 50},
		{"?after=3&limit=200", -1, 3, 200},
	} {
		if resp := e.do("GET", "/v1/conversations/c1/messages"+tc.query, nil, alice...); resp.StatusCode != 200 {
			t.Fatalf("%s: status = %d %s", tc.query, resp.StatusCode, resp.body)
		}
		f := e.msgs.lastFilter()
		if !sameSeq(f.Before, tc.before) || !sameSeq(f.After, tc.after) || f.Limit != tc.limit {
			t.Errorf("%s: filter = before %v after %v limit %d", tc.query, f.Before, f.After, f.Limit)
		}
	}
}

func sameSeq(p *int64, want int64) bool {
	if want < 0 {
		return p == nil
	}
	return p != nil && *p == want
}

func TestListUsersPaging(t *testing.T) {
	e := newEnv(t, nil)
	server := bearerHeader(e.acme.ServerKey)
	var page userPage
	resp := e.do("GET", "/v1/users?limit=1", nil, server...)
	if err := json.Unmarshal(resp.body, &page); err != nil || len(page.Users) != 1 || page.Users[0].ID != "alice" || page.NextAfter != "alice" {
		t.Fatalf("first page = %s", resp.body)
	}
	resp = e.do("GET", "/v1/users?limit=1&after=alice", nil, server...)
	page = userPage{}
	if err := json.Unmarshal(resp.body, &page); err != nil || len(page.Users) != 1 || page.Users[0].ID != "bob" || page.NextAfter != "bob" {
		t.Fatalf("second page = %s", resp.body)
	}
	resp = e.do("GET", "/v1/users?limit=1&after=bob", nil, server...)
	if strings.TrimSpace(string(resp.body)) != `{"users":[]}` {
		t.Errorf("last page = %s; want no users and no nextAfter", resp.body)
	}
	resp = e.do("GET", "/v1/users", nil, server...)
	page = userPage{}
	if err := json.Unmarshal(resp.body, &page); err != nil || len(page.Users) != 2 || page.NextAfter != "" {
		t.Errorf("partial page = %s; want 2 users and no nextAfter", resp.body)
	}
}

func TestMintTokenEndpoint(t *testing.T) {
	e := newEnv(t, func(s *Server) { s.MaxTokenTTL = time.Hour })
	server := bearerHeader(e.acme.ServerKey)

	resp := e.do("POST", "/v1/users/bob/tokens", `{"ttlSeconds":600}`, server...)
	if resp.StatusCode != 201 {
		t.Fatalf("status = %d %s", resp.StatusCode, resp.body)
	}
	var tr tokenResponse
	if err := json.Unmarshal(resp.body, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.UserID != "bob" || tr.Token == "" {
		t.Errorf("response = %s", resp.body)
	}
	if want := testNow.Add(10 * time.Minute); tr.ExpiresAt.Sub(want).Abs() > time.Second {
		t.Errorf("expiresAt = %v; want %v", tr.ExpiresAt, want)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Error("token response may be cached")
	}
	// The token works, for bob.
	me := e.do("GET", "/v1/me", nil, bearerHeader(tr.Token)...)
	var u tidings.User
	if err := json.Unmarshal(me.body, &u); err != nil || u.ID != "bob" {
		t.Errorf("GET /v1/me with minted token = %d %s", me.StatusCode, me.body)
	}

	// The default lifetime is MaxTokenTTL.
	resp = e.do("POST", "/v1/users/bob/tokens", nil, server...)
	tr = tokenResponse{}
	if err := json.Unmarshal(resp.body, &tr); err != nil || tr.ExpiresAt.Sub(testNow.Add(time.Hour)).Abs() > time.Second {
		t.Errorf("default ttl: %s", resp.body)
	}

	for _, body := range []string{`{"ttlSeconds":3601}`, `{"ttlSeconds":0}`, `{"ttlSeconds":-5}`} {
		wantError(t, e.do("POST", "/v1/users/bob/tokens", body, server...), 400, tidings.EInvalid)
	}
	wantError(t, e.do("POST", "/v1/users/bob/tokens", `{"ttlSeconds":"60"}`, server...), 400, tidings.EInvalidJSON)
	wantError(t, e.do("POST", "/v1/users/nobody/tokens", nil, server...), 404, tidings.ENotFound)
	// Another app's user is unknown to this app.
	wantError(t, e.do("POST", "/v1/users/carol/tokens", nil, server...), 404, tidings.ENotFound)
}

func TestNoCredentialsInLogs(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.tokenFor(e.acme, "alice")
	expired := e.tokenFor(&tidings.App{ID: "acme", SigningSecret: "wrong"}, "alice")
	minted := e.do("POST", "/v1/users/alice/tokens", nil, bearerHeader(e.acme.ServerKey)...)
	var tr tokenResponse
	_ = json.Unmarshal(minted.body, &tr)

	e.do("GET", "/v1/me", nil, bearerHeader(alice)...)
	e.do("GET", "/v1/me", nil, bearerHeader(expired)...)
	e.do("GET", "/v1/users", nil, bearerHeader("tsk_not_a_key")...)
	e.do("GET", "/v1/users/alice", nil, bearerHeader(e.acme.ServerKey)...)
	e.convs.setErr(errors.New("boom"))
	e.do("GET", "/v1/conversations/c1", nil, bearerHeader(alice)...)

	logs := e.logs.String()
	for _, secret := range []string{alice, expired, tr.Token, e.acme.ServerKey, "tsk_not_a_key", e.acme.SigningSecret, "Bearer"} {
		if secret != "" && strings.Contains(logs, secret) {
			t.Errorf("logs contain a credential %q", secret[:min(len(secret), 12)])
		}
	}

	// The access log has one line per request, with the route pattern,
	// status and app.
	var access []map[string]any
	for _, l := range e.logs.lines(t) {
		if l["msg"] == "request" {
			access = append(access, l)
		}
	}
	if len(access) != 6 {
		t.Fatalf("%d access log lines; want 6", len(access))
	}
	last := access[4] // GET /v1/users/alice
	if last["route"] != "/v1/users/{userId}" || last["status"] != float64(200) || last["app"] != "acme" || last["method"] != "GET" {
		t.Errorf("access log line = %v", last)
	}
	if _, ok := last["duration"]; !ok {
		t.Error("no duration in the access log")
	}
}

func TestRequestID(t *testing.T) {
	e := newEnv(t, nil)
	resp := e.do("GET", "/healthz", nil, "X-Request-Id", "client-chosen.id_1")
	if got := resp.Header.Get("X-Request-Id"); got != "client-chosen.id_1" {
		t.Errorf("X-Request-Id = %q; want the client's", got)
	}
	resp = e.do("GET", "/healthz", nil, "X-Request-Id", "bad id\twith spaces")
	if got := resp.Header.Get("X-Request-Id"); got == "" || strings.Contains(got, " ") {
		t.Errorf("X-Request-Id = %q; want a new, clean one", got)
	}
	a := e.do("GET", "/healthz", nil).Header.Get("X-Request-Id")
	b := e.do("GET", "/healthz", nil).Header.Get("X-Request-Id")
	if a == "" || a == b {
		t.Errorf("request ids %q and %q; want two different ones", a, b)
	}
	if !strings.Contains(e.logs.String(), `"request_id":"client-chosen.id_1"`) {
		t.Error("request id not in the access log")
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, nil)
	server := bearerHeader(e.acme.ServerKey)
	e.do("GET", "/v1/users/alice", nil, server...)
	e.do("GET", "/v1/users/bob", nil, server...)
	e.do("GET", "/v1/users/nobody", nil, server...)
	e.do("GET", "/no/such/path", nil)

	resp := e.do("GET", "/metrics", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("metrics = %d", resp.StatusCode)
	}
	m := string(resp.body)
	for _, want := range []string{
		`tidings_http_requests_total{code="200",method="GET",route="/v1/users/{userId}"} 2`,
		`tidings_http_requests_total{code="404",method="GET",route="/v1/users/{userId}"} 1`,
		`tidings_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`tidings_http_request_duration_seconds_count{method="GET",route="/v1/users/{userId}"} 3`,
		`go_goroutines`,
		`process_`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, raw := range []string{"/v1/users/alice", "nobody", "/no/such/path"} {
		if strings.Contains(m, raw) {
			t.Errorf("metrics contain the raw path %q", raw)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, nil)
	for _, resp := range []response{
		e.do("GET", "/healthz", nil),
		e.do("GET", "/v1/me", nil),
		e.do("GET", "/v1/users/alice", nil, bearerHeader(e.acme.ServerKey)...),
	} {
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no X-Content-Type-Options: nosniff", resp.Request.URL.Path)
		}
		if resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: Content-Type = %q", resp.Request.URL.Path, resp.Header.Get("Content-Type"))
		}
	}
}

func TestSendMessageStatusTellsIfCreated(t *testing.T) {
	e := newEnv(t, nil)
	alice := bearerHeader(e.tokenFor(e.acme, "alice"))
	body := `{"clientId":"c-1","parts":[{"type":"text/plain","data":"hi"}]}`
	first := e.do("POST", "/v1/conversations/c1/messages", body, alice...)
	if first.StatusCode != 201 {
		t.Fatalf("first send = %d %s", first.StatusCode, first.body)
	}
	again := e.do("POST", "/v1/conversations/c1/messages", body, alice...)
	if again.StatusCode != 200 {
		t.Fatalf("repeated send = %d %s; want 200", again.StatusCode, again.body)
	}
	if !bytes.Equal(first.body, again.body) {
		t.Errorf("repeated send = %s; want the first message %s", again.body, first.body)
	}
}

func TestMarkBody(t *testing.T) {
	e := newEnv(t, nil)
	alice := bearerHeader(e.tokenFor(e.acme, "alice"))
	for body, seq := range map[string]int64{"": 0, `{}`: 0, `{"seq":4}`: 4} {
		var b any
		if body != "" {
			b = body
		}
		resp := e.do("POST", "/v1/conversations/c1/read", b, alice...)
		if got := e.msgs.lastSeq(); resp.StatusCode != 200 || got != seq {
			t.Errorf("body %q: status %d, seq %d; want 200, %d", body, resp.StatusCode, got, seq)
		}
	}
	wantError(t, e.do("POST", "/v1/conversations/c1/read", `{"seq":-1}`, alice...), 400, tidings.EInvalid)
	wantError(t, e.do("POST", "/v1/conversations/c1/read", `{"seq":"last"}`, alice...), 400, tidings.EInvalidJSON)
}

func TestRemovingYourselfIsLeaving(t *testing.T) {
	e := newEnv(t, nil)
	alice := bearerHeader(e.tokenFor(e.acme, "alice"))
	for _, path := range []string{
		"/v1/conversations/c1/participants/alice",
		"/v1/conversations/c1/participants/bob",
	} {
		if resp := e.do("DELETE", path, nil, alice...); resp.StatusCode != 204 || len(resp.body) != 0 {
			t.Errorf("DELETE %s = %d %s", path, resp.StatusCode, resp.body)
		}
	}
	want := []string{"leave c1", "remove c1 bob"}
	if got := e.convs.callList(); !slices.Equal(got, want) {
		t.Errorf("calls = %q; want %q", got, want)
	}

	resp := e.do("GET", "/v1/conversations/c1/participants", nil, alice...)
	if strings.TrimSpace(string(resp.body)) != `{"participants":[]}` {
		t.Errorf("no participants = %s; want an empty array", resp.body)
	}
}

func TestServerLifecycle(t *testing.T) {
	s := NewServer()
	if s.URL() != "" {
		t.Errorf("URL before Open = %q", s.URL())
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown before Open: %v", err)
	}
	s.Addr = "127.0.0.1:0"
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	url := s.URL()
	if !strings.HasPrefix(url, "http://127.0.0.1:") || strings.HasSuffix(url, ":0") {
		t.Errorf("URL = %q", url)
	}
	if err := s.Open(); err == nil {
		t.Error("second Open succeeded")
	}
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(url + "/healthz"); err == nil {
		t.Error("server still answers after Shutdown")
	}
}

func TestShutdownWaitsForRequestsInFlight(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	s := NewServer()
	s.Addr = "127.0.0.1:0"
	s.Ready = func(context.Context) error {
		close(started)
		<-release
		return nil
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	status := make(chan int, 1)
	go func() {
		resp, err := http.Get(s.URL() + "/readyz")
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	<-started

	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := <-status; got != 200 {
		t.Errorf("request in flight got %d; want 200", got)
	}
}
