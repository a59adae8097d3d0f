package push_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/push"
	"github.com/tidings/tidings/push/pushtest"
	"github.com/tidings/tidings/sqlite"
)

// BenchmarkWebPush sends pushes, from parallel goroutines, to the local
// Web Push service, which decrypts each one and checks its VAPID
// signature as a push service and a browser would: the figure is the
// server's encryption and signing, the HTTP round trip and the service's
// own work, all on this machine.
func BenchmarkWebPush(b *testing.B) {
	web := pushtest.NewWebPushService(b)
	sub := web.Subscribe("bench")
	cfg := &tidings.PushConfig{VAPIDSubject: "mailto:ops@example.com"}
	w := &push.WebPush{Client: web.Server.Client()}
	// A VAPID key pair, as the store makes them.
	db := sqlite.NewDB(filepath.Join(b.TempDir(), "tidings.db"))
	db.Logger = slog.New(slog.DiscardHandler)
	if err := db.Open(); err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := sqlite.NewAppService(db).CreateApp(context.Background(), "a", ""); err != nil {
		b.Fatal(err)
	}
	stored, err := sqlite.NewPushService(db).AppPushConfig(context.Background(), "a")
	if err != nil {
		b.Fatal(err)
	}
	cfg.VAPIDPublicKey, cfg.VAPIDPrivateKey = stored.VAPIDPublicKey, stored.VAPIDPrivateKey
	web.SetVAPIDKey(stored.VAPIDPublicKey)
	target := &tidings.PushTarget{ID: "t", Kind: tidings.PushWebPush, Endpoint: sub.Endpoint, Keys: sub.Keys}
	n := &push.Notification{AppID: "a", ConversationID: "lunch", MessageID: tidings.NewID(), Seq: 42, Title: "Alice",
		Body: "lunch at noon? " + fmt.Sprint(time.Now()), Badge: 3, Count: 1}
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := w.Send(context.Background(), cfg, target, n); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pushes/s")
}

// BenchmarkDispatch: a message to a conversation of 200 members, each
// offline with a Web Push subscription, until every member's push has
// reached the local Web Push service: the dispatcher's store reads
// (candidates, then each member's targets and unread counts) and the
// pushes, 16 at a time.
func BenchmarkDispatch(b *testing.B) {
	const members = 200
	w := newWorld(b, time.Millisecond)
	users := sqlite.NewUserService(w.db)
	var ps []tidings.NewParticipant
	for i := range members {
		id := fmt.Sprintf("m%03d", i)
		if _, err := users.CreateUser(as(""), &tidings.User{ID: id}); err != nil {
			b.Fatal(err)
		}
		w.register(b, id, w.web.Subscribe(id))
		ps = append(ps, tidings.NewParticipant{UserID: id})
	}
	if _, err := w.convs.CreateConversation(as("alice"), tidings.NewConversation{ID: "big", Participants: ps}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		w.send(b, "alice", "big", "hello all", "")
		w.web.Box.WaitFor(b, (i+1)*members)
	}
	b.ReportMetric(float64(b.N*members)/time.Since(start).Seconds(), "pushes/s")
}
