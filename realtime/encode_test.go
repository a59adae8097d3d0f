package realtime

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// The wire form of an event is protocol.Event: the tidings.Event without
// seq and app, without the actor of a sent message (its sender), the actor
// as its id only on edited messages.
func TestWireEventIsTheEventLessWhatTheFrameSays(t *testing.T) {
	alice := &tidings.Profile{ID: "alice", DisplayName: "Alice <&> \"A\"\n", AvatarURL: "https://example.com/a.png"}
	at := time.Date(2026, 12, 1, 9, 0, 0, 123456000, time.UTC)
	sent := messageEvent(6)
	sent.ID = "m" // its message's (tidings.NewEventID)
	for _, ev := range []*tidings.Event{
		messageEvent(7), // stored before 2026-12: an id of its own
		sent,
		{Seq: 8, ID: "e8", AppID: "a", Name: tidings.EventParticipantAdded, Time: at, Actor: alice, ConversationID: "c\u2028<x>",
			UserID: "bob é", Payload: json.RawMessage(`{"conversationId":"c","profileId":"bob","role":"member"}`)},
		{Seq: 9, ID: "e9", AppID: "a", Name: tidings.EventProfileUpdate, Time: at, UserID: "bob",
			Payload: json.RawMessage("{\n  \"profileId\": \"bob\"\n}")},
		{Seq: 10, ID: "e10", AppID: "a", Name: tidings.EventMessageDeleted, Time: at, Actor: alice, ConversationID: "c",
			Payload: json.RawMessage(`{"id":"m"}`)},
		{Seq: 11, ID: "e11", AppID: "a", Name: tidings.EventMessageEdited, Time: at, Actor: alice, ConversationID: "c",
			Payload: json.RawMessage(`{"id":"m","seq":1,"sender":{"id":"alice","displayName":"Alice"},"parts":[]}`)},
	} {
		body, err := encodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		b := body.own
		if bytes.IndexByte(b, '\n') >= 0 {
			t.Errorf("%s: a newline in %s", ev.Name, b)
		}
		var got protocol.Event
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("%s: %s: %v", ev.Name, b, err)
		}
		// The id of a sent message's event is sent once, as the message's.
		if hasID := bytes.HasPrefix(b, []byte(`{"id":`)); hasID == (ev == sent) {
			t.Errorf("%s (id %q): %s", ev.Name, ev.ID, b)
		}
		var msg struct{ ID string }
		json.Unmarshal(got.Payload, &msg)
		got.ID = protocol.EventID(got.Name, got.ID, msg.ID)
		want := protocol.Event{ID: ev.ID, Name: ev.Name, Time: ev.Time, Actor: ev.Actor, ConversationID: ev.ConversationID, UserID: ev.UserID}
		switch ev.Name {
		case tidings.EventMessageSent:
			want.Actor = nil
		case tidings.EventMessageEdited:
			want.Actor = &tidings.Profile{ID: ev.Actor.ID}
		}
		var compact bytes.Buffer
		json.Compact(&compact, ev.Payload)
		wantPayload := compact.String()
		if isMessageEvent(ev.Name) { // see TestTextPartsGoWithoutTheirType
			wantPayload = strings.ReplaceAll(wantPayload, `{"type":"text/plain",`, "{")
		}
		gotActor, _ := json.Marshal(got.Actor)
		wantActor, _ := json.Marshal(want.Actor)
		if got.ID != want.ID || got.Name != want.Name || !got.Time.Equal(want.Time) || string(gotActor) != string(wantActor) ||
			got.ConversationID != want.ConversationID || got.UserID != want.UserID || string(got.Payload) != wantPayload {
			t.Errorf("%s: got %+v from %s, want %+v", ev.Name, got, b, want)
		}
	}
}

// BenchmarkSentUpdate encodes the update of a sent 64-byte text, as the
// node does once per event, and reports the frame's size.
func BenchmarkSentUpdate(b *testing.B) {
	ev := messageEvent(123456)
	ev.ID = "m" // its message's (tidings.NewEventID)
	var size int
	for b.Loop() {
		body, _ := encodeEvent(ev)
		size = len(updateFrame("default", ev.Seq, false, body.others))
	}
	b.ReportMetric(float64(size), "bytes/frame")
}

// A message's clientId goes to its sender's sessions only (to match their
// pending sends): the others' form of the event leaves it out, and only
// it, wherever a user wrote something that looks like it.
func TestClientIDGoesToTheSenderOnly(t *testing.T) {
	tricky := `x","clientId":"no`
	for _, m := range []*tidings.Message{
		{ID: "m", Seq: 1, Sender: tidings.Profile{ID: "u0", DisplayName: `U0 ,"clientId":"`}, ClientID: `k-1 \" é`,
			Parts: []tidings.Part{{Type: "text/plain", Data: tricky}}, Metadata: json.RawMessage(`{"clientId":"meta"}`)},
		{ID: "m", Seq: 1, Sender: tidings.Profile{ID: "u0"}, Parts: []tidings.Part{{Type: "text/plain", Data: `,"clientId":"`}},
			Metadata: json.RawMessage(`{"a":1,"clientId":"meta"}`)}, // none
		{ID: "m", Seq: 1, System: true, ClientID: "sys-1", Parts: []tidings.Part{{Type: "text/plain", Data: "hi"}}},
	} {
		payload, _ := json.Marshal(tidings.NewMessagePayload(m, ""))
		ev := &tidings.Event{Seq: 3, ID: "e", AppID: "a", Name: tidings.EventMessageSent, Time: time.Now(), ConversationID: "c", Payload: payload}
		if m.Sender.ID != "" {
			ev.Actor = &m.Sender
		}
		body, err := encodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			user string
			want string
		}{{"u0", m.ClientID}, {"u1", ""}} {
			if m.Sender.ID == "" && c.user == "u0" {
				c.want = "" // a system message: no one sent it
			}
			var got protocol.Event
			if err := json.Unmarshal(body.forUser(c.user), &got); err != nil {
				t.Fatalf("%s: %v", body.forUser(c.user), err)
			}
			var p tidings.MessagePayload
			if err := json.Unmarshal(got.Payload, &p); err != nil || p.Message == nil {
				t.Fatalf("%s: %v", got.Payload, err)
			}
			p.Complete(&tidings.Event{}) // the parts' default type
			want := *m
			want.ClientID = c.want
			gotJSON, _ := json.Marshal(p.Message)
			wantJSON, _ := json.Marshal(&want)
			if string(gotJSON) != string(wantJSON) {
				t.Errorf("for %s: %s\nwant %s", c.user, gotJSON, wantJSON)
			}
		}
	}
}

// The parts of type text/plain go without their type, the default, and
// nothing else changes, whatever the parts hold.
func TestTextPartsGoWithoutTheirType(t *testing.T) {
	m := &tidings.Message{ID: "m", Seq: 1, Sender: tidings.Profile{ID: "u0", DisplayName: `,"parts":[{"type":"text/plain","`}, ClientID: "k",
		Parts: []tidings.Part{
			{Type: "text/plain", Data: `]{"type":"text/plain","data":"\\"}]`},
			{Type: "image/png", Name: "a]{b.png", FileID: "f1", Size: 3},
			{Type: "text/plain", Name: `"{`, Data: "z"},
			{Type: "text/plain; charset=utf-8", Data: "y"},
		},
		Metadata: json.RawMessage(`{"parts":[{"type":"text/plain","data":"meta"}]}`), Alert: "a"}
	for _, name := range []string{tidings.EventMessageSent, tidings.EventMessageEdited} {
		payload, _ := json.Marshal(tidings.NewMessagePayload(m, "m"))
		ev := &tidings.Event{Seq: 3, ID: "e", Name: name, Time: time.Now(), Actor: &m.Sender, ConversationID: "c", Payload: payload}
		body, err := encodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		var got protocol.Event
		if err := json.Unmarshal(body.own, &got); err != nil {
			t.Fatalf("%s: %v", body.own, err)
		}
		if n := bytes.Count(got.Payload, []byte(`"type":"text/plain"`)); n != 1 { // the metadata's
			t.Errorf("%s: %d text/plain types left in %s", name, n, got.Payload)
		}
		var p tidings.MessagePayload
		if err := json.Unmarshal(got.Payload, &p); err != nil || p.Message == nil {
			t.Fatalf("%s: %v", got.Payload, err)
		}
		p.Complete(&tidings.Event{ConversationID: m.ConversationID, Time: m.SentAt})
		gotJSON, _ := json.Marshal(p)
		if string(gotJSON) != string(payload) {
			t.Errorf("%s: %s\nwant %s", name, gotJSON, payload)
		}
	}
}

// Whatever a message holds, the two forms of its events decode to the
// message as stored: the sender's with its clientId, the others' without,
// the parts' default type restored (tidings.MessagePayload.Complete). The
// forms are cut from the stored JSON byte by byte: this checks the cuts
// against encoding/json on any text a user may write.
func FuzzMessageEventForms(f *testing.F) {
	f.Add("U0", "k-1", "hi", "a.png", "meta", "text/plain", "06h37vs1dgfssr33g5lers3ei8", true)
	f.Add(`U0 ,"clientId":"`, `k \" é`, `]{"type":"text/plain","data":"\\"}]`, `"{`, `{"clientId":"x"}`, "image/png", "m", false)
	f.Add(`,"parts":[{"type":"text/plain","`, "", `,"clientId":"`, "]", `\`, "text/plain; charset=utf-8", `m"\`, true)
	f.Add("U0", "k", "hi", "a", "m", "text/plain", "", true)
	f.Fuzz(func(t *testing.T, name, clientID, data, fileName, meta, typ, id string, idIsEventID bool) {
		for _, s := range []string{name, clientID, data, fileName, meta, typ, id} {
			if !utf8.ValidString(s) {
				t.Skip() // refused when sent (tidings.NewMessage.Validate)
			}
		}
		if typ == "" {
			t.Skip() // refused when sent: a part has a type
		}
		metadata, _ := json.Marshal(map[string]string{"clientId": meta, "parts": data})
		m := &tidings.Message{ID: id, Seq: 1, Sender: tidings.Profile{ID: "u0", DisplayName: name}, ClientID: clientID,
			Parts:    []tidings.Part{{Type: "text/plain", Data: data}, {Type: typ, Name: fileName, Data: data}},
			Metadata: metadata, Alert: meta}
		stored, err := json.Marshal(tidings.NewMessagePayload(m, ""))
		if err != nil {
			t.Fatal(err)
		}
		for _, evName := range []string{tidings.EventMessageSent, tidings.EventMessageEdited} {
			ev := &tidings.Event{Seq: 3, ID: "e", Name: evName, Time: time.Now(), Actor: &m.Sender, ConversationID: "c", Payload: stored}
			if idIsEventID { // a sent message's event since 2026-12 (tidings.NewEventID)
				ev.ID = id
			}
			body, err := encodeEvent(ev)
			if err != nil {
				t.Fatal(err)
			}
			for _, user := range []string{"u0", "u1"} {
				var got protocol.Event
				if err := json.Unmarshal(body.forUser(user), &got); err != nil {
					t.Fatalf("%s for %s: %v\n%s", evName, user, err, body.forUser(user))
				}
				var p tidings.MessagePayload
				if err := json.Unmarshal(got.Payload, &p); err != nil || p.Message == nil {
					t.Fatalf("%s for %s: %v\n%s", evName, user, err, got.Payload)
				}
				// The event's id, left out when it is the message's.
				if gotID := protocol.EventID(got.Name, got.ID, p.ID); gotID != ev.ID {
					t.Fatalf("%s for %s: event id %q, want %q\n%s", evName, user, gotID, ev.ID, body.forUser(user))
				}
				quoted, _ := json.Marshal(id)
				if plain := string(quoted) == `"`+id+`"`; got.ID != "" && evName == tidings.EventMessageSent && idIsEventID && plain {
					t.Fatalf("%s for %s: the message's id is sent twice\n%s", evName, user, body.forUser(user))
				}
				p.Complete(&tidings.Event{})
				want := *m
				if user != "u0" {
					want.ClientID = ""
				}
				gotJSON, _ := json.Marshal(p.Message)
				wantJSON, _ := json.Marshal(&want)
				if string(gotJSON) != string(wantJSON) {
					t.Fatalf("%s for %s: %s\nwant %s", evName, user, gotJSON, wantJSON)
				}
				// tidings.v2 says the same, written as json.Marshal
				// writes protocol.MessageV2.
				var stored tidings.MessagePayload
				json.Unmarshal(ev.Payload, &stored)
				stored.Complete(ev)
				hand, err := appendMessageV2(nil, stored, ev.Time)
				viaJSON, _ := json.Marshal(protocol.NewMessageV2(stored, ev.Time, false))
				if err != nil || string(hand) != string(viaJSON) {
					t.Fatalf("appendMessageV2: %s, %v\njson.Marshal: %s", hand, err, viaJSON)
				}
				v2, err := encodeEventV2(ev)
				if err != nil {
					t.Fatal(err)
				}
				f, err := protocol.DecodeV2(updateFrameV2("default", ev.Seq, false, v2.forUser(body.isSender(user))))
				if err != nil {
					t.Fatalf("%s for %s: %v\n%s", evName, user, err, v2.forUser(body.isSender(user)))
				}
				var e2 protocol.Event
				var p2 tidings.MessagePayload
				if err := json.Unmarshal(f.Event, &e2); err != nil || json.Unmarshal(e2.Payload, &p2) != nil || p2.Message == nil {
					t.Fatalf("%s for %s: %v\n%s", evName, user, err, f.Event)
				}
				if gotID := protocol.EventID(e2.Name, e2.ID, p2.ID); gotID != ev.ID {
					t.Fatalf("%s for %s: tidings.v2 event id %q, want %q", evName, user, gotID, ev.ID)
				}
				p2.Complete(&tidings.Event{})
				p2.SentAt = time.Time{}
				if got2, _ := json.Marshal(p2.Message); string(got2) != string(wantJSON) {
					t.Fatalf("%s for %s: tidings.v2 %s\nwant %s\n%s", evName, user, got2, wantJSON, v2.forUser(body.isSender(user)))
				}
			}
		}
	})
}

// BenchmarkSentUpdateDeflate measures what permessage-deflate (RFC 7692)
// would cost and save on the updates of sent 64-byte texts in a room (the
// peer tool's id shapes, chat-like texts rather than its padding, which
// compresses unlike any chat): "takeover" compresses each
// receiver's stream with a compressor of its own that keeps its window
// between messages (the default of the extension), "alone" compresses
// each frame by itself (no_context_takeover), once for all its receivers.
// It reports the bytes of a frame as sent, to compare with "plain", and
// the time of one compression, paid per delivery with takeover and per
// event alone.
func BenchmarkSentUpdateDeflate(b *testing.B) {
	// Chat-like texts: 64 bytes of common words, a different text each time.
	words := strings.Fields(`the a to and I you it is that of in for on we at be this are
		have not with can will just so what do my me your if get now see go know was lunch
		noon table book still tomorrow meet after work home late ok yes thanks great call
		send time today back need think good when there here how about sure later maybe`)
	rnd := rand.New(rand.NewPCG(1, 2))
	sentence := func() string {
		var s strings.Builder
		for s.Len() < 64 {
			if s.Len() > 0 {
				s.WriteByte(' ')
			}
			s.WriteString(words[rnd.IntN(len(words))])
		}
		return s.String()[:64]
	}
	frame := func(i int) []byte {
		text := sentence()
		payload, _ := json.Marshal(tidings.NewMessagePayload(&tidings.Message{ID: tidings.NewID(), ConversationID: "r2k5-123",
			Seq: int64(i + 1), Sender: tidings.Profile{ID: "u123", DisplayName: "u123"}, Parts: []tidings.Part{{Type: "text/plain", Data: text}}}, ""))
		ev := &tidings.Event{Seq: int64(1000 + i), AppID: "a", Name: tidings.EventMessageSent, Time: time.Now(), ConversationID: "r2k5-123",
			Actor: &tidings.Profile{ID: "u123", DisplayName: "u123"}, Payload: payload}
		ev.ID = tidings.NewEventID(ev.Name, tidings.NewMessagePayload(&tidings.Message{ID: string(messageID(payload))}, ""))
		body, err := encodeEvent(ev)
		if err != nil {
			b.Fatal(err)
		}
		return updateFrame(defaultAccount, ev.Seq, false, body.others)
	}
	frames := make([][]byte, 256)
	for i := range frames {
		frames[i] = frame(i)
	}
	// A compressed message leaves out the 4 bytes that end a sync flush.
	sent := func(n int) float64 { return float64(n - 4) }
	b.Run("plain", func(b *testing.B) {
		var size int
		for i := 0; b.Loop(); i++ {
			size = len(frames[i%len(frames)])
		}
		b.ReportMetric(float64(size), "bytes/frame")
	})
	b.Run("takeover", func(b *testing.B) {
		var out bytes.Buffer
		w, _ := flate.NewWriter(&out, flate.BestSpeed)
		for _, f := range frames[:16] { // the window holds earlier updates
			w.Write(f)
			w.Flush()
		}
		var total, n int
		for i := 0; b.Loop(); i++ {
			out.Reset()
			w.Write(frames[i%len(frames)])
			w.Flush()
			total += out.Len()
			n++
		}
		b.ReportMetric(sent(total/n), "bytes/frame")
	})
	b.Run("alone", func(b *testing.B) {
		var out bytes.Buffer
		w, _ := flate.NewWriter(&out, flate.BestSpeed)
		var total, n int
		for i := 0; b.Loop(); i++ {
			out.Reset()
			w.Reset(&out)
			w.Write(frames[i%len(frames)])
			w.Flush()
			total += out.Len()
			n++
		}
		b.ReportMetric(sent(total/n), "bytes/frame")
	})
}
