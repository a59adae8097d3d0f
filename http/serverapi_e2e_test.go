package http_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tidings/tidings"
)

// TestE2EServerAsItself: the app's backend, with its server key and no
// Tidings-On-Behalf-Of header, creates a conversation of others, sends a
// system message they read as one, moderates their messages and manages
// participants; another app's server sees none of it.
func TestE2EServerAsItself(t *testing.T) {
	w := newWorld(t)
	alice := w.createUser(w.acme, "alice")
	w.createUser(w.acme, "bob")
	key := w.acme.ServerKey

	var conv tidings.Conversation
	w.call("POST", "/v1/conversations", key, map[string]any{"id": "c", "name": "Support",
		"participants": []map[string]any{{"userId": "alice", "role": "owner"}, {"userId": "bob"}}}).ok(t, 201, &conv)
	if conv.CreatedBy != "" || conv.ParticipantCount != 2 || conv.Role != "" {
		t.Errorf("created %+v", conv)
	}
	var sys tidings.Message
	w.call("POST", "/v1/conversations/c/messages", key, text("Welcome to support")).ok(t, 201, &sys)
	if !sys.System || sys.Sender.ID != "" {
		t.Errorf("system message %+v", sys)
	}
	var m tidings.Message
	w.call("POST", "/v1/conversations/c/messages", alice, text("spam")).ok(t, 201, &m)
	var page tidings.MessagePage
	w.call("GET", "/v1/conversations/c/messages", alice, nil).ok(t, 200, &page)
	if len(page.Messages) != 2 || !page.Messages[0].System || page.Messages[1].System {
		t.Errorf("alice reads %+v", page.Messages)
	}
	// Alice, the owner, cannot edit the system message; the server edits
	// and deletes hers.
	w.call("PATCH", "/v1/conversations/c/messages/"+sys.ID, alice, text("mine")).fails(t, 403, tidings.EForbidden)
	w.call("PATCH", "/v1/conversations/c/messages/"+m.ID, key, text("[removed]")).ok(t, 200, &m)
	if m.Sender.ID != "alice" || m.EditedAt == nil {
		t.Errorf("edited by the server: %+v", m)
	}
	w.call("DELETE", "/v1/conversations/c/messages/"+m.ID, key, nil).ok(t, 204, nil)
	w.call("PATCH", "/v1/conversations/c/participants/bob", key, map[string]any{"role": "admin"}).ok(t, 200, nil)
	w.call("DELETE", "/v1/conversations/c/participants/bob", key, nil).ok(t, 204, nil)
	var list tidings.ConversationPage
	w.call("GET", "/v1/conversations", key, nil).ok(t, 200, &list)
	if len(list.Conversations) != 1 || list.Conversations[0].ID != "c" || list.Conversations[0].ParticipantCount != 1 {
		t.Errorf("the server lists %+v", list.Conversations)
	}
	// A system message with a file the server uploads; alice downloads it.
	req, _ := http.NewRequest("POST", w.srv.URL()+"/v1/conversations/c/files?name=report.txt", strings.NewReader("all good"))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "text/plain")
	var f tidings.File
	w.do(req).ok(t, 201, &f)
	if f.UploaderID != "" {
		t.Errorf("the server's file: %+v", f)
	}
	w.call("POST", "/v1/conversations/c/messages", key, map[string]any{"parts": []map[string]any{{"type": "text/plain", "fileId": f.ID}}}).ok(t, 201, nil)
	if got := w.call("GET", "/v1/conversations/c/files/"+f.ID, alice, nil); got.status != 200 || string(got.body) != "all good" {
		t.Errorf("alice downloads the server's file: %d %q", got.status, got.body)
	}
	w.call("GET", "/v1/conversations/c", w.globex.ServerKey, nil).fails(t, 404, tidings.ENotFound)
	w.call("POST", "/v1/conversations/c/read", key, map[string]any{"seq": 1}).fails(t, 403, tidings.EForbidden)
}

// TestE2EFindUsers: the server key lists users by id prefix and searches
// them by display name or identifier.
func TestE2EFindUsers(t *testing.T) {
	w := newWorld(t)
	for _, id := range []string{"ann", "anna", "bert"} {
		w.createUser(w.acme, id)
	}
	var page struct {
		Users     []tidings.User `json:"users"`
		NextAfter string         `json:"nextAfter"`
	}
	w.call("GET", "/v1/users?prefix=ann&limit=1", w.acme.ServerKey, nil).ok(t, 200, &page)
	if len(page.Users) != 1 || page.Users[0].ID != "ann" || page.NextAfter != "ann" {
		t.Errorf("first page of prefix ann: %+v", page)
	}
	w.call("GET", "/v1/users?prefix=ann&after=ann", w.acme.ServerKey, nil).ok(t, 200, &page)
	if len(page.Users) != 1 || page.Users[0].ID != "anna" {
		t.Errorf("second page of prefix ann: %+v", page)
	}
	w.call("GET", "/v1/users?q=BER", w.acme.ServerKey, nil).ok(t, 200, &page) // display name "Bert"
	if len(page.Users) != 1 || page.Users[0].ID != "bert" {
		t.Errorf("search BER: %+v", page)
	}
}

// TestE2EMute: the server key mutes a participant, whose sends are then
// refused with 403 forbidden, until it unmutes them.
func TestE2EMute(t *testing.T) {
	w := newWorld(t)
	alice := w.createUser(w.acme, "alice")
	bob := w.createUser(w.acme, "bob")
	key := w.acme.ServerKey
	w.call("POST", "/v1/conversations", alice, map[string]any{"id": "c", "participants": []map[string]any{{"userId": "bob"}}}).ok(t, 201, nil)
	w.call("PATCH", "/v1/conversations/c/participants/bob", key, map[string]any{}).fails(t, 400, tidings.EInvalid)
	var p tidings.Participant
	w.call("PATCH", "/v1/conversations/c/participants/bob", key, map[string]any{"muted": true}).ok(t, 200, &p)
	if !p.Muted || p.Role != tidings.RoleMember {
		t.Errorf("muted bob: %+v", p)
	}
	if msg := w.call("POST", "/v1/conversations/c/messages", bob, text("hey")).fails(t, 403, tidings.EForbidden); !strings.Contains(msg, "muted") {
		t.Errorf("a muted participant's send: %q", msg)
	}
	var conv tidings.Conversation
	w.call("GET", "/v1/conversations/c", bob, nil).ok(t, 200, &conv)
	if !conv.MutedByModerator {
		t.Errorf("bob's view: %+v", conv)
	}
	w.call("PATCH", "/v1/conversations/c/participants/bob", key, map[string]any{"muted": false, "role": "admin"}).ok(t, 200, &p)
	if p.Muted || p.Role != tidings.RoleAdmin {
		t.Errorf("unmuted bob: %+v", p)
	}
	w.call("POST", "/v1/conversations/c/messages", bob, text("thanks")).ok(t, 201, nil)
}

// TestE2EUserAccess: a deactivated user's token is refused, the server key
// cannot act for them nor mint them a token, until they are reactivated;
// revoking a user's tokens refuses those issued before, while one minted
// at once after works.
func TestE2EUserAccess(t *testing.T) {
	w := newWorld(t)
	bob := w.createUser(w.acme, "bob")
	key := w.acme.ServerKey
	var u tidings.User
	w.call("POST", "/v1/users/bob/deactivate", bob, nil).fails(t, 403, tidings.EForbidden)
	w.call("POST", "/v1/users/bob/deactivate", key, nil).ok(t, 200, &u)
	if u.DeactivatedAt == nil {
		t.Errorf("deactivated: %+v", u)
	}
	if msg := w.call("GET", "/v1/me", bob, nil).fails(t, 401, tidings.EUnauthenticated); !strings.Contains(msg, "deactivated") {
		t.Errorf("a deactivated user's token: %q", msg)
	}
	req, _ := http.NewRequest("GET", w.srv.URL()+"/v1/conversations", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Tidings-On-Behalf-Of", "bob")
	w.do(req).fails(t, 403, tidings.EForbidden)
	w.call("POST", "/v1/users/bob/tokens", key, nil).fails(t, 409, tidings.EConflict)
	w.call("GET", "/v1/users/bob", bob, nil).fails(t, 401, tidings.EUnauthenticated)
	w.call("POST", "/v1/users/bob/reactivate", key, nil).ok(t, 200, &u)
	w.call("GET", "/v1/me", bob, nil).ok(t, 200, nil)

	w.call("DELETE", "/v1/users/bob/tokens", key, nil).ok(t, 200, &u)
	if u.TokensNotBefore == nil {
		t.Errorf("revoked: %+v", u)
	}
	w.call("GET", "/v1/users/bob", bob, nil).fails(t, 401, tidings.EUnauthenticated)
	var tok struct {
		Token string `json:"token"`
	}
	w.call("POST", "/v1/users/bob/tokens", key, nil).ok(t, 201, &tok)
	var me tidings.User
	w.call("GET", "/v1/me", tok.Token, nil).ok(t, 200, &me)
	if me.TokensNotBefore != nil {
		t.Errorf("bob sees his tokens' not-before: %+v", me)
	}
	w.call("DELETE", "/v1/users/nobody/tokens", key, nil).fails(t, 404, tidings.ENotFound)
	w.call("DELETE", "/v1/users/bob?messages=shred", key, nil).fails(t, 400, tidings.EInvalid)
	w.call("DELETE", "/v1/users/bob?messages=erase", key, nil).ok(t, 204, nil)
	w.call("GET", "/v1/me", tok.Token, nil).fails(t, 401, tidings.EUnauthenticated)
}
