package realtime

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// decodedUpdate reads an update frame in the form of its version into the
// frame and the event a client gets, the payload of a message event
// completed and in its tidings.v1 form, so that both versions compare.
func decodedUpdate(t *testing.T, v2 bool, frame []byte) (protocol.Frame, tidings.Event, string) {
	t.Helper()
	var f protocol.Frame
	var err error
	if v2 {
		f, err = protocol.DecodeV2(frame)
	} else {
		err = json.Unmarshal(frame, &f)
	}
	if err != nil {
		t.Fatalf("%s: %v", frame, err)
	}
	var ev tidings.Event
	if err := json.Unmarshal(f.Event, &ev); err != nil {
		t.Fatalf("%s: %v", frame, err)
	}
	payload := string(ev.Payload)
	if isMessageEvent(ev.Name) {
		var p tidings.MessagePayload
		if err := json.Unmarshal(ev.Payload, &p); err != nil {
			t.Fatalf("%s: %v", frame, err)
		}
		if p.Message != nil {
			p.Complete(&ev)
			ev.ID = protocol.EventID(ev.Name, ev.ID, p.ID)
			b, _ := json.Marshal(p.Message)
			payload = string(b) + p.ReferrerID
		}
	}
	ev.Payload = nil
	return f, ev, payload
}

// A tidings.v2 update says what the tidings.v1 one says, to each receiver,
// for every kind of event: stored ones of before 2026-12 too.
func TestV2SaysWhatV1Says(t *testing.T) {
	alice := &tidings.Profile{ID: "u0", DisplayName: "Alice <&> \"A\"\n", AvatarURL: "https://example.com/a.png",
		Identifier: &tidings.Identifier{Value: "a@example.com", Kind: "email"}}
	at := time.Date(2026, 12, 1, 9, 0, 0, 123456000, time.UTC)
	sent := messageEvent(6)
	sent.ID = "m" // its message's (tidings.NewEventID)
	edited := time.Date(2026, 12, 1, 9, 5, 0, 1000, time.UTC)
	editedPayload, _ := json.Marshal(tidings.NewMessagePayload(&tidings.Message{ID: "m2", ConversationID: "c", Seq: 2,
		Sender: *alice, ClientID: "k", Parts: []tidings.Part{{Type: "text/plain", Data: "x"}, {Type: "image/png", FileID: "f", Size: 3}},
		Metadata: json.RawMessage(`{"a":[1]}`), Alert: "hi", SentAt: at, EditedAt: &edited}, "m1"))
	for _, ev := range []*tidings.Event{
		messageEvent(7), // stored before 2026-12: an id of its own
		sent,
		{Seq: 5, ID: "e5", AppID: "a", Name: tidings.EventMessageSent, Time: at, Actor: alice, ConversationID: "c",
			Payload: json.RawMessage(`{"id":"m5","conversationId":"c","seq":5,"messageId":"m5","profileId":"u0",` +
				`"sender":{"id":"u0","displayName":"A"},"parts":[{"type":"text/plain","data":"old"}],"sentAt":"2026-12-01T09:00:00.123456Z"}`)},
		{Seq: 8, ID: "e8", AppID: "a", Name: tidings.EventParticipantAdded, Time: at, Actor: alice, ConversationID: "c\u2028<x>",
			UserID: "bob é", Payload: json.RawMessage(`{"conversationId":"c","profileId":"bob","role":"member"}`)},
		{Seq: 9, ID: "e9", AppID: "a", Name: tidings.EventProfileUpdate, Time: at, UserID: "bob",
			Payload: json.RawMessage("{\n  \"profileId\": \"bob\"\n}")},
		{Seq: 10, ID: "e10", AppID: "a", Name: tidings.EventMessageDeleted, Time: at, Actor: alice, ConversationID: "c",
			Payload: json.RawMessage(`{"id":"m","seq":1,"sender":{"id":"u0","displayName":"A"},"parts":[],"sentAt":"2026-12-01T08:00:00Z","deletedAt":"2026-12-01T09:00:00.123456Z"}`)},
		{Seq: 11, ID: "e11", AppID: "a", Name: tidings.EventMessageEdited, Time: edited, Actor: alice, ConversationID: "c", Payload: editedPayload},
		{Seq: 12, ID: "e12", AppID: "a", Name: tidings.EventMessageRead, Time: at, Actor: alice, ConversationID: "c",
			Payload: json.RawMessage(`{"conversationId":"c","profileId":"u0","seq":2,"messageId":"m2","timestamp":"2026-12-01T09:00:00.123456Z"}`)},
		{ID: "e13", AppID: "a", Name: protocol.EventTyping, Time: at, Actor: alice, ConversationID: "c",
			Payload: json.RawMessage(`{"conversationId":"c","profileId":"u0"}`)},
		{ID: "e14", AppID: "a", Name: protocol.EventAccountEnds, Time: at, Payload: json.RawMessage(`{"account":"work","reason":"token_expired"}`)},
	} {
		ev.Time = ev.Time.Truncate(time.Microsecond) // as stored
		v1, err := encodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		v2, err := encodeEventV2(ev)
		if err != nil {
			t.Fatal(err)
		}
		if v2.msg != nil { // written by hand as encoding/json writes it
			p := tidings.MessagePayload{Message: v2.msg}
			json.Unmarshal(ev.Payload, &struct{ ReferrerID *string }{&p.ReferrerID})
			hand, err := appendMessageV2(nil, p, ev.Time)
			viaJSON, _ := json.Marshal(protocol.NewMessageV2(p, ev.Time, false))
			if err != nil || string(hand) != string(viaJSON) {
				t.Errorf("%s: appendMessageV2 %s, %v\njson.Marshal %s", ev.Name, hand, err, viaJSON)
			}
		}
		for _, user := range []string{"u0", "u1"} {
			own := v1.isSender(user)
			silent := user == "u0"
			f1, e1, p1 := decodedUpdate(t, false, updateFrame("work", ev.Seq, silent, v1.forUser(user)))
			f2, e2, p2 := decodedUpdate(t, true, updateFrameV2("work", ev.Seq, silent, v2.forUser(own)))
			a1, _ := json.Marshal(e1)
			a2, _ := json.Marshal(e2)
			if string(a1) != string(a2) || p1 != p2 || f1.Account != f2.Account || f1.Ref != f2.Ref || f1.Silent != f2.Silent {
				t.Errorf("%s for %s:\nv1 %s %s %s\nv2 %s %s %s\nfrom %s", ev.Name, user, a1, p1, f1.Ref, a2, p2, f2.Ref, v2.forUser(own))
			}
		}
	}
}

// BenchmarkSentUpdateV2 is BenchmarkSentUpdate in tidings.v2.
func BenchmarkSentUpdateV2(b *testing.B) {
	ev := messageEvent(123456)
	ev.ID = "m" // its message's (tidings.NewEventID)
	var size int
	for b.Loop() {
		body, _ := encodeEventV2(ev)
		size = len(updateFrameV2("default", ev.Seq, false, body.others))
	}
	b.ReportMetric(float64(size), "bytes/frame")
}

// emitted returns the event a store emits about m in this process: its
// payload encoded, and the payload itself (tidings.Event.Message).
func emitted(t testing.TB, name string, seq int64, at time.Time, m *tidings.Message, referrerID string) *tidings.Event {
	t.Helper()
	p := tidings.NewMessagePayload(m, referrerID)
	body, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return &tidings.Event{Seq: seq, ID: tidings.NewEventID(name, p), AppID: "a", Name: name, Time: at, Actor: &m.Sender,
		ConversationID: m.ConversationID, Payload: body, Message: &p}
}

// A message event emitted in this process is encoded from its payload as
// it was before encoding (no decoding), into the same bytes as from the
// stored payload, and the message it came from is left as it was.
func TestV2EncodesAnEmittedMessageAsItsStoredPayload(t *testing.T) {
	at := time.Date(2026, 12, 2, 9, 0, 0, 123456000, time.UTC)
	alice := tidings.Profile{ID: "u0", DisplayName: "Alice <&>", AvatarURL: "https://example.com/a.png",
		Identifier: &tidings.Identifier{Value: "a@example.com", Kind: "email"}}
	edited, deleted := at.Add(time.Minute), at.Add(time.Hour)
	events := []*tidings.Event{
		emitted(t, tidings.EventMessageSent, 1, at, &tidings.Message{ID: "m1", ConversationID: "c", Seq: 1, Sender: alice,
			ClientID: "k1", Parts: []tidings.Part{{Data: "no type"}, {Type: "image/png", Name: "a.png", FileID: "f", Size: 3}},
			Metadata: json.RawMessage(`{ "a" : [1, 2] }`), Alert: "Alice: hi", SentAt: at}, ""),
		emitted(t, tidings.EventMessageSent, 2, at, &tidings.Message{ID: "m2", ConversationID: "c", Seq: 2, System: true,
			Parts: []tidings.Part{{Type: "text/plain", Data: "system"}}, SentAt: at}, ""),
		emitted(t, tidings.EventMessageEdited, 3, edited, &tidings.Message{ID: "m1", ConversationID: "c", Seq: 1, Sender: alice,
			ClientID: "k1", Parts: []tidings.Part{{Type: "text/plain", Data: "edited"}}, SentAt: at, EditedAt: &edited}, "m1"),
		emitted(t, tidings.EventMessageDeleted, 4, deleted, &tidings.Message{ID: "m1", ConversationID: "c", Seq: 1, Sender: alice,
			Parts: []tidings.Part{}, SentAt: at, DeletedAt: &deleted}, "m1"),
	}
	for _, ev := range events {
		before, _ := json.Marshal(ev.Message.Message)
		fromMemory, err := encodeEventV2(ev)
		if err != nil {
			t.Fatal(err)
		}
		stored := *ev
		stored.Message = nil
		fromPayload, err := encodeEventV2(&stored)
		if err != nil {
			t.Fatal(err)
		}
		if string(fromMemory.own) != string(fromPayload.own) || string(fromMemory.others) != string(fromPayload.others) {
			t.Errorf("%s:\nfrom memory  %s\n             %s\nfrom payload %s\n             %s", ev.Name,
				fromMemory.own, fromMemory.others, fromPayload.own, fromPayload.others)
		}
		if fromMemory.msg == nil || fromMemory.msg.ClientID != fromPayload.msg.ClientID || fromMemory.msg.ID != fromPayload.msg.ID {
			t.Errorf("%s: the message of the body: %+v, want %+v", ev.Name, fromMemory.msg, fromPayload.msg)
		}
		if after, _ := json.Marshal(ev.Message.Message); string(after) != string(before) {
			t.Errorf("%s: the emitted message changed:\n%s\nwas %s", ev.Name, after, before)
		}
	}
}

// BenchmarkSentUpdateV2Emitted is BenchmarkSentUpdateV2 for an event
// emitted in this process (no payload to decode).
func BenchmarkSentUpdateV2Emitted(b *testing.B) {
	at := time.Date(2026, 12, 2, 9, 0, 0, 123456000, time.UTC)
	ev := emitted(b, tidings.EventMessageSent, 123456, at, &tidings.Message{ID: "06h3apbiignlsgm6rqg2pt2ljs", ConversationID: "r2k5-123",
		Seq: 1, Sender: tidings.Profile{ID: "u123", DisplayName: "u123"}, ClientID: "u123-x-17",
		Parts: []tidings.Part{{Type: "text/plain", Data: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}, SentAt: at}, "")
	b.Run("emitted", func(b *testing.B) {
		for b.Loop() {
			encodeEventV2(ev)
		}
	})
	stored := *ev
	stored.Message = nil
	b.Run("stored", func(b *testing.B) {
		for b.Loop() {
			encodeEventV2(&stored)
		}
	})
}
