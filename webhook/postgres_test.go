package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/postgres"
	"github.com/tidings/tidings/webhook"
)

// pgDSN creates a database of its own on the test PostgreSQL
// (TIDINGS_TEST_POSTGRES, default postgres://postgres@127.0.0.1:5432/test),
// returns its URL and drops it when t ends. It skips t when the server
// cannot be reached, or fails it with TIDINGS_REQUIRE_SERVICES=1.
func pgDSN(t *testing.T) string {
	t.Helper()
	server := os.Getenv("TIDINGS_TEST_POSTGRES")
	if server == "" {
		server = "postgres://postgres@127.0.0.1:5432/test"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		msg := fmt.Sprintf("PostgreSQL is not reachable at %s (set TIDINGS_TEST_POSTGRES to another server): %v", server, err)
		if os.Getenv("TIDINGS_REQUIRE_SERVICES") == "1" {
			t.Fatalf("%s (TIDINGS_REQUIRE_SERVICES=1)", msg)
		}
		t.Skip(msg)
	}
	defer admin.Close(context.Background())
	name := fmt.Sprintf("tidings_webhook_test_%d_%d", os.Getpid(), pgCounter.Add(1))
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Logf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

var pgCounter atomic.Int64

// pgNode is one node's services on the shared PostgreSQL database.
type pgNode struct {
	db       *postgres.DB
	hooks    *postgres.WebhookService
	messages *postgres.MessageService
	d        *webhook.Dispatcher // not running until runDispatcher
}

func openPGNode(t *testing.T, dsn string) *pgNode {
	t.Helper()
	db := postgres.NewDB(dsn)
	db.Logger = slog.New(slog.DiscardHandler)
	n := &pgNode{db: db, hooks: postgres.NewWebhookService(db), messages: postgres.NewMessageService(db, 0)}
	// The dispatcher is woken by the events the store publishes (the
	// final events, in position order).
	n.d = webhook.New(n.hooks)
	n.d.Logger = slog.New(slog.DiscardHandler)
	n.d.Poll, n.d.MinBackoff, n.d.MaxBackoff = 50*time.Millisecond, 20*time.Millisecond, 200*time.Millisecond
	db.Publisher = n.d
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return n
}

// runDispatcher runs d until the returned function is called.
func runDispatcher(d *webhook.Dispatcher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// messageSeqs returns the conversation seqs of the messages received, in
// the order they first came.
func (r *receiver) messageSeqs() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var seqs []int64
	for _, d := range r.events {
		var m tidings.Message
		if err := json.Unmarshal(d.Data.Payload, &m); err != nil {
			r.t.Errorf("payload %s: %v", d.Data.Payload, err)
			continue
		}
		seqs = append(seqs, m.Seq)
	}
	return seqs
}

// wantSeqs checks that seqs are 1 to n, in order.
func wantSeqs(t *testing.T, seqs []int64, n int) {
	t.Helper()
	if len(seqs) != n {
		t.Fatalf("received %d messages, want %d", len(seqs), n)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("message %d received is the conversation's %d: out of order or missing (%v)", i+1, s, seqs)
		}
	}
}

// TestDispatcherOnPostgres: the dispatcher delivers from the PostgreSQL
// store. Messages sent at once on two nodes to one conversation reach the
// receiver each once (after deduplication), in the conversation's order,
// none skipped (the dispatcher reads final events only: one committed
// later below a position it has passed would be lost); through a receiver
// down and back; and after the dispatcher stops, another node's takes
// over from the saved position.
func TestDispatcherOnPostgres(t *testing.T) {
	dsn := pgDSN(t)
	bg := context.Background()
	server := tidings.NewContextWithCaller(bg, tidings.Caller{AppID: "a", Server: true})
	alice := tidings.NewContextWithCaller(bg, tidings.Caller{AppID: "a", UserID: "alice"})

	// Node 1 dispatches; node 2 writes, and serves the API.
	n1, n2 := openPGNode(t, dsn), openPGNode(t, dsn)

	if _, err := postgres.NewAppService(n1.db).CreateApp(bg, "a", ""); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		if _, err := postgres.NewUserService(n1.db).CreateUser(server, &tidings.User{ID: u}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := postgres.NewConversationService(n1.db).CreateConversation(alice, tidings.NewConversation{ID: "c",
		Participants: []tidings.NewParticipant{{UserID: "bob"}}}); err != nil {
		t.Fatal(err)
	}
	r := newReceiver(t)
	ep, err := n2.hooks.CreateWebhook(server, tidings.NewWebhook{URL: r.srv.URL + "/hook", Events: []string{tidings.EventMessageSent}})
	if err != nil {
		t.Fatal(err)
	}
	r.secret.Store(ep.Secret)
	stop := runDispatcher(n1.d)
	defer func() { stop() }()

	send := func(node *pgNode, text string) {
		if _, _, err := node.messages.SendMessage(alice, "c", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: text}}}); err != nil {
			t.Error(err)
		}
	}
	const senders, each = 4, 25
	var wg sync.WaitGroup
	for s := range senders {
		node := []*pgNode{n1, n2}[s%2]
		wg.Go(func() {
			for i := range each {
				send(node, fmt.Sprintf("%d-%d", s, i))
			}
		})
	}
	wg.Wait()
	total := senders * each
	waitFor(t, fmt.Sprintf("%d messages", total), func() bool { return len(r.messageSeqs()) >= total })
	wantSeqs(t, r.messageSeqs(), total)

	// Down, then up: the same events are retried, then all come.
	r.down.Store(true)
	for i := range 10 {
		send(n2, fmt.Sprint("down ", i))
	}
	waitFor(t, "failed attempts", func() bool {
		a, err := n2.hooks.ListWebhookAttempts(server, ep.ID, 100)
		return err == nil && len(a) > 0 && a[0].Status == 500
	})
	r.down.Store(false)
	total += 10
	waitFor(t, fmt.Sprintf("%d messages", total), func() bool { return len(r.messageSeqs()) >= total })
	wantSeqs(t, r.messageSeqs(), total)
	waitFor(t, "the position to be saved", func() bool {
		got, err := n2.hooks.FindWebhook(server, ep.ID)
		return err == nil && got.LastSeq >= r.lastEventSeq() && got.FailingSince == nil
	})

	// Node 1's dispatcher stops; node 2's takes over where it was saved.
	stop()
	for i := range 5 {
		send(n2, fmt.Sprint("after ", i))
	}
	stop = runDispatcher(n2.d)
	total += 5
	waitFor(t, fmt.Sprintf("%d messages", total), func() bool { return len(r.messageSeqs()) >= total })
	wantSeqs(t, r.messageSeqs(), total)
}

// lastEventSeq is the position of the newest event received.
func (r *receiver) lastEventSeq() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return 0
	}
	return r.events[len(r.events)-1].Data.Seq
}

// watchedStore notes when the dispatcher's reads of the log start and
// which are in progress.
type watchedStore struct {
	*postgres.WebhookService
	mu       sync.Mutex
	last     time.Time         // start of the latest read
	inflight map[int]time.Time // starts of the reads in progress
	n        int
}

func (s *watchedStore) WebhookEvents(ctx context.Context, after int64, limit int) ([]*tidings.Event, int64, error) {
	s.mu.Lock()
	s.n++
	id, now := s.n, time.Now()
	s.last, s.inflight[id] = now, now
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.inflight, id)
		s.mu.Unlock()
	}()
	return s.WebhookService.WebhookEvents(ctx, after, limit)
}

// readSince reports whether a read started after t, or one in progress
// started after t0, or one has been in progress for a second or more (on
// a loaded machine a read that started earlier may have found the later
// commits, and waits for the slow writer too).
func (s *watchedStore) readSince(t0, t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last.After(t) {
		return true
	}
	for _, start := range s.inflight {
		if start.After(t0) || time.Since(start) >= time.Second {
			return true
		}
	}
	return false
}

// TestDispatcherOnPostgresInFlight: an event whose transaction is still
// running when later ones commit above it is delivered, first: the
// dispatcher never moves an endpoint past a position that may still be
// filled.
func TestDispatcherOnPostgresInFlight(t *testing.T) {
	dsn := pgDSN(t)
	bg := context.Background()
	server := tidings.NewContextWithCaller(bg, tidings.Caller{AppID: "a", Server: true})
	alice := tidings.NewContextWithCaller(bg, tidings.Caller{AppID: "a", UserID: "alice"})
	n := openPGNode(t, dsn)
	store := &watchedStore{WebhookService: n.hooks, inflight: map[int]time.Time{}}
	n.d.Store = store
	if _, err := postgres.NewAppService(n.db).CreateApp(bg, "a", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.NewUserService(n.db).CreateUser(server, &tidings.User{ID: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.NewConversationService(n.db).CreateConversation(alice, tidings.NewConversation{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	r := newReceiver(t)
	ep, err := n.hooks.CreateWebhook(server, tidings.NewWebhook{URL: r.srv.URL + "/hook", Events: []string{tidings.EventMessageSent}})
	if err != nil {
		t.Fatal(err)
	}
	r.secret.Store(ep.Secret)
	stop := runDispatcher(n.d)
	defer stop()

	// A writer of another node, slow: it has drawn its event's position
	// and not committed yet (as the store's writers do: its id first).
	conn, err := pgx.Connect(bg, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(bg)
	slow, err := conn.Begin(bg)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Rollback(bg)
	// A read from here on waits for the slow writer once it has found an
	// event committed above it.
	before := time.Now()
	slowID := tidings.NewID()
	if _, err := slow.Exec(bg, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	if _, err := slow.Exec(bg, `INSERT INTO events (seq, id, app_id, name, time, conversation_id, payload)
		VALUES (nextval('tidings_event_seq'), $1, 'a', $2, now(), 'elsewhere', '{"id": "slow", "seq": 1, "parts": []}')`,
		slowID, tidings.EventMessageSent); err != nil {
		t.Fatal(err)
	}
	// Later events commit above it, and the dispatcher reads the log
	// (that read waits for the slow writer: it may not return what
	// committed above it while it runs).
	for i := range 5 {
		if _, _, err := n.messages.SendMessage(alice, "c", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: fmt.Sprint(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	sent := time.Now()
	n.d.Notify()
	waitFor(t, "a read of the log after the sends", func() bool { return store.readSince(before, sent) })
	if err := slow.Commit(bg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "6 events", func() bool { return r.lastEventSeq() > 0 && len(r.messageSeqs()) >= 6 })
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) != 6 || r.events[0].Data.ID != slowID {
		t.Fatalf("received %d events, the first %s; want 6, the slow one first", len(r.events), r.events[0].Data.ID)
	}
	for i := 1; i < len(r.events); i++ {
		if r.events[i].Data.Seq <= r.events[i-1].Data.Seq {
			t.Fatalf("event %d at %d after %d: out of order", i, r.events[i].Data.Seq, r.events[i-1].Data.Seq)
		}
	}
}
