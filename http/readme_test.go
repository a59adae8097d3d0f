package http

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestREADMEListsEveryRoute checks the README's table of routes against
// the route table: each route is on a row that names its method and its
// path (written with {id} for the conversation, and ".../last" for a
// second path of the row), and each row is of routes the server serves.
func TestREADMEListsEveryRoute(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "| Route | Credential | What it does |\n")
	if !ok {
		t.Fatal("README.md has no table of routes")
	}
	table, _, _ = strings.Cut(table, "\n\n")
	rows := strings.Split(table, "\n")[1:]
	routes := (&Server{}).routes()
	for _, rt := range routes {
		if rt.pattern == "/v1/openapi.json" {
			continue // linked below the table
		}
		path := strings.ReplaceAll(rt.pattern, "{conversationId}", "{id}")
		last := path[strings.LastIndex(path, "/"):]
		found := false
		for _, row := range rows {
			cols := strings.Split(strings.Trim(row, "| "), " | ")
			route := cols[0]
			hasPath := strings.Contains(route, " "+path+"`") || strings.Contains(route, " "+path+"?") ||
				strings.Contains(route, "`..."+last+"`")
			if !hasPath || !strings.Contains(route, rt.method) {
				continue
			}
			found = true
			want := map[authKind]string{authNone: "none", authServer: "server key", authUser: "user", authAny: "either"}[rt.auth]
			if rt.pattern == "/v1/realtime" {
				want = "in the first frame"
			}
			if len(cols) < 2 || !strings.HasPrefix(cols[1], want) {
				t.Errorf("README.md: %s %s takes the credential %q, the table says %q", rt.method, path, want, cols[1])
			}
		}
		if !found {
			t.Errorf("README.md's table of routes does not list %s %s", rt.method, path)
		}
	}

	// Every path of the table is served (the web page's aside).
	served := map[string]bool{"/": true, "/sdk/tidings.js": true}
	for _, rt := range routes {
		served[strings.ReplaceAll(rt.pattern, "{conversationId}", "{id}")] = true
	}
	for _, row := range rows {
		route, _, _ := strings.Cut(strings.TrimPrefix(row, "| "), " |")
		for _, m := range regexp.MustCompile(` (/[^`+"`"+`?]*)`).FindAllStringSubmatch(route, -1) {
			if !served[m[1]] {
				t.Errorf("README.md's table of routes lists %s, which the server does not serve", m[1])
			}
		}
	}
}
