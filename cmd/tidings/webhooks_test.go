package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings/webhook"
)

// hookReceiver is an app's webhook receiver: it verifies every delivery's
// signature, dedupes by webhook-id, and keeps the message texts in the
// order they first came.
type hookReceiver struct {
	t      *testing.T
	secret atomic.Value // string
	down   atomic.Bool  // answer 503
	// holdAfter, when positive, holds every delivery once that many
	// messages were received, until the sender goes away.
	holdAfter atomic.Int64
	held      atomic.Int64 // deliveries being held
	srv       *httptest.Server

	mu         sync.Mutex
	texts      []string
	seen       map[string]bool
	deliveries int
	duplicates int
	refused    int
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{t: t, seen: map[string]bool{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		if r.down.Load() {
			r.mu.Lock()
			r.refused++
			r.mu.Unlock()
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		secret, _ := r.secret.Load().(string)
		if err := webhook.Verify(secret, req.Header, body); err != nil {
			t.Errorf("a delivery does not verify: %v", err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var d struct {
			Type string `json:"type"`
			Data struct {
				ID      string `json:"id"`
				Payload struct {
					Parts []struct{ Data string } `json:"parts"`
				} `json:"payload"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &d); err != nil || d.Data.ID != req.Header.Get("webhook-id") || len(d.Data.Payload.Parts) == 0 {
			t.Errorf("delivery %s: %v", body, err)
			return
		}
		r.mu.Lock()
		if n := r.holdAfter.Load(); n > 0 && len(r.texts) >= int(n) {
			r.mu.Unlock()
			r.held.Add(1)
			<-req.Context().Done() // in flight until the server dies
			return
		}
		defer r.mu.Unlock()
		r.deliveries++
		if r.seen[d.Data.ID] {
			r.duplicates++
		} else {
			r.seen[d.Data.ID] = true
			r.texts = append(r.texts, d.Data.Payload.Parts[0].Data)
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *hookReceiver) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.texts...)
}

// serveProcess runs "tidings serve" in a child process (this test binary,
// as the command, see TestMain), so that it can be killed with SIGKILL.
type serveProcess struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	url  string
	done chan struct{}
}

func startServeProcess(t *testing.T, dir string, extra ...string) *serveProcess {
	t.Helper()
	p := &serveProcess{logs: new(syncBuffer), done: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], append([]string{"serve", "--addr", "127.0.0.1:0", "--data", dir}, extra...)...)
	p.cmd.Env = append(os.Environ(), asCLI+"=1")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	listening := regexp.MustCompile(`msg="tidings is listening" url=(\S+)`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := listening.FindStringSubmatch(p.logs.String()); m != nil {
			p.url = m[1]
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("serve exited before listening; logs:\n%s", p.logs)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not listen within 30s; logs:\n%s", p.logs)
		}
	}
}

// kill ends the server with SIGKILL: no shutdown, nothing saved.
func (p *serveProcess) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// api calls the API of url and returns the status and body.
func api(t *testing.T, method, url, cred, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cred)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func mustAPI(t *testing.T, want int, method, url, cred, body string) map[string]any {
	t.Helper()
	status, b := api(t, method, url, cred, body)
	if status != want {
		t.Fatalf("%s %s: %d %s, want %d", method, url, status, b, want)
	}
	var v map[string]any
	_ = json.Unmarshal(b, &v)
	return v
}

// TestWebhooksSurviveKill9 delivers a conversation's messages to a
// receiver that verifies signatures while the server is killed with
// SIGKILL mid-delivery and restarted, and while the receiver is down for
// a while: every acknowledged message arrives, at least once, in the
// order sent (deduplicated by webhook-id: no gap, no reordering).
func TestWebhooksSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("runs and kills server processes")
	}
	dir := t.TempDir()
	flags := []string{"--webhook-max-backoff", "1s", "--user-rate", "0"}
	srv := startServeProcess(t, dir, flags...)
	key := parseApp(t, mustRun(t, nil, "apps", "rotate-key", "--data", dir, "default").stdout)["server key"]
	r := newHookReceiver(t)
	ep := mustAPI(t, 201, "POST", srv.url+"/v1/webhooks", key, `{"url":"`+r.srv.URL+`/hooks","events":["conversationMessage.sent"]}`)
	r.secret.Store(ep["secret"].(string))
	hookID := ep["id"].(string)
	mustAPI(t, 201, "POST", srv.url+"/v1/users", key, `{"id":"alice"}`)
	alice := mustAPI(t, 201, "POST", srv.url+"/v1/users/alice/tokens", key, "")["token"].(string)
	mustAPI(t, 201, "POST", srv.url+"/v1/conversations", alice, `{"id":"c"}`)

	// send sends message i until the server acknowledges it; the same
	// clientId makes a resend after a crash idempotent.
	send := func(url string, i int) bool {
		status, _ := api(t, "POST", url+"/v1/conversations/c/messages", alice,
			fmt.Sprintf(`{"clientId":"m%d","parts":[{"type":"text/plain","data":"%d"}]}`, i, i))
		return status == 201 || status == 200
	}

	// 1. Messages are sent and delivered; the server is killed once the
	// receiver has 20 of them, while the 21st is in flight.
	const total = 600
	next := 0
	r.holdAfter.Store(20)
	for ; next < 200; next++ {
		if !send(srv.url, next) {
			t.Fatalf("message %d not acknowledged; logs:\n%s", next, srv.logs)
		}
	}
	waitUntil(t, "the first deliveries", func() bool { return len(r.received()) >= 20 })
	waitUntil(t, "the 21st delivery in flight", func() bool { return r.held.Load() > 0 })
	srv.kill()
	t.Logf("killed with %d of %d messages received", len(r.received()), next)
	r.holdAfter.Store(0)

	// 2. Restarted, it delivers the rest, and the new messages.
	srv = startServeProcess(t, dir, flags...)
	for ; next < 400; next++ {
		if !send(srv.url, next) {
			t.Fatalf("message %d not acknowledged after the restart; logs:\n%s", next, srv.logs)
		}
	}
	waitUntil(t, "400 messages after the restart", func() bool { return len(r.received()) >= 400 })

	// 3. The receiver goes down: the server retries, and when the
	// receiver is back, everything arrives. The server is killed once
	// more while it retries.
	r.down.Store(true)
	for ; next < 500; next++ {
		if !send(srv.url, next) {
			t.Fatalf("message %d not acknowledged; logs:\n%s", next, srv.logs)
		}
	}
	waitUntil(t, "failed attempts", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.refused >= 3
	})
	status, body := api(t, "GET", srv.url+"/v1/webhooks/"+hookID, key, "")
	if status != 200 || !strings.Contains(string(body), `"failingSince"`) {
		t.Errorf("the endpoint while the receiver is down: %d %s; want failingSince", status, body)
	}
	status, body = api(t, "GET", srv.url+"/v1/webhooks/"+hookID+"/attempts?limit=1", key, "")
	if status != 200 || !strings.Contains(string(body), `"status":503`) {
		t.Errorf("the last attempt while the receiver is down: %d %s", status, body)
	}
	srv.kill()
	srv = startServeProcess(t, dir, flags...)
	for ; next < total; next++ {
		if !send(srv.url, next) {
			t.Fatalf("message %d not acknowledged; logs:\n%s", next, srv.logs)
		}
	}
	r.down.Store(false)
	waitUntil(t, "every message", func() bool { return len(r.received()) >= total })

	got := r.received()
	for i, text := range got {
		if text != fmt.Sprint(i) {
			t.Fatalf("the %dth message received (deduplicated) is %q: a gap or a reordering: %v", i, text, got)
		}
	}
	if len(got) != total {
		t.Fatalf("received %d messages, want %d", len(got), total)
	}
	r.mu.Lock()
	t.Logf("%d deliveries for %d messages (%d duplicates after the kills)", r.deliveries, total, r.duplicates)
	r.mu.Unlock()
	waitUntil(t, "the endpoint to be healthy", func() bool {
		status, body := api(t, "GET", srv.url+"/v1/webhooks/"+hookID, key, "")
		return status == 200 && !strings.Contains(string(body), `"failingSince"`)
	})
}

// waitUntil polls cond until it holds, or fails after 60s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWebhooksCommands(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, nil, "apps", "create", "--data", dir, "default")
	add := mustRun(t, nil, "webhooks", "add", "--data", dir, "--events", "conversationMessage.*,profile.update", "https://example.com/hooks").stdout
	fields := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(add), "\n") {
		k, v, _ := strings.Cut(line, ":")
		fields[k] = strings.TrimSpace(v)
	}
	if fields["id"] == "" || fields["url"] != "https://example.com/hooks" || fields["events"] != "conversationMessage.*,profile.update" ||
		!strings.HasPrefix(fields["secret"], "whsec_") {
		t.Fatalf("webhooks add printed:\n%s", add)
	}
	list := mustRun(t, nil, "webhooks", "list", "--data", dir).stdout
	if !strings.Contains(list, fields["id"]) || !strings.Contains(list, "https://example.com/hooks") || !strings.Contains(list, " ok ") ||
		strings.Contains(list, fields["secret"]) {
		t.Errorf("webhooks list printed:\n%s", list)
	}
	if r := runCLI(t, nil, "webhooks", "add", "--data", dir, "ftp://example.com"); r.code != exitFailure || !strings.Contains(r.stderr, "http or https") {
		t.Errorf("webhooks add with an ftp URL: %d %s", r.code, r.stderr)
	}
	if r := runCLI(t, nil, "webhooks", "list", "--data", dir, "--app", "nope"); r.code != exitFailure || !strings.Contains(r.stderr, `no app "nope"`) {
		t.Errorf("webhooks list of an unknown app: %d %s", r.code, r.stderr)
	}
	show := mustRun(t, nil, "webhooks", "show", "--data", dir, fields["id"]).stdout
	if !strings.Contains(show, fields["secret"]) || !strings.Contains(show, "state:    ok") || !strings.Contains(show, "TIME") {
		t.Errorf("webhooks show printed:\n%s", show)
	}
	mustRun(t, nil, "webhooks", "remove", "--data", dir, fields["id"])
	if list := mustRun(t, nil, "webhooks", "list", "--data", dir).stdout; strings.Contains(list, fields["id"]) {
		t.Errorf("the endpoint is still listed after its removal:\n%s", list)
	}
	if r := runCLI(t, nil, "webhooks", "remove", "--data", dir, fields["id"]); r.code != exitFailure {
		t.Errorf("removing it again: %d %s", r.code, r.stderr)
	}
}
