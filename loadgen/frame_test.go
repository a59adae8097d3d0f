package loadgen

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

func TestMessageTextRoundTrip(t *testing.T) {
	at := time.Unix(1764000000, 123456789)
	text := messageText(3, 1207, at, 64)
	if len(text) != 64 || !strings.HasPrefix(text, "tb:3:1207:1764000000123456789;") {
		t.Fatalf("text %q (%d bytes)", text, len(text))
	}
	m, ok := parseMarker(text)
	if !ok || m.sender != 3 || m.seq != 1207 || !m.sent.Equal(at) {
		t.Fatalf("parsed %+v %v", m, ok)
	}
	if long := messageText(1, 1, at, 10); !strings.HasSuffix(long, ";") {
		t.Errorf("a size too small for the marker cuts it: %q", long)
	}
	for _, bad := range []string{"hello", "tb:", "tb:1:2", "tb:1:2:3", "tb:a:2:3;", "tb:1;2:3;"} {
		if _, ok := parseMarker(bad); ok {
			t.Errorf("%q parsed as a marker", bad)
		}
	}
}

// serverFrame builds an update frame as the server encodes it: the event
// encoded by encoding/json, inside the update envelope.
func serverFrame(t *testing.T, ref int64, text string) []byte {
	t.Helper()
	payload, _ := json.Marshal(tidings.MessagePayload{Message: &tidings.Message{
		ID: "m1", ConversationID: "c", Seq: 9, Sender: tidings.Profile{ID: "s0"},
		Parts: []tidings.Part{{Type: "text/plain", Data: text}},
	}})
	ev, err := json.Marshal(&tidings.Event{Seq: ref, ID: "e1", AppID: "a", Name: tidings.EventMessageSent,
		Time: time.Now(), ConversationID: "c", Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := json.Marshal(protocol.Frame{Type: protocol.TypeUpdate, Account: "default", Ref: protocol.FormatRef(ref), Event: ev})
	return f
}

func TestFindMarkerAndRefInServerFrames(t *testing.T) {
	at := time.Unix(1764000000, 5)
	f := serverFrame(t, 4242, messageText(7, 99, at, 64))
	if !isUpdate(f) {
		t.Fatalf("not an update: %s", f)
	}
	if got := updateRef(f); got != 4242 {
		t.Errorf("ref %d", got)
	}
	m, ok := findMarker(f)
	if !ok || m.sender != 7 || m.seq != 99 || !m.sent.Equal(at) {
		t.Errorf("marker %+v %v in %s", m, ok, f)
	}
	// A message whose text merely mentions a ref or a marker later on is
	// not mistaken: the ref is read before the event.
	f = serverFrame(t, 5, messageText(1, 2, at, 64)+` "ref":"999" "tb:9:9:9;`)
	if updateRef(f) != 5 {
		t.Errorf("ref %d", updateRef(f))
	}
	if m, _ := findMarker(f); m.sender != 1 || m.seq != 2 {
		t.Errorf("marker %+v", m)
	}
	// Live-only updates have no ref; other updates no marker.
	live := []byte(`{"type":"update","account":"default","silent":true,"event":{"seq":0,"name":"presence.update"}}`)
	if updateRef(live) != 0 {
		t.Error("a live update has a ref")
	}
	if _, ok := findMarker(live); ok {
		t.Error("a presence update has a marker")
	}
	answer := []byte(`{"type":"answer","id":"1","result":{}}`)
	if isUpdate(answer) {
		t.Error("an answer taken for an update")
	}
}

func TestEachFrameSplitsBatches(t *testing.T) {
	var got []string
	eachFrame([]byte("{\"a\":1}\n{\"b\":2}\n\n{\"c\":3}"), func(f []byte) { got = append(got, string(f)) })
	if strings.Join(got, "|") != `{"a":1}|{"b":2}|{"c":3}` {
		t.Errorf("frames %q", got)
	}
}
