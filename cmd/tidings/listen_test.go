package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
)

const listening = "listening to "

func TestListenPrintsAndAcknowledges(t *testing.T) {
	w := newWorld(t)
	cursor := filepath.Join(t.TempDir(), "cursor.json")

	l := start(t, w.env("alice"), "listen", "--cursor", cursor, "--count", "1")
	l.waitOutput(t, true, listening)
	m := w.send(t, "bob", "lunch at noon?\nat the usual place")
	if code := l.exit(t); code != exitOK {
		t.Fatalf("listen --count 1: exit code %d; stderr:\n%s", code, l.stderr)
	}
	lines := strings.Split(strings.TrimSpace(l.stdout.String()), "\n")
	if len(lines) != 1 || !strings.HasSuffix(lines[0], "  conversationMessage.sent  lunch  bob  #1 lunch at noon? ↵ at the usual place") {
		t.Errorf("listen printed:\n%s", l.stdout)
	}
	if !strings.Contains(l.stderr.String(), listening+w.url+" as alice (device listen)") {
		t.Errorf("stderr:\n%s", l.stderr)
	}

	// Started again with the same cursor file, listen resumes after the
	// update it printed.
	w.send(t, "bob", "two")
	l = start(t, w.env("alice"), "listen", "--cursor", cursor)
	l.waitOutput(t, false, "#2 two")
	if code := l.stop(t); code != exitOK {
		t.Errorf("listen stopped: exit code %d", code)
	}
	if out := l.stdout.String(); strings.Contains(out, m.ID) || strings.Contains(out, "lunch at noon") {
		t.Errorf("the update printed before came again:\n%s", out)
	}

	// The server got the acknowledgements too: the device, without the
	// cursor file, gets neither update again.
	l = start(t, w.env("alice"), "listen")
	l.waitOutput(t, true, listening)
	w.send(t, "bob", "three")
	l.waitOutput(t, false, "#3 three")
	l.stop(t)
	if out := l.stdout.String(); strings.Contains(out, "lunch at noon") || strings.Contains(out, "#2 two") {
		t.Errorf("the server sent again what was acknowledged:\n%s", out)
	}
}

// TestListenTellsLeftFromRemoved: listen says whether a participant left
// or was removed, and was added or joined.
func TestListenTellsLeftFromRemoved(t *testing.T) {
	w := newWorld(t)
	l := start(t, w.env("alice"), "listen")
	l.waitOutput(t, true, listening)
	bob := w.client(t, "bob", client.WithMode(client.ManualMode))
	if err := bob.Leave(ctxT(t), "lunch"); err != nil {
		t.Fatal(err)
	}
	l.waitOutput(t, false, "  conversation.participantRemoved  lunch  bob  bob left\n")
	alice := w.client(t, "alice", client.WithMode(client.ManualMode))
	if _, err := alice.AddParticipant(ctxT(t), "lunch", tidings.NewParticipant{UserID: "bob"}); err != nil {
		t.Fatal(err)
	}
	l.waitOutput(t, false, "  conversation.participantAdded  lunch  alice  bob added as member\n")
	if err := alice.RemoveParticipant(ctxT(t), "lunch", "bob"); err != nil {
		t.Fatal(err)
	}
	l.waitOutput(t, false, "  conversation.participantRemoved  lunch  alice  bob removed\n")
	l.stop(t)
}

// TestListenPrintsOthersProfileChanges: listen prints the profile changes
// of those who share a conversation with the user.
func TestListenPrintsOthersProfileChanges(t *testing.T) {
	w := newWorld(t)
	l := start(t, w.env("alice"), "listen")
	l.waitOutput(t, true, listening)
	bob := w.client(t, "bob", client.WithMode(client.ManualMode))
	name := "Bob Smith"
	if _, err := bob.UpdateUser(ctxT(t), "bob", tidings.UserUpdate{DisplayName: &name}); err != nil {
		t.Fatal(err)
	}
	l.waitOutput(t, false, "  profile.update  -  bob  bob is now \"Bob Smith\"\n")
	l.stop(t)
}

func TestListenJSON(t *testing.T) {
	w := newWorld(t)
	l := start(t, w.env("alice"), "listen", "--json", "--count", "2", "--conversation", "lunch")
	l.waitOutput(t, true, listening)
	sent := w.send(t, "bob", `"quoted" <text>`)
	if _, err := w.client(t, "alice", client.WithMode(client.ManualMode)).MarkRead(t.Context(), "lunch", sent.Seq); err != nil {
		t.Fatal(err)
	}
	if code := l.exit(t); code != exitOK {
		t.Fatalf("exit code %d; stderr:\n%s", code, l.stderr)
	}
	lines := strings.Split(strings.TrimSpace(l.stdout.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("printed %d lines, want 2:\n%s", len(lines), l.stdout)
	}
	var u struct {
		Ref    string `json:"ref"`
		Silent *bool  `json:"silent"`
		Action string `json:"action"`
		Event  struct {
			Seq            int64  `json:"seq"`
			ID             string `json:"id"`
			Name           string `json:"name"`
			Time           string `json:"time"`
			ConversationID string `json:"conversationId"`
			Actor          struct {
				ID string `json:"id"`
			} `json:"actor"`
			Payload struct {
				ID    string `json:"id"` // a message
				Parts []struct {
					Data string `json:"data"`
				} `json:"parts"`
				ProfileID string `json:"profileId"`
				Seq       int64  `json:"seq"`
			} `json:"payload"`
		} `json:"event"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &u); err != nil {
		t.Fatalf("line %q: %v", lines[0], err)
	}
	e := u.Event
	if u.Ref == "" || u.Ref != jsonNumber(e.Seq) || u.Silent == nil || *u.Silent || u.Action != "new" ||
		e.ID == "" || e.Time == "" || e.Name != "conversationMessage.sent" || e.ConversationID != "lunch" || e.Actor.ID != "bob" ||
		e.Payload.ID != sent.ID || len(e.Payload.Parts) != 1 || e.Payload.Parts[0].Data != `"quoted" <text>` {
		t.Errorf("first line %s", lines[0])
	}
	if err := json.Unmarshal([]byte(lines[1]), &u); err != nil {
		t.Fatalf("line %q: %v", lines[1], err)
	}
	if e := u.Event; e.Name != "conversationMessage.read" || e.Payload.ProfileID != "alice" || e.Payload.Seq != sent.Seq || !*u.Silent {
		t.Errorf("second line %s", lines[1])
	}
}

func jsonNumber(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestListenErrors(t *testing.T) {
	w := newWorld(t)
	r := runCLI(t, map[string]string{"TIDINGS_SERVER": w.url, "TIDINGS_TOKEN": "garbage"}, "listen")
	if r.code != exitFailure || !strings.Contains(r.stderr, "tidings listen: the server refused the access token") {
		t.Errorf("listen with a bad token: exit code %d, stderr %q", r.code, r.stderr)
	}
	r = runCLI(t, w.env("alice"), "listen", "--count", "1", "--timeout", "100ms")
	if r.code != exitFailure || !strings.Contains(r.stderr, "timed out after 100ms") {
		t.Errorf("listen that timed out: exit code %d, stderr %q", r.code, r.stderr)
	}
	r = runCLI(t, w.env("alice"), "listen", "extra")
	if r.code != exitUsage {
		t.Errorf("listen extra: exit code %d", r.code)
	}
}

// Listen says at once when the server cannot be reached, keeps trying,
// and listens once it is back.
func TestListenWhileTheServerIsDown(t *testing.T) {
	w := newWorld(t)
	w.stopServer(t)
	l := start(t, w.env("alice"), "listen")
	l.waitOutput(t, true, "cannot reach "+w.url+": connection refused; retrying\n")
	if out := l.stderr.String(); strings.Contains(out, "dial tcp") {
		t.Errorf("raw error text on stderr:\n%s", out)
	}
	w.startServer(t)
	l.waitOutput(t, true, listening+w.url+" as alice")
	w.send(t, "bob", "back again")
	l.waitOutput(t, false, "#1 back again")
	if code := l.stop(t); code != exitOK {
		t.Errorf("listen stopped: exit code %d; stderr:\n%s", code, l.stderr)
	}
}
