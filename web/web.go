// Package web serves the web chat page of Tidings and the browser SDK,
// both embedded in the binary:
//
//	/                  the chat page (index.html, app.js, app.css)
//	/sdk/tidings.js    the browser SDK, an ES module without dependencies
//	/sdk/tidings.d.ts  its TypeScript declarations
//	/sw.js             the service worker of Web Push notifications
//
// The page talks to the API of the server that serves it, so it needs no
// configuration; the SDK may also be loaded by pages of other origins.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// pageCSP is the Content-Security-Policy of the chat page: scripts,
// styles and connections to its own origin only (a WebSocket to the same
// host included); images from its origin and from the blob: URLs the page
// makes of downloaded attachments.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " +
	"connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
	page        bool // an HTML page, served with pageCSP
	public      bool // may be loaded by pages of any origin (the SDK)
}

// paths maps the URL paths served to the embedded files.
var paths = map[string]string{
	"/":                 "static/index.html",
	"/app.js":           "static/app.js",
	"/app.css":          "static/app.css",
	"/favicon.svg":      "static/favicon.svg",
	"/sdk/tidings.js":   "static/tidings.js",
	"/sdk/tidings.d.ts": "static/tidings.d.ts",
	"/sw.js":            "static/sw.js",
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".ts":   "application/typescript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// Handler returns the handler of the page and the SDK. It answers GET and
// HEAD requests for the paths above, with an ETag so that browsers
// revalidate instead of downloading again, and 404 for any other path.
func Handler() http.Handler {
	assets := make(map[string]*asset, len(paths))
	for p, file := range paths {
		b, err := fs.ReadFile(static, file)
		if err != nil {
			panic("web: missing embedded file " + file) // a build mistake, caught by the tests
		}
		sum := sha256.Sum256(b)
		ext := file[strings.LastIndexByte(file, '.'):]
		assets[p] = &asset{
			body:        b,
			contentType: contentTypes[ext],
			etag:        `"` + hex.EncodeToString(sum[:12]) + `"`,
			page:        ext == ".html",
			public:      strings.HasPrefix(p, "/sdk/"),
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := assets[r.URL.Path]
		if !ok && r.URL.Path == "/index.html" {
			a, ok = assets["/"], true
		}
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"no such page"}}` + "\n"))
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("ETag", a.etag)
		// Stable paths: always revalidate, which the ETag makes cheap.
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		if a.page {
			h.Set("Content-Security-Policy", pageCSP)
			h.Set("X-Frame-Options", "DENY")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("Cross-Origin-Opener-Policy", "same-origin")
		} else {
			h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		}
		if a.public {
			h.Set("Access-Control-Allow-Origin", "*")
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}
