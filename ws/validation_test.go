package ws_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// The socket validates a message as the REST API does: the rules live in
// the domain, and every transport shares them.
func TestSendRefusesEmptyPartsAndDeepMetadata(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	c := dial(t, s)
	c.auth("", s.token("a", "alice"), protocol.AuthArgs{})

	empty := protocol.SendArgs{ConversationID: conv, Parts: json.RawMessage(`[{"type":"text/plain","data":""}]`)}
	wantError(t, c.command("", protocol.CmdSend, empty), tidings.EInvalid)

	deep := sendArgs(conv, "hi")
	deep.Metadata = json.RawMessage(`{"a":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`)
	wantError(t, c.command("", protocol.CmdSend, deep), tidings.EInvalid)

	wantOK(t, c.command("", protocol.CmdSend, sendArgs(conv, "hi")))
}
