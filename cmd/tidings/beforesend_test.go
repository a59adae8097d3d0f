package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/beforesend"
	"github.com/tidings/tidings/client"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/webhook"
)

// TestAppsBeforeSend: apps before-send shows, sets and removes an app's
// hook in the data directory, as /v1/app/before-send does.
func TestAppsBeforeSend(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"TIDINGS_DATA": dir}
	mustRun(t, env, "apps", "create", "acme")

	if out := mustRun(t, env, "apps", "before-send", "acme").stdout; !strings.Contains(out, "none") {
		t.Errorf("apps before-send of an app without a hook printed %q", out)
	}
	out := mustRun(t, env, "apps", "before-send", "--url", "https://backend.example.com/before-send", "--timeout", "1500ms", "--fail-open", "acme").stdout
	if !strings.Contains(out, "url:     https://backend.example.com/before-send") || !strings.Contains(out, "timeout: 1.5s") ||
		!strings.Contains(out, "fails:   open") || !strings.Contains(out, "secret:  whsec_") {
		t.Errorf("apps before-send --url printed:\n%s", out)
	}
	hooks := sqlite.NewBeforeSendService(openTestDB(t, dir))
	h, err := hooks.AppBeforeSend(context.Background(), "acme")
	if err != nil || h == nil || h.URL != "https://backend.example.com/before-send" || h.TimeoutMS != 1500 || !h.FailOpen {
		t.Fatalf("the hook stored: %+v, %v", h, err)
	}
	// Set again without --secret: the secret is kept; fail-closed.
	out = mustRun(t, env, "apps", "before-send", "--url", "https://backend.example.com/v2", "acme").stdout
	if !strings.Contains(out, "secret:  "+h.Secret) || !strings.Contains(out, "fails:   closed") || !strings.Contains(out, "timeout: 2s") {
		t.Errorf("apps before-send again printed:\n%s", out)
	}
	if out := mustRun(t, env, "apps", "before-send", "acme").stdout; !strings.Contains(out, "https://backend.example.com/v2") {
		t.Errorf("apps before-send printed:\n%s", out)
	}
	if r := runCLI(t, env, "apps", "before-send", "--url", "https://x.example", "--timeout", "11s", "acme"); r.code != exitFailure || !strings.Contains(r.stderr, "timeoutMs") {
		t.Errorf("a timeout of 11s: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runCLI(t, env, "apps", "before-send", "--url", "https://x.example", "--off", "acme"); r.code != exitUsage {
		t.Errorf("--url with --off: exit %d", r.code)
	}
	if r := runCLI(t, env, "apps", "before-send", "nope"); r.code != exitFailure || !strings.Contains(r.stderr, `no app "nope"`) {
		t.Errorf("apps before-send nope: exit %d, stderr %q", r.code, r.stderr)
	}
	if out := mustRun(t, env, "apps", "before-send", "--off", "acme").stdout; !strings.Contains(out, "none") {
		t.Errorf("apps before-send --off printed %q", out)
	}
	if h, err := hooks.AppBeforeSend(context.Background(), "acme"); err != nil || h != nil {
		t.Errorf("the hook after --off: %+v, %v", h, err)
	}
}

// TestBeforeSendServed: a served app's before-send hook, set through the
// API, is called for its users' messages sent through the API, signed;
// it rejects (403 with its reason), replaces parts, is not called again
// for a retry of a stored message nor for system messages; failing, it
// refuses (503) or, failing open, lets the message through; removed, it
// is no longer called; the calls are counted on /metrics. The realtime
// socket sends through it too.
func TestBeforeSendServed(t *testing.T) {
	dir := t.TempDir()
	url, stop := startServe(t, dir)
	defer stop()
	key := parseApp(t, mustRun(t, nil, "apps", "create", "--data", dir, "hooked").stdout)["server key"]

	secret := tidings.NewWebhookSecret()
	var mu sync.Mutex
	var calls []beforesend.Message
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if webhook.Verify(secret, r.Header, body) != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var call struct{ Data beforesend.Message }
		json.Unmarshal(body, &call)
		mu.Lock()
		calls = append(calls, call.Data)
		mu.Unlock()
		switch call.Data.Parts[0].Data {
		case "darn":
			io.WriteString(w, `{"action": "reject", "reason": "no swearing"}`)
		case "fix me":
			io.WriteString(w, `{"action": "replace", "parts": [{"type": "text/plain", "data": "fixed"}]}`)
		default:
			io.WriteString(w, `{"action": "accept"}`)
		}
	}))
	defer rcv.Close()
	ncalls := func() int { mu.Lock(); defer mu.Unlock(); return len(calls) }

	mustAPI(t, 404, "GET", url+"/v1/app/before-send", key, "")
	set := mustAPI(t, 200, "PUT", url+"/v1/app/before-send", key, `{"url": "`+rcv.URL+`", "secret": "`+secret+`"}`)
	if set["url"] != rcv.URL || set["secret"] != secret || set["timeoutMs"] != 2000.0 || set["failOpen"] != false {
		t.Errorf("PUT /v1/app/before-send answered %v", set)
	}
	mustAPI(t, 400, "PUT", url+"/v1/app/before-send", key, `{"url": "`+rcv.URL+`", "timeoutMs": 20000}`)
	if got := mustAPI(t, 200, "GET", url+"/v1/app/before-send", key, ""); got["url"] != rcv.URL {
		t.Errorf("GET /v1/app/before-send answered %v", got)
	}
	for _, u := range []string{"alice", "bob"} {
		mustAPI(t, 201, "POST", url+"/v1/users", key, `{"id": "`+u+`", "displayName": "`+u+`"}`)
	}
	alice := mustAPI(t, 201, "POST", url+"/v1/users/alice/tokens", key, "")["token"].(string)
	mustAPI(t, 201, "POST", url+"/v1/conversations", alice, `{"id": "lunch", "participants": [{"userId": "bob"}]}`)
	messages := url + "/v1/conversations/lunch/messages"
	send := func(want int, cred, clientID, text string) map[string]any {
		t.Helper()
		return mustAPI(t, want, "POST", messages, cred, `{"clientId": "`+clientID+`", "parts": [{"type": "text/plain", "data": "`+text+`"}]}`)
	}

	first := send(201, alice, "k1", "hello")
	if n := ncalls(); n != 1 || calls[0].Sender.ID != "alice" || calls[0].ConversationID != "lunch" || calls[0].ClientID != "k1" || calls[0].App != "hooked" {
		t.Fatalf("%d calls: %+v", n, calls)
	}
	if again := send(200, alice, "k1", "hello"); again["id"] != first["id"] || ncalls() != 1 {
		t.Errorf("a retry: %v, %d calls; want the first message, no call", again, ncalls())
	}
	status, body := api(t, "POST", messages, alice, `{"parts": [{"type": "text/plain", "data": "darn"}]}`)
	if status != 403 || !strings.Contains(string(body), `"code":"forbidden"`) || !strings.Contains(string(body), "the message was rejected: no swearing") {
		t.Errorf("a rejected message: %d %s", status, body)
	}
	if fixed := send(201, alice, "k2", "fix me"); fixed["parts"].([]any)[0].(map[string]any)["data"] != "fixed" {
		t.Errorf("a replaced message: %v", fixed)
	}
	send(201, key, "sys", "the system speaks")
	if n := ncalls(); n != 3 {
		t.Errorf("%d calls after a system message; want 3", n)
	}

	// Over the realtime socket too: the same hook, the same answers.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.New(url, client.WithToken(alice))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	// The answer holds what the server added, and the parts it replaced;
	// the SDK gives the message whole, as stored.
	asStored := func(what string, m *tidings.Message, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		stored, err := cl.GetMessage(ctx, "lunch", m.ID)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(m)
		want, _ := json.Marshal(stored)
		if string(got) != string(want) {
			t.Errorf("%s over the socket: %s\nstored: %s", what, got, want)
		}
	}
	fix := tidings.NewMessage{ClientID: "s1", Parts: []tidings.Part{{Type: "text/plain", Data: "fix me"}}}
	m, err := cl.Socket().SendMessage(ctx, "lunch", fix)
	if err != nil || m.Parts[0].Data != "fixed" {
		t.Errorf("a replaced message over the socket: %+v, %v", m, err)
	}
	asStored("a replaced message", m, err)
	m, err = cl.Socket().SendMessage(ctx, "lunch", tidings.NewMessage{ClientID: "s2", Parts: []tidings.Part{{Type: "text/plain", Data: "as sent"}},
		Metadata: json.RawMessage(`{"k":"v"}`), Alert: "alice: as sent"})
	asStored("a message", m, err)
	if _, err := cl.EditMessage(ctx, "lunch", m.ID, tidings.MessageEdit{Parts: []tidings.Part{{Type: "text/plain", Data: "edited"}}}); err != nil {
		t.Fatal(err)
	}
	again, err := cl.Socket().SendMessage(ctx, "lunch", tidings.NewMessage{ClientID: "s2", Parts: []tidings.Part{{Type: "text/plain", Data: "as sent"}}})
	if err == nil && (again.ID != m.ID || again.Parts[0].Data != "edited") {
		t.Errorf("sent again: %+v, want the first message, as edited", again)
	}
	asStored("a message sent again", again, err)
	_, err = cl.Socket().SendMessage(ctx, "lunch", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: "darn"}}})
	var cerr *client.Error
	if !errors.As(err, &cerr) || cerr.Code != tidings.EForbidden || cerr.Message != "the message was rejected: no swearing" {
		t.Errorf("a rejected message over the socket: %v", err)
	}
	if n := ncalls(); n != 6 {
		t.Errorf("%d calls after three over the socket; want 6", n)
	}

	// Failing: closed refuses, open lets through.
	rcv.Close()
	status, body = api(t, "POST", messages, alice, `{"parts": [{"type": "text/plain", "data": "down"}]}`)
	if status != 503 || !strings.Contains(string(body), `"code":"unavailable"`) {
		t.Errorf("fail-closed, the hook down: %d %s", status, body)
	}
	mustAPI(t, 200, "PUT", url+"/v1/app/before-send", key, `{"url": "`+rcv.URL+`", "failOpen": true}`)
	send(201, alice, "k3", "down but open")

	_, metrics := api(t, "GET", url+"/metrics", "", "")
	for _, line := range []string{`tidings_before_send_calls_total{result="reject"} 2`, `tidings_before_send_calls_total{result="replace"} 2`,
		`tidings_before_send_failures_total{mode="closed",reason="network"} 1`, `tidings_before_send_failures_total{mode="open",reason="network"} 1`} {
		if !strings.Contains(string(metrics), line) {
			t.Errorf("/metrics has no %s", line)
		}
	}

	mustAPI(t, 204, "DELETE", url+"/v1/app/before-send", key, "")
	mustAPI(t, 404, "GET", url+"/v1/app/before-send", key, "")
	send(201, alice, "k4", "no hook")
	mustAPI(t, 403, "GET", url+"/v1/app/before-send", alice, "")
}
