package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tidings/tidings"
)

// BenchmarkSendMessageLoads is the postgres package's BenchmarkSendMessage
// on SQLite, for comparison: durable sends (synchronous=FULL) by 1, 16 or
// 64 goroutines, each a user of its own sending with a client id, into a
// conversation of its own (spread) or all into one of 64 participants
// (hot). It reports sends/s.
//
//	go test ./sqlite/ -run XXX -bench SendMessageLoads -benchtime 2000x -count 2
func BenchmarkSendMessageLoads(b *testing.B) {
	const users = 64
	e := openDBWith(b, filepath.Join(b.TempDir(), "bench.db"), nil)
	if _, err := e.apps.CreateApp(context.Background(), "a", ""); err != nil {
		b.Fatal(err)
	}
	var ids []string
	var everyone []tidings.NewParticipant
	for i := range users {
		ids = append(ids, fmt.Sprint("u", i))
		if i > 0 {
			everyone = append(everyone, tidings.NewParticipant{UserID: ids[i]})
		}
	}
	e.mkUsers(b, "a", ids...)
	for i := range users {
		e.mkConv(b, "a", ids[i], tidings.NewConversation{ID: fmt.Sprint("c", i),
			Participants: []tidings.NewParticipant{{UserID: ids[(i+1)%users]}}})
	}
	e.mkConv(b, "a", ids[0], tidings.NewConversation{ID: "hot", Participants: everyone})
	var run atomic.Int64 // client ids stay unique across runs
	for _, load := range []string{"spread", "hot"} {
		for _, senders := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/senders=%d", load, senders), func(b *testing.B) {
				r := run.Add(1)
				parts := text("64 bytes of message text, which is about one line of a chat.....")
				var n atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for s := range senders {
					conv := fmt.Sprint("c", s)
					if load == "hot" {
						conv = "hot"
					}
					ctx := user("a", ids[s])
					wg.Go(func() {
						for {
							i := n.Add(1)
							if i > int64(b.N) {
								return
							}
							_, created, err := e.messages.SendMessage(ctx, conv, tidings.NewMessage{
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

// BenchmarkSendThenRead is a chat's exchange in 1:1 conversations: in
// each of 16 conversations, a message, then its read receipt by the other
// participant (MarkRead), by 16 goroutines. It reports exchanges/s;
// against BenchmarkSendMessageLoads's spread/senders=16, what a receipt
// adds to a message.
//
//	go test ./sqlite/ -run XXX -bench SendThenRead -benchtime 2000x -count 4
func BenchmarkSendThenRead(b *testing.B) {
	const convs = 16
	e := openDBWith(b, filepath.Join(b.TempDir(), "bench.db"), nil)
	if _, err := e.apps.CreateApp(context.Background(), "a", ""); err != nil {
		b.Fatal(err)
	}
	for i := range convs {
		from, to := fmt.Sprint("s", i), fmt.Sprint("r", i)
		e.mkUsers(b, "a", from, to)
		e.mkConv(b, "a", from, tidings.NewConversation{ID: fmt.Sprint("c", i), Participants: []tidings.NewParticipant{{UserID: to}}})
	}
	parts := text("64 bytes of message text, which is about one line of a chat.....")
	var n atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := range convs {
		conv, from, to := fmt.Sprint("c", i), user("a", fmt.Sprint("s", i)), user("a", fmt.Sprint("r", i))
		wg.Go(func() {
			for n.Add(1) <= int64(b.N) {
				m, _, err := e.messages.SendMessage(from, conv, tidings.NewMessage{Parts: parts})
				if err != nil {
					b.Errorf("send: %v", err)
					return
				}
				if st, err := e.messages.MarkRead(to, conv, m.Seq); err != nil || st.ReadSeq != m.Seq {
					b.Errorf("mark read: %+v, %v", st, err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "exchanges/s")
}
