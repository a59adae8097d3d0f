package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
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

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/webhook"
)

// receiver is a webhook receiver as an app would write one: it verifies
// each delivery's signature, dedupes by webhook-id, and keeps the events
// in the order they first came.
type receiver struct {
	t      *testing.T
	secret atomic.Value // string
	down   atomic.Bool  // answer 500
	srv    *httptest.Server

	mu     sync.Mutex
	events []delivered // first receptions, in order
	seen   map[string]int
}

type delivered struct {
	Type string         `json:"type"`
	Data *tidings.Event `json:"data"`
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, seen: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if r.down.Load() {
		http.Error(w, "down", http.StatusInternalServerError)
		return
	}
	secret, _ := r.secret.Load().(string)
	if err := webhook.Verify(secret, req.Header, body); err != nil {
		r.t.Errorf("a delivery does not verify: %v", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var d delivered
	if err := json.Unmarshal(body, &d); err != nil || d.Data == nil || d.Data.ID != req.Header.Get(webhook.HeaderID) || d.Type != d.Data.Name {
		r.t.Errorf("a delivery's body %s: %v", body, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[d.Data.ID]++
	if r.seen[d.Data.ID] == 1 {
		r.events = append(r.events, d)
	}
	w.WriteHeader(http.StatusNoContent)
}

// sent returns the texts of the conversationMessage.sent events received.
func (r *receiver) sent() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var texts []string
	for _, d := range r.events {
		if d.Type == tidings.EventMessageSent {
			var m tidings.Message
			if err := json.Unmarshal(d.Data.Payload, &m); err != nil || len(m.Parts) == 0 {
				r.t.Errorf("payload %s: %v", d.Data.Payload, err)
				continue
			}
			texts = append(texts, m.Parts[0].Data)
		}
	}
	return texts
}

type env struct {
	db       *sqlite.DB
	hooks    *sqlite.WebhookService
	d        *webhook.Dispatcher
	server   context.Context // the app's server key
	alice    context.Context
	messages *sqlite.MessageService
	stop     func()
}

func newEnv(t *testing.T, configure func(*webhook.Dispatcher)) *env {
	t.Helper()
	db := sqlite.NewDB(filepath.Join(t.TempDir(), "tidings.db"))
	db.Logger = slog.New(slog.DiscardHandler) // migrations are logged at each open
	hooks := sqlite.NewWebhookService(db)
	d := webhook.New(hooks)
	d.Poll, d.MinBackoff, d.MaxBackoff = 50*time.Millisecond, 20*time.Millisecond, 200*time.Millisecond
	if configure != nil {
		configure(d)
	}
	db.Publisher = d
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	if _, err := sqlite.NewAppService(db).CreateApp(bg, "a", ""); err != nil {
		t.Fatal(err)
	}
	e := &env{db: db, hooks: hooks, d: d, messages: sqlite.NewMessageService(db, 0),
		server: tidings.NewContextWithCaller(bg, tidings.Caller{AppID: "a", Server: true}),
		alice:  tidings.NewContextWithCaller(bg, tidings.Caller{AppID: "a", UserID: "alice"})}
	users := sqlite.NewUserService(db)
	for _, u := range []string{"alice", "bob"} {
		if _, err := users.CreateUser(e.server, &tidings.User{ID: u}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sqlite.NewConversationService(db).CreateConversation(e.alice, tidings.NewConversation{ID: "c",
		Participants: []tidings.NewParticipant{{UserID: "bob"}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	e.stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(func() {
		e.stop()
		db.Close()
	})
	return e
}

func (e *env) addEndpoint(t *testing.T, r *receiver, events ...string) *tidings.WebhookEndpoint {
	t.Helper()
	ep, err := e.hooks.CreateWebhook(e.server, tidings.NewWebhook{URL: r.srv.URL + "/hook", Events: events})
	if err != nil {
		t.Fatal(err)
	}
	r.secret.Store(ep.Secret)
	e.d.NotifyEndpoints()
	return ep
}

func (e *env) send(t *testing.T, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, _, err := e.messages.SendMessage(e.alice, "c", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: fmt.Sprint(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
}

// waitFor polls cond until it holds, or fails after 30s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inOrder checks that texts are "0", "1", ... n-1.
func inOrder(t *testing.T, texts []string, n int) {
	t.Helper()
	if len(texts) != n {
		t.Fatalf("received %d messages, want %d: %v", len(texts), n, texts)
	}
	for i, s := range texts {
		if s != fmt.Sprint(i) {
			t.Fatalf("message %d received is %q: out of order or missing: %v", i, s, texts)
		}
	}
}

func TestDeliversInOrderSigned(t *testing.T) {
	e := newEnv(t, nil)
	r := newReceiver(t)
	all := e.addEndpoint(t, r)
	other := newReceiver(t)
	otherEP := e.addEndpoint(t, other, "conversationMessage.edited", "profile.*")
	e.send(t, 0, 50)
	waitFor(t, "50 messages", func() bool { return len(r.sent()) == 50 })
	inOrder(t, r.sent(), 50)
	// Only the events after its creation; the seqs increase.
	r.mu.Lock()
	var last int64
	for _, d := range r.events {
		if d.Data.Seq <= last || d.Data.AppID != "a" {
			t.Errorf("event %d (%s) after %d", d.Data.Seq, d.Data.Name, last)
		}
		last = d.Data.Seq
		if d.Data.Name == tidings.EventConversationCreate {
			t.Errorf("got an event from before the endpoint was created")
		}
	}
	r.mu.Unlock()
	// The other endpoint's filter matched none of them: it has gone past
	// them all without a delivery.
	waitFor(t, "the other endpoint to go past the messages", func() bool {
		ep, err := e.hooks.FindWebhook(e.server, otherEP.ID)
		return err == nil && ep.LastSeq >= last
	})
	if n := len(other.sent()); n != 0 {
		t.Errorf("an endpoint filtering conversationMessage.edited got %d sent messages", n)
	}
	// The attempts are visible, newest first, with status and latency;
	// the position is saved.
	waitFor(t, "the progress to be saved", func() bool {
		ep, err := e.hooks.FindWebhook(e.server, all.ID)
		return err == nil && ep.LastSeq == last
	})
	attempts, err := e.hooks.ListWebhookAttempts(e.server, all.ID, 10)
	if err != nil || len(attempts) != 10 || attempts[0].EventSeq != last || attempts[0].Status != 204 || attempts[0].Attempt != 1 {
		t.Fatalf("attempts: %+v, %v", attempts, err)
	}
}

func TestReceiverDownThenUp(t *testing.T) {
	e := newEnv(t, nil)
	r := newReceiver(t)
	ep := e.addEndpoint(t, r, "conversationMessage.sent")
	r.down.Store(true)
	e.send(t, 0, 20)
	waitFor(t, "failed attempts", func() bool {
		a, err := e.hooks.ListWebhookAttempts(e.server, ep.ID, 100)
		return err == nil && len(a) >= 3
	})
	got, err := e.hooks.FindWebhook(e.server, ep.ID)
	if err != nil || got.FailingSince == nil || got.Failing {
		t.Fatalf("the endpoint after a few failures: %+v, %v; want failingSince set, not yet failing", got, err)
	}
	attempts, _ := e.hooks.ListWebhookAttempts(e.server, ep.ID, 100)
	for i, a := range attempts {
		if a.Status != 500 || a.EventSeq != attempts[len(attempts)-1].EventSeq || a.Attempt != len(attempts)-i {
			t.Fatalf("attempt %d: %+v; want the first event retried, 500 each time", i, a)
		}
	}
	e.send(t, 20, 40)
	r.down.Store(false)
	waitFor(t, "40 messages", func() bool { return len(r.sent()) == 40 })
	inOrder(t, r.sent(), 40)
	waitFor(t, "the endpoint to be healthy", func() bool {
		got, err := e.hooks.FindWebhook(e.server, ep.ID)
		return err == nil && got.FailingSince == nil
	})
}

func TestFailingEndpointAndReplay(t *testing.T) {
	e := newEnv(t, func(d *webhook.Dispatcher) { d.FailAfter = 300 * time.Millisecond })
	r := newReceiver(t)
	ep := e.addEndpoint(t, r, "conversationMessage.*")
	e.send(t, 0, 5)
	waitFor(t, "5 messages", func() bool { return len(r.sent()) == 5 })
	r.down.Store(true)
	e.send(t, 5, 6)
	waitFor(t, "the endpoint to be marked failing", func() bool {
		got, err := e.hooks.FindWebhook(e.server, ep.ID)
		return err == nil && got.Failing
	})
	// The metrics say so too.
	reg := prometheus.NewRegistry()
	reg.MustRegister(e.d.Collectors()...)
	gauge := func(name string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				for _, m := range mf.GetMetric() {
					if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == "a" {
						return m.GetGauge().GetValue()
					}
				}
			}
		}
		return -1
	}
	waitFor(t, "the failing gauge", func() bool { return gauge("tidings_webhook_failing_endpoints") == 1 })
	if lag := gauge("tidings_webhook_lag_seconds"); lag <= 0 {
		t.Errorf("lag while retrying: %v", lag)
	}
	// It goes on trying: when the receiver is back, it gets the rest.
	r.down.Store(false)
	waitFor(t, "6 messages", func() bool { return len(r.sent()) == 6 })
	waitFor(t, "the endpoint to be healthy", func() bool {
		got, err := e.hooks.FindWebhook(e.server, ep.ID)
		return err == nil && !got.Failing && got.FailingSince == nil
	})
	waitFor(t, "the failing gauge back to 0", func() bool { return gauge("tidings_webhook_failing_endpoints") == 0 })

	// A replay from the first message delivers them all again, in order.
	r.mu.Lock()
	first := r.events[0].Data
	r.mu.Unlock()
	if _, err := e.hooks.ReplayWebhook(e.server, ep.ID, tidings.WebhookReplay{FromEventID: first.ID}); err != nil {
		t.Fatal(err)
	}
	e.d.NotifyEndpoints()
	// Until each of the six is received a second time (not until six
	// requests arrived: the last one's event is recorded after it
	// arrives, and the check below could run in between).
	waitFor(t, "the replay", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, d := range r.events[:6] {
			if r.seen[d.Data.ID] < 2 {
				return false
			}
		}
		return true
	})
	r.mu.Lock()
	for _, d := range r.events[:6] {
		if r.seen[d.Data.ID] != 2 {
			t.Errorf("event %d received %d times, want twice", d.Data.Seq, r.seen[d.Data.ID])
		}
	}
	r.mu.Unlock()
	if _, err := e.hooks.ReplayWebhook(e.server, ep.ID, tidings.WebhookReplay{FromEventID: "nope"}); tidings.ErrorCode(err) != tidings.ENotFound {
		t.Errorf("replay from an unknown event: %v", err)
	}
	if _, err := e.hooks.ReplayWebhook(e.server, ep.ID, tidings.WebhookReplay{FromSeq: 1 << 40}); tidings.ErrorCode(err) != tidings.EInvalid {
		t.Errorf("replay from past the log: %v", err)
	}
}

// A crash between a delivery and the save of the position delivers again
// (at least once); a restarted dispatcher resumes from the saved position.
func TestRestartResumes(t *testing.T) {
	e := newEnv(t, nil)
	r := newReceiver(t)
	e.addEndpoint(t, r, "conversationMessage.sent")
	e.send(t, 0, 10)
	waitFor(t, "10 messages", func() bool { return len(r.sent()) == 10 })
	e.stop()
	e.send(t, 10, 20)
	if n := len(r.sent()); n != 10 {
		t.Fatalf("%d messages received with the dispatcher stopped", n)
	}
	d := webhook.New(e.hooks)
	d.Poll = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "20 messages", func() bool { return len(r.sent()) == 20 })
	inOrder(t, r.sent(), 20)
}

// Only the node holding the lease dispatches.
func TestLeases(t *testing.T) {
	leases := &fakeLeases{}
	leases.holder.Store("other")
	e := newEnv(t, func(d *webhook.Dispatcher) { d.Leases, d.Node = leases, "me" })
	r := newReceiver(t)
	e.addEndpoint(t, r, "conversationMessage.sent")
	e.send(t, 0, 3)
	refused := leases.refused.Load()
	waitFor(t, "the node to be refused the lease a few times", func() bool { return leases.refused.Load() >= refused+3 })
	if n := len(r.sent()); n != 0 {
		t.Fatalf("a node without the lease delivered %d messages", n)
	}
	leases.holder.Store("")
	waitFor(t, "3 messages once the lease is free", func() bool { return len(r.sent()) == 3 })
}

type fakeLeases struct {
	holder  atomic.Value
	refused atomic.Int64
}

func (l *fakeLeases) Hold(_ context.Context, name, node string, _ time.Duration) (bool, error) {
	h, _ := l.holder.Load().(string)
	if h == "" || h == node {
		l.holder.Store(node)
		return true, nil
	}
	l.refused.Add(1)
	return false, nil
}

func (l *fakeLeases) Release(_ context.Context, name, node string) error {
	l.holder.CompareAndSwap(node, "")
	return nil
}

// Endpoints at different places in the log, reading it in small batches
// through the shared cache, each get every event, in order.
func TestEndpointsAtDifferentPositions(t *testing.T) {
	e := newEnv(t, func(d *webhook.Dispatcher) { d.Batch = 3 })
	var rs []*receiver
	var eps []*tidings.WebhookEndpoint
	for range 3 {
		r := newReceiver(t)
		rs = append(rs, r)
		eps = append(eps, e.addEndpoint(t, r, "conversationMessage.sent"))
	}
	e.send(t, 0, 30)
	waitFor(t, "30 messages to each", func() bool {
		for _, r := range rs {
			if len(r.sent()) < 30 {
				return false
			}
		}
		return true
	})
	// One goes back to the start, another is held down, while more come.
	rs[0].mu.Lock()
	first := rs[0].events[0].Data
	rs[0].mu.Unlock()
	if _, err := e.hooks.ReplayWebhook(e.server, eps[0].ID, tidings.WebhookReplay{FromSeq: first.Seq}); err != nil {
		t.Fatal(err)
	}
	e.d.NotifyEndpoints()
	rs[1].down.Store(true)
	e.send(t, 30, 60)
	waitFor(t, "60 messages to the others", func() bool { return len(rs[0].sent()) == 60 && len(rs[2].sent()) == 60 })
	rs[1].down.Store(false)
	waitFor(t, "60 messages to the one held down", func() bool { return len(rs[1].sent()) == 60 })
	for _, r := range rs {
		inOrder(t, r.sent(), 60)
	}
}

// A redirect is not followed: it is a failure, retried; with DenyPrivate,
// a private address is refused before any request is made.
func TestRedirectsAndPrivateAddresses(t *testing.T) {
	for _, tc := range []struct {
		name        string
		denyPrivate bool
		wantStatus  int
		wantError   string
	}{
		{"redirect", false, http.StatusFound, "redirects are not followed"},
		{"deny private", true, 0, "private"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(d *webhook.Dispatcher) { d.DenyPrivate = tc.denyPrivate })
			target := newReceiver(t)
			var hits atomic.Int64
			redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				http.Redirect(w, r, target.srv.URL+"/hook", http.StatusFound)
			}))
			t.Cleanup(redirector.Close)
			ep, err := e.hooks.CreateWebhook(e.server, tidings.NewWebhook{URL: redirector.URL + "/hook"})
			if err != nil {
				t.Fatal(err)
			}
			target.secret.Store(ep.Secret)
			e.d.NotifyEndpoints()
			e.send(t, 0, 1)
			var attempts []*tidings.WebhookAttempt
			waitFor(t, "two attempts", func() bool {
				attempts, err = e.hooks.ListWebhookAttempts(e.server, ep.ID, 10)
				return err == nil && len(attempts) >= 2
			})
			for _, a := range attempts {
				if a.Status != tc.wantStatus || !strings.Contains(a.Error, tc.wantError) || a.Success() {
					t.Errorf("attempt: %+v; want status %d, error with %q", a, tc.wantStatus, tc.wantError)
				}
			}
			if n := len(target.sent()); n != 0 {
				t.Errorf("the redirect's target got %d messages", n)
			}
			if tc.denyPrivate && hits.Load() != 0 {
				t.Errorf("a private address was called %d times", hits.Load())
			}
		})
	}
}
