package http_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/token"
)

// A web app on another origin calls the API with a user's token once its
// origin is allowed; other origins are refused at the preflight, and their
// pages cannot read answers.
func TestCrossOriginRequests(t *testing.T) {
	s, _ := startStack(t, stackOptions{origins: []string{"https://app.example.com"}})
	apps := s.Apps.(*sqlite.AppService)
	ctx := context.Background()
	app, err := apps.CreateApp(ctx, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Users.CreateUser(tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: app.ID, Server: true}), &tidings.User{ID: "alice"}); err != nil {
		t.Fatal(err)
	}
	tok, _, err := token.Mint(app, "alice", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	do := func(method, origin string, header map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL()+"/v1/me", nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	preflight := map[string]string{"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
	auth := map[string]string{"Authorization": "Bearer " + tok}

	// The allowed origin: the preflight grants the method and the headers
	// the SDK sends, and the answer is readable by its pages.
	resp := do("OPTIONS", "https://app.example.com", preflight)
	if resp.StatusCode != http.StatusNoContent ||
		resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		resp.Header.Get("Access-Control-Allow-Headers") != "Authorization, Content-Type" ||
		resp.Header.Get("Access-Control-Allow-Methods") == "" {
		t.Fatalf("preflight from the allowed origin: %d %v", resp.StatusCode, resp.Header)
	}
	resp = do("GET", "https://app.example.com", auth)
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		resp.Header.Get("Access-Control-Expose-Headers") == "" {
		t.Fatalf("GET from the allowed origin: %d %v", resp.StatusCode, resp.Header)
	}

	// Another origin: refused at the preflight, and nothing marks an
	// answer as readable by it.
	resp = do("OPTIONS", "https://evil.example.net", preflight)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: %d %v", resp.StatusCode, resp.Header)
	}
	resp = do("GET", "https://evil.example.net", auth)
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("GET from another origin is readable by it: %v", resp.Header)
	}

	// Clients that are not browsers send no Origin and see no CORS headers.
	if resp = do("GET", "", auth); resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("GET without an origin: %d %v", resp.StatusCode, resp.Header)
	}
}

// Without a list, no other origin may call the API.
func TestCrossOriginRefusedByDefault(t *testing.T) {
	s, _ := startStack(t, stackOptions{})
	req, _ := http.NewRequest("OPTIONS", s.URL()+"/v1/conversations", nil)
	req.Header.Set("Origin", "https://app.example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight with no allowed origins: %d %v", resp.StatusCode, resp.Header)
	}
}
