package sqlite_test

import (
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// While the database is smaller than its lock-byte page the writer's page
// cache is small (SQLite scans the whole cache at most commits then, see
// pagecache.go); once the database has grown past it, the writer's cache
// is CacheMiB, from the next transaction after a checkpoint saw the size,
// and again at the next start.
func TestWriterCacheFollowsTheDatabaseSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tidings.db")
	const large = 400 // pages: a few hundred KiB of messages
	configure := func(db *sqlite.DB) {
		db.CacheMiB = 16
		db.Synchronous = "NORMAL"
		db.CheckpointInterval = time.Millisecond
		sqlite.SetCheckpointJobs(db, 1)
		sqlite.SetLargePages(db, large)
	}
	e := openDBWith(t, path, configure)
	if kib, err := sqlite.WriterCacheKiB(e.db); err != nil || kib != 8<<10 {
		t.Fatalf("a new database's writer cache: %d KiB, %v; want 8192", kib, err)
	}
	if _, err := e.apps.CreateApp(t.Context(), "a", ""); err != nil {
		t.Fatal(err)
	}
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	body := strings.Repeat("x", 3000)
	deadline := time.Now().Add(60 * time.Second)
	for {
		e.send(t, "alice", c.ID, body)
		kib, err := sqlite.WriterCacheKiB(e.db)
		if err != nil {
			t.Fatal(err)
		}
		if kib == 16<<10 {
			break
		}
		if kib != 8<<10 {
			t.Fatalf("writer cache: %d KiB, want 8192 or 16384", kib)
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer's cache stayed small while the database grew")
		}
	}
	pages, err := sqlite.DatabasePages(e.db)
	if err != nil {
		t.Fatal(err)
	}
	if pages < large {
		t.Fatalf("the cache grew at %d pages, before the database reached %d", pages, large)
	}
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}

	again := openDBWith(t, path, configure)
	if kib, err := sqlite.WriterCacheKiB(again.db); err != nil || kib != 16<<10 {
		t.Fatalf("a large database's writer cache at the next start: %d KiB, %v; want 16384", kib, err)
	}
}

// While writes come faster than the writer commits them (its batches are
// large), its cache is CacheMiB whatever the database's size: commits are
// few then, and a large transaction in a small cache writes its pages
// twice. Once no batch has been large for a while, it is small again.
func TestWriterCacheIsLargeWhileTheWriterIsBehind(t *testing.T) {
	var offset atomic.Int64 // the writer's clock, ahead of the real one
	e := openDBWith(t, filepath.Join(t.TempDir(), "tidings.db"), func(db *sqlite.DB) {
		db.CacheMiB = 16
		db.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		sqlite.SetOverloadHold(db, time.Minute)
	})
	cache := func(want int64) {
		t.Helper()
		if kib, err := sqlite.WriterCacheKiB(e.db); err != nil || kib != want {
			t.Fatalf("writer cache: %d KiB, %v; want %d", kib, err, want)
		}
	}
	if _, err := e.apps.CreateApp(t.Context(), "a", ""); err != nil {
		t.Fatal(err)
	}
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	cache(8 << 10)

	release := sqlite.HoldWriter(e.db)
	var wg sync.WaitGroup
	for range sqlite.OverloadBatch {
		wg.Go(func() { e.send(t, "alice", c.ID, "hi") })
	}
	for sqlite.QueuedJobs(e.db) < sqlite.OverloadBatch {
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	cache(16 << 10) // the batches after the large one
	cache(16 << 10)
	offset.Store(int64(time.Minute))
	cache(8 << 10)
}
