package tidings

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"
)

// A message event's payload is the message without its conversationId
// (the event's) and, when sent, its sentAt (the event's time): every other
// field of Message is there, new ones too.
func TestMessagePayloadIsTheMessageLessWhatItsEventSays(t *testing.T) {
	now := time.Now().UTC()
	m := &Message{ID: "m", ConversationID: "c", Seq: 3, Sender: Profile{ID: "u", DisplayName: "U"}, ClientID: "k",
		Parts: []Part{{Type: "text/plain", Data: "hi"}}, Metadata: json.RawMessage(`{"a":1}`), Alert: "a",
		SentAt: now.Add(-time.Minute), EditedAt: &now, DeletedAt: &now}
	keys := func(v any) []string {
		b, _ := json.Marshal(v)
		var f map[string]json.RawMessage
		json.Unmarshal(b, &f)
		return slices.Sorted(maps.Keys(f))
	}
	all := keys(m)
	for _, tc := range []struct {
		referrer string
		want     []string
	}{
		{"", slices.DeleteFunc(slices.Clone(all), func(k string) bool { return k == "conversationId" || k == "sentAt" })},
		{"m", slices.Sorted(slices.Values(append(slices.DeleteFunc(slices.Clone(all), func(k string) bool { return k == "conversationId" }), "referrerId")))},
	} {
		p := NewMessagePayload(m, tc.referrer)
		if got := keys(p); !slices.Equal(got, tc.want) {
			t.Errorf("referrer %q: payload fields %v, want %v", tc.referrer, got, tc.want)
		}
		b, _ := json.Marshal(p)
		var back MessagePayload
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		back.Complete(&Event{ConversationID: "c", Time: m.SentAt})
		if back.ConversationID != "c" || !back.SentAt.Equal(m.SentAt) || back.ReferrerID != tc.referrer || back.Parts[0].Data != "hi" {
			t.Errorf("completed %+v", back)
		}
	}
}

// A sent message's event has the message's id, so that the realtime
// protocol sends it once; every other event has an id of its own.
func TestNewEventIDOfASentMessageIsTheMessages(t *testing.T) {
	m := &Message{ID: "06h37vs1dgfssr33g5lers3ei8"}
	if id := NewEventID(EventMessageSent, NewMessagePayload(m, "")); id != m.ID {
		t.Errorf("sent: event id %q, want the message's %q", id, m.ID)
	}
	for _, c := range []struct {
		name    string
		payload any
	}{
		{EventMessageEdited, NewMessagePayload(m, m.ID)},
		{EventMessageDeleted, NewMessagePayload(m, m.ID)},
		{EventMessageSent, MessagePayload{}},
		{EventMessageRead, StatusPayload{MessageID: m.ID}},
	} {
		if id := NewEventID(c.name, c.payload); id == m.ID || len(id) != 26 {
			t.Errorf("%s: event id %q, want a new one", c.name, id)
		}
	}
}

// The events of one read decode each actor once, and share it; a nil
// *Actors (a read of one event) decodes every time; a bad actor is an
// error.
func TestActorsDecodeOnce(t *testing.T) {
	var m Actors
	alice := []byte(`{"id":"alice","displayName":"Alice","identifier":{"value":"a@example.com","kind":"email"}}`)
	a1, err := m.Decode(alice)
	if err != nil || a1.ID != "alice" || a1.DisplayName != "Alice" || a1.Identifier == nil || a1.Identifier.Value != "a@example.com" {
		t.Fatalf("decode: %+v, %v", a1, err)
	}
	a2, _ := m.Decode(append([]byte(nil), alice...))
	bob, _ := m.Decode([]byte(`{"id":"bob","displayName":"Bob"}`))
	if a2 != a1 || bob == a1 || bob.ID != "bob" {
		t.Errorf("alice twice: %p, %p; bob %+v", a1, a2, bob)
	}
	var none *Actors
	x, err1 := none.Decode(alice)
	y, err2 := none.Decode(alice)
	if err1 != nil || err2 != nil || x == y || x.ID != "alice" {
		t.Errorf("without an Actors: %p, %p (%v, %v)", x, y, err1, err2)
	}
	if _, err := m.Decode([]byte(`{"id":`)); err == nil {
		t.Error("a bad actor decoded")
	}
}
