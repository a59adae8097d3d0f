package postgres

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tidings/tidings"
)

// BenchmarkSendMessage measures durable sends through
// MessageService.SendMessage: each returns once its transaction has
// committed (synchronous_commit on: the WAL is flushed). Senders are
// goroutines of one node (one DB, a pool of up to 64 connections), each
// sending as a user of its own with a client id, as the SDKs do:
//
//   - spread: sender i sends into a conversation of its own (of two
//     participants), so that sends contend for nothing but the commit;
//   - hot: every sender sends into one conversation of 64 participants,
//     whose lock orders its sends.
//
// It reports sends/s. The sqlite package's BenchmarkSendMessageLoads is the
// same on SQLite.
//
//	go test ./postgres/ -run XXX -bench SendMessage -benchtime 2000x -count 2
func BenchmarkSendMessage(b *testing.B) {
	const users = 64
	db := NewDB(freshDSN(b))
	db.Logger = discard()
	db.MaxConns = 64
	if err := db.Open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	ctx := context.Background()
	if _, err := NewAppService(db).CreateApp(ctx, "a", "app"); err != nil {
		b.Fatal(err)
	}
	var everyone []tidings.NewParticipant
	for i := range users {
		u := fmt.Sprint("u", i)
		if _, err := NewUserService(db).CreateUser(serverCtx("a"), &tidings.User{ID: u}); err != nil {
			b.Fatal(err)
		}
		if i > 0 {
			everyone = append(everyone, tidings.NewParticipant{UserID: u})
		}
	}
	convs := NewConversationService(db)
	for i := range users {
		peer := fmt.Sprint("u", (i+1)%users)
		if _, err := convs.CreateConversation(userCtx("a", fmt.Sprint("u", i)), tidings.NewConversation{
			ID: fmt.Sprint("c", i), Participants: []tidings.NewParticipant{{UserID: peer}}}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := convs.CreateConversation(userCtx("a", "u0"), tidings.NewConversation{ID: "hot", Participants: everyone}); err != nil {
		b.Fatal(err)
	}
	msgs := NewMessageService(db, 0)
	var run atomic.Int64 // client ids stay unique across runs
	for _, load := range []string{"spread", "hot"} {
		for _, senders := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/senders=%d", load, senders), func(b *testing.B) {
				r := run.Add(1)
				parts := []tidings.Part{{Type: "text/plain", Data: "64 bytes of message text, which is about one line of a chat....."}}
				var n atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for s := range senders {
					conv := fmt.Sprint("c", s)
					if load == "hot" {
						conv = "hot"
					}
					ctx := userCtx("a", fmt.Sprint("u", s))
					wg.Go(func() {
						for {
							i := n.Add(1)
							if i > int64(b.N) {
								return
							}
							_, created, err := msgs.SendMessage(ctx, conv, tidings.NewMessage{
								Parts: parts, ClientID: fmt.Sprintf("r%d-%d", r, i)})
							if err != nil || !created {
								b.Errorf("send: created %v, %v", created, err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
			})
		}
	}
}
