package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
)

// runWithInput runs args with env and stdin.
func runWithInput(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &cli{stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr, lookupEnv: mapEnv(env)}
	code := c.main(context.Background(), args)
	return result{code, stdout.String(), stderr.String()}
}

func TestSend(t *testing.T) {
	w := newWorld(t)
	env := w.env("alice")

	r := mustRun(t, env, "send", "--conversation", "lunch", "lunch", "at noon?")
	if !strings.HasPrefix(r.stdout, "sent #1 to lunch (message ") {
		t.Errorf("send printed %q", r.stdout)
	}
	// From the standard input, without its last newline.
	r = runWithInput(t, env, "first line\nsecond line\n", "send", "--conversation", "lunch", "--json")
	if r.code != exitOK {
		t.Fatalf("send from stdin: exit code %d, stderr %q", r.code, r.stderr)
	}
	var m tidings.Message
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("send --json printed %q: %v", r.stdout, err)
	}
	if m.Seq != 2 || m.Sender.ID != "alice" || m.ConversationID != "lunch" || len(m.Parts) != 1 || m.Parts[0].Data != "first line\nsecond line" {
		t.Errorf("send --json printed %+v", m)
	}

	// The same client id sends once.
	first := mustRun(t, env, "send", "--conversation", "lunch", "--client-id", "retry-1", "once")
	again := mustRun(t, env, "send", "--conversation", "lunch", "--client-id", "retry-1", "once")
	if first.stdout != again.stdout || !strings.HasPrefix(first.stdout, "sent #3 ") {
		t.Errorf("sent twice with the same client id: %q then %q", first.stdout, again.stdout)
	}

	// Bob got them all.
	page, err := w.client(t, "bob", client.WithMode(client.ManualMode)).ListMessages(context.Background(), "lunch", tidings.MessageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 3 || page.Messages[0].Parts[0].Data != "lunch at noon?" {
		t.Errorf("bob reads %d messages, the first %+v", len(page.Messages), page.Messages[0])
	}

	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		says  string
	}{
		{"unknown conversation", "", []string{"--conversation", "nope", "hi"}, exitFailure, `tidings send: conversation "nope" not found`},
		{"invalid message", "", []string{"--conversation", "lunch", "--type", "", "hi"}, exitFailure, "tidings send: "},
		{"no conversation", "", []string{"hi"}, exitUsage, "--conversation is required"},
		{"no text", "\n", []string{"--conversation", "lunch"}, exitUsage, "nothing to send"},
	} {
		r := runWithInput(t, env, tc.stdin, append([]string{"send"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.says) || r.stdout != "" {
			t.Errorf("%s: exit code %d, stdout %q, stderr %q; want %d and %q", tc.name, r.code, r.stdout, r.stderr, tc.code, tc.says)
		}
	}
}
