package http_test

// End-to-end tests: the real server, on the real SQLite store and disk
// blob store in a temporary directory, driven over HTTP by a real client,
// as a customer's backend and its users' apps would.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	tidingshttp "github.com/tidings/tidings/http"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/token"
)

const e2eMaxFileBytes = 64 << 10

// world is a running Tidings with two apps, acme and globex.
type world struct {
	t      *testing.T
	srv    *tidingshttp.Server
	db     *sqlite.DB
	apps   *sqlite.AppService
	acme   *tidings.App
	globex *tidings.App
	logs   *lockedBuffer
	client *http.Client
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newWorld(t *testing.T) *world {
	t.Helper()
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))

	s, db := startStack(t, stackOptions{logger: logger, maxFileBytes: e2eMaxFileBytes})

	w := &world{t: t, srv: s, db: db, apps: s.Apps.(*sqlite.AppService), logs: logs,
		client: &http.Client{Timeout: 10 * time.Second}}
	var err error
	if w.acme, err = w.apps.CreateApp(context.Background(), "acme", "Acme"); err != nil {
		t.Fatal(err)
	}
	if w.globex, err = w.apps.CreateApp(context.Background(), "globex", "Globex"); err != nil {
		t.Fatal(err)
	}
	return w
}

// result is a response read in full.
type result struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
}

// call sends a request with credential cred ("" for none) and body (nil,
// a string sent as is, or a value encoded as JSON; both as
// application/json).
func (w *world) call(method, path, cred string, body any) result {
	w.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			w.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, w.srv.URL()+path, rd)
	if err != nil {
		w.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	return w.do(req)
}

func (w *world) do(req *http.Request) result {
	w.t.Helper()
	resp, err := w.client.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatal(err)
	}
	return result{method: req.Method, path: req.URL.RequestURI(), status: resp.StatusCode, header: resp.Header, body: b}
}

// ok checks the status of r and decodes its body into v (if not nil).
func (r result) ok(t *testing.T, status int, v any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s %s: status %d; want %d; body %s", r.method, r.path, r.status, status, r.body)
	}
	if v != nil {
		// Decode into a zero value, so nothing of a previous answer stays.
		reflect.ValueOf(v).Elem().SetZero()
		if err := json.Unmarshal(r.body, v); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", r.method, r.path, r.body, err)
		}
	}
}

// fails checks that r is an error with the given status and code, in the
// one error shape, and returns its message.
func (r result) fails(t *testing.T, status int, code string) string {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s %s: status %d; want %d; body %s", r.method, r.path, r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: error Content-Type %q", r.method, r.path, ct)
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error.Message == "" {
		t.Fatalf("%s %s: body %s is not in the error shape (%v)", r.method, r.path, r.body, err)
	}
	if e.Error.Code != code {
		t.Fatalf("%s %s: code %q (%s); want %q", r.method, r.path, e.Error.Code, e.Error.Message, code)
	}
	return e.Error.Message
}

// createUser creates a user of app through the API and returns a token
// for them, minted through the API too.
func (w *world) createUser(app *tidings.App, id string) string {
	w.t.Helper()
	var u tidings.User
	w.call("POST", "/v1/users", app.ServerKey, map[string]any{"id": id, "displayName": strings.ToUpper(id[:1]) + id[1:]}).ok(w.t, 201, &u)
	if u.ID != id {
		w.t.Fatalf("created user %q; want %q", u.ID, id)
	}
	var tok struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expiresAt"`
		UserID    string    `json:"userId"`
	}
	w.call("POST", "/v1/users/"+id+"/tokens", app.ServerKey, map[string]any{"ttlSeconds": 3600}).ok(w.t, 201, &tok)
	if tok.UserID != id || tok.Token == "" || time.Until(tok.ExpiresAt) > time.Hour || time.Until(tok.ExpiresAt) < 59*time.Minute {
		w.t.Fatalf("token response %+v", tok)
	}
	return tok.Token
}

func text(s string) map[string]any {
	return map[string]any{"parts": []map[string]any{{"type": "text/plain", "data": s}}}
}

func seqs(p tidings.MessagePage) []int64 {
	var out []int64
	for _, m := range p.Messages {
		out = append(out, m.Seq)
	}
	return out
}

func TestE2EConversation(t *testing.T) {
	w := newWorld(t)
	alice := w.createUser(w.acme, "alice")
	bob := w.createUser(w.acme, "bob")
	carol := w.createUser(w.acme, "carol")

	var me tidings.User
	w.call("GET", "/v1/me", bob, nil).ok(t, 200, &me)
	if me.ID != "bob" || me.DisplayName != "Bob" {
		t.Errorf("GET /v1/me = %+v", me)
	}

	// Alice creates a private conversation and adds Bob.
	var conv tidings.Conversation
	w.call("POST", "/v1/conversations", alice, map[string]any{"id": "plans", "name": "Plans"}).ok(t, 201, &conv)
	if conv.ID != "plans" || conv.Role != tidings.RoleOwner || conv.IsPublic || conv.ParticipantCount != 1 {
		t.Errorf("created %+v", conv)
	}
	w.call("POST", "/v1/conversations", alice, map[string]any{"id": "plans"}).fails(t, 409, tidings.EConflict)
	var p tidings.Participant
	w.call("POST", "/v1/conversations/plans/participants", alice, map[string]any{"userId": "bob"}).ok(t, 201, &p)
	if p.UserID != "bob" || p.Role != tidings.RoleMember || p.Profile.DisplayName != "Bob" {
		t.Errorf("added %+v", p)
	}
	w.call("POST", "/v1/conversations/plans/participants", alice, map[string]any{"userId": "bob"}).fails(t, 409, tidings.EConflict)
	var ps struct{ Participants []tidings.Participant }
	w.call("GET", "/v1/conversations/plans/participants", bob, nil).ok(t, 200, &ps)
	if len(ps.Participants) != 2 {
		t.Errorf("participants = %+v", ps.Participants)
	}

	// Carol takes no part: the conversation does not exist for her.
	w.call("GET", "/v1/conversations/plans", carol, nil).fails(t, 404, tidings.ENotFound)
	w.call("GET", "/v1/conversations/plans/messages", carol, nil).fails(t, 404, tidings.ENotFound)
	w.call("GET", "/v1/conversations/plans/participants", carol, nil).fails(t, 404, tidings.ENotFound)
	w.call("POST", "/v1/conversations/plans/messages", carol, text("let me in")).fails(t, 404, tidings.ENotFound)
	w.call("POST", "/v1/conversations/plans/join", carol, nil).fails(t, 404, tidings.ENotFound)
	var carolsList tidings.ConversationPage
	w.call("GET", "/v1/conversations", carol, nil).ok(t, 200, &carolsList)
	if len(carolsList.Conversations) != 0 {
		t.Errorf("carol sees %d conversations", len(carolsList.Conversations))
	}

	// Alice sends five messages.
	for i := 1; i <= 5; i++ {
		var m tidings.Message
		w.call("POST", "/v1/conversations/plans/messages", alice, text(fmt.Sprint("message ", i))).ok(t, 201, &m)
		if m.Seq != int64(i) || m.Sender.ID != "alice" || m.Parts[0].Data != fmt.Sprint("message ", i) {
			t.Errorf("sent %+v", m)
		}
	}

	// Bob has five unread messages; he marks them delivered, then reads
	// up to the third, then all of them.
	w.call("GET", "/v1/conversations/plans", bob, nil).ok(t, 200, &conv)
	if conv.LastSeq != 5 || conv.UnreadCount != 5 || conv.Role != tidings.RoleMember {
		t.Errorf("bob's view: %+v", conv)
	}
	var st tidings.MessageStatus
	w.call("POST", "/v1/conversations/plans/delivered", bob, nil).ok(t, 200, &st)
	if st.DeliveredSeq != 5 || st.ReadSeq != 0 || st.UnreadCount != 5 || st.UserID != "bob" {
		t.Errorf("after delivered: %+v", st)
	}
	w.call("POST", "/v1/conversations/plans/read", bob, map[string]any{"seq": 3}).ok(t, 200, &st)
	if st.ReadSeq != 3 || st.UnreadCount != 2 {
		t.Errorf("after reading 3: %+v", st)
	}
	w.call("GET", "/v1/conversations/plans", bob, nil).ok(t, 200, &conv)
	if conv.UnreadCount != 2 || conv.ReadSeq != 3 {
		t.Errorf("bob's view after reading 3: unread %d, read %d", conv.UnreadCount, conv.ReadSeq)
	}
	w.call("POST", "/v1/conversations/plans/read", bob, map[string]any{"seq": 99}).fails(t, 400, tidings.EInvalid)
	w.call("POST", "/v1/conversations/plans/read", bob, nil).ok(t, 200, &st)
	if st.ReadSeq != 5 || st.UnreadCount != 0 {
		t.Errorf("after reading all: %+v", st)
	}
	var bobsList tidings.ConversationPage
	w.call("GET", "/v1/conversations", bob, nil).ok(t, 200, &bobsList)
	if len(bobsList.Conversations) != 1 || bobsList.Conversations[0].UnreadCount != 0 {
		t.Errorf("bob's list: %+v", bobsList)
	}

	// Bob replies with a client id; a retry does not duplicate it.
	var first, again tidings.Message
	reply := map[string]any{"clientId": "bob-1", "parts": []map[string]any{{"type": "text/plain", "data": "sounds good"}}}
	w.call("POST", "/v1/conversations/plans/messages", bob, reply).ok(t, 201, &first)
	w.call("POST", "/v1/conversations/plans/messages", bob, reply).ok(t, 200, &again)
	if first.ID != again.ID || again.Seq != 6 || again.ClientID != "bob-1" {
		t.Errorf("retry gave %+v; want the first message %+v", again, first)
	}

	// History pages both ways, always in ascending order.
	var page tidings.MessagePage
	w.call("GET", "/v1/conversations/plans/messages?limit=4", bob, nil).ok(t, 200, &page)
	if fmt.Sprint(seqs(page)) != "[3 4 5 6]" || !page.HasMore {
		t.Errorf("newest page: %v hasMore %v", seqs(page), page.HasMore)
	}
	w.call("GET", "/v1/conversations/plans/messages?limit=4&before=3", bob, nil).ok(t, 200, &page)
	if fmt.Sprint(seqs(page)) != "[1 2]" || page.HasMore {
		t.Errorf("older page: %v hasMore %v", seqs(page), page.HasMore)
	}
	w.call("GET", "/v1/conversations/plans/messages?limit=4&after=0", bob, nil).ok(t, 200, &page)
	if fmt.Sprint(seqs(page)) != "[1 2 3 4]" || !page.HasMore {
		t.Errorf("first page forward: %v hasMore %v", seqs(page), page.HasMore)
	}
	w.call("GET", "/v1/conversations/plans/messages?limit=4&after=4", bob, nil).ok(t, 200, &page)
	if fmt.Sprint(seqs(page)) != "[5 6]" || page.HasMore {
		t.Errorf("next page forward: %v hasMore %v", seqs(page), page.HasMore)
	}
	w.call("GET", "/v1/conversations/plans/messages?after=1&before=5", bob, nil).fails(t, 400, tidings.EInvalid)

	// Editing is for the sender only.
	m1 := page.Messages[0] // seq 5, alice's
	var edited tidings.Message
	w.call("PATCH", "/v1/conversations/plans/messages/"+m1.ID, bob, text("hacked")).fails(t, 403, tidings.EForbidden)
	w.call("PATCH", "/v1/conversations/plans/messages/"+m1.ID, alice, text("message 5, edited")).ok(t, 200, &edited)
	if edited.EditedAt == nil || edited.Parts[0].Data != "message 5, edited" || edited.Seq != 5 {
		t.Errorf("edited %+v", edited)
	}
	var got tidings.Message
	w.call("GET", "/v1/conversations/plans/messages/"+m1.ID, bob, nil).ok(t, 200, &got)
	if got.Parts[0].Data != "message 5, edited" {
		t.Errorf("bob sees %+v", got)
	}

	// Deleting: not by another member; by the sender, twice if need be.
	w.call("DELETE", "/v1/conversations/plans/messages/"+m1.ID, bob, nil).fails(t, 403, tidings.EForbidden)
	w.call("DELETE", "/v1/conversations/plans/messages/"+m1.ID, alice, nil).ok(t, 204, nil)
	w.call("DELETE", "/v1/conversations/plans/messages/"+m1.ID, alice, nil).ok(t, 204, nil)
	w.call("GET", "/v1/conversations/plans/messages/"+m1.ID, bob, nil).ok(t, 200, &got)
	if got.DeletedAt == nil || len(got.Parts) != 0 {
		t.Errorf("deleted message %+v", got)
	}
	w.call("PATCH", "/v1/conversations/plans/messages/"+m1.ID, alice, text("undead")).fails(t, 409, tidings.EConflict)
	w.call("GET", "/v1/conversations/plans/messages/nope", bob, nil).fails(t, 404, tidings.ENotFound)

	// Roles and details.
	w.call("PATCH", "/v1/conversations/plans", bob, map[string]any{"name": "Mine"}).fails(t, 403, tidings.EForbidden)
	w.call("PATCH", "/v1/conversations/plans/participants/bob", alice, map[string]any{"role": "admin"}).ok(t, 200, &p)
	if p.Role != tidings.RoleAdmin {
		t.Errorf("promoted %+v", p)
	}
	w.call("PATCH", "/v1/conversations/plans", bob, map[string]any{"name": "Plans 2", "description": "what next"}).ok(t, 200, &conv)
	if conv.Name != "Plans 2" || conv.Description != "what next" {
		t.Errorf("updated %+v", conv)
	}
	w.call("PATCH", "/v1/conversations/plans/participants/bob", alice, map[string]any{"role": "king"}).fails(t, 400, tidings.EInvalid)

	// Delete and undelete.
	w.call("DELETE", "/v1/conversations/plans", bob, nil).fails(t, 403, tidings.EForbidden)
	w.call("DELETE", "/v1/conversations/plans", alice, nil).ok(t, 204, nil)
	w.call("POST", "/v1/conversations/plans/messages", bob, text("anyone?")).fails(t, 409, tidings.EConflict)
	w.call("GET", "/v1/conversations", bob, nil).ok(t, 200, &bobsList)
	if len(bobsList.Conversations) != 0 {
		t.Errorf("deleted conversation listed: %+v", bobsList)
	}
	w.call("GET", "/v1/conversations?includeDeleted=true", bob, nil).ok(t, 200, &bobsList)
	if len(bobsList.Conversations) != 1 || bobsList.Conversations[0].DeletedAt == nil {
		t.Errorf("includeDeleted list: %+v", bobsList)
	}
	w.call("POST", "/v1/conversations/plans/undelete", alice, nil).ok(t, 200, &conv)
	if conv.DeletedAt != nil {
		t.Errorf("undeleted %+v", conv)
	}

	// Alice removes Bob, who then cannot see it any more.
	w.call("DELETE", "/v1/conversations/plans/participants/bob", alice, nil).ok(t, 204, nil)
	w.call("GET", "/v1/conversations/plans", bob, nil).fails(t, 404, tidings.ENotFound)
	// The last owner cannot leave while others remain... but alone she can.
	w.call("POST", "/v1/conversations/plans/leave", alice, nil).ok(t, 204, nil)
}

func TestE2EPublicConversation(t *testing.T) {
	w := newWorld(t)
	alice := w.createUser(w.acme, "alice")
	bob := w.createUser(w.acme, "bob")

	var conv tidings.Conversation
	w.call("POST", "/v1/conversations", alice, map[string]any{"name": "Lobby", "isPublic": true}).ok(t, 201, &conv)
	if conv.ID == "" || !conv.IsPublic {
		t.Fatalf("created %+v", conv)
	}
	path := "/v1/conversations/" + conv.ID
	w.call("GET", path, bob, nil).ok(t, 200, &conv)
	var p tidings.Participant
	w.call("POST", path+"/join", bob, nil).ok(t, 200, &p)
	if p.UserID != "bob" || p.Role != tidings.RoleMember {
		t.Errorf("joined %+v", p)
	}
	// Joining again changes nothing.
	w.call("POST", path+"/join", bob, nil).ok(t, 200, &p)
	if p.UserID != "bob" || p.Role != tidings.RoleMember {
		t.Errorf("joined again %+v", p)
	}
	w.call("POST", path+"/messages", bob, text("hello all")).ok(t, 201, nil)
	// The last owner cannot leave while Bob is there.
	w.call("POST", path+"/leave", alice, nil).fails(t, 409, tidings.EConflict)
	// Removing yourself is leaving.
	w.call("DELETE", path+"/participants/bob", bob, nil).ok(t, 204, nil)
	var ps struct{ Participants []tidings.Participant }
	w.call("GET", path+"/participants", alice, nil).ok(t, 200, &ps)
	if len(ps.Participants) != 1 || ps.Participants[0].UserID != "alice" {
		t.Errorf("participants after bob left: %+v", ps.Participants)
	}
}

func TestE2EUsers(t *testing.T) {
	w := newWorld(t)
	key := w.acme.ServerKey
	alice := w.createUser(w.acme, "alice")
	w.createUser(w.acme, "bob")
	w.createUser(w.acme, "carol")

	w.call("POST", "/v1/users", key, map[string]any{"id": "alice"}).fails(t, 409, tidings.EConflict)
	w.call("POST", "/v1/users", key, map[string]any{"id": "-bad id-"}).fails(t, 400, tidings.EInvalid)
	w.call("POST", "/v1/users", key, map[string]any{"id": "dave", "metadata": []int{1}}).fails(t, 400, tidings.EInvalid)

	var page struct {
		Users     []tidings.User `json:"users"`
		NextAfter string         `json:"nextAfter"`
	}
	w.call("GET", "/v1/users?limit=2", key, nil).ok(t, 200, &page)
	if len(page.Users) != 2 || page.Users[0].ID != "alice" || page.NextAfter != "bob" {
		t.Errorf("first page %+v", page)
	}
	w.call("GET", "/v1/users?limit=2&after="+page.NextAfter, key, nil).ok(t, 200, &page)
	if len(page.Users) != 1 || page.Users[0].ID != "carol" || page.NextAfter != "" {
		t.Errorf("last page %+v", page)
	}

	// A user updates their own profile, not someone else's; the
	// identifier and metadata are the server's (by default).
	var u tidings.User
	w.call("PATCH", "/v1/users/alice", alice, map[string]any{
		"displayName": "Alice A.", "avatarUrl": "https://example.com/a.png",
	}).ok(t, 200, &u)
	w.call("PATCH", "/v1/users/alice", key, map[string]any{
		"identifier": map[string]any{"value": "alice@example.com", "kind": "email"},
		"metadata":   map[string]any{"team": "red"},
	}).ok(t, 200, &u)
	if u.DisplayName != "Alice A." || u.AvatarURL != "https://example.com/a.png" || u.Identifier == nil || u.Identifier.Value != "alice@example.com" || string(u.Metadata) != `{"team":"red"}` {
		t.Errorf("updated %+v", u)
	}
	w.call("PATCH", "/v1/users/bob", alice, map[string]any{"displayName": "Bobo"}).fails(t, 403, tidings.EForbidden)
	w.call("PATCH", "/v1/users/alice", alice, map[string]any{"avatarUrl": "javascript:alert(1)"}).fails(t, 400, tidings.EInvalid)
	w.call("GET", "/v1/users/alice", key, nil).ok(t, 200, &u)
	if u.DisplayName != "Alice A." {
		t.Errorf("server sees %+v", u)
	}
	w.call("GET", "/v1/users/nobody", alice, nil).fails(t, 404, tidings.ENotFound)
	w.call("POST", "/v1/users/nobody/tokens", key, nil).fails(t, 404, tidings.ENotFound)
	w.call("POST", "/v1/users/alice/tokens", key, map[string]any{"ttlSeconds": 7 * 24 * 3600}).fails(t, 400, tidings.EInvalid)
}

func TestE2ETenantIsolation(t *testing.T) {
	w := newWorld(t)
	alice := w.createUser(w.acme, "alice")
	w.createUser(w.acme, "bob")
	// Both apps have a user called alice; they are different people.
	gAlice := w.createUser(w.globex, "alice")
	w.createUser(w.globex, "gus")

	w.call("POST", "/v1/conversations", alice, map[string]any{"id": "secret", "participants": []map[string]any{{"userId": "bob"}}}).ok(t, 201, nil)
	w.call("POST", "/v1/conversations/secret/messages", alice, text("acme only")).ok(t, 201, nil)

	// Globex's users and server see nothing of acme.
	w.call("GET", "/v1/conversations/secret", gAlice, nil).fails(t, 404, tidings.ENotFound)
	w.call("GET", "/v1/conversations/secret/messages", gAlice, nil).fails(t, 404, tidings.ENotFound)
	w.call("GET", "/v1/users/bob", gAlice, nil).fails(t, 404, tidings.ENotFound)
	w.call("GET", "/v1/users/bob", w.globex.ServerKey, nil).fails(t, 404, tidings.ENotFound)
	w.call("POST", "/v1/users/bob/tokens", w.globex.ServerKey, nil).fails(t, 404, tidings.ENotFound)
	var page struct{ Users []tidings.User }
	w.call("GET", "/v1/users", w.globex.ServerKey, nil).ok(t, 200, &page)
	if len(page.Users) != 2 || page.Users[0].ID != "alice" || page.Users[1].ID != "gus" {
		t.Errorf("globex lists %+v", page.Users)
	}
	// Acme cannot add globex's gus to a conversation.
	w.call("POST", "/v1/conversations/secret/participants", alice, map[string]any{"userId": "gus"}).fails(t, 404, tidings.ENotFound)
	var me tidings.User
	w.call("GET", "/v1/me", gAlice, nil).ok(t, 200, &me)
	if me.DisplayName != "Alice" {
		t.Errorf("globex alice = %+v", me)
	}
	// A token claiming acme but signed with globex's secret is refused.
	forged, _, err := token.Mint(&tidings.App{ID: "acme", SigningSecret: w.globex.SigningSecret}, "alice", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	w.call("GET", "/v1/me", forged, nil).fails(t, 401, tidings.EUnauthenticated)

	// A rotated server key stops working at once.
	rotated, err := w.apps.RotateServerKey(context.Background(), "globex")
	if err != nil {
		t.Fatal(err)
	}
	w.call("GET", "/v1/users", w.globex.ServerKey, nil).fails(t, 401, tidings.EUnauthenticated)
	w.call("GET", "/v1/users", rotated.ServerKey, nil).ok(t, 200, nil)
}

// TestE2ECredentialKinds: the server key, without Tidings-On-Behalf-Of,
// cannot call what only a participant does (join, leave, marks, files);
// what it may do as itself is TestE2EServerAsItself's.
func TestE2ECredentialKinds(t *testing.T) {
	w := newWorld(t)
	alice := w.createUser(w.acme, "alice")
	key := w.acme.ServerKey
	w.call("POST", "/v1/conversations", alice, map[string]any{"id": "c"}).ok(t, 201, nil)

	for _, r := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/me", nil},
		{"POST", "/v1/conversations/c/join", nil},
		{"POST", "/v1/conversations/c/leave", nil},
		{"POST", "/v1/conversations/c/delivered", nil},
		{"POST", "/v1/conversations/c/read", nil},
	} {
		msg := w.call(r.method, r.path, key, r.body).fails(t, 403, tidings.EForbidden)
		if !strings.Contains(msg, "user access token") {
			t.Errorf("%s %s: message %q", r.method, r.path, msg)
		}
	}
	for _, r := range []struct{ method, path string }{
		{"POST", "/v1/users"}, {"GET", "/v1/users"}, {"POST", "/v1/users/alice/tokens"},
	} {
		w.call(r.method, r.path, alice, nil).fails(t, 403, tidings.EForbidden)
	}
	// The conversation is untouched.
	var conv tidings.Conversation
	w.call("GET", "/v1/conversations/c", alice, nil).ok(t, 200, &conv)
	if conv.DeletedAt != nil || conv.Name != "" {
		t.Errorf("conversation changed: %+v", conv)
	}
}

func TestE2EErrors(t *testing.T) {
	w := newWorld(t)
	alice := w.createUser(w.acme, "alice")
	key := w.acme.ServerKey
	w.call("POST", "/v1/conversations", alice, map[string]any{"id": "c"}).ok(t, 201, nil)
	expired, _, err := token.Mint(w.acme, "alice", time.Minute, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tooBig := map[string]any{"parts": []map[string]any{{"type": "text/plain", "data": strings.Repeat("x", tidings.DefaultMessageSize+1)}}}

	for _, tc := range []struct {
		method, path, cred string
		body               any
		status             int
		code               string
	}{
		{"GET", "/v1/nothing", alice, nil, 404, tidings.ENotFound},
		{"PUT", "/v1/me", alice, nil, 405, tidings.EMethodNotAllowed},
		{"GET", "/v1/me", "", nil, 401, tidings.EUnauthenticated},
		{"GET", "/v1/me", expired, nil, 401, tidings.EUnauthenticated},
		{"GET", "/v1/users", "tsk_nope", nil, 401, tidings.EUnauthenticated},
		{"POST", "/v1/users", key, `{"id":"x","extra":1}`, 400, tidings.EInvalidJSON},
		{"POST", "/v1/users", key, `{"id":"x"}{}`, 400, tidings.EInvalidJSON},
		{"POST", "/v1/users", key, `{"id":7}`, 400, tidings.EInvalidJSON},
		{"POST", "/v1/users", key, `{"id":"x","displayName":"` + strings.Repeat("n", 300) + `"}`, 400, tidings.EInvalid},
		{"POST", "/v1/users", key, `{"id":"x","metadata":"` + strings.Repeat("m", 2<<20) + `"}`, 413, tidings.ETooLarge},
		{"POST", "/v1/conversations", alice, map[string]any{"name": strings.Repeat("n", 201)}, 400, tidings.EInvalid},
		{"POST", "/v1/conversations", alice, map[string]any{"participants": []map[string]any{{"userId": "ghost"}}}, 404, tidings.ENotFound},
		{"POST", "/v1/conversations/c/messages", alice, map[string]any{"parts": []any{}}, 400, tidings.EInvalid},
		{"POST", "/v1/conversations/c/messages", alice, tooBig, 413, tidings.ETooLarge},
		{"POST", "/v1/conversations/c/messages", alice, `{"parts":[{"type":"text/plain","data":1}]}`, 400, tidings.EInvalidJSON},
		{"GET", "/v1/conversations/c/messages?limit=0", alice, nil, 400, tidings.EInvalid},
		{"GET", "/v1/conversations/c/messages?before=abc", alice, nil, 400, tidings.EInvalid},
		{"GET", "/v1/conversations?cursor=garbage", alice, nil, 400, tidings.EInvalid},
		{"GET", "/v1/conversations/nope", alice, nil, 404, tidings.ENotFound},
		{"POST", "/v1/conversations/c/read", alice, map[string]any{"seq": 5}, 400, tidings.EInvalid},
		{"PATCH", "/v1/conversations/c/participants/alice", alice, map[string]any{"role": "member"}, 409, tidings.EConflict},
	} {
		w.call(tc.method, tc.path, tc.cred, tc.body).fails(t, tc.status, tc.code)
	}

	// A JSON body sent as text is refused.
	req, _ := http.NewRequest("POST", w.srv.URL()+"/v1/conversations", strings.NewReader(`{"name":"x"}`))
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header.Set("Content-Type", "text/plain")
	w.do(req).fails(t, 415, tidings.EUnsupportedType)

	// Nothing above was an internal error.
	if strings.Contains(w.logs.String(), `"level":"ERROR"`) {
		t.Errorf("client mistakes were logged as errors:\n%s", w.logs.String())
	}
}

func TestE2EFiles(t *testing.T) {
	w := newWorld(t)
	alice := w.createUser(w.acme, "alice")
	bob := w.createUser(w.acme, "bob")
	carol := w.createUser(w.acme, "carol")
	w.call("POST", "/v1/conversations", alice, map[string]any{"id": "c", "participants": []map[string]any{{"userId": "bob"}}}).ok(t, 201, nil)

	upload := func(cred, name, contentType string, body io.Reader) result {
		req, _ := http.NewRequest("POST", w.srv.URL()+"/v1/conversations/c/files?name="+name, body)
		req.Header.Set("Authorization", "Bearer "+cred)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		return w.do(req)
	}
	content := bytes.Repeat([]byte("tidings "), 1000)
	var f tidings.File
	upload(alice, "notes%20%C3%A9t%C3%A9.txt", "text/plain; charset=utf-8", bytes.NewReader(content)).ok(t, 201, &f)
	if f.Name != "notes été.txt" || f.Size != int64(len(content)) || f.UploaderID != "alice" || f.ConversationID != "c" {
		t.Errorf("uploaded %+v", f)
	}

	// Share it in a message; Bob downloads it.
	var m tidings.Message
	w.call("POST", "/v1/conversations/c/messages", alice, map[string]any{"parts": []map[string]any{{"type": "text/plain", "fileId": f.ID}}}).ok(t, 201, &m)
	if m.Parts[0].FileID != f.ID {
		t.Errorf("message %+v", m)
	}
	got := w.call("GET", "/v1/conversations/c/files/"+f.ID, bob, nil)
	if got.status != 200 || !bytes.Equal(got.body, content) {
		t.Fatalf("download: %d, %d bytes", got.status, len(got.body))
	}
	for h, want := range map[string]string{
		"Content-Type":           "text/plain; charset=utf-8",
		"Content-Length":         fmt.Sprint(len(content)),
		"Content-Disposition":    `attachment; filename="notes _t_.txt"; filename*=UTF-8''notes%20%C3%A9t%C3%A9.txt`,
		"X-Content-Type-Options": "nosniff",
	} {
		if got.header.Get(h) != want {
			t.Errorf("%s = %q; want %q", h, got.header.Get(h), want)
		}
	}

	// Carol takes no part.
	w.call("GET", "/v1/conversations/c/files/"+f.ID, carol, nil).fails(t, 404, tidings.ENotFound)
	upload(carol, "x.txt", "text/plain", strings.NewReader("x")).fails(t, 404, tidings.ENotFound)
	// Mistakes.
	upload(alice, "x.txt", "no type", strings.NewReader("x")).fails(t, 415, tidings.EUnsupportedType)
	upload(alice, "", "text/plain", strings.NewReader("x")).fails(t, 400, tidings.EInvalid)
	upload(alice, "big.bin", "application/octet-stream", bytes.NewReader(make([]byte, e2eMaxFileBytes+1))).fails(t, 413, tidings.ETooLarge)
	upload(alice, "big.bin", "application/octet-stream", io.MultiReader(bytes.NewReader(make([]byte, e2eMaxFileBytes+1)))).fails(t, 413, tidings.ETooLarge)
	w.call("GET", "/v1/conversations/c/files/nope", alice, nil).fails(t, 404, tidings.ENotFound)
}

func TestE2EReadiness(t *testing.T) {
	w := newWorld(t)
	w.call("GET", "/readyz", "", nil).ok(t, 200, nil)
	w.call("GET", "/healthz", "", nil).ok(t, 200, nil)
	w.db.Close()
	w.call("GET", "/readyz", "", nil).fails(t, 503, tidings.EUnavailable)
	w.call("GET", "/healthz", "", nil).ok(t, 200, nil)
}

// TestE2EOnBehalfOf: the app's backend, with its server key and a
// Tidings-On-Behalf-Of header, does what a user could do, as that user:
// their conversations, their permissions, their messages; never another
// app's users, never with a user's token, never a device's realtime routes.
func TestE2EOnBehalfOf(t *testing.T) {
	w := newWorld(t)
	w.createUser(w.acme, "alice")
	bob := w.createUser(w.acme, "bob")
	w.createUser(w.globex, "carol")
	key := w.acme.ServerKey
	as := func(method, path, user string, body any) result {
		t.Helper()
		j, _ := json.Marshal(body)
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(j)
		}
		req, err := http.NewRequest(method, w.srv.URL()+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Tidings-On-Behalf-Of", user)
		return w.do(req)
	}

	var conv tidings.Conversation
	as("POST", "/v1/conversations", "alice", map[string]any{"id": "c", "name": "Ops"}).ok(t, 201, &conv)
	if conv.CreatedBy != "alice" {
		t.Errorf("created by %q, want alice", conv.CreatedBy)
	}
	var m tidings.Message
	as("POST", "/v1/conversations/c/messages", "alice", text("deploy done")).ok(t, 201, &m)
	if m.Sender.ID != "alice" {
		t.Errorf("sender %q, want alice", m.Sender.ID)
	}
	// Bob is not a participant of the private conversation: acting as him
	// gives what he would get.
	as("GET", "/v1/conversations/c", "bob", nil).fails(t, 404, tidings.ENotFound)
	as("POST", "/v1/conversations/c/participants", "alice", map[string]any{"userId": "bob"}).ok(t, 201, nil)
	var page tidings.MessagePage
	w.call("GET", "/v1/conversations/c/messages", bob, nil).ok(t, 200, &page)
	if len(page.Messages) != 1 || page.Messages[0].Sender.ID != "alice" {
		t.Errorf("bob reads %+v, want alice's message", page.Messages)
	}
	// Bob, a member, may not rename it, on his own or through the backend.
	as("PATCH", "/v1/conversations/c", "bob", map[string]any{"name": "x"}).fails(t, 403, tidings.EForbidden)

	if msg := as("GET", "/v1/conversations/c", "dave", nil).fails(t, 404, tidings.ENotFound); !strings.Contains(msg, "dave") {
		t.Errorf("unknown user: %q", msg)
	}
	as("GET", "/v1/conversations", "carol", nil).fails(t, 404, tidings.ENotFound) // another app's user
	as("GET", "/v1/conversations", "", nil).fails(t, 400, tidings.EInvalid)
	as("GET", "/v1/realtime/poll", "alice", nil).fails(t, 403, tidings.EForbidden)
	if msg := as("POST", "/v1/users", "alice", map[string]any{"id": "x"}).fails(t, 403, tidings.EForbidden); !strings.Contains(msg, "Tidings-On-Behalf-Of") {
		t.Errorf("server route with the header: %q", msg)
	}
	req, _ := http.NewRequest("GET", w.srv.URL()+"/v1/conversations", nil)
	req.Header.Set("Authorization", "Bearer "+bob)
	req.Header.Set("Tidings-On-Behalf-Of", "alice")
	w.do(req).fails(t, 403, tidings.EForbidden)
}
