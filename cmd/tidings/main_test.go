package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// result is what a command line did.
type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the command line args with the environment env (and nothing
// from the real environment).
func runCLI(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &cli{stdout: &stdout, stderr: &stderr, lookupEnv: mapEnv(env)}
	code := c.main(context.Background(), args)
	return result{code, stdout.String(), stderr.String()}
}

func mapEnv(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

// mustRun runs args and fails the test unless they exit with 0.
func mustRun(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	r := runCLI(t, env, args...)
	if r.code != exitOK {
		t.Fatalf("tidings %s: exit code %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// syncBuffer is a bytes.Buffer that a running server may write to while a
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestHelpListsEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		r := runCLI(t, nil, args...)
		if r.code != exitOK {
			t.Errorf("tidings %s: exit code %d", args[0], r.code)
		}
		for _, cmd := range commands() {
			if !strings.Contains(r.stdout, "  "+cmd.name+" ") {
				t.Errorf("tidings %s does not list %q:\n%s", args[0], cmd.name, r.stdout)
			}
		}
	}
	for _, name := range []string{"serve", "apps create", "apps list", "apps show", "apps rotate-key", "token", "version"} {
		if cmd, _ := findCommand(strings.Fields(name)); cmd == nil {
			t.Errorf("no command %q", name)
		}
	}

	// Without a command, the list goes to stderr and the exit code is 2.
	r := runCLI(t, nil)
	if r.code != exitUsage || !strings.Contains(r.stderr, "apps rotate-key") {
		t.Errorf("tidings without arguments: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

func TestHelpOfEachCommand(t *testing.T) {
	for _, cmd := range commands() {
		name := strings.Fields(cmd.name)
		for _, args := range [][]string{append([]string{"help"}, name...), append(name, "--help")} {
			r := runCLI(t, nil, args...)
			if r.code != exitOK {
				t.Errorf("tidings %s: exit code %d, stderr: %s", strings.Join(args, " "), r.code, r.stderr)
				continue
			}
			if !strings.Contains(r.stdout, "tidings "+cmd.name) {
				t.Errorf("tidings %s does not show the usage:\n%s", strings.Join(args, " "), r.stdout)
			}
		}
	}

	// The help of serve explains every flag, and its environment variable.
	r := mustRun(t, nil, "help", "serve")
	for _, name := range settingNames() {
		if !strings.Contains(r.stdout, "--"+name+" ") && !strings.Contains(r.stdout, "--"+name+"\n") {
			t.Errorf("help serve does not explain --%s", name)
		}
		if !strings.Contains(r.stdout, envName(name)) {
			t.Errorf("help serve does not name %s", envName(name))
		}
	}
	r = mustRun(t, nil, "help", "token")
	for _, flag := range []string{"--user", "--app", "--ttl", "--data", "--config"} {
		if !strings.Contains(r.stdout, flag) {
			t.Errorf("help token does not explain %s", flag)
		}
	}
	if strings.Contains(r.stdout, "TIDINGS_USER") {
		t.Errorf("help token says --user comes from the environment")
	}

	r = mustRun(t, nil, "help", "apps")
	for _, sub := range []string{"apps create", "apps list", "apps show", "apps rotate-key"} {
		if !strings.Contains(r.stdout, sub) {
			t.Errorf("help apps does not list %q", sub)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	for _, args := range [][]string{{"serv"}, {"apps", "delete", "x"}, {"help", "nope"}, {"--data", "x"}} {
		r := runCLI(t, nil, args...)
		if r.code != exitUsage {
			t.Errorf("tidings %s: exit code %d, want %d", strings.Join(args, " "), r.code, exitUsage)
		}
		if !strings.Contains(r.stderr, "unknown command") {
			t.Errorf("tidings %s: stderr %q does not say the command is unknown", strings.Join(args, " "), r.stderr)
		}
	}
}

func TestVersion(t *testing.T) {
	r := mustRun(t, nil, "version")
	if !strings.HasPrefix(r.stdout, "tidings ") || !strings.Contains(r.stdout, "go1.") {
		t.Errorf("version printed %q", r.stdout)
	}
	if r := runCLI(t, nil, "version", "extra"); r.code != exitUsage {
		t.Errorf("version extra: exit code %d, want %d", r.code, exitUsage)
	}
	// The flags most programs have print the same.
	for _, flag := range []string{"--version", "-version"} {
		if f := mustRun(t, nil, flag); f.stdout != r.stdout || f.stderr != "" {
			t.Errorf("tidings %s printed %q, stderr %q; want %q", flag, f.stdout, f.stderr, r.stdout)
		}
	}
	if r := runCLI(t, nil, "--version", "extra"); r.code != exitUsage {
		t.Errorf("--version extra: exit code %d, want %d", r.code, exitUsage)
	}
}

// callAPI calls the REST API of the node at base with the credential cred,
// and decodes the answer into out (if not nil). It fails the test unless
// the status is want.
func callAPI(t *testing.T, base, cred, method, path string, in, out any, want int) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cred)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s%s: %d, want %d: %s", method, base, path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}
