package beforesend_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/beforesend"
	"github.com/tidings/tidings/webhook"
)

// snippetBeforeSend is the receiver of docs/webhooks.md, as written there.
func snippetBeforeSend(secret string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil || webhook.Verify(secret, r.Header, body) != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var call struct{ Data beforesend.Message }
		if err := json.Unmarshal(body, &call); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		answer := beforesend.Answer{Action: beforesend.ActionAccept}
		for i, p := range call.Data.Parts {
			switch {
			case p.Type == "text/plain" && strings.Contains(p.Data, "forbidden word"):
				answer = beforesend.Answer{Action: beforesend.ActionReject, Reason: "please keep it polite"}
			case p.Type == "text/plain" && strings.Contains(p.Data, "darn"):
				if answer.Action == beforesend.ActionAccept {
					answer = beforesend.Answer{Action: beforesend.ActionReplace, Parts: append([]tidings.Part(nil), call.Data.Parts...)}
				}
				if answer.Action == beforesend.ActionReplace {
					answer.Parts[i].Data = strings.ReplaceAll(p.Data, "darn", "d**n")
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(answer)
	}
}

// The documented receiver, as the hook: it accepts, replaces and
// rejects as it says, and refuses a call signed with another secret
// (which, failing closed, refuses the message).
func TestDocumentedReceiver(t *testing.T) {
	e := setup(t, tidings.BeforeSendConfig{})
	srv := httptest.NewServer(snippetBeforeSend(e.rcv.secret))
	defer srv.Close()
	if _, err := e.hooks.SetBeforeSend(server(), tidings.BeforeSendConfig{URL: srv.URL, Secret: e.rcv.secret}); err != nil {
		t.Fatal(err)
	}
	e.svc.Forget("a")
	two := []tidings.Part{{Type: "text/plain", Data: "oh darn"}, {Type: "image/png", Data: "darn"}}
	m, _, err := e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{Parts: two})
	if err != nil || m.Parts[0].Data != "oh d**n" || m.Parts[1].Data != "darn" {
		t.Fatalf("darn: %+v, %v", m, err)
	}
	if m, _, err := e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{Parts: text("hello")}); err != nil || m.Parts[0].Data != "hello" {
		t.Fatalf("hello: %+v, %v", m, err)
	}
	_, _, err = e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{Parts: text("darn, a forbidden word")})
	wantCode(t, "a forbidden word", err, tidings.EForbidden)
	if !strings.HasSuffix(tidings.ErrorMessage(err), "please keep it polite") {
		t.Errorf("the rejection: %v", err)
	}
	if _, err := e.hooks.SetBeforeSend(server(), tidings.BeforeSendConfig{URL: srv.URL, Secret: tidings.NewWebhookSecret()}); err != nil {
		t.Fatal(err)
	}
	e.svc.Forget("a")
	_, _, err = e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{Parts: text("hello")})
	wantCode(t, "a call signed with another secret", err, tidings.EUnavailable)
}
