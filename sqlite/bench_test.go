package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// benchSend measures durable sends: each one returns only after its
// transaction has committed with synchronous=FULL. Senders run
// concurrently (parallelism × GOMAXPROCS goroutines), spread over 10
// conversations of 2 participants each.
func benchSend(b *testing.B, parallelism int, synchronous string) {
	e := openDBWith(b, filepath.Join(b.TempDir(), "bench.db"), func(db *sqlite.DB) { db.Synchronous = synchronous })
	if _, err := e.apps.CreateApp(context.Background(), "a", ""); err != nil {
		b.Fatal(err)
	}
	var convs []string
	e.mkUsers(b, "a", "alice", "bob")
	for range 10 {
		c := e.mkConv(b, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
		convs = append(convs, c.ID)
	}
	parts := text("64 bytes of message text, which is about one line of a chat.....")
	var n atomic.Int64
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			_, _, err := e.messages.SendMessage(user("a", "alice"), convs[i%10], tidings.NewMessage{Parts: parts})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
}

func BenchmarkSendMessage(b *testing.B) {
	for _, senders := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("senders=%dxP/sync=FULL", senders), func(b *testing.B) { benchSend(b, senders, "FULL") })
	}
	b.Run("senders=64xP/sync=NORMAL", func(b *testing.B) { benchSend(b, 64, "NORMAL") })
}

// cpuTime is the CPU time (user and system) this process has used: with a
// noisy machine, CPU per message compares better than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFindUserByID measures the read that every authenticated API
// request makes: is the token's user still there?
func BenchmarkFindUserByID(b *testing.B) {
	e := openDBWith(b, filepath.Join(b.TempDir(), "bench.db"), nil)
	if _, err := e.apps.CreateApp(context.Background(), "a", ""); err != nil {
		b.Fatal(err)
	}
	e.mkUsers(b, "a", "alice", "bob")
	ctx := user("a", "bob")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.users.FindUserByID(ctx, "alice"); err != nil {
			b.Fatal(err)
		}
	}
}
