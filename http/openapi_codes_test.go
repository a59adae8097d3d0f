package http

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/realtime"
)

// TestErrorCodesDocumented checks the error codes the API answers with
// against where they are listed: the Error schema's enum and the table of
// codes and statuses of openapi.json, and the list of the README.
func TestErrorCodesDocumented(t *testing.T) {
	var codes []string
	for code := range statusOf {
		codes = append(codes, code)
	}
	slices.Sort(codes)

	d := parseOpenAPI(t)
	errSchema := d["components"].(map[string]any)["schemas"].(map[string]any)["Error"].(map[string]any)
	var enum []string
	for _, c := range asSlice(errSchema["properties"].(map[string]any)["error"].(map[string]any)["properties"].(map[string]any)["code"].(map[string]any)["enum"]) {
		enum = append(enum, c.(string))
	}
	slices.Sort(enum)
	if !slices.Equal(enum, codes) {
		t.Errorf("the Error schema lists the codes %v; the API answers with %v", enum, codes)
	}

	desc := d["info"].(map[string]any)["description"].(string)
	_, table, ok := strings.Cut(desc, "Codes and statuses: ")
	if !ok {
		t.Fatal(`openapi.json's description has no "Codes and statuses: "`)
	}
	table, _, _ = strings.Cut(table, "\n")
	for _, code := range codes {
		want := fmt.Sprintf("`%s` %d", code, statusOf[code])
		if code == "invalid_argument" {
			want = "`invalid_argument` and `invalid_json` 400"
		} else if code == "invalid_json" {
			continue
		}
		if !strings.Contains(table, want) {
			t.Errorf("openapi.json's description does not say %s: %s", want, table)
		}
	}

	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, list, ok := strings.Cut(string(readme), "where `code` is one of ")
	if !ok {
		t.Fatal("README.md does not list the error codes (\"where `code` is one of \")")
	}
	list, _, _ = strings.Cut(list, ".\n")
	var listed []string
	for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(list, -1) {
		listed = append(listed, m[1])
	}
	slices.Sort(listed)
	if !slices.Equal(listed, codes) {
		t.Errorf("README.md lists the codes %v; the API answers with %v", listed, codes)
	}
}

// TestOpenAPIRealtimeSchemasMatch does for the schemas of the realtime
// routes what TestOpenAPISchemasMatchDomain does for the domain's.
func TestOpenAPIRealtimeSchemasMatch(t *testing.T) {
	d := parseOpenAPI(t)
	schemas := d["components"].(map[string]any)["schemas"].(map[string]any)
	for name, v := range map[string]any{
		"Event":         protocol.Event{},
		"PollResult":    realtime.PollResult{},
		"ReplyRequest":  replyRequest{},
		"TypingRequest": typingRequest{},
		"Presence":      protocol.PresenceResult{},
	} {
		var documented []string
		for p := range schemas[name].(map[string]any)["properties"].(map[string]any) {
			documented = append(documented, p)
		}
		slices.Sort(documented)
		if fields := jsonFields(reflect.TypeOf(v)); !slices.Equal(documented, fields) {
			t.Errorf("schema %s has properties %v; the Go type has %v", name, documented, fields)
		}
	}
}
