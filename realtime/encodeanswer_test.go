package realtime

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// The answers to message.send are encoded by hand; a client reads them as
// JSON, so they must be what encoding/json writes, byte for byte, for
// every result: a new message's, a server-changed one's, a duplicate's,
// and strings that JSON escapes.
func TestSendAnswersEncodeAsJSON(t *testing.T) {
	sent := time.Date(2026, 12, 2, 6, 25, 16, 227138000, time.UTC)
	edited := sent.Add(time.Minute)
	deleted := sent.Add(time.Hour + 7)
	results := []protocol.SendResult{
		{ID: "06h3are5ofjhqeuj8ndvm2f7s0", Seq: 1, Sender: tidings.Profile{ID: "alice", DisplayName: "Alice"}, SentAt: sent},
		{ID: "m2", Seq: 1 << 40, Sender: tidings.Profile{ID: "bob", AvatarURL: "https://x.test/a.png?s=1&t=<2>",
			Identifier: &tidings.Identifier{Value: "bob@x.test", Kind: "email"}}, System: true, SentAt: sent.In(time.FixedZone("X", 3600))},
		{ID: "m3", ConversationID: "lunch", Seq: 7, Sender: tidings.Profile{ID: "carol", DisplayName: "Ca\"rol\n\u2028é"},
			ClientID: "c-<1>&\"\\", Parts: []tidings.Part{{Type: "text/plain", Data: "Noon?"}, {Type: "image/png", Name: "a.png", FileID: "f1", Size: 12}},
			Metadata: json.RawMessage(`{ "a" : "<b>", "n": [1, 2] }`), Alert: "Carol: Noon?", SentAt: sent,
			EditedAt: &edited, DeletedAt: &deleted, Duplicate: true},
		{ID: "m4", Seq: 2, Sender: tidings.Profile{ID: "dave"}, Metadata: json.RawMessage(`null`), SentAt: time.Time{}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("aZ09-_ \"\\<>&\n\t\x01\u2028\u00e9\U0001F600/")
	randString := func() string {
		r := make([]rune, rng.IntN(12))
		for i := range r {
			r[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(r)
	}
	for range 200 {
		results = append(results, protocol.SendResult{ID: randString(), ConversationID: randString(), Seq: rng.Int64(),
			Sender:   tidings.Profile{ID: randString(), DisplayName: randString(), AvatarURL: randString()},
			ClientID: randString(), Alert: randString(), SentAt: sent.Add(time.Duration(rng.Int64N(1e15)))})
	}
	ids := []string{"1", `a"b`, "<&>"}
	for i, r := range results {
		id := ids[i%len(ids)]
		want, err := json.Marshal(protocol.Frame{Type: protocol.TypeAnswer, ID: id, Result: mustJSON(t, r)})
		if err != nil {
			t.Fatal(err)
		}
		if got := answerFrame(id, r, nil); string(got) != string(want) {
			t.Errorf("tidings.v1 answer %d:\n got %s\nwant %s", i, got, want)
		}
		r2 := r.V2("")
		if i%2 == 0 {
			r2.Ref = protocol.FormatRef(int64(i) + 1)
		}
		want, err = json.Marshal(protocol.FrameV2{ID: id, OK: mustJSON(t, r2)})
		if err != nil {
			t.Fatal(err)
		}
		if got := answerFrameV2(id, r2, nil); string(got) != string(want) {
			t.Errorf("tidings.v2 answer %d:\n got %s\nwant %s", i, got, want)
		}
		if r2.Ref == "" {
			if got := answerFrameV2(id, r, nil); string(got) != string(want) {
				t.Errorf("tidings.v2 answer %d from its tidings.v1 result:\n got %s\nwant %s", i, got, want)
			}
		}
	}
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkSendAnswer is the encoding of a new message's answer, by hand
// and by encoding/json.
func BenchmarkSendAnswer(b *testing.B) {
	r := protocol.SendResult{ID: "06h3are5ofjhqeuj8ndvm2f7s0", Seq: 12, Sender: tidings.Profile{ID: "u123", DisplayName: "u123"},
		SentAt: time.Date(2026, 12, 2, 6, 25, 16, 227138000, time.UTC)}
	b.Run("v1", func(b *testing.B) {
		for b.Loop() {
			answerFrame("17", r, nil)
		}
	})
	b.Run("v1-json", func(b *testing.B) {
		for b.Loop() {
			res, _ := json.Marshal(r)
			json.Marshal(protocol.Frame{Type: protocol.TypeAnswer, ID: "17", Result: res})
		}
	})
	r2 := r.V2("12")
	b.Run("v2", func(b *testing.B) {
		for b.Loop() {
			answerFrameV2("17", r2, nil)
		}
	})
	b.Run("v2-json", func(b *testing.B) {
		for b.Loop() {
			res, _ := json.Marshal(r2)
			json.Marshal(protocol.FrameV2{ID: "17", OK: res})
		}
	})
}
