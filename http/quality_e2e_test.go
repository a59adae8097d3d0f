package http_test

import (
	"strings"
	"testing"

	"github.com/tidings/tidings"
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
	w.call("PATCH", "/v1/users/alice", alice, `{"metadata":`+deep+`}`).fails(t, 400, tidings.EInvalid)
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
