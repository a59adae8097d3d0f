package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func serve(t *testing.T, method, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	return rec
}

func TestServesEveryAsset(t *testing.T) {
	for path, want := range map[string]string{
		"/":                 "text/html; charset=utf-8",
		"/index.html":       "text/html; charset=utf-8",
		"/app.js":           "text/javascript; charset=utf-8",
		"/app.css":          "text/css; charset=utf-8",
		"/favicon.svg":      "image/svg+xml",
		"/sdk/tidings.js":   "text/javascript; charset=utf-8",
		"/sdk/tidings.d.ts": "application/typescript; charset=utf-8",
	} {
		rec := serve(t, "GET", path)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != want || rec.Body.Len() == 0 {
			t.Errorf("GET %s = %d %q (%d bytes); want 200 %q", path, rec.Code, rec.Header().Get("Content-Type"), rec.Body.Len(), want)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options: nosniff", path)
		}
	}
}

func TestPageHasAStrictPolicy(t *testing.T) {
	h := serve(t, "GET", "/").Header()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("the page's CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("the page's CSP allows unsafe sources: %q", csp)
	}
	if h.Get("X-Frame-Options") != "DENY" {
		t.Errorf("X-Frame-Options = %q", h.Get("X-Frame-Options"))
	}
	// The SDK may be loaded by the pages of other origins; the page itself not.
	if got := serve(t, "GET", "/sdk/tidings.js").Header().Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("SDK Access-Control-Allow-Origin = %q", got)
	}
	if got := h.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("page Access-Control-Allow-Origin = %q", got)
	}
}

func TestRevalidatesWithETags(t *testing.T) {
	first := serve(t, "GET", "/sdk/tidings.js")
	etag := first.Header().Get("ETag")
	if etag == "" || first.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q", etag, first.Header().Get("Cache-Control"))
	}
	again := serve(t, "GET", "/sdk/tidings.js", "If-None-Match", etag)
	if again.Code != http.StatusNotModified || again.Body.Len() != 0 {
		t.Errorf("GET with the ETag = %d (%d bytes); want 304", again.Code, again.Body.Len())
	}
	if other := serve(t, "GET", "/app.js").Header().Get("ETag"); other == etag {
		t.Errorf("two files share the ETag %s", etag)
	}
	head := serve(t, "HEAD", "/")
	if head.Code != http.StatusOK || head.Body.Len() != 0 {
		t.Errorf("HEAD / = %d (%d bytes)", head.Code, head.Body.Len())
	}
}

func TestUnknownPathsAreNotFound(t *testing.T) {
	for _, path := range []string{"/nope", "/sdk/", "/static/app.js", "/app.js/x"} {
		rec := serve(t, "GET", path)
		if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), `"not_found"`) {
			t.Errorf("GET %s = %d %s", path, rec.Code, rec.Body)
		}
	}
}

// The page and the SDK name each other by paths the handler serves.
func TestPageReferencesResolve(t *testing.T) {
	page := serve(t, "GET", "/").Body.String()
	for _, ref := range []string{`href="app.css"`, `src="app.js"`, `href="favicon.svg"`} {
		if !strings.Contains(page, ref) {
			t.Errorf("index.html lacks %s", ref)
		}
	}
	if app := serve(t, "GET", "/app.js").Body.String(); !strings.Contains(app, `from './sdk/tidings.js'`) {
		t.Error("app.js does not import ./sdk/tidings.js")
	}
}
