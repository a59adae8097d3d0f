package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestWebShowsSystemMessagesAndDeletedUsers: the page shows a system
// message (sent by the app with its server key) apart, without an author,
// and says that a deleted user left, naming no one.
func TestWebShowsSystemMessagesAndDeletedUsers(t *testing.T) {
	b := newBrowser(t)
	dir := t.TempDir()
	url, stop := startServe(t, dir, "--dev")
	defer stop()
	key := parseApp(t, mustRun(t, nil, "apps", "show", "--data", dir, "default").stdout)["server key"]
	aliceToken, zedToken := mintDevToken(t, url, "alice"), mintDevToken(t, url, "zed")
	restPost(t, url, aliceToken, "/v1/conversations", `{"id":"ops","name":"Ops","participants":[{"userId":"zed"}]}`)
	restPost(t, url, zedToken, "/v1/conversations/ops/messages", `{"parts":[{"type":"text/plain","data":"hi from zed"}]}`)
	restPost(t, url, key, "/v1/conversations/ops/messages", `{"parts":[{"type":"text/plain","data":"Deploy finished"}]}`)
	a := b.newProfile("alice").open(url + "/")
	a.signIn("alice")
	a.openConversation("Ops")
	a.waitMessages("hi from zed", "Deploy finished")
	var system []string
	a.eval(`[...document.querySelectorAll('#message-list .msg.system')].map(e => e.textContent)`, &system)
	if len(system) != 1 || !contains(system[0], "Deploy finished") || contains(system[0], "You") {
		t.Errorf("system messages shown: %q", system)
	}

	restDo(t, "DELETE", url, key, "/v1/users/zed?messages=anonymize", "")
	want, _ := json.Marshal("A deleted user left")
	const last = `[...document.querySelectorAll('#message-list > li')].at(-1)?.textContent`
	a.waitFor("the notice of the deletion", last+` === `+string(want), last)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
