package realtime

// parseReply reads a reply frame, the most common frame a client sends
// (one per update it acknowledges, at low rates), without encoding/json,
// which took about half of the CPU spent handling client frames. It
// accepts only the plain form clients send: a JSON object of string
// members "type" (which must be "reply"), "ref" and "account", without
// escapes or bytes outside ASCII; ok is false for anything else, which
// Handle then decodes with encoding/json as before, with the same result.
func parseReply(data []byte) (ref, account string, ok bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return "", "", false
	}
	i++
	isReply := false
	for {
		i = skipSpace(data, i)
		var key, val []byte
		if key, i, ok = plainBytes(data, i); !ok {
			return "", "", false
		}
		if i = skipSpace(data, i); i >= len(data) || data[i] != ':' {
			return "", "", false
		}
		if val, i, ok = plainBytes(data, skipSpace(data, i+1)); !ok {
			return "", "", false
		}
		switch string(key) {
		case "type":
			isReply = string(val) == "reply"
		case "ref":
			ref = string(val)
		case "account":
			account = string(val)
		default:
			return "", "", false
		}
		if i = skipSpace(data, i); i >= len(data) {
			return "", "", false
		}
		if data[i] == '}' {
			break
		}
		if data[i] != ',' {
			return "", "", false
		}
		i++
	}
	if skipSpace(data, i+1) != len(data) || !isReply {
		return "", "", false
	}
	return ref, account, true
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// plainString reads a JSON string at data[i] made of printable ASCII
// without escapes, and returns it and the index after its closing quote.
func plainString(data []byte, i int) (string, int, bool) {
	b, j, ok := plainBytes(data, i)
	return string(b), j, ok
}

// plainBytes is plainString returning the string's bytes in data: keys
// and names compared to constants need no string of their own.
func plainBytes(data []byte, i int) ([]byte, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return data[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return nil, i, false
		}
	}
	return nil, i, false
}
