package realtime

import (
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
	var seen [5]bool // type, id, command, account, data
	i, ok := objectStart(data, 0)
	if !ok {
		return f, cmd, false
	}
	for more := true; more; {
		var key string
		if key, i, ok = objectKey(data, i); !ok {
			return f, cmd, false
		}
		k := -1
		switch key {
		case "type":
			k = 0
			f.Type, i, ok = plainString(data, i)
		case "id":
			k = 1
			f.ID, i, ok = plainString(data, i)
		case "command":
			k = 2
			f.Command, i, ok = plainString(data, i)
		case "account":
			k = 3
			f.Account, i, ok = plainString(data, i)
		case "data":
			k = 4
			i, ok = parseSendData(data, i, &cmd)
		}
		if k < 0 || !ok || seen[k] {
			return f, cmd, false
		}
		seen[k] = true
		if i, more, ok = objectNext(data, i); !ok {
			return f, cmd, false
		}
	}
	if skipSpace(data, i) != len(data) || !seen[4] || f.Type != protocol.TypeCommand || f.Command != protocol.CmdSend || f.ID == "" {
		return f, cmd, false
	}
	return f, cmd, true
}

// parseSendData reads the data of a message.send at data[i] into cmd.
func parseSendData(data []byte, i int, cmd *sendCommand) (int, bool) {
	var seen [4]bool // conversationId, clientId, alert, parts
	i, ok := objectStart(data, i)
	if !ok {
		return i, false
	}
	for more := true; more; {
		var key string
		if key, i, ok = objectKey(data, i); !ok {
			return i, false
		}
		k := -1
		switch key {
		case "conversationId":
			k = 0
			cmd.conversationID, i, ok = textString(data, i)
		case "clientId":
			k = 1
			cmd.nm.ClientID, i, ok = textString(data, i)
		case "alert":
			k = 2
			cmd.nm.Alert, i, ok = textString(data, i)
		case "parts":
			k = 3
			cmd.nm.Parts, i, ok = parseParts(data, i)
		}
		if k < 0 || !ok || seen[k] {
			return i, false
		}
		seen[k] = true
		if i, more, ok = objectNext(data, i); !ok {
			return i, false
		}
	}
	return i, true
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
	var seen [5]bool // type, name, data, fileId, size
	i, ok := objectStart(data, i)
	if !ok {
		return i, false
	}
	for more := true; more; {
		var key string
		if key, i, ok = objectKey(data, i); !ok {
			return i, false
		}
		k := -1
		switch key {
		case "type":
			k = 0
			p.Type, i, ok = textString(data, i)
		case "name":
			k = 1
			p.Name, i, ok = textString(data, i)
		case "data":
			k = 2
			p.Data, i, ok = textString(data, i)
		case "fileId":
			k = 3
			p.FileID, i, ok = textString(data, i)
		case "size":
			k = 4
			p.Size, i, ok = plainInt(data, i)
		}
		if k < 0 || !ok || seen[k] {
			return i, false
		}
		seen[k] = true
		if i, more, ok = objectNext(data, i); !ok {
			return i, false
		}
	}
	return i, true
}

// objectStart reads the opening brace of an object at data[i] (after
// whitespace); an empty object is refused.
func objectStart(data []byte, i int) (int, bool) {
	i = skipSpace(data, i)
	if i >= len(data) || data[i] != '{' {
		return i, false
	}
	return i + 1, true
}

// objectKey reads a key and its colon; the value follows (after
// whitespace, which the value's reader skips).
func objectKey(data []byte, i int) (string, int, bool) {
	key, i, ok := plainString(data, skipSpace(data, i))
	if !ok {
		return "", i, false
	}
	if i = skipSpace(data, i); i >= len(data) || data[i] != ':' {
		return "", i, false
	}
	return key, skipSpace(data, i+1), true
}

// objectNext reads what follows a value in an object: a comma (more) or
// the closing brace.
func objectNext(data []byte, i int) (int, bool, bool) {
	i = skipSpace(data, i)
	if i >= len(data) {
		return i, false, false
	}
	switch data[i] {
	case ',':
		return i + 1, true, true
	case '}':
		return i + 1, false, true
	}
	return i, false, false
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
