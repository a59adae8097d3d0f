package sqlite_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/internal/cputime"
	"github.com/tidings/tidings/sqlite"
)

// BenchmarkReplayBesideTheJournal: what a user's replay read costs while
// the message journal holds N messages not moved yet (2,000 1:1
// conversations; the move delay set long, so that none move), for a
// cursor from before all of them (a device back after a while: the
// journal's branch of the read scans every message after the cursor) and
// a recent one (100 messages back). The journal holds about a move
// delay's worth of the app's messages: 20,000 at 2,000 msgs/s and 10 s.
//
//	go test ./sqlite/ -run XXX -bench ReplayBesideTheJournal -benchtime 200x
func BenchmarkReplayBesideTheJournal(b *testing.B) {
	const convs = 2000
	for _, n := range []int{20000, 60000} {
		b.Run(fmt.Sprint("journal=", n), func(b *testing.B) {
			e := newQuietEnv(b)
			var ids []string
			for i := range 2 * convs {
				ids = append(ids, fmt.Sprint("u", i))
			}
			e.mkUsers(b, "a", ids...)
			for i := range convs {
				e.mkConv(b, "a", ids[2*i], tidings.NewConversation{ID: fmt.Sprint("c", i),
					Participants: []tidings.NewParticipant{{UserID: ids[2*i+1]}}})
			}
			log := sqlite.NewEventLog(e.db)
			ctx := context.Background()
			before, err := log.LastEventSeq(ctx)
			if err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			for range 64 {
				wg.Go(func() {
					for {
						i := int(next.Add(1)) - 1
						if i >= n {
							return
						}
						c := i % convs
						if _, _, err := e.messages.SendMessage(user("a", ids[2*c+i/convs%2]), fmt.Sprint("c", c),
							tidings.NewMessage{Parts: text("64 bytes of message text, which is about one line of a chat.....")}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			if j, _ := sqlite.JournalCount(e.db); j != n {
				b.Fatalf("the journal holds %d messages, want %d", j, n)
			}
			last, err := log.LastEventSeq(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for _, cur := range []struct {
				name  string
				after int64
			}{{"cursor=old", before}, {"cursor=recent", last - 100}} {
				b.Run(cur.name, func(b *testing.B) {
					var got int
					cpu0 := cputime.Self()
					for b.Loop() {
						evs, err := log.UserEvents(ctx, "a", "u1", cur.after, 100)
						if err != nil {
							b.Fatal(err)
						}
						got = len(evs)
					}
					b.ReportMetric(float64((cputime.Self()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
					b.ReportMetric(float64(got), "events/op")
				})
			}
		})
	}
}
