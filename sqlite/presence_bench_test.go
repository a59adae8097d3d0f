package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// presenceUsers makes an app "a" of n users u0…u(n-1).
func presenceUsers(b *testing.B, n int) (*env, []string) {
	e := openDBWith(b, filepath.Join(b.TempDir(), "bench.db"), nil)
	if _, err := e.apps.CreateApp(context.Background(), "a", ""); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint("u", i)
	}
	e.mkUsers(b, "a", ids...)
	return e, ids
}

// BenchmarkSaveLastSeen measures the realtime node's flush of last seen
// times: one write for all the users who went offline within a second.
func BenchmarkSaveLastSeen(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			e, ids := presenceUsers(b, n)
			seen := make([]tidings.LastSeen, n)
			b.ReportAllocs()
			for b.Loop() {
				now := time.Now()
				for i, id := range ids {
					seen[i] = tidings.LastSeen{AppID: "a", UserID: id, At: now}
				}
				if err := e.users.SaveLastSeen(context.Background(), seen); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/user")
		})
	}
}

// BenchmarkUsersPresence measures the read of presence.subscribe: one
// query for the users listed.
func BenchmarkUsersPresence(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			e, ids := presenceUsers(b, n)
			b.ReportAllocs()
			for b.Loop() {
				ps, err := e.users.UsersPresence(context.Background(), "a", ids)
				if err != nil || len(ps) != n {
					b.Fatal(len(ps), err)
				}
			}
		})
	}
}
