package tidings

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
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

// marshalReflect is MessagePayload.MarshalJSON through encoding/json, as it
// was written before: the hand encoding must write the same bytes.
func (p MessagePayload) marshalReflect() ([]byte, error) {
	if p.Message == nil {
		return []byte("null"), nil
	}
	m := p.Message
	w := messageInEvent{ID: m.ID, Seq: m.Seq, Sender: m.Sender, System: m.System, ClientID: m.ClientID, Parts: m.Parts,
		Metadata: m.Metadata, Alert: m.Alert, EditedAt: m.EditedAt, DeletedAt: m.DeletedAt, ReferrerID: p.ReferrerID}
	if p.ReferrerID != "" {
		w.SentAt = &m.SentAt
	}
	return json.Marshal(w)
}

// A message event's payload, stored and sent to every receiver, is written
// by hand: byte for byte what encoding/json writes, for sent, edited,
// deleted and system messages, and for strings that JSON escapes.
func TestMessagePayloadJSON(t *testing.T) {
	at := time.Date(2026, 12, 2, 9, 0, 0, 123456789, time.UTC)
	edited, deleted := at.Add(time.Minute), at.Add(time.Hour).In(time.FixedZone("X", -3600))
	payloads := []MessagePayload{
		{},
		NewMessagePayload(&Message{ID: "m1", ConversationID: "c", Seq: 1, Sender: Profile{ID: "u0", DisplayName: "Alice"},
			ClientID: "k1", Parts: []Part{{Type: "text/plain", Data: "hi"}}, SentAt: at}, ""),
		NewMessagePayload(&Message{ID: "m2", Seq: 1 << 50, Sender: Profile{ID: "u1", AvatarURL: "https://x.test/a?b=<1>&c",
			Identifier: &Identifier{Value: "a@x.test", Kind: "email\u2028"}}, System: true,
			Parts:    []Part{{Type: "image/png", Name: "a.png", FileID: "f1", Size: 12}, {Type: "", Data: "\x00\"\\é😀"}},
			Metadata: json.RawMessage(`{ "a" : "<b>", "n" : [ 1, 2 ] }`), Alert: "Alice: <hi>", SentAt: at, EditedAt: &edited}, "m2"),
		NewMessagePayload(&Message{ID: "m3", Seq: 3, Sender: Profile{}, Parts: []Part{}, SentAt: at, DeletedAt: &deleted}, "m3"),
		NewMessagePayload(&Message{ID: "m4", Seq: 4, Parts: nil, Metadata: json.RawMessage(`null`), SentAt: at}, ""),
	}
	alphabet := []rune("aZ09-_ \"\\<>&\n\t\x01\u2028\u00e9\U0001F600/")
	r := uint64(1)
	randString := func() string {
		r = r*6364136223846793005 + 1442695040888963407
		s := make([]rune, r>>60)
		for i := range s {
			r = r*6364136223846793005 + 1442695040888963407
			s[i] = alphabet[(r>>33)%uint64(len(alphabet))]
		}
		return string(s)
	}
	for i := range 300 {
		m := &Message{ID: randString(), Seq: int64(i), Sender: Profile{ID: randString(), DisplayName: randString(), AvatarURL: randString()},
			ClientID: randString(), Parts: []Part{{Type: randString(), Name: randString(), Data: randString(), FileID: randString(), Size: int64(i % 3)}},
			Alert: randString(), SentAt: at.Add(time.Duration(i) * time.Hour * 1000)}
		ref := ""
		if i%2 == 1 {
			ref = randString()
		}
		payloads = append(payloads, NewMessagePayload(m, ref))
	}
	for i, p := range payloads {
		want, err := p.marshalReflect()
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.MarshalJSON()
		if err != nil || string(got) != string(want) {
			t.Errorf("payload %d:\n got %s, %v\nwant %s", i, got, err, want)
		}
		if viaJSON, err := json.Marshal(p); err != nil || string(viaJSON) != string(want) {
			t.Errorf("payload %d through json.Marshal:\n got %s, %v\nwant %s", i, viaJSON, err, want)
		}
		if p.Message == nil {
			continue
		}
		// The store keeps a message's parts as AppendPartsJSON writes them.
		if want, _ := json.Marshal(p.Parts); string(AppendPartsJSON(nil, p.Parts)) != string(want) {
			t.Errorf("payload %d's parts:\n got %s\nwant %s", i, AppendPartsJSON(nil, p.Parts), want)
		}
	}
	bad := NewMessagePayload(&Message{ID: "m", Metadata: json.RawMessage(`{"a":`)}, "")
	if _, err := bad.MarshalJSON(); err == nil {
		t.Error("a payload with metadata that is not JSON was encoded")
	}
}

// A sent message's payload is encoded once per message, in one
// allocation: growing its buffer as it went cost more than the rest.
func TestMessagePayloadJSONAllocatesOnce(t *testing.T) {
	p := NewMessagePayload(&Message{ID: "06h3apbiignlsgm6rqg2pt2ljs", Seq: 17,
		Sender: Profile{ID: "u123", DisplayName: "Some One", AvatarURL: "https://cdn.example.com/avatars/u123.png"}, ClientID: "u123-x-17",
		Parts:    []Part{{Type: "text/plain", Data: strings.Repeat("x", 2000)}, {Type: "image/png", Name: "a.png", FileID: "f1", Size: 12}},
		Metadata: json.RawMessage(`{"a":1}`), Alert: "Some One: hi", SentAt: time.Now()}, "")
	// Without metadata, nothing but the payload's buffer.
	bare := p
	m := *p.Message
	m.Metadata = nil
	bare.Message = &m
	if n := testing.AllocsPerRun(100, func() { bare.MarshalJSON() }); n > 1 {
		t.Errorf("MarshalJSON without metadata made %v allocations, want 1", n)
	}
	// Metadata goes through encoding/json (jsonenc.Value): its
	// allocations aside, the payload's buffer is one. Under the race
	// detector encoding/json's own count varies (its sync.Pool drops
	// items at random), so the two counts cannot be compared there.
	if raceEnabled {
		return
	}
	meta := testing.AllocsPerRun(100, func() { json.Marshal(p.Metadata) })
	if n := testing.AllocsPerRun(100, func() { p.MarshalJSON() }); n > meta+1 {
		t.Errorf("MarshalJSON made %v allocations, want %v", n, meta+1)
	}
}

// BenchmarkMessagePayloadJSON is the encoding of a sent 64-byte text's
// payload, by hand and through encoding/json.
func BenchmarkMessagePayloadJSON(b *testing.B) {
	p := NewMessagePayload(&Message{ID: "06h3apbiignlsgm6rqg2pt2ljs", ConversationID: "r2k5-123", Seq: 17,
		Sender: Profile{ID: "u123", DisplayName: "u123"}, ClientID: "u123-x-17",
		Parts: []Part{{Type: "text/plain", Data: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}, SentAt: time.Now()}, "")
	b.Run("hand", func(b *testing.B) {
		for b.Loop() {
			p.MarshalJSON()
		}
	})
	b.Run("reflect", func(b *testing.B) {
		for b.Loop() {
			p.marshalReflect()
		}
	})
}

// A profile.update reaches everyone who shares a conversation with the
// user: it never carries their last seen time (presence, with a privacy
// switch of its own) or their tokens' not-before (the app server's).
func TestProfilePayloadLeavesPresenceAndTokensOut(t *testing.T) {
	seen, nbf := time.Unix(1800000000, 0), time.Unix(1800000100, 0)
	u := &User{ID: "alice", DisplayName: "Alice", AvatarURL: "https://example.com/a.png", LastSeenAt: &seen, TokensNotBefore: &nbf}
	p := NewProfilePayload(u)
	if p.ProfileID != "alice" || p.User.DisplayName != "Alice" || p.User.AvatarURL != "https://example.com/a.png" {
		t.Errorf("payload %+v: want the profile", p.User)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "lastSeenAt") || strings.Contains(string(b), "tokensNotBefore") {
		t.Errorf("payload %s carries last seen or the tokens' not-before", b)
	}
	if u.LastSeenAt != &seen || u.TokensNotBefore != &nbf {
		t.Errorf("the user itself was changed: %+v", u)
	}
}
