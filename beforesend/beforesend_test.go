package beforesend_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/tidings/tidings"
	"github.com/tidings/tidings/beforesend"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/webhook"
)

// receiver is a local hook: it verifies each call and answers with
// answer(call).
type receiver struct {
	t      *testing.T
	secret string
	srv    *httptest.Server
	mu     sync.Mutex
	calls  []beforesend.Message
	answer func(w http.ResponseWriter, m beforesend.Message)
	bad    atomic.Int32 // calls whose signature did not verify
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, secret: tidings.NewWebhookSecret()}
	r.answer = func(w http.ResponseWriter, _ beforesend.Message) { w.WriteHeader(http.StatusNoContent) }
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil || webhook.Verify(r.secret, req.Header, body) != nil {
			r.bad.Add(1)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var call struct {
			Type      string             `json:"type"`
			Timestamp time.Time          `json:"timestamp"`
			Data      beforesend.Message `json:"data"`
		}
		if err := json.Unmarshal(body, &call); err != nil || call.Type != beforesend.EventType || call.Timestamp.IsZero() {
			r.bad.Add(1)
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.calls = append(r.calls, call.Data)
		answer := r.answer
		r.mu.Unlock()
		answer(w, call.Data)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setAnswer(f func(w http.ResponseWriter, m beforesend.Message)) {
	r.mu.Lock()
	r.answer = f
	r.mu.Unlock()
}

func (r *receiver) answerJSON(v any) {
	r.setAnswer(func(w http.ResponseWriter, _ beforesend.Message) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	})
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

func (r *receiver) last() beforesend.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[len(r.calls)-1]
}

type env struct {
	svc   *beforesend.Service
	hooks *sqlite.BeforeSendService
	msgs  *sqlite.MessageService
	rcv   *receiver
}

func as(user string) context.Context {
	return tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: "a", UserID: user})
}

func server() context.Context {
	return tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: "a", Server: true})
}

// setup opens a SQLite store with app a, users alice, bob and carol, the
// conversation c of alice and bob, and a hook at a local receiver.
func setup(t *testing.T, cfg tidings.BeforeSendConfig) *env {
	t.Helper()
	db := sqlite.NewDB(filepath.Join(t.TempDir(), "tidings.db"))
	db.Logger = slog.New(slog.DiscardHandler)
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	if _, err := sqlite.NewAppService(db).CreateApp(ctx, "a", "A"); err != nil {
		t.Fatal(err)
	}
	users := sqlite.NewUserService(db)
	for _, id := range []string{"alice", "bob", "carol"} {
		if _, err := users.CreateUser(server(), &tidings.User{ID: id, DisplayName: strings.ToUpper(id[:1]) + id[1:]}); err != nil {
			t.Fatal(err)
		}
	}
	convs := sqlite.NewConversationService(db)
	if _, err := convs.CreateConversation(as("alice"), tidings.NewConversation{ID: "c", Participants: []tidings.NewParticipant{{UserID: "bob"}}}); err != nil {
		t.Fatal(err)
	}
	e := &env{hooks: sqlite.NewBeforeSendService(db), msgs: sqlite.NewMessageService(db, 0), rcv: newReceiver(t)}
	e.svc = &beforesend.Service{MessageService: e.msgs, Store: e.hooks, Users: users,
		Logger: slog.New(slog.DiscardHandler)}
	if cfg.URL == "" {
		cfg.URL = e.rcv.srv.URL + "/hook"
	}
	if cfg.Secret == "" {
		cfg.Secret = e.rcv.secret
	}
	if _, err := e.hooks.SetBeforeSend(server(), cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

func text(s string) []tidings.Part { return []tidings.Part{{Type: "text/plain", Data: s}} }

func (e *env) history(t *testing.T) []*tidings.Message {
	t.Helper()
	page, err := e.msgs.ListMessages(as("alice"), "c", tidings.MessageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return page.Messages
}

// value reads a counter.
func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if got := tidings.ErrorCode(err); got != code {
		t.Fatalf("%s: %v (code %q); want %q", what, err, got, code)
	}
}

// TestAccept: an empty answer and {"action": "accept"} send the message
// as it is; the call is signed (the receiver verifies it with
// webhook.Verify) and carries the message and its sender.
func TestAccept(t *testing.T) {
	e := setup(t, tidings.BeforeSendConfig{})
	m, created, err := e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{ClientID: "k1", Parts: text("hello"),
		Metadata: json.RawMessage(`{"x":1}`), Alert: "ping"})
	if err != nil || !created || m.Parts[0].Data != "hello" {
		t.Fatalf("send with an empty answer: %+v, %v, %v", m, created, err)
	}
	got := e.rcv.last()
	if got.App != "a" || got.ConversationID != "c" || got.Sender.ID != "alice" || got.Sender.DisplayName != "Alice" ||
		got.ClientID != "k1" || len(got.Parts) != 1 || got.Parts[0].Data != "hello" || string(got.Metadata) != `{"x":1}` || got.Alert != "ping" {
		t.Errorf("the call's message: %+v", got)
	}
	e.rcv.answerJSON(beforesend.Answer{Action: "accept"})
	if m, _, err := e.svc.SendMessage(as("bob"), "c", tidings.NewMessage{Parts: text("hi")}); err != nil || m.Parts[0].Data != "hi" {
		t.Fatalf("send with an accept answer: %+v, %v", m, err)
	}
	if n := e.rcv.count(); n != 2 || e.rcv.bad.Load() != 0 {
		t.Errorf("%d calls, %d badly signed; want 2, 0", n, e.rcv.bad.Load())
	}
	if h := e.history(t); len(h) != 2 {
		t.Errorf("%d messages stored; want 2", len(h))
	}
	if v := value(e.svc.CallsCounter("accept")); v != 2 {
		t.Errorf("accept calls counted: %v; want 2", v)
	}
}

// TestReject: the sender gets forbidden with the hook's reason, and
// nothing is stored.
func TestReject(t *testing.T) {
	e := setup(t, tidings.BeforeSendConfig{FailOpen: true})
	e.rcv.answerJSON(beforesend.Answer{Action: "reject", Reason: "no swearing here"})
	_, _, err := e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{ClientID: "k1", Parts: text("darn")})
	wantCode(t, "a rejected send", err, tidings.EForbidden)
	if msg := tidings.ErrorMessage(err); msg != "the message was rejected: no swearing here" {
		t.Errorf("the rejection's message: %q", msg)
	}
	e.rcv.answerJSON(beforesend.Answer{Action: "reject", Reason: strings.Repeat("é", 400)})
	_, _, err = e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{Parts: text("darn")})
	wantCode(t, "a rejected send with a long reason", err, tidings.EForbidden)
	if msg := tidings.ErrorMessage(err); len(msg) > 600 || !strings.HasSuffix(msg, "…") {
		t.Errorf("a long reason is not cut: %d bytes", len(msg))
	}
	if h := e.history(t); len(h) != 0 {
		t.Errorf("%d messages stored after rejections; want 0", len(h))
	}
	// A retry of the rejected message calls the hook again: nothing was
	// stored under its client id.
	e.rcv.answerJSON(beforesend.Answer{Action: "accept"})
	if _, created, err := e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{ClientID: "k1", Parts: text("darn")}); err != nil || !created {
		t.Fatalf("the retry once accepted: %v, %v", created, err)
	}
	if n := e.rcv.count(); n != 3 {
		t.Errorf("%d calls; want 3", n)
	}
	if v := value(e.svc.CallsCounter("reject")); v != 2 {
		t.Errorf("reject calls counted: %v; want 2", v)
	}
}

// TestReplace: the message is stored with the hook's parts.
func TestReplace(t *testing.T) {
	e := setup(t, tidings.BeforeSendConfig{})
	e.rcv.answerJSON(beforesend.Answer{Action: "replace", Parts: []tidings.Part{{Type: "text/plain", Data: "d**n"}, {Type: "text/x-note", Data: "edited"}}})
	m, created, err := e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{Parts: text("darn")})
	if err != nil || !created || len(m.Parts) != 2 || m.Parts[0].Data != "d**n" || m.Parts[1].Type != "text/x-note" {
		t.Fatalf("a replaced send: %+v, %v, %v", m, created, err)
	}
	if h := e.history(t); len(h) != 1 || h[0].Parts[0].Data != "d**n" {
		t.Errorf("stored: %+v; want the replaced parts", h)
	}
	if v := value(e.svc.CallsCounter("replace")); v != 1 {
		t.Errorf("replace calls counted: %v; want 1", v)
	}
}

// TestInvalidReplaceIsAFailure: replacement parts a sender could not
// send are a failure of the hook: refused (unavailable) when it fails
// closed, the message sent unchanged when it fails open.
func TestInvalidReplaceIsAFailure(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		e := setup(t, tidings.BeforeSendConfig{FailOpen: failOpen})
		for _, ans := range []string{
			`{"action":"replace","parts":[]}`,
			`{"action":"replace","parts":[{"type":"","data":"x"}]}`,
			`{"action":"replace","parts":[{"type":"text/plain","data":"` + strings.Repeat("x", 70<<10) + `"}]}`,
			`{"action":"replace"}`,
			`{"action":"shrug"}`,
			`not json`,
		} {
			e.rcv.setAnswer(func(w http.ResponseWriter, _ beforesend.Message) { io.WriteString(w, ans) })
			m, _, err := e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{Parts: text("orig")})
			if failOpen {
				if err != nil || m.Parts[0].Data != "orig" {
					t.Errorf("fail-open, answer %.60s: %+v, %v; want the message sent unchanged", ans, m, err)
				}
			} else {
				wantCode(t, "fail-closed, answer "+ans[:min(len(ans), 60)], err, tidings.EUnavailable)
			}
		}
		want := 0
		if failOpen {
			want = 6
		}
		if h := e.history(t); len(h) != want {
			t.Errorf("fail-open %v: %d messages stored; want %d", failOpen, len(h), want)
		}
		if v := value(e.svc.CallsCounter("failure")); v != 6 {
			t.Errorf("failures counted: %v; want 6", v)
		}
	}
}

// TestTimeout: a hook that does not answer within its timeout fails:
// fail-closed refuses with unavailable, fail-open sends unchanged.
// Non-2xx answers and a hook that cannot be reached fail the same way.
func TestTimeout(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		e := setup(t, tidings.BeforeSendConfig{FailOpen: failOpen, TimeoutMS: 100})
		release := make(chan struct{})
		e.rcv.setAnswer(func(w http.ResponseWriter, _ beforesend.Message) {
			select {
			case <-release:
			case <-time.After(30 * time.Second):
			}
			io.WriteString(w, `{"action":"reject","reason":"too late"}`)
		})
		_, _, err := e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{Parts: text("slow")})
		close(release)
		if failOpen {
			if err != nil {
				t.Errorf("fail-open, timeout: %v; want sent", err)
			}
		} else {
			wantCode(t, "fail-closed, timeout", err, tidings.EUnavailable)
		}
		e.rcv.setAnswer(func(w http.ResponseWriter, _ beforesend.Message) {
			http.Error(w, "oops", http.StatusInternalServerError)
		})
		_, _, err = e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{Parts: text("500")})
		if failOpen != (err == nil) {
			t.Errorf("fail-open %v, a 500 answer: %v", failOpen, err)
		}
		e.rcv.srv.Close()
		_, _, err = e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{Parts: text("down")})
		if failOpen != (err == nil) {
			t.Errorf("fail-open %v, the hook down: %v", failOpen, err)
		}
		mode := "closed"
		if failOpen {
			mode = "open"
		}
		if v := value(e.svc.FailuresCounter("timeout", mode)); v != 1 {
			t.Errorf("timeouts counted: %v; want 1", v)
		}
		if v := value(e.svc.FailuresCounter("status", mode)); v != 1 {
			t.Errorf("status failures counted: %v; want 1", v)
		}
		if v := value(e.svc.FailuresCounter("network", mode)); v != 1 {
			t.Errorf("network failures counted: %v; want 1", v)
		}
	}
}

// TestSkipped: no call for a system message, for an app without a hook
// (or once it is removed), for a sender who may not send (the store's
// answer), nor for a retry of a message already stored (the first one is
// the answer, whatever the hook would say now).
func TestSkipped(t *testing.T) {
	e := setup(t, tidings.BeforeSendConfig{})
	if _, _, err := e.svc.SendMessage(server(), "c", tidings.NewMessage{Parts: text("system")}); err != nil {
		t.Fatalf("a system message: %v", err)
	}
	_, _, err := e.svc.SendMessage(as("carol"), "c", tidings.NewMessage{Parts: text("outsider")})
	wantCode(t, "a send by a non-participant", err, tidings.ENotFound)
	_, _, err = e.svc.SendMessage(as("alice"), "nope", tidings.NewMessage{Parts: text("nowhere")})
	wantCode(t, "a send to no conversation", err, tidings.ENotFound)
	_, _, err = e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{Parts: nil})
	wantCode(t, "a send without parts", err, tidings.EInvalid)
	if n := e.rcv.count(); n != 0 {
		t.Fatalf("%d calls; want none", n)
	}

	first, _, err := e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{ClientID: "once", Parts: text("first")})
	if err != nil {
		t.Fatal(err)
	}
	e.rcv.answerJSON(beforesend.Answer{Action: "reject", Reason: "no"})
	again, created, err := e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{ClientID: "once", Parts: text("first")})
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("a retry: %+v, created %v, %v; want the first message, not created", again, created, err)
	}
	if n := e.rcv.count(); n != 1 {
		t.Errorf("%d calls after a retry; want 1", n)
	}

	if err := e.hooks.DeleteBeforeSend(server()); err != nil {
		t.Fatal(err)
	}
	e.svc.Forget("a")
	if _, _, err := e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{Parts: text("no hook")}); err != nil {
		t.Fatalf("a send once the hook is removed: %v", err)
	}
	if n := e.rcv.count(); n != 1 {
		t.Errorf("%d calls once the hook is removed; want 1", n)
	}
}

// TestDenyPrivate: with NewClient(true) (--webhook-deny-private), a hook
// at a loopback address is not called: a failure.
func TestDenyPrivate(t *testing.T) {
	e := setup(t, tidings.BeforeSendConfig{})
	e.svc.Client = beforesend.NewClient(true)
	_, _, err := e.svc.SendMessage(as("alice"), "c", tidings.NewMessage{Parts: text("hi")})
	wantCode(t, "a hook at a loopback address, private refused", err, tidings.EUnavailable)
	if n := e.rcv.count(); n != 0 {
		t.Errorf("%d calls; want none", n)
	}
	if v := value(e.svc.FailuresCounter("network", "closed")); v != 1 {
		t.Errorf("network failures counted: %v; want 1", v)
	}
}
