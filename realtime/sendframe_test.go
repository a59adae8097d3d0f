package realtime

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// readAsJSON reads a message.send frame as every frame was read before
// parseSendFrame: encoding/json, the frame then its data then its parts.
func readAsJSON(data []byte) (protocol.Frame, sendCommand, bool) {
	var f protocol.Frame
	if json.Unmarshal(data, &f) != nil || f.Type != protocol.TypeCommand || f.Command != protocol.CmdSend || f.ID == "" {
		return f, sendCommand{}, false
	}
	var a protocol.SendArgs
	if decode(f.Data, &a) != nil {
		return f, sendCommand{}, false
	}
	cmd := sendCommand{conversationID: a.ConversationID, nm: tidings.NewMessage{ClientID: a.ClientID, Metadata: a.Metadata, Alert: a.Alert}}
	if len(a.Parts) > 0 && decode(a.Parts, &cmd.nm.Parts) != nil {
		return f, sendCommand{}, false
	}
	f.Data = nil
	return f, cmd, true
}

// A message.send read by hand is read as encoding/json reads it: the
// shapes clients write, and thousands of frames made from them by
// cutting, repeating, swapping and changing bytes. What the hand reader
// accepts, encoding/json accepts with the same frame and arguments; what
// it refuses goes to encoding/json, so it needs to accept only the plain
// shapes (and must, for them).
func TestParseSendFrameReadsAsJSON(t *testing.T) {
	plain := []string{
		`{"type":"command","id":"1","command":"message.send","data":{"conversationId":"c","parts":[{"type":"text/plain","data":"hi"}]}}`,
		`{"type":"command","id":"17","command":"message.send","data":{"conversationId":"r2k5-12","clientId":"u3-x-17","parts":[{"type":"text/plain","data":"héllo 😀 ` + "\u2028" + `"}]}}`,
		"{ \"data\" : { \"parts\" : [ { \"data\" : \"a\" } , { \"type\" : \"image/png\", \"name\":\"a.png\", \"fileId\":\"f1\", \"size\": 1234 } ], \"alert\":\"Al: a\", \"conversationId\":\"c\" },\n\t\"command\":\"message.send\", \"account\":\"work\", \"id\":\"x-1\", \"type\":\"command\"\r\n}\n",
		`{"type":"command","id":"2","command":"message.send","data":{"conversationId":"c","parts":[]}}`,
		`{"type":"command","id":"3","command":"message.send","data":{"conversationId":"c"}}`,
		`{"type":"command","id":"4","command":"message.send","data":{"conversationId":"c","parts":[{"type":"t","size":0}]}}`,
	}
	for _, s := range plain {
		f, cmd, ok := parseSendFrame([]byte(s))
		wf, wcmd, wok := readAsJSON([]byte(s))
		if !ok || !wok || !reflect.DeepEqual(f, wf) || !reflect.DeepEqual(cmd, wcmd) {
			t.Fatalf("%s:\nby hand %v %+v %+v\nby json %v %+v %+v", s, ok, f, cmd, wok, wf, wcmd)
		}
	}
	// Not read by hand, but valid: left to encoding/json.
	for _, s := range []string{
		`{"type":"command","id":"1","command":"message.send","data":{"conversationId":"c","metadata":{"a":1},"parts":[{"data":"hi"}]}}`,
		`{"type":"command","id":"1","command":"message.send","data":{"conversationId":"c\u0041","parts":[{"data":"hi"}]}}`,
		`{"type":"command","id":"1","command":"message.send","data":{"ConversationId":"c","parts":[{"data":"hi"}]}}`,
		`{"type":"command","id":"1","command":"message.send","data":{"conversationId":"c","conversationId":"d"}}`,
		`{"type":"command","id":"1","command":"message.send","data":{"conversationId":"c","parts":null}}`,
		`{"type":"command","id":"1","command":"message.send","data":{"conversationId":"c","parts":[{"size":1e3}]}}`,
		`{"type":"command","id":"1","command":"typing.start","data":{"conversationId":"c"}}`,
	} {
		if _, _, ok := parseSendFrame([]byte(s)); ok {
			t.Errorf("read by hand: %s", s)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	tokens := []string{`"`, `\`, `{`, `}`, `[`, `]`, `,`, `:`, ` `, "\n", `0`, `1`, `-`, `e`, `.`, `null`, `"a"`, "\x01", "\xff", "é",
		`"type"`, `"data"`, `"parts"`, `"size"`, `"metadata"`, `"command"`, `"message.send"`, `"Type"`, `"conversationId"`}
	accepted := 0
	for n := range 60000 {
		b := []byte(plain[n%len(plain)])
		for range 1 + rng.IntN(2) {
			i := rng.IntN(len(b) + 1)
			switch rng.IntN(4) {
			case 0: // cut
				j := min(len(b), i+rng.IntN(8))
				b = append(b[:i:i], b[j:]...)
			case 1: // insert a token
				tok := tokens[rng.IntN(len(tokens))]
				b = append(b[:i:i], append([]byte(tok), b[i:]...)...)
			case 2: // change a byte
				if i < len(b) {
					b[i] = byte(rng.IntN(256))
				}
			case 3: // repeat a run
				j := min(len(b), i+rng.IntN(24))
				b = append(b[:j:j], append(append([]byte{}, b[i:j]...), b[j:]...)...)
			}
		}
		f, cmd, ok := parseSendFrame(b)
		if !ok {
			continue
		}
		accepted++
		wf, wcmd, wok := readAsJSON(b)
		if !wok || !reflect.DeepEqual(f, wf) || !reflect.DeepEqual(cmd, wcmd) {
			t.Fatalf("%q:\nby hand %+v %+v\nby json %v %+v %+v", b, f, cmd, wok, wf, wcmd)
		}
	}
	if accepted < 2000 {
		t.Errorf("only %d of 60,000 changed frames were read by hand: the test checks too little", accepted)
	}
}

// BenchmarkReadSendFrame is the reading of a message.send frame, by hand
// and as encoding/json read it.
func BenchmarkReadSendFrame(b *testing.B) {
	data := []byte(`{"type":"command","id":"17","command":"message.send","data":{"conversationId":"r2k5-123","clientId":"u123-x-17","parts":[{"type":"text/plain","data":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}]}}`)
	b.Run("hand", func(b *testing.B) {
		for b.Loop() {
			parseSendFrame(data)
		}
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			readAsJSON(data)
		}
	})
}
