package realtime

import (
	"slices"
	"unicode/utf8"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// sendCommand is a message.send read by hand (parseSendFrame): its
// arguments, decoded.
type sendCommand struct {
	conversationID string
	nm             tidings.NewMessage
}

// parseSendFrame reads a message.send command frame in the shape clients
// write it, without encoding/json's reflection (three passes of it: the
// frame, its data, the parts), about one message in every frame a sender
// writes:
//
//	{"type":"command","id":"7","command":"message.send","account":"work",
//	 "data":{"conversationId":"c","clientId":"k","alert":"…",
//	         "parts":[{"type":"text/plain","data":"hi","name":"…","fileId":"…","size":12}]}}
//
// in any order of keys, with any JSON whitespace between tokens. It
// returns false for anything else, which handle then decodes with
// encoding/json like every other frame: another command or key, a key
// repeated or in another case, metadata, a null, a string with an escape,
// a control character or invalid UTF-8, a size that is not a plain
// non-negative integer, anything after the frame. So what it accepts, it
// reads as encoding/json does (TestParseSendFrameReadsAsJSON), and what
// encoding/json would refuse, it leaves to encoding/json to say.
func parseSendFrame(data []byte) (protocol.Frame, sendCommand, bool) {
	var f protocol.Frame
	var cmd sendCommand
	var hasData bool
	i, ok := parseObject(data, 0, frameKeys, func(k, i int) (int, bool) {
		var ok bool
		switch k {
		case 0:
			var v []byte
			v, i, ok = plainBytes(data, i)
			ok = ok && string(v) == protocol.TypeCommand
			f.Type = protocol.TypeCommand
		case 1:
			f.ID, i, ok = plainString(data, i)
		case 2:
			var v []byte
			v, i, ok = plainBytes(data, i)
			ok = ok && string(v) == protocol.CmdSend // other commands: encoding/json
			f.Command = protocol.CmdSend
		case 3:
			f.Account, i, ok = plainString(data, i)
		case 4:
			hasData = true
			i, ok = parseSendData(data, i, &cmd)
		}
		return i, ok
	})
	if !ok || skipSpace(data, i) != len(data) || !hasData || f.Type != protocol.TypeCommand || f.Command != protocol.CmdSend || f.ID == "" {
		return f, cmd, false
	}
	return f, cmd, true
}

// The keys parseSendFrame reads, of the frame, of a message.send's data
// and of a part: any other is left to encoding/json.
var (
	frameKeys    = []string{"type", "id", "command", "account", "data"}
	sendDataKeys = []string{"conversationId", "clientId", "alert", "parts"}
	partKeys     = []string{"type", "name", "data", "fileId", "size"}
)

// parseSendData reads the data of a message.send at data[i] into cmd.
func parseSendData(data []byte, i int, cmd *sendCommand) (int, bool) {
	return parseObject(data, i, sendDataKeys, func(k, i int) (int, bool) {
		var ok bool
		switch k {
		case 0:
			cmd.conversationID, i, ok = textString(data, i)
		case 1:
			cmd.nm.ClientID, i, ok = textString(data, i)
		case 2:
			cmd.nm.Alert, i, ok = textString(data, i)
		case 3:
			cmd.nm.Parts, i, ok = parseParts(data, i)
		}
		return i, ok
	})
}

// parseParts reads an array of parts at data[i]: never nil, as
// encoding/json makes of an array.
func parseParts(data []byte, i int) ([]tidings.Part, int, bool) {
	i = skipSpace(data, i)
	if i >= len(data) || data[i] != '[' {
		return nil, i, false
	}
	parts := []tidings.Part{}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		return parts, i + 1, true
	}
	for {
		var p tidings.Part
		var ok bool
		if i, ok = parsePart(data, i, &p); !ok {
			return nil, i, false
		}
		parts = append(parts, p)
		i = skipSpace(data, i)
		if i >= len(data) {
			return nil, i, false
		}
		switch data[i] {
		case ',':
			i++
		case ']':
			return parts, i + 1, true
		default:
			return nil, i, false
		}
	}
}

// parsePart reads a part at data[i] into p.
func parsePart(data []byte, i int, p *tidings.Part) (int, bool) {
	return parseObject(data, i, partKeys, func(k, i int) (int, bool) {
		var ok bool
		switch k {
		case 0:
			p.Type, i, ok = textString(data, i)
		case 1:
			p.Name, i, ok = textString(data, i)
		case 2:
			p.Data, i, ok = textString(data, i)
		case 3:
			p.FileID, i, ok = textString(data, i)
		case 4:
			p.Size, i, ok = plainInt(data, i)
		}
		return i, ok
	})
}

// parseObject reads a non-empty object at data[i] (after whitespace)
// whose keys are among keys, each at most once, handing each value to
// value with the key's index in keys and the value's position; value
// returns the position after it. It returns the position after the
// object.
func parseObject(data []byte, i int, keys []string, value func(k, i int) (int, bool)) (int, bool) {
	i = skipSpace(data, i)
	if i >= len(data) || data[i] != '{' {
		return i, false
	}
	i++
	var seen uint32
	for {
		key, j, ok := plainBytes(data, skipSpace(data, i))
		if !ok {
			return j, false
		}
		if j = skipSpace(data, j); j >= len(data) || data[j] != ':' {
			return j, false
		}
		k := slices.IndexFunc(keys, func(s string) bool { return s == string(key) })
		if k < 0 || seen&(1<<k) != 0 {
			return j, false
		}
		seen |= 1 << k
		if i, ok = value(k, skipSpace(data, j+1)); !ok {
			return i, false
		}
		if i = skipSpace(data, i); i >= len(data) {
			return i, false
		}
		switch data[i] {
		case ',':
			i++
		case '}':
			return i + 1, true
		default:
			return i, false
		}
	}
}

// textString reads a JSON string at data[i] without escapes or control
// characters, in valid UTF-8: what encoding/json reads as the same bytes.
func textString(data []byte, i int) (string, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return "", i, false
	}
	ascii := true
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			s := data[i+1 : j]
			if !ascii && !utf8.Valid(s) {
				return "", i, false // encoding/json would replace what is invalid
			}
			return string(s), j + 1, true
		case c == '\\' || c < 0x20:
			return "", i, false
		case c >= 0x80:
			ascii = false
		}
	}
	return "", i, false
}

// plainInt reads a non-negative JSON integer at data[i] (0, or digits not
// led by 0), of at most 18 digits.
func plainInt(data []byte, i int) (int64, int, bool) {
	j := i
	var v int64
	for j < len(data) && data[j] >= '0' && data[j] <= '9' && j-i < 18 {
		v = v*10 + int64(data[j]-'0')
		j++
	}
	if j == i || (data[i] == '0' && j > i+1) || (j < len(data) && (data[j] >= '0' && data[j] <= '9' || data[j] == '.' || data[j] == 'e' || data[j] == 'E')) {
		return 0, i, false
	}
	return v, j, true
}
