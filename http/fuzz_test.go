package http_test

// Fuzz tests of the promise "never a 500 or a panic for client mistakes":
// whatever a client sends to the write endpoints (any body, any query
// string, any path id), the real server on the real SQLite store answers
// with a status below 500, every error is in the one error shape
// {"error":{"code","message"}} with the status of its code, every answer
// is valid UTF-8 JSON, nothing is logged as a warning or an error, and
// the server keeps serving reads and writes afterwards.
//
// Under plain `go test` only the seed inputs run (a few hundred requests
// in all). To fuzz one endpoint:
//
//	go test -run '^$' -fuzz '^FuzzSendMessage$' -fuzztime 60s -fuzzminimizetime 50x ./http
//
// (Every input costs a few HTTP requests, and the server's goroutines make
// coverage a little noisy, so the fuzzer finds many "interesting" inputs;
// minimizing each for the default 60 s would stall fuzzing.)
//
// Inputs the fuzzer found failing are kept under testdata/fuzz and run as
// seeds from then on.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/token"
)

// fuzzStatusOf is the HTTP status of each error code, as documented.
var fuzzStatusOf = map[string]int{
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
	tidings.EInternal:         500,
}

// fuzzLog is a slog.Handler that keeps every record at warning level or
// above: a client mistake must never be logged as a server problem (an
// internal error, a panic, a failed write transaction, net/http
// complaining about a handler).
type fuzzLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *fuzzLog) Enabled(_ context.Context, level slog.Level) bool { return level >= slog.LevelWarn }

func (l *fuzzLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%q", a.Key, a.Value.String())
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, b.String())
	return nil
}

func (l *fuzzLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *fuzzLog) WithGroup(string) slog.Handler      { return l }

// take returns the records kept since the last call and forgets them.
func (l *fuzzLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := l.lines
	l.lines = nil
	return lines
}

// fuzzServer is a running Tidings on the real store in a temporary
// directory, with the app acme, its users alice, bob and carol, and a
// conversation (alice owner, bob member, carol not in it) holding one
// message of alice's.
type fuzzServer struct {
	url    string
	client *http.Client
	logs   *fuzzLog

	key        string // acme's server key
	alice, bob string // their access tokens
	conv, msg  string // the seeded conversation and message
	convs      *sqlite.ConversationService
	asAlice    context.Context
}

// newFuzzServer starts a server for one fuzz test. The fuzzing engine
// calls the fuzz function once per worker process, so each worker has a
// server of its own.
func newFuzzServer(f testing.TB) *fuzzServer {
	f.Helper()
	logs := &fuzzLog{}
	logger := slog.New(logs)

	// Durability is not what is tested here; without an fsync per commit
	// the fuzzer runs many more inputs per second.
	s, _ := startStack(f, stackOptions{logger: logger, synchronous: "NORMAL", maxFileBytes: 1 << 20})
	apps := s.Apps.(*sqlite.AppService)

	ctx := context.Background()
	app, err := apps.CreateApp(ctx, "acme", "Acme")
	if err != nil {
		f.Fatal(err)
	}
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: app.ID, Server: true})
	tokens := map[string]string{}
	for _, id := range []string{"alice", "bob", "carol"} {
		if _, err := s.Users.CreateUser(server, &tidings.User{ID: id}); err != nil {
			f.Fatal(err)
		}
		if tokens[id], _, err = token.Mint(app, id, 24*time.Hour, time.Now()); err != nil {
			f.Fatal(err)
		}
	}
	fs := &fuzzServer{
		url: s.URL(),
		client: &http.Client{
			Timeout: time.Minute, // a hung server fails the test instead of blocking it
			// Paths with "." or "//" get redirected to their clean form; a
			// redirect is an answer like any other, not to be followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		logs:    logs,
		key:     app.ServerKey,
		alice:   tokens["alice"],
		bob:     tokens["bob"],
		convs:   s.Conversations.(*sqlite.ConversationService),
		asAlice: tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: app.ID, UserID: "alice"}),
	}
	fs.conv = fs.newConversation(f)
	m, _, err := s.Messages.SendMessage(fs.asAlice, fs.conv, tidings.NewMessage{
		Parts: []tidings.Part{{Type: "text/plain", Data: "hello"}}})
	if err != nil {
		f.Fatal(err)
	}
	fs.msg = m.ID
	if lines := logs.take(); len(lines) > 0 {
		f.Fatalf("setting up logged:\n%s", strings.Join(lines, "\n"))
	}
	return fs
}

// newConversation creates a conversation of alice (owner) and bob
// (member), for an input to change without affecting the next ones.
func (fs *fuzzServer) newConversation(t testing.TB) string {
	t.Helper()
	c, err := fs.convs.CreateConversation(fs.asAlice, tidings.NewConversation{
		Name: "general", Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// fuzzRequest is a request a fuzz input makes.
type fuzzRequest struct {
	method, path string
	rawQuery     string // sent as it is (see queryEscape)
	cred         string // "" for none
	contentType  string // "" for none
	body         []byte // nil for none
}

// pathID escapes a fuzzed id as one path segment.
func pathID(id string) string { return url.PathEscape(id) }

// queryEscape makes a fuzzed string sendable as the query of a request
// line: bytes a request line cannot hold are percent-encoded; everything
// else, malformed escapes included, is left for the server to deal with.
func queryEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c < 0x7f && c != '#' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// send makes req and checks the answer: never 5xx, always JSON in valid
// UTF-8, errors in the one shape with the status of their code, nothing
// logged as a warning or worse. It returns the status and body.
func (fs *fuzzServer) send(t *testing.T, req fuzzRequest) (int, []byte) {
	t.Helper()
	var body io.Reader
	if req.body != nil {
		body = bytes.NewReader(req.body)
	}
	hr, err := http.NewRequest(req.method, fs.url+req.path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", req.method, req.path, err)
	}
	hr.URL.RawQuery = req.rawQuery
	if req.cred != "" {
		hr.Header.Set("Authorization", "Bearer "+req.cred)
	}
	if req.contentType != "" {
		hr.Header.Set("Content-Type", req.contentType)
	}
	return fs.do(t, hr)
}

func (fs *fuzzServer) do(t *testing.T, hr *http.Request) (int, []byte) {
	t.Helper()
	what := fmt.Sprintf("%s %s", hr.Method, hr.URL.RequestURI())
	resp, err := fs.client.Do(hr)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: reading the answer: %v", what, err)
	}
	status, ct := resp.StatusCode, resp.Header.Get("Content-Type")
	if lines := fs.logs.take(); len(lines) > 0 {
		t.Errorf("%s (status %d) logged:\n%s", what, status, strings.Join(lines, "\n"))
	}
	switch {
	case status >= 500:
		t.Fatalf("%s: status %d; body %q", what, status, b)
	case status >= 400:
		fuzzCheckError(t, what, status, ct, b)
	case status == http.StatusNoContent:
		if len(b) != 0 {
			t.Errorf("%s: 204 with a body %q", what, b)
		}
	case status >= 300:
		// A redirect to the clean form of the path: ServeMux's own answer.
		if resp.Header.Get("Location") == "" {
			t.Errorf("%s: status %d without a Location", what, status)
		}
	default:
		if ct != "application/json" || !json.Valid(b) {
			t.Errorf("%s: status %d with Content-Type %q and a body that is not JSON: %q", what, status, ct, b)
		}
	}
	if !utf8.Valid(b) {
		t.Errorf("%s: status %d with a body that is not valid UTF-8: %q", what, status, b)
	}
	return status, b
}

// fuzzCheckError checks that an error answer is in the one error shape,
// with a known code whose status it has.
func fuzzCheckError(t *testing.T, what string, status int, contentType string, body []byte) {
	t.Helper()
	if contentType != "application/json" {
		t.Errorf("%s: error %d with Content-Type %q", what, status, contentType)
	}
	var e struct {
		Error *struct {
			Code    *string `json:"code"`
			Message *string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error == nil || e.Error.Code == nil || e.Error.Message == nil {
		t.Fatalf("%s: error %d not in the error shape (%v): %q", what, status, err, body)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Errorf("%s: error %d has more than one JSON value: %q", what, status, body)
	}
	code, msg := *e.Error.Code, *e.Error.Message
	want, known := fuzzStatusOf[code]
	switch {
	case !known:
		t.Errorf("%s: unknown error code %q: %q", what, code, body)
	case want != status:
		t.Errorf("%s: status %d for code %q (documented: %d): %q", what, status, code, want, body)
	}
	if strings.TrimSpace(msg) == "" {
		t.Errorf("%s: error %d without a message: %q", what, status, body)
	}
}

// healthy checks that the server still serves: it is ready (the database
// answers), and authenticates a user, reads and commits a write.
func (fs *fuzzServer) healthy(t *testing.T) {
	t.Helper()
	for _, req := range []fuzzRequest{
		{method: "GET", path: "/readyz"},
		{method: "POST", path: "/v1/conversations/" + fs.conv + "/delivered", cred: fs.alice,
			contentType: "application/json", body: []byte(`{}`)},
	} {
		if status, body := fs.send(t, req); status != 200 {
			t.Fatalf("after the input, %s %s answers %d: %s", req.method, req.path, status, body)
		}
	}
}

// jsonRequest is a request with body sent as application/json.
func (fs *fuzzServer) jsonRequest(method, path, cred string, body []byte) fuzzRequest {
	return fuzzRequest{method: method, path: path, cred: cred, contentType: "application/json", body: body}
}

// TestInvalidUTF8BodyIsRefused: JSON must be UTF-8. A body that is not is
// refused as invalid_json and changes nothing, instead of having its bad
// bytes replaced silently in strings, or stored as they are in metadata
// and sent back in answers that are not valid JSON. (Found by
// FuzzUpdateUser and FuzzSendMessage.)
func TestInvalidUTF8BodyIsRefused(t *testing.T) {
	fs := newFuzzServer(t)
	for _, req := range []fuzzRequest{
		fs.jsonRequest("PATCH", "/v1/users/alice", fs.alice, []byte("{\"metadata\":{\"k\":\"\xff\"}}")),
		fs.jsonRequest("PATCH", "/v1/users/alice", fs.key, []byte("{\"displayName\":\"Al\xc3\x28ce\"}")),
		fs.jsonRequest("POST", "/v1/users", fs.key, []byte("{\"id\":\"dave\",\"metadata\":{\"\xed\xa0\x80\":1}}")),
		fs.jsonRequest("POST", "/v1/conversations/"+fs.conv+"/messages", fs.alice,
			[]byte("{\"parts\":[{\"type\":\"text/plain\",\"data\":\"hi\"}],\"metadata\":{\"k\":\"\xff\"}}")),
		fs.jsonRequest("POST", "/v1/conversations/"+fs.conv+"/messages", fs.alice,
			[]byte("{\"parts\":[{\"type\":\"text/plain\",\"data\":\"\xf0\x9f\x98\"}]}")),
	} {
		status, body := fs.send(t, req)
		if status != 400 || !bytes.Contains(body, []byte(`"invalid_json"`)) || !bytes.Contains(body, []byte("UTF-8")) {
			t.Errorf("%s %s %q: %d %s; want 400 invalid_json about UTF-8", req.method, req.path, req.body, status, body)
		}
	}

	// Nothing was stored.
	var me tidings.User
	_, body := fs.send(t, fuzzRequest{method: "GET", path: "/v1/me", cred: fs.alice})
	if err := json.Unmarshal(body, &me); err != nil || me.DisplayName != "alice" || me.Metadata != nil {
		t.Errorf("GET /v1/me = %s (%v); want alice unchanged", body, err)
	}
	var page tidings.MessagePage
	_, body = fs.send(t, fuzzRequest{method: "GET", path: "/v1/conversations/" + fs.conv + "/messages", cred: fs.alice})
	if err := json.Unmarshal(body, &page); err != nil || len(page.Messages) != 1 {
		t.Errorf("history = %s (%v); want the seeded message alone", body, err)
	}
	if status, _ := fs.send(t, fuzzRequest{method: "GET", path: "/v1/users/dave", cred: fs.key}); status != 404 {
		t.Errorf("GET /v1/users/dave: %d; want 404", status)
	}

	// Text beyond ASCII, in valid UTF-8, is of course fine.
	status, body := fs.send(t, fs.jsonRequest("PATCH", "/v1/users/alice", fs.key,
		[]byte(`{"displayName":"Zoë 💬","metadata":{"città":"Zürich"}}`)))
	if err := json.Unmarshal(body, &me); status != 200 || err != nil || me.DisplayName != "Zoë 💬" || string(me.Metadata) != `{"città":"Zürich"}` {
		t.Errorf("PATCH in UTF-8: %d %s (%v)", status, body, err)
	}
}

// fuzzBodies are bodies every JSON endpoint must refuse or accept
// gracefully: not JSON, not an object, wrong types, nulls, huge numbers,
// deep nesting, invalid UTF-8, control characters, long strings.
func fuzzBodies() []string {
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	deepObject := strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000)
	return []string{
		``,
		` `,
		"\t\r\n",
		`null`,
		`{}`,
		`[]`,
		`[{}]`,
		`"string"`,
		`0`,
		`-1`,
		`true`,
		`{`,
		`}`,
		`{"`,
		`{"a"`,
		`{"a":}`,
		`{"a":1}`,
		`{}{}`,
		`{} []`,
		`{},`,
		"\xef\xbb\xbf{}", // a byte order mark
		"{\"\xff\":1}",
		"\xff\xfe{}",
		"{\"a\":\"\x00\"}",
		`{"a":"\u0000"}`,
		deep,
		deepObject,
		`{"` + strings.Repeat("k", 10000) + `":1}`,
		`1e999999`,
		`{"__proto__":{}}`,
	}
}

// addSeeds adds each body to f with the other arguments args before it.
func addSeeds(f *testing.F, bodies []string, args ...any) {
	for _, b := range bodies {
		f.Add(append(append([]any{}, args...), []byte(b))...)
	}
}

// fuzzIDs are path ids to try: empty and dot segments, escapes, unicode,
// over-long and invalid ids.
var fuzzIDs = []string{
	"", ".", "..", "/", "a/b", "%00", "%zz", "nope", "general", " ", "\x00", "\xff", "é", "💬",
	"a?b#c", strings.Repeat("x", 129), strings.Repeat("y", 5000), "..%2f..%2fetc", "\u202e",
}

func FuzzCreateUser(f *testing.F) {
	addSeeds(f, fuzzBodies())
	addSeeds(f, []string{
		`{"id":"dave"}`,
		`{"id":"alice"}`,
		`{"id":"erin","displayName":"Erin","avatarUrl":"https://example.com/e.png","identifier":{"value":"erin@example.com","kind":"email"},"metadata":{"plan":"pro"}}`,
		`{"id":null,"displayName":null,"avatarUrl":null,"identifier":null,"metadata":null}`,
		`{"id":1}`,
		`{"id":["x"]}`,
		`{"id":{"x":1}}`,
		`{"id":""}`,
		`{"id":"-x"}`,
		`{"id":"` + strings.Repeat("i", 129) + `"}`,
		`{"id":"zoë"}`,
		`{"id":"f","displayName":"` + strings.Repeat("n", 201) + `"}`,
		`{"id":"g","displayName":"👩‍👩‍👧‍👦 \u202eRTL \u0301 \u2028 \ud83d\ude00"}`,
		`{"id":"h","displayName":"\ud800"}`,
		`{"id":"h2","displayName":"\udfff\ud800"}`,
		"{\"id\":\"i\",\"displayName\":\"bad \xc3\x28 utf8\"}",
		"{\"id\":\"j\",\"displayName\":\"tab\there\"}",
		`{"id":"k","displayName":"nul\u0000inside"}`,
		`{"id":"l","displayName":"   "}`,
		`{"id":"m","avatarUrl":"javascript:alert(1)"}`,
		`{"id":"n","avatarUrl":"https://` + strings.Repeat("a", 3000) + `"}`,
		`{"id":"o","avatarUrl":"http://[::1"}`,
		`{"id":"p","identifier":{}}`,
		`{"id":"q","identifier":{"value":"x"}}`,
		`{"id":"r","identifier":{"value":1,"kind":2}}`,
		`{"id":"s","identifier":"x@example.com"}`,
		`{"id":"t","metadata":[]}`,
		`{"id":"u","metadata":"string"}`,
		`{"id":"v","metadata":1e400}`,
		`{"id":"w","metadata":{"n":1e400,"big":123456789012345678901234567890}}`,
		`{"id":"x","metadata":{"a":{"b":{"c":[1,2,{"d":null}]}}}}`,
		`{"id":"y","metadata":{"a":"` + strings.Repeat("m", 17<<10) + `"}}`,
		"{\"id\":\"z\",\"metadata\":{\"k\":\"\xff\xfe\"}}",
		"{\"id\":\"z2\",\"metadata\":{\"\xc0\xaf\":1}}",
		`{"id":"z3","metadata":{"a":1,"a":2}}`,
		`{"id":"z4","createdAt":"2024-01-01T00:00:00Z"}`,
		`{"id":"z5","ID":"Z5"}`,
		`{"ID":"z6"}`,
	})
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		fs.send(t, fs.jsonRequest("POST", "/v1/users", fs.key, body))
		fs.healthy(t)
	})
}

func FuzzUpdateUser(f *testing.F) {
	bodies := append(fuzzBodies(),
		`{"displayName":"Alice A."}`,
		`{"displayName":""}`,
		`{"displayName":"  "}`,
		`{"displayName":null}`,
		`{"displayName":7}`,
		`{"displayName":"`+strings.Repeat("é", 150)+`"}`,
		`{"avatarUrl":""}`,
		`{"avatarUrl":"https://example.com/a.png"}`,
		`{"avatarUrl":"ftp://example.com/a.png"}`,
		`{"avatarUrl":"https://"}`,
		`{"avatarUrl":"%"}`,
		`{"identifier":{}}`,
		`{"identifier":null}`,
		`{"identifier":{"value":"a@example.com","kind":"email"}}`,
		`{"identifier":{"value":" ","kind":" "}}`,
		`{"identifier":{"value":"`+strings.Repeat("v", 400)+`","kind":"email"}}`,
		`{"identifier":{"value":"a","kind":"k","extra":1}}`,
		`{"metadata":{}}`,
		`{"metadata":null}`,
		`{"metadata":{"x":[1,"two",null,true,{"y":-0.0e-7}]}}`,
		`{"metadata":false}`,
		"{\"metadata\":{\"k\":\"\xed\xa0\x80\"}}",
		`{"id":"bob"}`,
		`{"createdAt":"yesterday"}`,
	)
	for _, id := range fuzzIDs {
		f.Add(id, false, []byte(`{"displayName":"X"}`))
	}
	addSeeds(f, bodies, "", false)
	addSeeds(f, bodies[len(bodies)-24:], "", true)
	f.Add("bob", true, []byte(`{"displayName":"not mine"}`))
	f.Add("ghost", false, []byte(`{"displayName":"nobody"}`))
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, userID string, asUser bool, body []byte) {
		if userID == "" {
			userID = "alice"
		}
		cred := fs.key
		if asUser {
			cred = fs.alice
		}
		fs.send(t, fs.jsonRequest("PATCH", "/v1/users/"+pathID(userID), cred, body))
		fs.healthy(t)
	})
}

func FuzzCreateConversation(f *testing.F) {
	addSeeds(f, fuzzBodies())
	addSeeds(f, []string{
		`{"name":"Lunch"}`,
		`{"id":"lunch","name":"Lunch","description":"where to eat","isPublic":true,"participants":[{"userId":"bob"},{"userId":"carol","role":"admin"}]}`,
		`{"id":"general"}`,
		`{"id":"","name":""}`,
		`{"id":"bad id"}`,
		`{"id":"` + strings.Repeat("c", 129) + `"}`,
		`{"id":7}`,
		`{"name":"` + strings.Repeat("n", 201) + `"}`,
		`{"name":"💬 \u202e\u0000"}`,
		`{"description":"` + strings.Repeat("d", 2001) + `"}`,
		`{"isPublic":"yes"}`,
		`{"isPublic":1}`,
		`{"isPublic":null}`,
		`{"roles":null}`,
		`{"roles":{}}`,
		`{"roles":{"admin":{"send":false},"member":{"send":false,"delete":true}}}`,
		`{"roles":{"owner":{"send":false}}}`,
		`{"roles":{"member":{"send":"true"}}}`,
		`{"roles":[]}`,
		`{"participants":null}`,
		`{"participants":[]}`,
		`{"participants":{}}`,
		`{"participants":[null]}`,
		`{"participants":["bob"]}`,
		`{"participants":[{}]}`,
		`{"participants":[{"userId":"ghost"}]}`,
		`{"participants":[{"userId":"bob"},{"userId":"bob"}]}`,
		`{"participants":[{"userId":"alice","role":"member"}]}`,
		`{"participants":[{"userId":"bob","role":"owner"}]}`,
		`{"participants":[{"userId":"bob","role":"king"}]}`,
		`{"participants":[{"userId":"bob","role":""}]}`,
		`{"participants":[{"userId":"bob","role":null}]}`,
		`{"participants":[{"userId":"-bob"}]}`,
		`{"participants":[` + strings.Repeat(`{"userId":"bob"},`, 1000) + `{"userId":"carol"}]}`,
		`{"lastSeq":5}`,
		`{"createdBy":"bob"}`,
	})
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		fs.send(t, fs.jsonRequest("POST", "/v1/conversations", fs.alice, body))
		fs.healthy(t)
	})
}

func FuzzUpdateConversation(f *testing.F) {
	bodies := append(fuzzBodies(),
		`{"name":"Renamed"}`,
		`{"name":""}`,
		`{"name":null,"description":null,"isPublic":null,"roles":null}`,
		`{"name":"`+strings.Repeat("n", 201)+`"}`,
		`{"description":"`+strings.Repeat("d", 2001)+`"}`,
		`{"description":"line\nbreak \u2028 \ud83d\ude00"}`,
		`{"isPublic":true}`,
		`{"isPublic":"false"}`,
		`{"roles":{"admin":{},"member":{}}}`,
		`{"roles":{"member":{"send":true,"addParticipants":true,"removeParticipants":true,"update":true,"delete":true}}}`,
		`{"roles":{"member":{"fly":true}}}`,
		`{"roles":{"member":null}}`,
		`{"roles":"all"}`,
		`{"id":"other"}`,
		`{"lastSeq":99}`,
		`{"participantCount":-1}`,
		`{"deletedAt":"2024-01-01T00:00:00Z"}`,
	)
	addSeeds(f, bodies, "")
	for _, id := range fuzzIDs {
		f.Add(id, []byte(`{"name":"x"}`))
	}
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, convID string, body []byte) {
		if convID == "" {
			convID = fs.newConversation(t) // the input may change it at will
		}
		fs.send(t, fs.jsonRequest("PATCH", "/v1/conversations/"+pathID(convID), fs.alice, body))
		fs.healthy(t)
	})
}

func FuzzAddParticipant(f *testing.F) {
	bodies := append(fuzzBodies(),
		`{"userId":"carol"}`,
		`{"userId":"carol","role":"admin"}`,
		`{"userId":"carol","role":"owner"}`,
		`{"userId":"carol","role":"Owner"}`,
		`{"userId":"carol","role":""}`,
		`{"userId":"carol","role":null}`,
		`{"userId":"carol","role":3}`,
		`{"userId":"bob"}`,
		`{"userId":"alice"}`,
		`{"userId":"ghost"}`,
		`{"userId":""}`,
		`{"userId":null}`,
		`{"userId":["carol"]}`,
		`{"userId":"carol\u0000"}`,
		`{"userId":"`+strings.Repeat("u", 129)+`"}`,
		`{"role":"member"}`,
		`[{"userId":"carol"}]`,
		`{"userId":"carol","joinedAt":"now"}`,
	)
	addSeeds(f, bodies, "")
	for _, id := range fuzzIDs {
		f.Add(id, []byte(`{"userId":"carol"}`))
	}
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, convID string, body []byte) {
		if convID == "" {
			convID = fs.newConversation(t)
		}
		fs.send(t, fs.jsonRequest("POST", "/v1/conversations/"+pathID(convID)+"/participants", fs.alice, body))
		fs.healthy(t)
	})
}

// messageBodies are bodies of sends and edits.
func messageBodies() []string {
	return append(fuzzBodies(),
		`{"parts":[{"type":"text/plain","data":"hi"}]}`,
		`{"clientId":"c1","parts":[{"type":"text/plain","data":"once"}]}`,
		`{"clientId":"","parts":[{"type":"text/plain","data":"x"}]}`,
		`{"clientId":"bad id","parts":[{"type":"text/plain","data":"x"}]}`,
		`{"clientId":7,"parts":[{"type":"text/plain","data":"x"}]}`,
		`{"parts":[{"type":"text/plain","data":"hi"}],"metadata":{"k":"v"},"alert":"ping"}`,
		`{"parts":[{"type":"text/plain","data":"hi"}],"metadata":null}`,
		`{"parts":[{"type":"text/plain","data":"hi"}],"metadata":[1]}`,
		`{"parts":[{"type":"text/plain","data":"hi"}],"metadata":"m"}`,
		`{"parts":[{"type":"text/plain","data":"hi"}],"metadata":{"n":1e999,"s":"\ud800"}}`,
		"{\"parts\":[{\"type\":\"text/plain\",\"data\":\"hi\"}],\"metadata\":{\"k\":\"\xff\"}}",
		`{"parts":[{"type":"text/plain","data":"hi"}],"alert":"`+strings.Repeat("a", 1001)+`"}`,
		`{"parts":[]}`,
		`{"parts":null}`,
		`{"parts":{}}`,
		`{"parts":[null]}`,
		`{"parts":[{}]}`,
		`{"parts":["text"]}`,
		`{"parts":[{"type":""}]}`,
		`{"parts":[{"type":"text"}]}`,
		`{"parts":[{"type":"text/ plain"}]}`,
		`{"parts":[{"type":"text/plain\n"}]}`,
		`{"parts":[{"type":"`+strings.Repeat("t", 300)+`/x"}]}`,
		`{"parts":[{"type":"application/x-e2ee","data":"`+strings.Repeat("QUJD", 1000)+`"}]}`,
		`{"parts":[{"type":"text/plain","data":"`+strings.Repeat("x", tidings.DefaultMessageSize+1)+`"}]}`,
		`{"parts":[{"type":"text/plain","name":"`+strings.Repeat("n", 256)+`"}]}`,
		`{"parts":[{"type":"text/plain","data":"x","fileId":"f"}]}`,
		`{"parts":[{"type":"image/png","fileId":"nope"}]}`,
		`{"parts":[{"type":"image/png","fileId":""}]}`,
		`{"parts":[{"type":"text/plain","size":-1}]}`,
		`{"parts":[{"type":"text/plain","size":1e30}]}`,
		`{"parts":[{"type":"text/plain","size":9223372036854775807}]}`,
		`{"parts":[{"type":"text/plain","size":1.5}]}`,
		`{"parts":[{"type":"text/plain","data":null,"name":null,"fileId":null,"size":null}]}`,
		`{"parts":[{"type":"text/plain","data":"\u0000\u001f\u007f\u2028\u2029\ufeff\ud83d\ude00"}]}`,
		`{"parts":[{"type":"text/plain","data":"\udc00\ud800"}]}`,
		"{\"parts\":[{\"type\":\"text/plain\",\"data\":\"\xf0\x9f\x98\"}]}",
		`{"parts":[`+strings.Repeat(`{"type":"text/plain","data":"p"},`, 50)+`{"type":"text/plain","data":"51st"}]}`,
		`{"parts":[{"type":"text/plain","data":"x","extra":true}]}`,
		`{"seq":1,"parts":[{"type":"text/plain","data":"x"}]}`,
		`{"parts":[{"type":"text/plain","data":"x"}],"metadata":{}}`,
	)
}

func FuzzSendMessage(f *testing.F) {
	addSeeds(f, messageBodies(), "")
	for _, id := range fuzzIDs {
		f.Add(id, []byte(`{"parts":[{"type":"text/plain","data":"hi"}]}`))
	}
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, convID string, body []byte) {
		if convID == "" {
			convID = fs.conv
		}
		fs.send(t, fs.jsonRequest("POST", "/v1/conversations/"+pathID(convID)+"/messages", fs.alice, body))
		fs.healthy(t)
	})
}

func FuzzEditMessage(f *testing.F) {
	bodies := append(messageBodies(),
		`{"parts":[{"type":"text/plain","data":"edited"}],"metadata":{"edited":true}}`,
		`{"parts":[{"type":"text/plain","data":"edited"}],"metadata":null}`,
		`{"parts":[{"type":"text/plain","data":"edited"}],"metadata":{}}`,
	)
	addSeeds(f, bodies, "", "")
	for _, id := range fuzzIDs {
		f.Add(id, "", []byte(`{"parts":[{"type":"text/plain","data":"edited"}]}`))
		f.Add("", id, []byte(`{"parts":[{"type":"text/plain","data":"edited"}]}`))
	}
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, convID, msgID string, body []byte) {
		if convID == "" {
			convID = fs.conv
		}
		if msgID == "" {
			msgID = fs.msg
		}
		fs.send(t, fs.jsonRequest("PATCH", "/v1/conversations/"+pathID(convID)+"/messages/"+pathID(msgID), fs.alice, body))
		fs.healthy(t)
	})
}

func FuzzMarkMessages(f *testing.F) {
	bodies := append(fuzzBodies(),
		`{"seq":0}`,
		`{"seq":1}`,
		`{"seq":2}`,
		`{"seq":-1}`,
		`{"seq":9223372036854775807}`,
		`{"seq":9223372036854775808}`,
		`{"seq":-9223372036854775808}`,
		`{"seq":99999999999999999999999}`,
		`{"seq":1e3}`,
		`{"seq":1.0}`,
		`{"seq":1.5}`,
		`{"seq":"1"}`,
		`{"seq":null}`,
		`{"seq":[1]}`,
		`{"seq":true}`,
		`{"seq":1,"seq":2}`,
		`{"Seq":1}`,
		`{"readSeq":1}`,
	)
	addSeeds(f, bodies, "", false)
	addSeeds(f, bodies, "", true)
	for _, id := range fuzzIDs {
		f.Add(id, true, []byte(`{"seq":1}`))
	}
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, convID string, read bool, body []byte) {
		if convID == "" {
			convID = fs.conv
		}
		mark := "/delivered"
		if read {
			mark = "/read"
		}
		// As bob, whose marks the input may move (alice's are the canary's).
		fs.send(t, fs.jsonRequest("POST", "/v1/conversations/"+pathID(convID)+mark, fs.bob, body))
		fs.healthy(t)
	})
}

func FuzzListMessages(f *testing.F) {
	for _, q := range []string{
		"",
		"limit=1",
		"limit=200",
		"limit=201",
		"limit=0",
		"limit=-1",
		"limit=+5",
		"limit=1e2",
		"limit=9223372036854775808",
		"limit=",
		"limit",
		"limit=1&limit=2",
		"before=1",
		"before=0",
		"before=-1",
		"before=9223372036854775807",
		"before=99999999999999999999",
		"after=0",
		"after=-0",
		"after=9223372036854775807",
		"after=1&before=2",
		"after=abc",
		"before=1.5",
		"before=%31",
		"before=%zz",
		"%",
		"&&&",
		"=&=",
		"a=b;c=d",
		"before=1;after=1",
		"limit=%00",
		"after=\x00",
		"limit=\xff",
		"after=١",
		"before=0x10",
		"after= 1",
		"limit=" + strings.Repeat("9", 5000),
	} {
		f.Add("", q)
	}
	for _, id := range fuzzIDs {
		f.Add(id, "limit=5")
	}
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, convID, query string) {
		if convID == "" {
			convID = fs.conv
		}
		fs.send(t, fuzzRequest{method: "GET", path: "/v1/conversations/" + pathID(convID) + "/messages",
			rawQuery: queryEscape(query), cred: fs.alice})
		fs.healthy(t)
	})
}

// FuzzCredentialsAndContentType fuzzes the headers every write depends on:
// Authorization (server keys, JWTs and garbage) and Content-Type.
func FuzzCredentialsAndContentType(f *testing.F) {
	send := []byte(`{"parts":[{"type":"text/plain","data":"hi"}]}`)
	for _, auth := range []string{
		"alice", // replaced by a valid "Bearer <token>" of alice's
		"",
		"Bearer",
		"Bearer ",
		"bearer alice",
		"Basic YWxpY2U6cHc=",
		"Bearer tsk_",
		"Bearer tsk_nope",
		"Bearer a.b.c",
		"Bearer ...",
		"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.",
		"Bearer eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln",
		"Bearer eyJ9.eyJ9.eyJ9",
		"Bearer " + strings.Repeat("A", 8000),
		"Bearer  spaced  out ",
		"Bearer \u00e9",
	} {
		f.Add(auth, "application/json", send)
	}
	for _, ct := range []string{
		"",
		"application/json; charset=utf-8",
		"application/json; charset=UTF-8",
		"application/json; charset=latin1",
		"application/json;charset=",
		"application/json; charset",
		"application/json; ;",
		"Application/JSON",
		"application/json; boundary=\"",
		"text/plain",
		"application/x-www-form-urlencoded",
		"multipart/form-data; boundary=x",
		"/",
		"application/",
		";",
		"application/json, text/plain",
	} {
		f.Add("alice", ct, send)
	}
	fs := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, auth, contentType string, body []byte) {
		if auth == "alice" {
			auth = "Bearer " + fs.alice
		}
		hr, err := http.NewRequest("POST", fs.url+"/v1/conversations/"+fs.conv+"/messages", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		hr.Header.Set("Authorization", auth)
		hr.Header.Set("Content-Type", contentType)
		if !fuzzValidHeader(auth) || !fuzzValidHeader(contentType) {
			t.Skip("not a header value an HTTP client can send")
		}
		fs.do(t, hr)
		fs.healthy(t)
	})
}

// fuzzValidHeader reports whether v can be sent as a header value (no
// control characters but tab), as net/http's client requires.
func fuzzValidHeader(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
