package postgres

import (
	"fmt"
	"testing"
)

// BenchmarkAccessCheckRead reads 500 users again, as the realtime node's
// access check does for the users of its sessions: in one query
// (FindUsersByIDs) or one query per user (FindUserByID, what the node
// falls back to without it). One op is the 500 users.
func BenchmarkAccessCheckRead(b *testing.B) {
	const n = 500
	users := NewUserService(openDB(b, nil))
	db := users.db
	if _, err := NewAppService(db).CreateApp(serverCtx("a"), "a", "app a"); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint("u", i)
	}
	if _, err := db.pool.Exec(serverCtx("a"), `INSERT INTO users (app_id, id, display_name, created_at, updated_at)
		SELECT 'a', x, x, now(), now() FROM unnest($1::text[]) AS x`, ids); err != nil {
		b.Fatal(err)
	}
	b.Run("by-ids", func(b *testing.B) {
		for b.Loop() {
			got, err := users.FindUsersByIDs(serverCtx("a"), ids)
			if err != nil || len(got) != n {
				b.Fatalf("%d users, %v", len(got), err)
			}
		}
	})
	b.Run("one-by-one", func(b *testing.B) {
		for b.Loop() {
			for _, id := range ids {
				if _, err := users.FindUserByID(serverCtx("a"), id); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
