package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
)

// wait bounds every wait of the tests of the client commands.
const wait = 20 * time.Second

// world is a server started by "tidings serve", with the users alice and
// bob and the conversation lunch between them.
type world struct {
	url, dir string
	key      string // the default app's server key
	tokens   map[string]string
	stop     func() (int, string) // stops the server
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	url, stop := startServe(t, dir)
	key := parseApp(t, mustRun(t, nil, "apps", "rotate-key", "--data", dir, "default").stdout)["server key"]
	w := &world{url: url, dir: dir, key: key, tokens: make(map[string]string), stop: stop}
	t.Cleanup(func() {
		if w.stop != nil {
			w.stop()
		}
	})
	for _, id := range []string{"alice", "bob"} {
		body := fmt.Sprintf(`{"id": %q, "displayName": %q}`, id, strings.ToUpper(id[:1])+id[1:])
		req, err := http.NewRequest(http.MethodPost, url+"/v1/users", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create user %s: %s", id, resp.Status)
		}
		w.tokens[id] = strings.TrimSpace(mustRun(t, nil, "token", "--data", dir, "--user", id).stdout)
	}
	alice := w.client(t, "alice", client.WithMode(client.ManualMode))
	if _, err := alice.CreateConversation(context.Background(), tidings.NewConversation{ID: "lunch", Name: "Lunch",
		Participants: []tidings.NewParticipant{{UserID: "bob"}}}); err != nil {
		t.Fatal(err)
	}
	return w
}

// stopServer stops the server, as if it went down.
func (w *world) stopServer(t *testing.T) {
	t.Helper()
	w.stop()
	w.stop = nil
}

// startServer starts the server stopped by stopServer again, at the same
// address, with the same data.
func (w *world) startServer(t *testing.T) {
	t.Helper()
	url, stop := startServe(t, w.dir, "--addr", strings.TrimPrefix(w.url, "http://"))
	if url != w.url {
		stop()
		t.Fatalf("the server started again at %s, not %s", url, w.url)
	}
	w.stop = stop
}

// env is the environment of a command run as user.
func (w *world) env(user string) map[string]string {
	return map[string]string{"TIDINGS_SERVER": w.url, "TIDINGS_TOKEN": w.tokens[user]}
}

// client returns an SDK client of user, closed when the test ends.
func (w *world) client(t *testing.T, user string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(w.url, append([]client.Option{client.WithToken(w.tokens[user])}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// send sends text to lunch as user, through the REST API.
func (w *world) send(t *testing.T, user, text string) *tidings.Message {
	t.Helper()
	c := w.client(t, user, client.WithMode(client.ManualMode))
	m, err := c.SendMessage(context.Background(), "lunch", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: text}}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// running is a command running in the background.
type running struct {
	stdout, stderr *syncBuffer
	stdin          *io.PipeWriter
	cancel         context.CancelFunc
	done           chan int
}

// start runs args in the background with env, and its standard input
// from the pipe r.stdin; the command is stopped when the test ends.
func start(t *testing.T, env map[string]string, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in, stdin := io.Pipe()
	r := &running{stdout: new(syncBuffer), stderr: new(syncBuffer), stdin: stdin, cancel: cancel, done: make(chan int, 1)}
	c := &cli{stdin: in, stdout: r.stdout, stderr: r.stderr, lookupEnv: mapEnv(env)}
	go func() { r.done <- c.main(ctx, args) }()
	t.Cleanup(func() {
		cancel()
		stdin.Close()
		select {
		case <-r.done:
		case <-time.After(wait):
			t.Errorf("tidings %s did not stop", strings.Join(args, " "))
		}
	})
	return r
}

// waitOutput waits until the standard output (or error, if stderr) holds
// text.
func (r *running) waitOutput(t *testing.T, stderr bool, text string) {
	t.Helper()
	buf := r.stdout
	if stderr {
		buf = r.stderr
	}
	deadline := time.Now().Add(wait)
	for !strings.Contains(buf.String(), text) {
		select {
		case code := <-r.done:
			r.done <- code
			if !strings.Contains(buf.String(), text) {
				t.Fatalf("exited with code %d without printing %q; stdout:\n%s\nstderr:\n%s", code, text, r.stdout, r.stderr)
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %q; stdout:\n%s\nstderr:\n%s", text, r.stdout, r.stderr)
		}
	}
}

// exit waits for the command to end and returns its exit code.
func (r *running) exit(t *testing.T) int {
	t.Helper()
	select {
	case code := <-r.done:
		r.done <- code
		return code
	case <-time.After(wait):
		t.Fatalf("did not exit; stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		return 0
	}
}

// stop stops the command as Ctrl-C does and returns its exit code.
func (r *running) stop(t *testing.T) int {
	t.Helper()
	r.cancel()
	return r.exit(t)
}

func TestClientCommandsFindTheServerAndToken(t *testing.T) {
	w := newWorld(t)

	// The environment, or the flags, which win.
	r := mustRun(t, w.env("alice"), "send", "--conversation", "lunch", "from the environment")
	if !strings.HasPrefix(r.stdout, "sent #1 to lunch") {
		t.Errorf("send printed %q", r.stdout)
	}
	r = mustRun(t, map[string]string{"TIDINGS_SERVER": "http://127.0.0.1:1", "TIDINGS_TOKEN": "nope"},
		"send", "--server", w.url, "--token", w.tokens["bob"], "--conversation", "lunch", "from flags")
	if !strings.HasPrefix(r.stdout, "sent #2 to lunch") {
		t.Errorf("send printed %q", r.stdout)
	}
	// --user mints a token with the data directory's secret.
	r = mustRun(t, map[string]string{"TIDINGS_SERVER": w.url}, "send", "--data", w.dir, "--user", "bob", "--conversation", "lunch", "minted")
	if !strings.HasPrefix(r.stdout, "sent #3 to lunch") {
		t.Errorf("send --user printed %q", r.stdout)
	}
	page, err := w.client(t, "alice", client.WithMode(client.ManualMode)).ListMessages(context.Background(), "lunch", tidings.MessageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range page.Messages {
		got = append(got, m.Sender.ID+": "+m.Parts[0].Data)
	}
	if want := "alice: from the environment,bob: from flags,bob: minted"; strings.Join(got, ",") != want {
		t.Errorf("history %q, want %q", strings.Join(got, ","), want)
	}

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		says string
	}{
		{"no token", map[string]string{"TIDINGS_SERVER": w.url}, nil, exitUsage, "no access token: set TIDINGS_TOKEN"},
		{"token and user", w.env("alice"), []string{"--token", "x", "--user", "bob"}, exitUsage, "not both"},
		{"bad server", w.env("alice"), []string{"--server", "127.0.0.1:8080"}, exitUsage, "not an http:// or https:// URL"},
		{"unknown user", w.env("alice"), []string{"--data", w.dir, "--user", "carol"}, exitFailure, `there is no user "carol" in app "default"`},
		{"refused token", map[string]string{"TIDINGS_SERVER": w.url, "TIDINGS_TOKEN": "garbage"}, nil, exitFailure, "the server refused the access token"},
		{"no server", map[string]string{"TIDINGS_SERVER": "http://127.0.0.1:1", "TIDINGS_TOKEN": "x"}, nil, exitFailure, "cannot reach the server at http://127.0.0.1:1"},
	} {
		args := append([]string{"send", "--conversation", "lunch"}, tc.args...)
		r := runCLI(t, tc.env, append(args, "hello")...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.says) {
			t.Errorf("%s: exit code %d, stderr %q; want %d and %q", tc.name, r.code, r.stderr, tc.code, tc.says)
		}
	}
}

func TestHelpOfClientCommands(t *testing.T) {
	for cmd, flags := range map[string][]string{
		"listen": {"--json", "--cursor", "--count", "--timeout", "--device", "--conversation"},
		"send":   {"--conversation", "--client-id", "--type", "--json"},
		"chat":   {"--history", "--device", "/history", "/quit", "NO_COLOR"},
	} {
		r := mustRun(t, nil, "help", cmd)
		for _, f := range append(flags, "--server", "--token", "--user", "--app", "--data", "TIDINGS_SERVER", "TIDINGS_TOKEN") {
			if !strings.Contains(r.stdout, f) {
				t.Errorf("help %s does not explain %s", cmd, f)
			}
		}
	}
	if r := mustRun(t, nil, "help"); !bytes.Contains([]byte(r.stdout), []byte("TIDINGS_TOKEN")) {
		t.Errorf("help does not say where the client commands find the token")
	}
}
