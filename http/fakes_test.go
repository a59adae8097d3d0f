package http

// Small in-memory stand-ins for the domain services, just enough to test
// what the HTTP layer itself does. Each embeds its interface: a method a
// test does not need is nil and panics, which the server turns into a 500.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/token"
)

type fakeApps struct {
	tidings.AppService
	apps []*tidings.App
}

func (f *fakeApps) FindAppByID(_ context.Context, id string) (*tidings.App, error) {
	for _, a := range f.apps {
		if a.ID == id {
			return a, nil
		}
	}
	return nil, tidings.Errorf(tidings.ENotFound, "app not found")
}

func (f *fakeApps) FindAppByServerKey(_ context.Context, key string) (*tidings.App, error) {
	for _, a := range f.apps {
		if a.ServerKey == key {
			return a, nil
		}
	}
	return nil, tidings.Errorf(tidings.EUnauthenticated, "unknown server key")
}

// fakeUsers keeps users per app, seen through the caller's app.
type fakeUsers struct {
	tidings.UserService
	mu    sync.Mutex
	users map[string]map[string]*tidings.User // app id → user id → user
	err   error                               // returned by every method when set
}

func (f *fakeUsers) scope(ctx context.Context) (map[string]*tidings.User, error) {
	c, ok := tidings.CallerFromContext(ctx)
	if !ok {
		return nil, tidings.Errorf(tidings.EUnauthenticated, "no caller")
	}
	if f.err != nil {
		return nil, f.err
	}
	if f.users[c.AppID] == nil {
		f.users[c.AppID] = map[string]*tidings.User{}
	}
	return f.users[c.AppID], nil
}

func (f *fakeUsers) CreateUser(ctx context.Context, u *tidings.User) (*tidings.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	users, err := f.scope(ctx)
	if err != nil {
		return nil, err
	}
	if users[u.ID] != nil {
		return nil, tidings.Errorf(tidings.EConflict, "user %q already exists", u.ID)
	}
	if err := u.Validate(); err != nil {
		return nil, err
	}
	c := *u
	users[u.ID] = &c
	return &c, nil
}

func (f *fakeUsers) FindUserByID(ctx context.Context, id string) (*tidings.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	users, err := f.scope(ctx)
	if err != nil {
		return nil, err
	}
	u, ok := users[id]
	if !ok {
		return nil, tidings.Errorf(tidings.ENotFound, "user not found")
	}
	return u, nil
}

func (f *fakeUsers) ListUsers(ctx context.Context, filter tidings.UserFilter) ([]*tidings.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	users, err := f.scope(ctx)
	if err != nil {
		return nil, err
	}
	var list []*tidings.User
	for _, u := range users {
		if u.ID > filter.After {
			list = append(list, u)
		}
	}
	slices.SortFunc(list, func(a, b *tidings.User) int { return strings.Compare(a.ID, b.ID) })
	return list[:min(len(list), filter.Limit)], nil
}

func (f *fakeUsers) UpdateUser(ctx context.Context, id string, upd tidings.UserUpdate) (*tidings.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	users, err := f.scope(ctx)
	if err != nil {
		return nil, err
	}
	u, ok := users[id]
	if !ok {
		return nil, tidings.Errorf(tidings.ENotFound, "user not found")
	}
	if err := upd.Apply(u); err != nil {
		return nil, err
	}
	return u, nil
}

func (f *fakeUsers) add(appID string, u *tidings.User) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.users[appID][u.ID] = u
}

func (f *fakeUsers) delete(appID, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.users[appID], id)
}

// fakeConversations answers with err when set, and records what it was
// asked.
type fakeConversations struct {
	tidings.ConversationService
	mu     sync.Mutex
	err    error
	filter tidings.ConversationFilter
	calls  []string
}

func (f *fakeConversations) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeConversations) lastFilter() tidings.ConversationFilter {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.filter
}

func (f *fakeConversations) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeConversations) record(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	return f.err
}

func (f *fakeConversations) FindConversationByID(_ context.Context, id string) (*tidings.Conversation, error) {
	if err := f.record("find " + id); err != nil {
		return nil, err
	}
	return &tidings.Conversation{ID: id, Name: "General", Roles: tidings.DefaultRoles()}, nil
}

func (f *fakeConversations) ListConversations(_ context.Context, filter tidings.ConversationFilter) (*tidings.ConversationPage, error) {
	if err := f.record("list"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.filter = filter
	f.mu.Unlock()
	return &tidings.ConversationPage{}, nil
}

func (f *fakeConversations) RemoveParticipant(_ context.Context, id, userID string) error {
	return f.record("remove " + id + " " + userID)
}

func (f *fakeConversations) Leave(_ context.Context, id string) error {
	return f.record("leave " + id)
}

func (f *fakeConversations) ListParticipants(_ context.Context, id string, _ tidings.ParticipantFilter) (*tidings.ParticipantPage, error) {
	return &tidings.ParticipantPage{}, f.record("participants " + id)
}

// fakeMessages records the filter of ListMessages and the seq of marks, and
// sends messages idempotently by client id.
type fakeMessages struct {
	tidings.MessageService
	mu       sync.Mutex
	filter   tidings.MessageFilter
	seq      int64
	clientID map[string]*tidings.Message
}

func (f *fakeMessages) lastFilter() tidings.MessageFilter {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.filter
}

func (f *fakeMessages) lastSeq() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seq
}

func (f *fakeMessages) ListMessages(_ context.Context, _ string, filter tidings.MessageFilter) (*tidings.MessagePage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.filter = filter
	return &tidings.MessagePage{}, nil
}

func (f *fakeMessages) SendMessage(ctx context.Context, conversationID string, nm tidings.NewMessage) (*tidings.Message, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m, ok := f.clientID[nm.ClientID]; ok {
		return m, false, nil
	}
	f.seq++
	m := &tidings.Message{ID: tidings.NewID(), ConversationID: conversationID, Seq: f.seq, ClientID: nm.ClientID, Parts: nm.Parts}
	if nm.ClientID != "" {
		if f.clientID == nil {
			f.clientID = map[string]*tidings.Message{}
		}
		f.clientID[nm.ClientID] = m
	}
	return m, true, nil
}

func (f *fakeMessages) MarkRead(_ context.Context, conversationID string, seq int64) (*tidings.MessageStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq = seq
	return &tidings.MessageStatus{ConversationID: conversationID, ReadSeq: seq}, nil
}

func (f *fakeMessages) FindMessage(context.Context, string, string) (*tidings.Message, error) {
	panic("boom: a bug in the service")
}

// fakeFiles keeps files in memory, with a size limit like the real one.
type fakeFiles struct {
	tidings.FileService
	mu      sync.Mutex
	files   map[string]*tidings.File
	content map[string][]byte
	max     int64
}

func (f *fakeFiles) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.files)
}

func (f *fakeFiles) CreateFile(ctx context.Context, conversationID, name, contentType string, r io.Reader) (*tidings.File, error) {
	b, err := io.ReadAll(io.LimitReader(r, f.max+1))
	if err != nil {
		return nil, err // the HTTP layer must explain it, not us
	}
	if int64(len(b)) > f.max {
		return nil, tidings.Errorf(tidings.ETooLarge, "file too large")
	}
	c, _ := tidings.CallerFromContext(ctx)
	file := &tidings.File{ID: tidings.NewID(), ConversationID: conversationID, UploaderID: c.UserID,
		Name: name, Type: contentType, Size: int64(len(b)), CreatedAt: time.Now().UTC()}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[file.ID] = file
	f.content[file.ID] = b
	return file, nil
}

func (f *fakeFiles) OpenFile(_ context.Context, conversationID, fileID string) (*tidings.File, io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	file, ok := f.files[fileID]
	if !ok || file.ConversationID != conversationID {
		return nil, nil, tidings.Errorf(tidings.ENotFound, "file not found")
	}
	return file, io.NopCloser(bytes.NewReader(f.content[fileID])), nil
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the log records written so far.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// env is a server on fakes, open on a random port, with one app ("acme")
// whose users are alice and bob, and a second app ("other") with carol.
type env struct {
	t      *testing.T
	srv    *Server
	logs   *syncBuffer
	apps   *fakeApps
	users  *fakeUsers
	convs  *fakeConversations
	msgs   *fakeMessages
	files  *fakeFiles
	acme   *tidings.App
	other  *tidings.App
	client *http.Client

	mu     sync.Mutex
	offset time.Duration // added to testNow by the server's clock
}

// setClock moves the server's clock to testNow + d.
func (e *env) setClock(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.offset = d
}

func (e *env) now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return testNow.Add(e.offset)
}

var testNow = time.Now()

func newEnv(t *testing.T, configure func(*Server)) *env {
	t.Helper()
	e := &env{
		t:     t,
		logs:  &syncBuffer{},
		acme:  &tidings.App{ID: "acme", ServerKey: "tsk_acmekey", SigningSecret: "acme-signing-secret"},
		other: &tidings.App{ID: "other", ServerKey: "tsk_otherkey", SigningSecret: "other-signing-secret"},
		convs: &fakeConversations{},
		msgs:  &fakeMessages{},
		files: &fakeFiles{files: map[string]*tidings.File{}, content: map[string][]byte{}, max: 1 << 20},
	}
	e.apps = &fakeApps{apps: []*tidings.App{e.acme, e.other}}
	e.users = &fakeUsers{users: map[string]map[string]*tidings.User{
		"acme": {
			"alice": {ID: "alice", DisplayName: "Alice"},
			"bob":   {ID: "bob", DisplayName: "Bob"},
		},
		"other": {"carol": {ID: "carol", DisplayName: "Carol"}},
	}}

	s := NewServer()
	s.Addr = "127.0.0.1:0"
	s.Apps, s.Users, s.Conversations, s.Messages, s.Files = e.apps, e.users, e.convs, e.msgs, e.files
	s.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s.Now = e.now
	if configure != nil {
		configure(s)
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	e.srv = s
	e.client = &http.Client{Timeout: 10 * time.Second}
	return e
}

// tokenFor mints an access token of app for userID.
func (e *env) tokenFor(app *tidings.App, userID string) string {
	e.t.Helper()
	tok, _, err := token.Mint(app, userID, time.Hour, testNow)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// response is a response read in full.
type response struct {
	*http.Response
	body []byte
}

// errorBody decodes the body as an error response, failing the test if
// it does not have exactly the error shape.
func (r response) errorBody(t *testing.T) errorBody {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q; want application/json", ct)
	}
	var er errorResponse
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&er); err != nil {
		t.Fatalf("error body %q is not in the error shape: %v", r.body, err)
	}
	if er.Error.Code == "" || er.Error.Message == "" {
		t.Fatalf("error body %q has no code or message", r.body)
	}
	return er.Error
}

// do sends a request. body may be nil, a string or []byte (sent as is), or
// any other value (encoded as JSON). header holds extra headers, e.g.
// "Authorization".
func (e *env) do(method, path string, body any, header ...string) response {
	e.t.Helper()
	var rd io.Reader
	contentType := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
		contentType = "application/json"
	case []byte:
		rd = bytes.NewReader(b)
		contentType = "application/json"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
		contentType = "application/json"
	}
	req, err := http.NewRequest(method, e.srv.URL()+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	return e.send(req)
}

func (e *env) send(req *http.Request) response {
	e.t.Helper()
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{Response: resp, body: b}
}

func bearerHeader(cred string) []string { return []string{"Authorization", "Bearer " + cred} }

// wantError checks that resp is an error with the given status and code,
// and returns its message.
func wantError(t *testing.T, resp response, status int, code string) string {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: status = %d; want %d (body %s)", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, status, resp.body)
	}
	eb := resp.errorBody(t)
	if eb.Code != code {
		t.Fatalf("%s %s: code = %q; want %q (message %q)", resp.Request.Method, resp.Request.URL.Path, eb.Code, code, eb.Message)
	}
	return eb.Message
}
