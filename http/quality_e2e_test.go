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
