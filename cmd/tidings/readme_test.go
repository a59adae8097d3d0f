package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// asCLI is the environment variable that makes the test binary run as the
// tidings command itself (see TestMain), so that the README's
// "go run ./cmd/tidings" needs no build of its own.
const asCLI = "TIDINGS_README_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		os.Unsetenv(asCLI)
		useTestWebPush()
		main()
	}
	os.Exit(m.Run())
}

// walkthroughBlocks returns the code blocks of the README's five-minute
// walk-through, in order.
func walkthroughBlocks(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Five-minute walk-through\n")
	if !ok {
		t.Fatal(`README.md has no section "## Five-minute walk-through"`)
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var blocks []string
	var cur *strings.Builder
	for line := range strings.Lines(section) {
		switch {
		case cur == nil && (line == "```bash\n" || line == "```sh\n"):
			cur = new(strings.Builder)
		case cur == nil && strings.HasPrefix(line, "```"):
			t.Fatalf("the walk-through has a block of another language than bash or sh: %q", line)
		case cur != nil && line == "```\n":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line)
		}
	}
	if cur != nil {
		t.Fatal("the walk-through has a code block that does not end")
	}
	return blocks
}

// pasteShell is a bash process into which a test pastes blocks of commands
// one after the other, as a reader does in a terminal: variables, the
// working directory and background jobs carry over from one block to the
// next. Its standard input is the test's, for interactive commands.
type pasteShell struct {
	cmd     *exec.Cmd
	out     *syncBuffer // stdout and stderr, as a terminal shows them
	blocks  *os.File    // the shell reads the names of the files to source from it
	stdin   io.WriteCloser
	dir     string // of the files to source
	n       int
	started int // length of out when the running block started
	exited  chan struct{}
}

// endMarker is printed by the shell after each block.
const endMarker = "::end of block::\n"

func startPasteShell(t *testing.T, bash, workdir string, env []string) *pasteShell {
	t.Helper()
	// set -o pipefail and the ERR trap make every failing command visible,
	// where a terminal would only show its message.
	const loop = `set -o pipefail
trap 'echo "::failed with status $?: $BASH_COMMAND"' ERR
while IFS= read -r f <&3; do source "$f"; echo "::end of block::"; done
`
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &pasteShell{out: new(syncBuffer), blocks: w, dir: t.TempDir(), exited: make(chan struct{})}
	s.cmd = exec.Command(bash, "--noprofile", "--norc", "-c", loop)
	s.cmd.Dir = workdir
	s.cmd.Env = env
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.ExtraFiles = []*os.File{r}
	s.cmd.WaitDelay = 5 * time.Second
	// In a process group of its own, so that the test ends the jobs a
	// block leaves running, with the shell.
	inOwnProcessGroup(s.cmd)
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.blocks.Close()
		s.stdin.Close()
		select {
		case <-s.exited:
		case <-time.After(20 * time.Second):
		}
		killProcessGroup(s.cmd)
		<-s.exited
	})
	return s
}

// paste starts running block.
func (s *pasteShell) paste(t *testing.T, block string) {
	t.Helper()
	s.n++
	name := filepath.Join(s.dir, fmt.Sprintf("block%d.sh", s.n))
	if err := os.WriteFile(name, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	s.started = len(s.out.String())
	if _, err := fmt.Fprintln(s.blocks, name); err != nil {
		t.Fatal(err)
	}
}

// output returns what the running block printed so far.
func (s *pasteShell) output() string {
	out := s.out.String()[s.started:]
	out, _, _ = strings.Cut(out, endMarker)
	return out
}

// waitPrinted waits until the shell, the last block pasted or jobs it
// left in the background, printed want since the block started.
func (s *pasteShell) waitPrinted(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(s.out.String()[s.started:], want) {
		select {
		case <-deadline:
			t.Fatalf("the shell did not print %q within 30s of block %d; it printed:\n%s", want, s.n, s.out.String()[s.started:])
		case <-s.exited:
			t.Fatalf("the shell exited; block %d printed:\n%s", s.n, s.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// wait waits until the running block is done and returns what it printed.
func (s *pasteShell) wait(t *testing.T) string {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(s.out.String()[s.started:], endMarker) {
		select {
		case <-deadline:
			t.Fatalf("block %d did not finish within 60s; it printed:\n%s", s.n, s.output())
		case <-s.exited:
			t.Fatalf("the shell exited; block %d printed:\n%s", s.n, s.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return s.output()
}

// run runs block and returns what it printed.
func (s *pasteShell) run(t *testing.T, block string) string {
	t.Helper()
	s.paste(t, block)
	return s.wait(t)
}

// TestREADMEWalkthrough pastes every block of the README's five-minute
// walk-through, in order, into one shell, against a server started as the
// README says (but on a free port), and checks that each works and prints
// what the README says it prints.
func TestREADMEWalkthrough(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is missing: the README's walk-through cannot be pasted")
	}
	for _, tool := range []string{"curl", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing: the README's walk-through needs it", tool)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	blocks := walkthroughBlocks(t)

	// The walk-through runs at the root of the repository, where the
	// server keeps its data in ./tidings-data; "go run ./cmd/tidings" is
	// this test binary running as the command.
	work := t.TempDir()
	url, stop := startServe(t, filepath.Join(work, "tidings-data"))
	t.Cleanup(func() { stop() })
	bin := t.TempDir()
	shim := fmt.Sprintf(`#!/bin/sh
if [ "$1" = run ] && [ "$2" = ./cmd/tidings ]; then
	shift 2
	%s=1 exec '%s' "$@"
fi
echo "the README test runs only \"go run ./cmd/tidings\", not: go $*" >&2
exit 127
`, asCLI, self)
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(shim), 0o700); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TIDINGS_") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "NO_COLOR=1")
	sh := startPasteShell(t, bash, work, env)

	// The README's server is on the default address; this one is where
	// the test server listens.
	const defaultURL = "http://127.0.0.1:8080"
	if len(blocks) == 0 || !strings.Contains(blocks[0], "API="+defaultURL+"\n") {
		t.Fatalf("the first block of the walk-through does not set API=%s:\n%s", defaultURL, blocks)
	}
	for i, b := range blocks {
		if i > 0 && strings.Contains(b, defaultURL) {
			t.Errorf("block %d names %s instead of using $API:\n%s", i+1, defaultURL, b)
		}
	}
	blocks[0] = strings.Replace(blocks[0], "API="+defaultURL, "API="+url, 1)

	// variable returns the value of a shell variable.
	variable := func(name string) string {
		return strings.TrimSpace(sh.run(t, fmt.Sprintf("printf '%%s\\n' \"$%s\"\n", name)))
	}
	jwt := regexp.MustCompile(`^[\w-]+\.[\w-]+\.[\w-]+$`)

	// metric returns the value of a metric of the server.
	metric := func(name string) string {
		resp, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("/metrics has no %s", name)
		}
		return string(m[1])
	}
	// poll polls as bob, without waiting.
	poll := func(device string) string {
		req, err := http.NewRequest(http.MethodGet, url+"/v1/realtime/poll?device="+device, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+variable("BOB"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	listening := "listening to " + url + " as bob (device listen)"

	steps := []struct {
		has    string   // the block contains this: the steps below are in step with the README
		stdin  string   // written to the standard input of the shell before the block
		during func()   // runs while the block runs
		prints []string // its output contains each
		after  func(t *testing.T, out string)
	}{
		{has: "apps rotate-key default", prints: []string{"tsk_"}, after: func(t *testing.T, out string) {
			if key := variable("KEY"); key == "" || strings.Contains(key, " ") {
				t.Errorf("KEY = %q, want the server key", key)
			}
		}},
		{has: `"id": "bob"`, prints: []string{`"id":"alice"`, `"displayName":"Alice"`, `"id":"bob"`}},
		{has: "/v1/users/alice/tokens", prints: []string{`"token":"`, `"expiresAt":"`, `"userId":"alice"`}, after: func(t *testing.T, out string) {
			if tok := variable("ALICE"); !jwt.MatchString(tok) {
				t.Errorf("ALICE = %q, want an access token", tok)
			}
		}},
		{has: "token --user bob", prints: []string{`"id":"bob"`}, after: func(t *testing.T, out string) {
			if tok := variable("BOB"); !jwt.MatchString(tok) {
				t.Errorf("BOB = %q, want an access token", tok)
			}
		}},
		{has: `"id": "lunch"`, prints: []string{`"id":"lunch"`, `"name":"Lunch"`}},
		{has: "lunch at noon?", prints: []string{`"seq":1`, `"seq":2`}},
		{has: `/messages" -H "Authorization: Bearer $BOB"`, prints: []string{"hi bob", "lunch at noon?"}},
		{has: `"$API/v1/conversations" -H "Authorization: Bearer $BOB"`, prints: []string{`"lastSeq":2`, `"readSeq":0`, `"unreadCount":2`}},
		{has: "/read", after: func(t *testing.T, out string) {
			if n := strings.Count(out, `"unreadCount":0`); n != 2 {
				t.Errorf(`printed "unreadCount":0 %d times, want 2 (the answer and the list)`, n)
			}
		}},
		{has: "menu.txt", prints: []string{`"name":"menu.txt"`, `"seq":3`}, after: func(t *testing.T, out string) {
			if f := variable("FILE"); f == "" || strings.ContainsAny(f, `{}":, `) {
				t.Errorf("FILE = %q, want the file's id", f)
			}
		}},
		{has: "/files/$FILE", prints: []string{`"name":"menu.txt"`, `"size":27`, "Menu: soup, bread, cheese."}, after: func(t *testing.T, out string) {
			for _, f := range []string{"menu.txt", "file.json"} {
				if _, err := os.Stat(filepath.Join(work, f)); err == nil {
					t.Errorf("%s is left behind", f)
				}
			}
		}},
		{has: "/v1/conversations/nope", prints: []string{`{"error":{"code":"not_found","message":"`}},
		{has: "/v1/realtime/poll", during: func() {
			// Alice sends, as the README says, once the poll waits.
			deadline := time.Now().Add(30 * time.Second)
			for metric("tidings_realtime_sessions") != "1" {
				if time.Now().After(deadline) {
					t.Fatalf("no poll in progress within 30s; the shell printed:\n%s", sh.output())
				}
				time.Sleep(20 * time.Millisecond)
			}
			env := map[string]string{"TIDINGS_SERVER": url}
			mustRun(t, env, "send", "--user", "alice", "--data", filepath.Join(work, "tidings-data"), "--conversation", "lunch", "I'm here")
		}, prints: []string{`"type":"update"`, `"name":"conversationMessage.sent"`, "I'm here", `"lastRef":"`}, after: func(t *testing.T, out string) {
			if !regexp.MustCompile(`"ref":"\d+"`).MatchString(out) {
				t.Errorf("no ref in the answer of the poll:\n%s", out)
			}
		}},
		{has: "/v1/realtime/replies", after: func(t *testing.T, out string) {
			if strings.TrimSpace(out) != "" {
				t.Errorf("the acknowledgement printed %q, want nothing", out)
			}
			if ref := variable("REF"); !regexp.MustCompile(`^\d+$`).MatchString(ref) {
				t.Errorf("REF = %q, want the lastRef of the poll", ref)
			}
			if _, err := os.Stat(filepath.Join(work, "poll.json")); err == nil {
				t.Error("poll.json is left behind")
			}
			// The device is past the update: the next poll has none.
			if got := poll("laptop"); !strings.HasPrefix(got, `{"updates":[],`) {
				t.Errorf("after the acknowledgement, a poll answers %s", got)
			}
		}},
		{has: "listen --count 1 &", after: func(t *testing.T, out string) {
			sh.waitPrinted(t, listening)
		}},
		{has: `send --conversation lunch "on my way"`, prints: []string{"sent #5 to lunch"}, after: func(t *testing.T, out string) {
			sh.waitPrinted(t, "conversationMessage.sent  lunch  alice  #5 on my way")
			if out := sh.run(t, "wait $!; echo \"listen exited with status $?\"\n"); !strings.Contains(out, "listen exited with status 0") {
				t.Errorf("listen --count 1: %s", out)
			}
		}},
		{has: "chat lunch", stdin: "/quit\n", prints: []string{"hi bob", "I'm here", "on my way"}},
	}
	for i, b := range blocks[:min(len(blocks), len(steps))] {
		st := steps[i]
		if !strings.Contains(b, st.has) {
			t.Fatalf("block %d does not contain %q: the README changed, change the test with it:\n%s", i+1, st.has, b)
		}
		if st.stdin != "" {
			if _, err := io.WriteString(sh.stdin, st.stdin); err != nil {
				t.Fatal(err)
			}
		}
		sh.paste(t, b)
		if st.during != nil {
			st.during()
		}
		out := sh.wait(t)
		t.Logf("block %d:\n%s\nprinted:\n%s", i+1, b, out)
		if strings.Contains(out, "::failed") {
			t.Errorf("a command of block %d failed:\n%s\nprinted:\n%s", i+1, b, out)
		}
		if !strings.Contains(st.has, "nope") && strings.Contains(out, `"error":`) {
			t.Errorf("block %d got an error from the server:\n%s\nprinted:\n%s", i+1, b, out)
		}
		for _, want := range st.prints {
			if !strings.Contains(out, want) {
				t.Errorf("block %d did not print %q:\n%s\nprinted:\n%s", i+1, want, b, out)
			}
		}
		if st.after != nil {
			st.after(t, out)
		}
		if t.Failed() {
			return // the next blocks need this one
		}
	}
	if len(blocks) != len(steps) {
		t.Errorf("the walk-through has %d blocks, the test knows %d: change the test with the README", len(blocks), len(steps))
	}
}

// TestREADMECommandLine checks the README's list of commands: every
// command is in it, and every flag it shows exists, with the default it
// shows.
func TestREADMECommandLine(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Command line\n")
	if !ok {
		t.Fatal(`README.md has no section "## Command line"`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	section = strings.Join(strings.Fields(section), " ") // lines joined
	for _, cmd := range commands() {
		name := cmd.name
		if g, sub, ok := strings.Cut(name, " "); ok && g == "bench" && sub != "plot" {
			name = "bench " + `[a-z|]*\b` + sub + `\b`
		}
		if !regexp.MustCompile("`(tidings )?" + name).MatchString(section) {
			t.Errorf("README.md's command line does not list %q", cmd.name)
		}
	}
	mention := regexp.MustCompile("`tidings ([a-z-]+(?: [a-z-]+)?)([^`]*)`")
	flagRe := regexp.MustCompile(`--([a-z-]+)(?: ([a-z0-9]+))?`)
	for _, m := range mention.FindAllStringSubmatch(section, -1) {
		cmd, _ := findCommand(strings.Fields(m[1]))
		if cmd == nil {
			if cmd, _ = findCommand(strings.Fields(m[1])[:1]); cmd == nil && m[1] != "help" && !strings.HasPrefix(m[1], "bench") && !strings.HasPrefix(m[1], "-") {
				t.Errorf("README.md names a command %q that does not exist", m[1])
			}
		}
		if cmd == nil {
			continue
		}
		help := mustRun(t, nil, append([]string{"help"}, strings.Fields(cmd.name)...)...).stdout
		for _, f := range flagRe.FindAllStringSubmatch(m[2], -1) {
			_, entry, ok := strings.Cut(help, "  --"+f[1]+" ")
			if !ok {
				_, entry, ok = strings.Cut(help, "  --"+f[1]+"\n")
			}
			if !ok {
				t.Errorf("README.md shows tidings %s --%s, which it does not have", cmd.name, f[1])
				continue
			}
			entry, _, _ = strings.Cut(entry, "\n  --")
			if v := f[2]; v != "" && v == strings.ToLower(v) && strings.ContainsAny(v, "0123456789") && !strings.Contains(entry, "default "+v) {
				t.Errorf("README.md shows tidings %s --%s %s, but its default is not %s:\n  --%s %s", cmd.name, f[1], v, v, f[1], entry)
			}
		}
	}
}
