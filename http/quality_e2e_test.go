package http_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

func TestE2EMessageValidation(t *testing.T) {
	w := newWorld(t)
	alice := w.createUser(w.acme, "alice")
	w.call("POST", "/v1/conversations", alice, map[string]any{"id": "c"}).ok(t, 201, nil)

	// A message with nothing in it.
	msg := w.call("POST", "/v1/conversations/c/messages", alice, `{"parts":[{"type":"text/plain","data":""}]}`).fails(t, 400, tidings.EInvalid)
	if !strings.Contains(msg, "empty") {
		t.Errorf("message %q does not say the part is empty", msg)
	}
	var m tidings.Message
	w.call("POST", "/v1/conversations/c/messages", alice, text("hi")).ok(t, 201, &m)
	w.call("PATCH", "/v1/conversations/c/messages/"+m.ID, alice, `{"parts":[{"type":"text/plain"}]}`).fails(t, 400, tidings.EInvalid)

	// Metadata too deep for a recursive parser, on messages and users.
	deep := `{"a":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`
	w.call("POST", "/v1/conversations/c/messages", alice, `{"parts":[{"type":"text/plain","data":"x"}],"metadata":`+deep+`}`).fails(t, 400, tidings.EInvalid)
	w.call("PATCH", "/v1/users/alice", w.acme.ServerKey, `{"metadata":`+deep+`}`).fails(t, 400, tidings.EInvalid)
}

// Creating a conversation with a taken id answers the same whoever holds
// it, so that the answer says nothing of a private conversation.
func TestE2ETakenConversationIDRevealsNothing(t *testing.T) {
	w := newWorld(t)
	alice := w.createUser(w.acme, "alice")
	bob := w.createUser(w.acme, "bob")
	w.call("POST", "/v1/conversations", alice, map[string]any{"id": "secret"}).ok(t, 201, nil)
	w.call("POST", "/v1/conversations", alice, map[string]any{"id": "open", "isPublic": true}).ok(t, 201, nil)
	w.call("POST", "/v1/conversations", alice, map[string]any{"id": "gone", "isPublic": true}).ok(t, 201, nil)
	w.call("DELETE", "/v1/conversations/gone", alice, nil).ok(t, 204, nil)
	w.call("GET", "/v1/conversations/secret", bob, nil).fails(t, 404, tidings.ENotFound)

	answers := map[string]string{}
	for _, tc := range []struct{ cred, id string }{{bob, "secret"}, {bob, "open"}, {bob, "gone"}, {alice, "secret"}} {
		msg := w.call("POST", "/v1/conversations", tc.cred, map[string]any{"id": tc.id}).fails(t, 409, tidings.EConflict)
		msg = strings.ReplaceAll(msg, `"`+tc.id+`"`, `"ID"`)
		if strings.Contains(msg, "exist") || strings.Contains(msg, "private") || strings.Contains(msg, "deleted") {
			t.Errorf("creating %q: %q tells about the conversation", tc.id, msg)
		}
		answers[msg] = tc.id
	}
	if len(answers) != 1 {
		t.Errorf("taken ids get different answers: %v", answers)
	}
}

// GET .../participants answers a page at a time: a channel never comes in
// one answer.
func TestE2EParticipantsArePaged(t *testing.T) {
	w := newWorld(t)
	alice := w.createUser(w.acme, "alice")
	users := sqlite.NewUserService(w.db)
	server := tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: w.acme.ID, Server: true})
	var others []map[string]any
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range 250 {
		id := fmt.Sprintf("u%03d", i)
		others = append(others, map[string]any{"userId": id})
		wg.Go(func() {
			if _, err := users.CreateUser(server, &tidings.User{ID: id}); err != nil {
				mu.Lock()
				defer mu.Unlock()
				t.Error(err)
			}
		})
	}
	wg.Wait()
	w.call("POST", "/v1/conversations", alice, map[string]any{"id": "channel", "participants": others}).ok(t, 201, nil)

	var page tidings.ParticipantPage
	w.call("GET", "/v1/conversations/channel/participants", alice, nil).ok(t, 200, &page)
	if len(page.Participants) != tidings.DefaultParticipantPage || page.NextCursor == "" {
		t.Fatalf("first page: %d participants, next cursor %q; want %d and a cursor", len(page.Participants), page.NextCursor, tidings.DefaultParticipantPage)
	}
	if page.Participants[0].UserID != "alice" {
		t.Errorf("first participant %s; want the owner, who joined first", page.Participants[0].UserID)
	}
	seen := map[string]bool{}
	pages := 0
	for cursor := ""; ; {
		path := "/v1/conversations/channel/participants?limit=100"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		w.call("GET", path, alice, nil).ok(t, 200, &page)
		pages++
		for _, p := range page.Participants {
			if seen[p.UserID] {
				t.Fatalf("%s is on two pages", p.UserID)
			}
			seen[p.UserID] = true
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if len(seen) != 251 || pages != 3 {
		t.Errorf("paging by 100 saw %d participants in %d pages; want 251 in 3", len(seen), pages)
	}
	w.call("GET", "/v1/conversations/channel/participants?limit=1001", alice, nil).fails(t, 400, tidings.EInvalid)
	w.call("GET", "/v1/conversations/channel/participants?cursor=nonsense", alice, nil).fails(t, 400, tidings.EInvalid)
}

// multipartBody builds a multipart/form-data body: each part is a field
// (no filename) or a file (with one, and its Content-Type if any).
type formPart struct{ field, filename, contentType, content string }

func multipartBody(t *testing.T, parts ...formPart) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		disp := fmt.Sprintf(`form-data; name=%q`, p.field)
		if p.filename != "" {
			disp += fmt.Sprintf(`; filename=%q`, p.filename)
		}
		h.Set("Content-Disposition", disp)
		if p.contentType != "" {
			h.Set("Content-Type", p.contentType)
		}
		pw, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(pw, p.content)
	}
	mw.Close()
	return mw.FormDataContentType(), &buf
}

// A browser's FormData upload, or curl -F, stores the file part: its own
// name, type and content, never the multipart envelope.
func TestE2EMultipartUpload(t *testing.T) {
	w := newWorld(t)
	alice := w.createUser(w.acme, "alice")
	w.call("POST", "/v1/conversations", alice, map[string]any{"id": "c"}).ok(t, 201, nil)
	upload := func(query, contentType string, body io.Reader) result {
		req, _ := http.NewRequest("POST", w.srv.URL()+"/v1/conversations/c/files"+query, body)
		req.Header.Set("Authorization", "Bearer "+alice)
		req.Header.Set("Content-Type", contentType)
		return w.do(req)
	}

	content := "\x89PNG\r\n\x1a\n" + strings.Repeat("pixels", 1000)
	ct, body := multipartBody(t,
		formPart{field: "caption", content: "holidays"},
		formPart{field: "file", filename: "beach.png", contentType: "image/png", content: content},
		formPart{field: "after", content: "ignored"})
	var f tidings.File
	upload("", ct, body).ok(t, 201, &f)
	if f.Name != "beach.png" || f.Type != "image/png" || f.Size != int64(len(content)) {
		t.Errorf("stored %+v; want beach.png, image/png, %d bytes", f, len(content))
	}
	got := w.call("GET", "/v1/conversations/c/files/"+f.ID, alice, nil)
	if got.status != 200 || string(got.body) != content || got.header.Get("Content-Type") != "image/png" {
		t.Errorf("download: %d, %s, %d bytes equal=%v", got.status, got.header.Get("Content-Type"), len(got.body), string(got.body) == content)
	}

	// The name query parameter wins; a part without a type is octet-stream.
	ct, body = multipartBody(t, formPart{field: "file", filename: "x", content: "data"})
	upload("?name=renamed.bin", ct, body).ok(t, 201, &f)
	if f.Name != "renamed.bin" || f.Type != "application/octet-stream" || f.Size != 4 {
		t.Errorf("stored %+v", f)
	}

	// At the limit: the envelope does not count.
	ct, body = multipartBody(t, formPart{field: "file", filename: "max.bin", content: strings.Repeat("x", e2eMaxFileBytes)})
	upload("", ct, body).ok(t, 201, &f)
	if f.Size != e2eMaxFileBytes {
		t.Errorf("stored %d bytes; want %d", f.Size, e2eMaxFileBytes)
	}

	// Mistakes.
	ct, body = multipartBody(t, formPart{field: "file", filename: "big.bin", content: strings.Repeat("x", e2eMaxFileBytes+1)})
	upload("", ct, body).fails(t, 413, tidings.ETooLarge)
	ct, body = multipartBody(t, formPart{field: "file", filename: "big.bin", content: strings.Repeat("x", e2eMaxFileBytes+1)})
	upload("", ct, io.MultiReader(body)).fails(t, 413, tidings.ETooLarge) // no Content-Length
	ct, body = multipartBody(t, formPart{field: "a", filename: "a.txt", content: "a"}, formPart{field: "b", filename: "b.txt", content: "b"})
	if msg := upload("", ct, body).fails(t, 400, tidings.EInvalid); !strings.Contains(msg, "more than one file") {
		t.Errorf("two files: %q", msg)
	}
	ct, body = multipartBody(t, formPart{field: "caption", content: "no file"})
	if msg := upload("", ct, body).fails(t, 400, tidings.EInvalid); !strings.Contains(msg, "no file part") {
		t.Errorf("no file: %q", msg)
	}
	upload("", "multipart/form-data", strings.NewReader("x")).fails(t, 400, tidings.EInvalid)
	upload("", "multipart/form-data; boundary=zz", strings.NewReader("garbage")).fails(t, 400, tidings.EInvalid)
	ct, body = multipartBody(t, formPart{field: "file", filename: "a.txt", contentType: "text/plain; x=" + strings.Repeat("y", 300), content: "a"})
	upload("", ct, body).fails(t, 400, tidings.EInvalid)

}

// A user past their upload quota is answered 429, saying which limit and
// when to try again; a file past the size limit is 413.
func TestE2EUploadQuota(t *testing.T) {
	s, db := startStack(t, stackOptions{maxFileBytes: 1000, files: func(f *sqlite.FileService) { f.UserQuota = 2500 }})
	w := &world{t: t, srv: s, db: db, apps: s.Apps.(*sqlite.AppService), client: &http.Client{}}
	var err error
	if w.acme, err = w.apps.CreateApp(context.Background(), "acme", "Acme"); err != nil {
		t.Fatal(err)
	}
	alice := w.createUser(w.acme, "alice")
	w.call("POST", "/v1/conversations", alice, map[string]any{"id": "c"}).ok(t, 201, nil)
	upload := func(n int) result {
		req, _ := http.NewRequest("POST", w.srv.URL()+"/v1/conversations/c/files?name=f.bin", strings.NewReader(strings.Repeat("x", n)))
		req.Header.Set("Authorization", "Bearer "+alice)
		return w.do(req)
	}
	upload(1001).fails(t, 413, tidings.ETooLarge)
	upload(1000).ok(t, 201, nil)
	upload(1000).ok(t, 201, nil)
	r := upload(1000)
	if msg := r.fails(t, 429, tidings.ERateLimited); !strings.Contains(msg, "quota") {
		t.Errorf("message %q does not say which limit", msg)
	}
	if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q", ra)
	}
	upload(500).ok(t, 201, nil)
}
