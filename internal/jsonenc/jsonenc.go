// Package jsonenc appends JSON values by hand, byte for byte as
// encoding/json writes them, for the few encodings paid once per message or
// per delivery, where encoding/json's reflection costs several times more.
// Each caller checks its output against encoding/json in its tests.
package jsonenc

import (
	"encoding/json"
	"time"
)

// String appends s as a JSON string, as encoding/json writes it (HTML
// characters, control characters and invalid UTF-8 escaped).
func String(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // rare: let encoding/json escape it
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Time appends t as encoding/json writes a time.Time: RFC 3339 with
// nanoseconds, quoted. It holds for years 0 to 9999, outside of which
// encoding/json fails.
func Time(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// Value appends v as json.Marshal writes it.
func Value(b []byte, v any) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, j...), nil
}
