package protocol_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// The answer to message.send leaves out what the command said: the message
// rebuilt from the answer and the command is the one stored, whether it is
// new as sent, new with what the server changed, or sent earlier with the
// same clientId (and changed since).
func TestSendResultGivesTheStoredMessage(t *testing.T) {
	at := time.Date(2026, 12, 1, 21, 0, 0, 123456000, time.UTC)
	later := at.Add(time.Minute)
	alice := tidings.Profile{ID: "alice", DisplayName: "Alice"}
	text := []tidings.Part{{Type: "text/plain", Data: "hi"}}
	file := []tidings.Part{{Type: "image/png", FileID: "f1"}}
	nm := tidings.NewMessage{ClientID: "k1", Parts: text, Metadata: json.RawMessage(`{"k":"v"}`), Alert: "Alice: hi"}
	stored := func(parts []tidings.Part) *tidings.Message {
		return &tidings.Message{ID: "m1", ConversationID: "lunch", Seq: 3, Sender: alice, ClientID: nm.ClientID, Parts: parts,
			Metadata: nm.Metadata, Alert: nm.Alert, SentAt: at}
	}
	edited := stored([]tidings.Part{{Type: "text/plain", Data: "hi!"}})
	edited.EditedAt = &later
	deleted := stored([]tidings.Part{})
	deleted.Metadata, deleted.Alert, deleted.DeletedAt = nil, "", &later
	for _, c := range []struct {
		name    string
		nm      tidings.NewMessage
		m       *tidings.Message
		created bool
		answer  string
	}{
		{"new", nm, stored(text), true, `{"id":"m1","seq":3,"sender":{"id":"alice","displayName":"Alice"},"sentAt":"2026-12-01T21:00:00.123456Z"}`},
		{"parts replaced", nm, stored([]tidings.Part{{Type: "text/plain", Data: "***"}}), true,
			`{"id":"m1","seq":3,"sender":{"id":"alice","displayName":"Alice"},"parts":[{"type":"text/plain","data":"***"}],"sentAt":"2026-12-01T21:00:00.123456Z"}`},
		{"file filled in", tidings.NewMessage{Parts: file}, &tidings.Message{ID: "m1", ConversationID: "lunch", Seq: 3, Sender: alice,
			Parts: []tidings.Part{{Type: "image/png", Name: "a.png", FileID: "f1", Size: 10}}, SentAt: at}, true,
			`{"id":"m1","seq":3,"sender":{"id":"alice","displayName":"Alice"},"parts":[{"type":"image/png","name":"a.png","fileId":"f1","size":10}],"sentAt":"2026-12-01T21:00:00.123456Z"}`},
		{"duplicate, edited since", tidings.NewMessage{ClientID: "k1", Parts: text}, edited, false, ""},
		{"duplicate, deleted since", nm, deleted, false, ""},
	} {
		b, err := json.Marshal(protocol.NewSendResult(c.nm, c.m, c.created))
		if err != nil {
			t.Fatal(err)
		}
		if c.answer != "" && string(b) != c.answer {
			t.Errorf("%s: answered %s, want %s", c.name, b, c.answer)
		}
		var r protocol.SendResult
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(r.Message("lunch", c.nm))
		want, _ := json.Marshal(c.m)
		if string(got) != string(want) {
			t.Errorf("%s: from %s, rebuilt %s, want %s", c.name, b, got, want)
		}
		if r.Duplicate == c.created {
			t.Errorf("%s: duplicate %v", c.name, r.Duplicate)
		}
	}
}

// An update's action follows from its event's name (docs/protocol.md,
// "The update frame").
func TestActionOf(t *testing.T) {
	for action, names := range map[string][]string{
		protocol.ActionNew: {tidings.EventConversationCreate, tidings.EventParticipantAdded, tidings.EventMessageSent, protocol.EventTyping},
		protocol.ActionUpdate: {tidings.EventProfileUpdate, tidings.EventConversationUpdate, tidings.EventConversationUndelete,
			tidings.EventParticipantUpdated, tidings.EventMessageEdited, tidings.EventMessageDelivered, tidings.EventMessageRead,
			protocol.EventPresence, "some.futureEvent"},
		protocol.ActionDelete: {tidings.EventConversationDelete, tidings.EventParticipantRemoved, tidings.EventMessageDeleted,
			protocol.EventTypingOff, protocol.EventAccountEnds},
	} {
		for _, name := range names {
			if got := protocol.ActionOf(name); got != action {
				t.Errorf("%s: %s, want %s", name, got, action)
			}
		}
	}
}
