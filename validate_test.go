package tidings_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tidings/tidings"
)

func TestNormalizeMetadata(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want string // compacted result, or "" for nil
		code string // error code expected, or ""
	}{
		{"absent", ``, "", ""},
		{"null", ` null `, "", ""},
		{"object is compacted", "{ \"a\" : [1, 2],\n \"b\": \"é\" }", `{"a":[1,2],"b":"é"}`, ""},
		{"array", `[1]`, "", tidings.EInvalid},
		{"string", `"x"`, "", tidings.EInvalid},
		{"broken", `{"a":`, "", tidings.EInvalid},
		{"invalid UTF-8 in a string", "{\"a\":\"\xff\xfe\"}", "", tidings.EInvalid},
		{"too large", `{"a":"0123456789abcdef"}`, "", tidings.ETooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tidings.NormalizeMetadata("metadata", json.RawMessage(tc.in), 20)
			if tc.code != "" {
				var e *tidings.Error
				if !errors.As(err, &e) || e.Code != tc.code {
					t.Fatalf("NormalizeMetadata(%q) = %s, %v; want error %s", tc.in, got, err, tc.code)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("NormalizeMetadata(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestMetadataDepthIsLimited(t *testing.T) {
	nest := func(n int) string {
		return `{"a":` + strings.Repeat(`[`, n-1) + strings.Repeat(`]`, n-1) + `}`
	}
	if _, err := tidings.NormalizeMetadata("metadata", json.RawMessage(nest(tidings.MaxMetadataDepth)), 1<<20); err != nil {
		t.Errorf("metadata %d levels deep: %v", tidings.MaxMetadataDepth, err)
	}
	// Brackets inside strings do not count.
	if _, err := tidings.NormalizeMetadata("metadata", json.RawMessage(`{"a":"[[[[\"{{{{"}`), 1<<20); err != nil {
		t.Errorf("brackets in a string: %v", err)
	}
	for _, depth := range []int{tidings.MaxMetadataDepth + 1, 5000} {
		_, err := tidings.NormalizeMetadata("metadata", json.RawMessage(nest(depth)), 1<<20)
		if tidings.ErrorCode(err) != tidings.EInvalid || !strings.Contains(tidings.ErrorMessage(err), "nested") {
			t.Errorf("metadata %d levels deep: %v; want invalid_argument saying it is nested too deep", depth, err)
		}
	}
	// Every kind of metadata goes through it.
	deep := json.RawMessage(nest(100))
	u := tidings.User{ID: "alice", Metadata: deep}
	if err := u.Validate(); tidings.ErrorCode(err) != tidings.EInvalid {
		t.Errorf("user metadata 100 deep: %v", err)
	}
	m := tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: "hi"}}, Metadata: deep}
	if err := m.Validate(1 << 20); tidings.ErrorCode(err) != tidings.EInvalid {
		t.Errorf("message metadata 100 deep: %v", err)
	}
}

func TestEmptyPartsAreRefused(t *testing.T) {
	for _, parts := range [][]tidings.Part{
		{{Type: "text/plain"}},
		{{Type: "text/plain", Data: "hi"}, {Type: "image/png", Name: "x.png"}},
	} {
		m := tidings.NewMessage{Parts: parts}
		if err := m.Validate(1 << 20); tidings.ErrorCode(err) != tidings.EInvalid || !strings.Contains(tidings.ErrorMessage(err), "empty") {
			t.Errorf("message with parts %+v: %v; want invalid_argument saying a part is empty", parts, err)
		}
		e := tidings.MessageEdit{Parts: parts}
		if err := e.Validate(1 << 20); tidings.ErrorCode(err) != tidings.EInvalid {
			t.Errorf("edit with parts %+v: %v; want invalid_argument", parts, err)
		}
	}
	m := tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: " "}, {Type: "image/png", FileID: "f1"}}}
	if err := m.Validate(1 << 20); err != nil {
		t.Errorf("parts with data and with a file: %v", err)
	}
}

func TestNormalizeMediaType(t *testing.T) {
	for in, want := range map[string]string{
		"image/png":                  "image/png",
		"Text/Plain; Charset=UTF-8":  "text/plain; charset=UTF-8",
		"application/vnd.api+json":   "application/vnd.api+json",
		`text/plain; name="a b.txt"`: `text/plain; name="a b.txt"`,
	} {
		if got, err := tidings.NormalizeMediaType("Content-Type", in); err != nil || got != want {
			t.Errorf("NormalizeMediaType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, code := range map[string]string{
		"":              tidings.EUnsupportedType,
		"png":           tidings.EUnsupportedType,
		"text/plain; x": tidings.EUnsupportedType,
		"a b/c":         tidings.EUnsupportedType,
		"text/plain; a=" + strings.Repeat("x", 300): tidings.EInvalid,
	} {
		if _, err := tidings.NormalizeMediaType("Content-Type", in); tidings.ErrorCode(err) != code {
			t.Errorf("NormalizeMediaType(%.40q…) = %v; want %s", in, err, code)
		}
	}
}
