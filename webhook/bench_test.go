package webhook_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/cputime"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/webhook"
)

// benchEnv is a store with an app, a conversation of two and, if hook,
// one endpoint delivering to a local receiver that verifies each
// delivery's signature and answers 204.
type benchEnv struct {
	db        *sqlite.DB
	d         *webhook.Dispatcher
	messages  *sqlite.MessageService
	alice     context.Context
	received  atomic.Int64
	startHook func() (stop func())
}

func newBenchEnv(b *testing.B, hook bool) *benchEnv {
	db := sqlite.NewDB(filepath.Join(b.TempDir(), "bench.db"))
	db.Synchronous = "NORMAL" // the writer's work, not the disk's flush
	db.Logger = slog.New(slog.DiscardHandler)
	hooks := sqlite.NewWebhookService(db)
	e := &benchEnv{db: db, messages: sqlite.NewMessageService(db, 0)}
	e.d = webhook.New(hooks)
	db.Publisher = e.d
	if err := db.Open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	bg := context.Background()
	if _, err := sqlite.NewAppService(db).CreateApp(bg, "a", ""); err != nil {
		b.Fatal(err)
	}
	server := tidings.NewContextWithCaller(bg, tidings.Caller{AppID: "a", Server: true})
	e.alice = tidings.NewContextWithCaller(bg, tidings.Caller{AppID: "a", UserID: "alice"})
	users := sqlite.NewUserService(db)
	for _, u := range []string{"alice", "bob"} {
		if _, err := users.CreateUser(server, &tidings.User{ID: u}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := sqlite.NewConversationService(db).CreateConversation(e.alice, tidings.NewConversation{ID: "c",
		Participants: []tidings.NewParticipant{{UserID: "bob"}}}); err != nil {
		b.Fatal(err)
	}
	if !hook {
		return e
	}
	var secret string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhook.Verify(secret, r.Header, body); err != nil {
			b.Error(err)
		}
		e.received.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	ep, err := hooks.CreateWebhook(server, tidings.NewWebhook{URL: srv.URL, Events: []string{"conversationMessage.sent"}})
	if err != nil {
		b.Fatal(err)
	}
	secret = ep.Secret
	e.startHook = func() func() {
		ctx, cancel := context.WithCancel(bg)
		done := make(chan struct{})
		go func() { defer close(done); e.d.Run(ctx) }()
		return func() { cancel(); <-done }
	}
	return e
}

func (e *benchEnv) sendParallel(b *testing.B, n int) {
	parts := []tidings.Part{{Type: "text/plain", Data: "64 bytes of message text, which is about one line of a chat....."}}
	var sent atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if sent.Add(1) > int64(n) {
				continue
			}
			if _, _, err := e.messages.SendMessage(e.alice, "c", tidings.NewMessage{Parts: parts}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkDeliveries measures deliveries to one endpoint: b.N messages
// are stored first, then the dispatcher delivers them, one at a time in
// order, to a receiver on this machine that verifies each signature.
func BenchmarkDeliveries(b *testing.B) {
	e := newBenchEnv(b, true)
	b.SetParallelism(16)
	e.sendParallel(b, b.N)
	cpu0 := cputime.Self()
	b.ResetTimer()
	stop := e.startHook()
	defer stop()
	for e.received.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64((cputime.Self()-cpu0).Microseconds())/float64(b.N), "cpu-µs/delivery")
}

// BenchmarkSendWithWebhook measures sends (16 senders per core) without
// an endpoint, with one but no dispatcher running (the write path alone),
// and with one delivering them as they come: the time per send and the
// process's CPU per message, the deliveries and the receiver's included
// (the timer stops once every message is delivered).
func BenchmarkSendWithWebhook(b *testing.B) {
	for _, tc := range []struct {
		name          string
		hook, deliver bool
	}{{"endpoints=0", false, false}, {"endpoints=1/dispatcher=off", true, false}, {"endpoints=1", true, true}} {
		b.Run(tc.name, func(b *testing.B) {
			e := newBenchEnv(b, tc.hook)
			hook := tc.deliver
			if hook {
				defer e.startHook()()
			}
			b.SetParallelism(16)
			cpu0 := cputime.Self()
			b.ResetTimer()
			e.sendParallel(b, b.N)
			sendTime := b.Elapsed()
			for hook && e.received.Load() < int64(b.N) {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(sendTime.Microseconds())/float64(b.N), "send-µs/msg")
			b.ReportMetric(float64((cputime.Self()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
		})
	}
}
