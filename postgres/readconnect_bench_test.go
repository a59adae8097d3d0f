package postgres

import (
	"testing"

	"github.com/tidings/tidings"
)

// BenchmarkReadConnect reads what a WebSocket auth needs: in one go
// (ReadConnect: the final horizon, then one query) or as the node does
// without it (FindAppByID, FindUserByID, LastEventSeq and Cursor). One op
// is one auth's reads.
func BenchmarkReadConnect(b *testing.B) {
	db := openDB(b, nil)
	apps, users, log := NewAppService(db), NewUserService(db), NewEventLog(db)
	if _, err := apps.CreateApp(serverCtx("a"), "a", "app a"); err != nil {
		b.Fatal(err)
	}
	if _, err := users.CreateUser(serverCtx("a"), &tidings.User{ID: "alice", DisplayName: "Alice"}); err != nil {
		b.Fatal(err)
	}
	if err := log.SaveCursors(serverCtx("a"), []tidings.Cursor{{AppID: "a", UserID: "alice", Device: "phone", Seq: 1}}); err != nil {
		b.Fatal(err)
	}
	ctx := serverCtx("a")
	b.Run("one-go", func(b *testing.B) {
		for b.Loop() {
			if _, u, _, cur, err := apps.ReadConnect(ctx, "a", "alice", "phone"); err != nil || u == nil || cur != 1 {
				b.Fatalf("user %v, cursor %d, %v", u, cur, err)
			}
		}
	})
	b.Run("four-reads", func(b *testing.B) {
		for b.Loop() {
			if _, err := apps.FindAppByID(ctx, "a"); err != nil {
				b.Fatal(err)
			}
			if _, err := users.FindUserByID(ctx, "alice"); err != nil {
				b.Fatal(err)
			}
			if _, err := log.LastEventSeq(ctx); err != nil {
				b.Fatal(err)
			}
			if cur, err := log.Cursor(ctx, "a", "alice", "phone"); err != nil || cur != 1 {
				b.Fatalf("cursor %d, %v", cur, err)
			}
		}
	})
}
