package http

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tidings/tidings"
)

// upload sends content as a file named name with the given Content-Type
// ("" for none).
func (e *env) upload(cred, name, contentType string, content io.Reader, length int64) response {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.srv.URL()+"/v1/conversations/c1/files?name="+name, content)
	if err != nil {
		e.t.Fatal(err)
	}
	req.ContentLength = length
	req.Header.Set("Authorization", "Bearer "+cred)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return e.send(req)
}

func TestUploadAndDownload(t *testing.T) {
	e := newEnv(t, func(s *Server) { s.MaxFileBytes = 1000 })
	alice := e.tokenFor(e.acme, "alice")
	content := []byte("\x89PNG not really a picture")

	resp := e.upload(alice, "r%C3%A9sum%C3%A9%20%22final%22.png", "image/png", bytes.NewReader(content), int64(len(content)))
	if resp.StatusCode != 201 {
		t.Fatalf("upload = %d %s", resp.StatusCode, resp.body)
	}
	var f tidings.File
	if err := json.Unmarshal(resp.body, &f); err != nil {
		t.Fatal(err)
	}
	if f.Name != `résumé "final".png` || f.Type != "image/png" || f.Size != int64(len(content)) || f.UploaderID != "alice" {
		t.Errorf("file = %+v", f)
	}

	resp = e.do("GET", "/v1/conversations/c1/files/"+f.ID, nil, bearerHeader(alice)...)
	if resp.StatusCode != 200 {
		t.Fatalf("download = %d %s", resp.StatusCode, resp.body)
	}
	if !bytes.Equal(resp.body, content) {
		t.Errorf("downloaded %q; want %q", resp.body, content)
	}
	h := resp.Header
	if h.Get("Content-Type") != "image/png" || h.Get("Content-Length") != strconv.Itoa(len(content)) || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers = %v", h)
	}
	disp, params, err := mime.ParseMediaType(h.Get("Content-Disposition"))
	if err != nil || disp != "attachment" {
		t.Fatalf("Content-Disposition = %q (%v)", h.Get("Content-Disposition"), err)
	}
	// mime decodes filename* (RFC 2231) into filename.
	if params["filename"] != `résumé "final".png` {
		t.Errorf("Content-Disposition filename = %q", params["filename"])
	}

	wantError(t, e.do("GET", "/v1/conversations/c1/files/nope", nil, bearerHeader(alice)...), 404, tidings.ENotFound)
	wantError(t, e.do("GET", "/v1/conversations/c2/files/"+f.ID, nil, bearerHeader(alice)...), 404, tidings.ENotFound)
}

func TestUploadErrors(t *testing.T) {
	e := newEnv(t, func(s *Server) { s.MaxFileBytes = 1000 })
	alice := e.tokenFor(e.acme, "alice")

	wantError(t, e.upload(alice, "a.txt", "not a type", strings.NewReader("hello"), 5), 415, tidings.EUnsupportedType)
	wantError(t, e.upload(alice, "", "text/plain", strings.NewReader("hello"), 5), 400, tidings.EInvalid)
	// A type as long as a part's may be; a longer one is refused.
	long := "text/plain; x=" + strings.Repeat("y", 255-len("text/plain; x="))
	if resp := e.upload(alice, "a.txt", long, strings.NewReader("hello"), 5); resp.StatusCode != 201 {
		t.Errorf("upload with a type of 255 bytes = %d %s", resp.StatusCode, resp.body)
	}
	msg := wantError(t, e.upload(alice, "a.txt", long+"y", strings.NewReader("hello"), 5), 400, tidings.EInvalid)
	if !strings.Contains(msg, "Content-Type") || !strings.Contains(msg, "255") {
		t.Errorf("message %q does not say the Content-Type is too long", msg)
	}
	wantError(t, e.upload(alice, "a.txt", "text/plain; x="+strings.Repeat("y", 100<<10), strings.NewReader("hello"), 5), 400, tidings.EInvalid)

	big := strings.Repeat("x", 1001)
	// Announced as too large: refused before reading.
	wantError(t, e.upload(alice, "big.txt", "text/plain", strings.NewReader(big), 1001), 413, tidings.ETooLarge)
	// Streamed without a length: cut off while reading.
	wantError(t, e.upload(alice, "big.txt", "text/plain", io.MultiReader(strings.NewReader(big)), -1), 413, tidings.ETooLarge)
	if n := e.files.count(); n != 1 {
		t.Errorf("%d files kept after failed uploads; want the 1 that succeeded", n-1)
	}

	// Exactly at the limit is fine.
	if resp := e.upload(alice, "ok.txt", "text/plain; charset=utf-8", strings.NewReader(big[:1000]), -1); resp.StatusCode != 201 {
		t.Errorf("upload at the limit = %d %s", resp.StatusCode, resp.body)
	}
}

func TestContentDisposition(t *testing.T) {
	for name, want := range map[string]string{
		"photo.png":        `attachment; filename="photo.png"; filename*=UTF-8''photo.png`,
		"my photo.png":     `attachment; filename="my photo.png"; filename*=UTF-8''my%20photo.png`,
		`a"b\c.txt`:        `attachment; filename="a_b_c.txt"; filename*=UTF-8''a%22b%5Cc.txt`,
		"naïve.txt":        `attachment; filename="na_ve.txt"; filename*=UTF-8''na%C3%AFve.txt`,
		"x\r\nSet-Cookie:": `attachment; filename="x__Set-Cookie:"; filename*=UTF-8''x%0D%0ASet-Cookie%3A`,
		"":                 `attachment`,
	} {
		if got := contentDisposition(name); got != want {
			t.Errorf("contentDisposition(%q) = %s; want %s", name, got, want)
		}
	}
}

// A file sent without a type, or with the type curl --data-binary gives any
// file, is stored as application/octet-stream.
func TestUploadWithoutAType(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.tokenFor(e.acme, "alice")
	for _, ct := range []string{"", "application/x-www-form-urlencoded"} {
		resp := e.upload(alice, "a.bin", ct, strings.NewReader("\x00\x01"), 2)
		if resp.StatusCode != 201 {
			t.Fatalf("upload with Content-Type %q = %d %s", ct, resp.StatusCode, resp.body)
		}
		var f tidings.File
		if err := json.Unmarshal(resp.body, &f); err != nil || f.Type != "application/octet-stream" {
			t.Errorf("upload with Content-Type %q stored as %q (%v)", ct, f.Type, err)
		}
	}
}
