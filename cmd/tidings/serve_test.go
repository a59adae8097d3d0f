package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// startServe runs "tidings serve" on a free port with the data directory
// dir (and any extra flags) until the returned stop function is called,
// which returns the exit code and everything logged.
func startServe(t *testing.T, dir string, extra ...string) (url string, stop func() (int, string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := new(syncBuffer)
	c := &cli{stdout: logs, stderr: logs, lookupEnv: mapEnv(nil)}
	done := make(chan int, 1)
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", dir}, extra...)
	go func() { done <- c.main(ctx, args) }()

	stop = func() (int, string) {
		cancel()
		select {
		case code := <-done:
			return code, logs.String()
		case <-time.After(10 * time.Second):
			var stacks strings.Builder
			pprof.Lookup("goroutine").WriteTo(&stacks, 1)
			t.Fatalf("serve did not stop within 10s of its context being cancelled; logs:\n%s\ngoroutines:\n%s", logs, stacks.String())
			return 0, ""
		}
	}
	listening := regexp.MustCompile(`msg="tidings is listening" url=(\S+)`)

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := listening.FindStringSubmatch(logs.String()); m != nil {
			return m[1], stop
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited with code %d before listening; logs:\n%s", code, logs)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	t.Fatalf("serve did not log that it is listening within 10s; logs:\n%s", logs)
	return "", nil
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServe(t *testing.T) {
	dir := t.TempDir()
	const created = "created app default; `tidings apps show --data "
	if err := os.Chmod(dir, 0o755); err != nil { // a volume mounted open
		t.Fatal(err)
	}

	url, stop := startServe(t, dir)
	if code := get(t, url+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz: %d", code)
	}
	if code := get(t, url+"/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz: %d", code)
	}
	code, logs := stop()
	if code != exitOK {
		t.Errorf("serve exited with code %d; logs:\n%s", code, logs)
	}
	if n := strings.Count(logs, created); n != 1 {
		t.Errorf("the first start logged %d times how to get the server key, want once; logs:\n%s", n, logs)
	}
	if !strings.Contains(logs, "stopped") {
		t.Errorf("serve did not log that it stopped; logs:\n%s", logs)
	}
	if !strings.Contains(logs, "level=WARN msg=\"the data directory is open to every user") || !strings.Contains(logs, "chmod 700 "+dir) {
		t.Errorf("serve did not warn about a data directory open to all; logs:\n%s", logs)
	}
	if fi, err := os.Stat(filepath.Join(dir, "tidings.db")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the database is not private: %v, %v", fi.Mode(), err)
	}

	// Neither credential of the default app is ever logged.
	show := mustRun(t, nil, "apps", "show", "--data", dir, "default").stdout
	for _, line := range strings.Split(strings.TrimSpace(show), "\n") {
		label, value, _ := strings.Cut(line, ":")
		value = strings.TrimSpace(value)
		if (label == "server key" || label == "signing secret") && (value == "" || strings.Contains(logs, value)) {
			t.Errorf("%s %q is empty or was logged", label, value)
		}
	}

	// The first key is kept, private, for apps show (as the team's peer
	// benchmark reads it) until it is rotated.
	key := parseApp(t, show)["server key"]
	if !strings.HasPrefix(key, "tsk_") {
		t.Fatalf("apps show default on a fresh install printed the server key %q, want the key", key)
	}
	if fi, err := os.Stat(filepath.Join(dir, firstKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the first key's file is not private: %v, %v", fi, err)
	}

	// The second start finds the app and neither creates another nor
	// repeats the message.
	url, stop = startServe(t, dir)
	if code := get(t, url+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz after a restart: %d", code)
	}
	createUser := func(key, id string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, url+"/v1/users", strings.NewReader(`{"id":"`+id+`"}`))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := createUser(key, "alice"); code != http.StatusCreated {
		t.Errorf("POST /v1/users with the key apps show printed: %d, want 201", code)
	}
	// Rotating it ends the first key and removes its file: apps show then
	// has no key to print.
	rotated := parseApp(t, mustRun(t, nil, "apps", "rotate-key", "--data", dir, "default").stdout)["server key"]
	if _, err := os.Stat(filepath.Join(dir, firstKeyFile)); !os.IsNotExist(err) {
		t.Errorf("the first key's file is still there after rotate-key: %v", err)
	}
	if got := parseApp(t, mustRun(t, nil, "apps", "show", "--data", dir, "default").stdout)["server key"]; strings.Contains(got, "tsk_") {
		t.Errorf("apps show after rotate-key printed a key %q", got)
	}
	if code := createUser(key, "bob"); code != http.StatusUnauthorized {
		t.Errorf("POST /v1/users with the first key after rotate-key: %d, want 401", code)
	}
	if code := createUser(rotated, "bob"); code != http.StatusCreated {
		t.Errorf("POST /v1/users with the rotated key: %d, want 201", code)
	}
	code, logs = stop()
	if code != exitOK {
		t.Errorf("second serve exited with code %d; logs:\n%s", code, logs)
	}
	if strings.Contains(logs, "created app") {
		t.Errorf("the second start created an app; logs:\n%s", logs)
	}
	list := mustRun(t, nil, "apps", "list", "--data", dir).stdout
	if lines := strings.Split(strings.TrimSpace(list), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "default ") {
		t.Errorf("apps list after two starts:\n%s", list)
	}
}

func TestServeFailsOnBusyAddress(t *testing.T) {
	url, stop := startServe(t, t.TempDir())
	defer stop()
	addr := strings.TrimPrefix(url, "http://")
	r := runCLI(t, nil, "serve", "--addr", addr, "--data", t.TempDir())
	if r.code != exitFailure {
		t.Errorf("serve on a busy address: exit code %d, want %d; stderr:\n%s", r.code, exitFailure, r.stderr)
	}
}

// A second server on the data directory of a running one is refused at
// once, naming the process that holds it (two would give messages the
// same seqs, and one of them would be lost). The lock ends with the
// process, even killed: a server starts again at once after a kill -9.
// The operator commands still open it beside the server.
func TestServeRefusesADataDirectoryInUse(t *testing.T) {
	dir := t.TempDir()
	first := startServeProcess(t, dir)
	r := runCLI(t, nil, "serve", "--addr", "127.0.0.1:0", "--data", dir)
	if r.code != exitFailure {
		t.Fatalf("a second serve on the same data directory: exit code %d, want %d; stderr:\n%s", r.code, exitFailure, r.stderr)
	}
	if want := fmt.Sprintf("in use by another server (process %d)", first.cmd.Process.Pid); !strings.Contains(r.stderr, want) {
		t.Errorf("the second serve's error does not say %q:\n%s", want, r.stderr)
	}
	mustRun(t, nil, "apps", "create", "--data", dir, "beside")
	first.kill()
	url, stop := startServe(t, dir)
	defer stop()
	if code := get(t, url+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz of the server started after the kill: %d", code)
	}
}

func getWithKey(t *testing.T, url, key string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The apps commands work on the data directory of a running server, and
// the server sees their changes at once.
func TestAppsWhileServing(t *testing.T) {
	dir := t.TempDir()
	url, stop := startServe(t, dir)
	defer stop()

	created := parseApp(t, mustRun(t, nil, "apps", "create", "--data", dir, "live").stdout)
	if code := getWithKey(t, url+"/v1/users", created["server key"]); code != http.StatusOK {
		t.Errorf("GET /v1/users with the key of an app created while serving: %d", code)
	}
	rotated := parseApp(t, mustRun(t, nil, "apps", "rotate-key", "--data", dir, "live").stdout)
	if code := getWithKey(t, url+"/v1/users", created["server key"]); code != http.StatusUnauthorized {
		t.Errorf("GET /v1/users with the rotated-out key: %d, want 401", code)
	}
	if code := getWithKey(t, url+"/v1/users", rotated["server key"]); code != http.StatusOK {
		t.Errorf("GET /v1/users with the new key: %d", code)
	}

	// A token minted before its user exists works once the user does.
	tok := strings.TrimSpace(mustRun(t, nil, "token", "--data", dir, "--app", "live", "--user", "carol").stdout)
	if code := getWithKey(t, url+"/v1/conversations", tok); code != http.StatusUnauthorized {
		t.Errorf("GET /v1/conversations as a user that does not exist: %d, want 401", code)
	}
	req, err := http.NewRequest(http.MethodPost, url+"/v1/users", strings.NewReader(`{"id": "carol"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+rotated["server key"])
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/users: %d", resp.StatusCode)
	}
	if code := getWithKey(t, url+"/v1/conversations", tok); code != http.StatusOK {
		t.Errorf("GET /v1/conversations with a token from \"tidings token\": %d", code)
	}
}

// The web page is served at /, and development sign-in only with --dev.
func TestServeWebAndDevMode(t *testing.T) {
	dir := t.TempDir()
	url, stop := startServe(t, dir)
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("GET / = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if code := devToken(t, url, "alice"); code != http.StatusNotFound {
		t.Errorf("POST /v1/dev/token without --dev = %d, want 404", code)
	}
	if _, logs := stop(); strings.Contains(logs, "DEVELOPMENT MODE") {
		t.Errorf("serve without --dev logged development mode:\n%s", logs)
	}

	url, stop = startServe(t, dir, "--dev")
	if code := devToken(t, url, "alice"); code != http.StatusCreated {
		t.Errorf("POST /v1/dev/token with --dev = %d, want 201", code)
	}
	if _, logs := stop(); !strings.Contains(logs, "level=WARN msg=\"DEVELOPMENT MODE") {
		t.Errorf("serve --dev did not warn about development mode:\n%s", logs)
	}
}

// TestDevModeWithOtherApps: development mode signs users in to the app
// default, so it makes that app when other apps were created first,
// rather than fail each sign-in.
func TestDevModeWithOtherApps(t *testing.T) {
	dir := t.TempDir()
	if r := runCLI(t, nil, "apps", "create", "--data", dir, "shop"); r.code != 0 {
		t.Fatalf("apps create: %d %s", r.code, r.stderr)
	}
	url, stop := startServe(t, dir, "--dev")
	if code := devToken(t, url, "alice"); code != http.StatusCreated {
		t.Errorf("POST /v1/dev/token with --dev and another app = %d, want 201", code)
	}
	stop()
}

func devToken(t *testing.T, url, user string) int {
	t.Helper()
	resp, err := http.Post(url+"/v1/dev/token", "application/json", strings.NewReader(`{"userId":"`+user+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServeDebugListener(t *testing.T) {
	logs := new(syncBuffer)
	ctx, cancel := context.WithCancel(context.Background())
	c := &cli{stdout: logs, stderr: logs, lookupEnv: mapEnv(nil)}
	done := make(chan int, 1)
	go func() {
		done <- c.main(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--debug-addr", "127.0.0.1:0"})
	}()
	defer func() {
		cancel()
		<-done
	}()
	debug := regexp.MustCompile(`url=(http://\S+/debug/pprof/)`)
	var m []string
	for deadline := time.Now().Add(10 * time.Second); m == nil && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		m = debug.FindStringSubmatch(logs.String())
	}
	if m == nil {
		t.Fatalf("serve did not log where the profiler is:\n%s", logs)
	}
	if code := get(t, m[1]); code != http.StatusOK {
		t.Errorf("GET %s: %d", m[1], code)
	}
	// Not on the API's listener.
	api := regexp.MustCompile(`msg="tidings is listening" url=(\S+)`).FindStringSubmatch(logs.String())
	if code := get(t, api[1]+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("the API serves the profiler: %d", code)
	}
}

// serve limits each user's requests (there was no limit on REST), over
// REST and the socket alike, as its flags say.
func TestServeLimitsRequests(t *testing.T) {
	// One request, then one every 20 s: whatever the machine's speed, the
	// second comes too soon.
	url, stop := startServe(t, t.TempDir(), "--dev", "--user-rate", "0.05", "--conversation-rate", "0")
	defer stop()
	alice := mintDevToken(t, url, "alice")
	me := func() *http.Response {
		req, _ := http.NewRequest("GET", url+"/v1/me", nil)
		req.Header.Set("Authorization", "Bearer "+alice)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := me(); resp.StatusCode != http.StatusOK {
		t.Fatalf("first GET /v1/me: %d", resp.StatusCode)
	}
	resp := me()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second GET /v1/me: %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Another user has a budget of their own.
	bob := mintDevToken(t, url, "bob")
	alice = bob
	if resp := me(); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob's GET /v1/me: %d", resp.StatusCode)
	}
}
