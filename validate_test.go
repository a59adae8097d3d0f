package tidings_test

import (
	"encoding/json"
	"errors"
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
