package ws_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/beforesend"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/webhook"
)

// TestBeforeSendKeepsPipelinedOrder: a client pipelines 20 sends on one
// connection to an app whose before-send hook answers after a random
// delay, replacing some messages and rejecting one: every send is
// answered, the rejected one with forbidden and the hook's reason, and
// the others are stored, and answered, in the order sent, with the
// hook's parts where it replaced them.
func TestBeforeSendKeepsPipelinedOrder(t *testing.T) {
	secret := tidings.NewWebhookSecret()
	var calls, inFlight, maxInFlight, bad atomic.Int32
	hook := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
		}
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if webhook.Verify(secret, r.Header, body) != nil {
			bad.Add(1)
			nethttp.Error(w, "bad signature", nethttp.StatusUnauthorized)
			return
		}
		var call struct{ Data beforesend.Message }
		json.Unmarshal(body, &call)
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond) // a hook that takes its time, differently each call
		text := call.Data.Parts[0].Data
		switch {
		case text == "m7":
			json.NewEncoder(w).Encode(beforesend.Answer{Action: "reject", Reason: "not m7"})
		case strings.HasSuffix(text, "5") || strings.HasSuffix(text, "0"):
			json.NewEncoder(w).Encode(beforesend.Answer{Action: "replace", Parts: []tidings.Part{{Type: "text/plain", Data: text + " (replaced)"}}})
		default:
			w.WriteHeader(nethttp.StatusNoContent)
		}
	}))
	defer hook.Close()

	s := startStackWith(t, func(s *stack) {
		s.node.Messages = &beforesend.Service{MessageService: s.msgs, Store: sqlite.NewBeforeSendService(s.db),
			Users: s.users, Logger: slog.New(slog.DiscardHandler)}
	})
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	if _, err := sqlite.NewBeforeSendService(s.db).SetBeforeSend(s.server("a"), tidings.BeforeSendConfig{URL: hook.URL, Secret: secret, TimeoutMS: 10000}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s)
	c.auth("", s.token("a", "alice"), protocol.AuthArgs{Device: "d"})

	// Pipelined: every frame written before any answer is awaited.
	const n = 20
	answers := make([]chan protocol.Frame, n)
	c.mu.Lock()
	for i := range n {
		answers[i] = make(chan protocol.Frame, 1)
		c.answers[fmt.Sprint("p", i)] = answers[i]
	}
	c.mu.Unlock()
	args := make([]protocol.SendArgs, n)
	for i := range n {
		args[i] = sendArgs(conv, fmt.Sprint("m", i))
		args[i].ClientID = fmt.Sprint("k", i)
		raw, _ := json.Marshal(args[i])
		c.write(protocol.Frame{Type: protocol.TypeCommand, ID: fmt.Sprint("p", i), Command: protocol.CmdSend, Data: raw})
	}
	var want []string
	lastSeq := int64(0)
	for i := range n {
		var f protocol.Frame
		select {
		case f = <-answers[i]:
		case <-time.After(30 * time.Second):
			t.Fatalf("no answer to send %d", i)
		}
		if i == 7 {
			if f.Error == nil || f.Error.Code != tidings.EForbidden || f.Error.Message != "the message was rejected: not m7" {
				t.Errorf("the answer to the rejected send: %+v", f.Error)
			}
			continue
		}
		if f.Error != nil {
			t.Fatalf("send %d: %s: %s", i, f.Error.Code, f.Error.Message)
		}
		var r protocol.SendResult
		json.Unmarshal(f.Result, &r)
		m := r.Message(conv, tidings.NewMessage{ClientID: args[i].ClientID, Parts: []tidings.Part{{Type: "text/plain", Data: fmt.Sprint("m", i)}}})
		text := fmt.Sprint("m", i)
		if i%5 == 0 {
			text += " (replaced)"
		}
		if m.Seq <= lastSeq || m.ClientID != fmt.Sprint("k", i) || m.Parts[0].Data != text {
			t.Errorf("send %d answered seq %d (the one before: %d), client id %q, %q; want a later seq, %q", i, m.Seq, lastSeq, m.ClientID, m.Parts[0].Data, text)
		}
		lastSeq = m.Seq
		want = append(want, text)
	}
	page, err := s.msgs.ListMessages(s.as("a", "bob"), conv, tidings.MessageFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range page.Messages {
		got = append(got, m.Parts[0].Data)
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("stored, in order:\n%v\nwant:\n%v", got, want)
	}
	if calls.Load() != n || bad.Load() != 0 {
		t.Errorf("%d calls, %d badly signed; want %d, 0", calls.Load(), bad.Load(), n)
	}
	t.Logf("at most %d calls at once", maxInFlight.Load())
}
