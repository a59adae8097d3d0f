package protocol_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// Every event's tidings.v2 name leads back to its name.
func TestNamesV2(t *testing.T) {
	for _, name := range []string{tidings.EventMessageSent, tidings.EventMessageRead, tidings.EventConversationCreate,
		tidings.EventParticipantAdded, protocol.EventTyping, protocol.EventPresence, protocol.EventAccountEnds, tidings.EventProfileUpdate} {
		v2 := protocol.NameV2(name)
		if protocol.NameV1(v2) != name || (v2 != name) != strings.HasPrefix(name, "conversationMessage.") {
			t.Errorf("%s: %s, back %s", name, v2, protocol.NameV1(v2))
		}
	}
	if got := protocol.NameV2(tidings.EventMessageSent); got != "message.sent" {
		t.Errorf("sent is %s in tidings.v2", got)
	}
}

// A message.send's result says the same in both versions.
func TestSendResultV2(t *testing.T) {
	at := time.Date(2026, 12, 2, 6, 25, 16, 227138000, time.UTC)
	edited := at.Add(time.Second)
	for _, r := range []protocol.SendResult{
		{ID: "m", Seq: 1, Sender: tidings.Profile{ID: "alice", DisplayName: "Alice", AvatarURL: "https://a"}, SentAt: at},
		{ID: "m", ConversationID: "c", Seq: 2, Sender: tidings.Profile{ID: "alice"}, ClientID: "k", SentAt: at, EditedAt: &edited,
			Parts: []tidings.Part{{Type: "text/plain", Data: "x"}, {Type: "image/png", FileID: "f", Size: 3}}, Metadata: []byte(`{"a":1}`),
			Alert: "hi", Duplicate: true},
	} {
		back, ref := r.V2("12").V1()
		if ref != "12" || fmt.Sprintf("%+v %v", back, back.EditedAt) != fmt.Sprintf("%+v %v", r, r.EditedAt) {
			t.Errorf("%+v\nback %+v", r, back)
		}
	}
	if protocol.Micros(time.Time{}) != 0 || !protocol.FromMicros(0).IsZero() || !protocol.FromMicros(protocol.Micros(at)).Equal(at) {
		t.Error("microseconds")
	}
}

// A frame that is neither an answer nor an update is refused.
func TestDecodeV2Refuses(t *testing.T) {
	for _, line := range []string{`{}`, `{"r":"1"}`, `[`, `{"e":{"n":"message.sent","t":1,"p":{"i":3}}}`} {
		if f, err := protocol.DecodeV2([]byte(line)); err == nil {
			t.Errorf("%s: %+v", line, f)
		}
	}
	f, err := protocol.DecodeV2([]byte(`{"id":"5","err":{"code":"not_found","message":"no"}}`))
	if err != nil || f.Type != protocol.TypeAnswer || f.ID != "5" || f.Error == nil || f.Error.Code != "not_found" {
		t.Errorf("%+v, %v", f, err)
	}
}
