package postgres

import (
	"context"
	"io/fs"
	"log/slog"
	"sync"
	"testing"

	"github.com/tidings/tidings"
)

// TestMigrateOnce: nodes opening the same new database at once migrate it
// once, and each can use it.
func TestMigrateOnce(t *testing.T) {
	dsn := freshDSN(t)
	const nodes = 4
	dbs := make([]*DB, nodes)
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i := range nodes {
		dbs[i] = NewDB(dsn)
		dbs[i].Logger = slog.New(slog.DiscardHandler)
		wg.Go(func() { errs[i] = dbs[i].Open() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: open: %v", i, err)
		}
		t.Cleanup(func() { dbs[i].Close() })
	}
	ctx := context.Background()
	var n int
	if err := dbs[0].queryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	// Each embedded migration once.
	files, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if n != len(files) {
		t.Errorf("%d migrations recorded, want %d", n, len(files))
	}
	for i, db := range dbs {
		if err := db.Ping(ctx); err != nil {
			t.Errorf("node %d: ping: %v", i, err)
		}
	}
	// Opening again applies nothing.
	again := NewDB(dsn)
	again.Logger = slog.New(slog.DiscardHandler)
	if err := again.Open(); err != nil {
		t.Fatal(err)
	}
	again.Close()
}

// TestEmit: events get increasing positions, and are final once
// committed.
func TestEmit(t *testing.T) {
	db := openDB(t, nil)
	ctx := context.Background()
	var seqs []int64
	for range 3 {
		err := db.update(ctx, func(tx *Tx) error {
			ev, err := tx.emitEvent("a", tidings.EventProfileUpdate, nil, "", "alice", map[string]string{"x": "y"})
			if err != nil {
				return err
			}
			seqs = append(seqs, ev.Seq)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !(seqs[0] < seqs[1] && seqs[1] < seqs[2]) {
		t.Fatalf("positions %v, want increasing", seqs)
	}
	last, err := NewEventLog(db).LastEventSeq(ctx)
	if err != nil || last != seqs[2] {
		t.Fatalf("last event seq %d, %v; want %d", last, err, seqs[2])
	}
}
