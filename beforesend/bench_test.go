package beforesend_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/beforesend"
	"github.com/tidings/tidings/internal/cputime"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/webhook"
)

// BenchmarkSend: what a hook adds to a send. One sender sends one
// message after another (the latency a sender sees) on a SQLite store
// with synchronous=NORMAL (the work, not the disk's flush): the store's
// service alone; through the decorator for an app without a hook; with a
// local hook (an httptest server in this process, on the loopback
// interface, that verifies each signature) that accepts, or replaces the
// parts. cpu-µs/send is the whole process's CPU: the receiver's too.
func BenchmarkSend(b *testing.B) {
	for _, mode := range []string{"store", "no-hook", "hook-accept", "hook-replace"} {
		b.Run(mode, func(b *testing.B) {
			db := sqlite.NewDB(filepath.Join(b.TempDir(), "tidings.db"))
			db.Logger = slog.New(slog.DiscardHandler)
			db.Synchronous = "NORMAL"
			if err := db.Open(); err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			ctx := context.Background()
			if _, err := sqlite.NewAppService(db).CreateApp(ctx, "a", "A"); err != nil {
				b.Fatal(err)
			}
			users := sqlite.NewUserService(db)
			for _, id := range []string{"alice", "bob"} {
				if _, err := users.CreateUser(server(), &tidings.User{ID: id}); err != nil {
					b.Fatal(err)
				}
			}
			convs := sqlite.NewConversationService(db)
			if _, err := convs.CreateConversation(as("alice"), tidings.NewConversation{ID: "c", Participants: []tidings.NewParticipant{{UserID: "bob"}}}); err != nil {
				b.Fatal(err)
			}
			hooks := sqlite.NewBeforeSendService(db)
			var svc tidings.MessageService = sqlite.NewMessageService(db, 0)
			if mode != "store" {
				svc = &beforesend.Service{MessageService: svc, Store: hooks, Users: users,
					Logger: slog.New(slog.DiscardHandler), CacheTTL: time.Hour}
			}
			if mode == "hook-accept" || mode == "hook-replace" {
				secret := tidings.NewWebhookSecret()
				rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, _ := io.ReadAll(r.Body)
					if webhook.Verify(secret, r.Header, body) != nil {
						http.Error(w, "bad signature", http.StatusUnauthorized)
						return
					}
					if mode == "hook-replace" {
						io.WriteString(w, `{"action":"replace","parts":[{"type":"text/plain","data":"replaced"}]}`)
						return
					}
					w.WriteHeader(http.StatusNoContent)
				}))
				defer rcv.Close()
				if _, err := hooks.SetBeforeSend(server(), tidings.BeforeSendConfig{URL: rcv.URL, Secret: secret}); err != nil {
					b.Fatal(err)
				}
			}
			parts := text("a message of a few words, as most are")
			cpu0 := cputime.Self()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, err := svc.SendMessage(as("alice"), "c", tidings.NewMessage{ClientID: fmt.Sprint("k", i), Parts: parts}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((cputime.Self()-cpu0).Microseconds())/float64(b.N), "cpu-µs/send")
		})
	}
}
