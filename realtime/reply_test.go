package realtime

import (
	"encoding/json"
	"testing"

	"github.com/tidings/tidings/protocol"
)

// parseReply takes a frame only when encoding/json reads the same reply
// from it; anything else goes to encoding/json.
func TestParseReplyAgreesWithEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{"type":"reply","ref":"42"}`,
		` { "type" : "reply" , "ref" : "7", "account":"work" } `,
		`{"ref":"9","type":"reply"}`,
		`{"type":"reply","ref":"1","ref":"2"}`,
		`{"type":"reply"}`,
		`{"type":"command","ref":"1"}`,
		`{"type":"reply","ref":"1","id":"x"}`,
		`{"type":"reply","ref":1}`,
		`{"type":"reply","ref":"1"`,
		`{"type":"reply","ref":"1"}x`,
		`{"type":"reply","ref":"1"}}`,
		`{"type":"reply","ref":"1",}`,
		`{"type":"re\u0070ly","ref":"1"}`,
		`{"type":"reply","ref":"1\n"}`,
		`{"type":"reply","account":"é","ref":"1"}`,
		`{}`, ``, `{`, `[]`, `null`, `{"type":"reply","ref":"3"} `,
	} {
		ref, account, ok := parseReply([]byte(in))
		var f protocol.Frame
		err := json.Unmarshal([]byte(in), &f)
		if !ok {
			continue // encoding/json decides
		}
		if err != nil || f.Type != protocol.TypeReply || f.Ref != ref || f.Account != account {
			t.Errorf("%q: parseReply took (%q, %q); encoding/json reads %+v, %v", in, ref, account, f, err)
		}
	}
	for _, in := range []string{`{"type":"reply","ref":"42"}`, ` { "type" : "reply" , "ref" : "7", "account":"work" } `} {
		if _, _, ok := parseReply([]byte(in)); !ok {
			t.Errorf("%q: not taken by parseReply", in)
		}
	}
}

func FuzzParseReply(f *testing.F) {
	f.Add([]byte(`{"type":"reply","ref":"42","account":"a"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		ref, account, ok := parseReply(in)
		if !ok {
			return
		}
		var fr protocol.Frame
		if err := json.Unmarshal(in, &fr); err != nil || fr.Type != protocol.TypeReply || fr.Ref != ref || fr.Account != account {
			t.Errorf("%q: parseReply took (%q, %q); encoding/json reads %+v, %v", in, ref, account, fr, err)
		}
	})
}

func BenchmarkReplyDecode(b *testing.B) {
	in := []byte(`{"type":"reply","ref":"123456789"}`)
	b.Run("parseReply", func(b *testing.B) {
		for b.Loop() {
			parseReply(in)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var f protocol.Frame
			json.Unmarshal(in, &f)
		}
	})
}
