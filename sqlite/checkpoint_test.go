package sqlite_test

import (
	"bytes"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"runtime/trace"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// The write connection does not checkpoint: the checkpointer's goroutine
// copies what was committed into the database file, even when the WAL is
// far from SQLite's own threshold (1,000 pages), so that the WAL stays
// small without the writer waiting for it.
func TestCommitsReachTheDatabaseFile(t *testing.T) {
	e := openDBWith(t, filepath.Join(t.TempDir(), "tidings.db"), func(db *sqlite.DB) {
		db.CheckpointInterval = time.Millisecond
		sqlite.SetCheckpointJobs(db, 1)
	})
	if _, err := e.apps.CreateApp(t.Context(), "a", ""); err != nil {
		t.Fatal(err)
	}
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	m := e.send(t, "alice", c.ID, "to the file")

	// The database file alone, without its WAL, has the message once the
	// checkpointer has run.
	deadline := time.Now().Add(30 * time.Second)
	for !fileHasMessage(t, e.path, m.ID) {
		if time.Now().After(deadline) {
			t.Fatal("the message did not reach the database file")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fileHasMessage reports whether a copy of the database file at path,
// without the WAL, holds the message. A copy made while a checkpoint
// writes may be torn: it does not.
func fileHasMessage(t *testing.T, path, id string) bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(cp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+cp+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM messages WHERE id = ?`, id).Scan(&n); err != nil {
		return false
	}
	return n == 1
}

// Under a steady flow of sends the WAL still starts again from its
// beginning, once it holds the pages set (64 here): a checkpoint that
// runs beside the commits never catches up alone, and the WAL would grow
// with every message.
func TestWALStaysSmallUnderSteadySends(t *testing.T) { testWALStaysSmall(t, 0) }

// So it does while reads run one after the other without a pause (as the
// push dispatcher's do under load): the reads that began before a
// checkpoint ended use the WAL, which can start again only once they end.
func TestWALStaysSmallUnderSteadySendsAndReads(t *testing.T) { testWALStaysSmall(t, 2) }

func testWALStaysSmall(t *testing.T, readers int) {
	e := openDBWith(t, filepath.Join(t.TempDir(), "tidings.db"), func(db *sqlite.DB) {
		db.CheckpointInterval = time.Millisecond
		db.Synchronous = "NORMAL"
		sqlite.SetWALRestartPages(db, 64)
		sqlite.SetCheckpointJobs(db, 16)
	})
	if _, err := e.apps.CreateApp(t.Context(), "a", ""); err != nil {
		t.Fatal(err)
	}
	const senders, each = 8, 400
	var ids []string
	for i := range senders {
		ids = append(ids, fmt.Sprint("u", i))
	}
	e.mkUsers(t, "a", ids...)
	var convs []string
	for i := range senders {
		convs = append(convs, e.mkConv(t, "a", ids[i], tidings.NewConversation{}).ID)
	}
	// Each reader reads in transactions of about a millisecond, one
	// after the other, on a connection of its own.
	stop := make(chan struct{})
	var rg sync.WaitGroup
	for range readers {
		rdb, err := sql.Open("sqlite", "file:"+e.path+"?_pragma=query_only(1)&_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		rdb.SetMaxOpenConns(1)
		defer rdb.Close()
		rg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				tx, err := rdb.Begin()
				if err != nil {
					t.Error(err)
					return
				}
				var n int
				err = tx.QueryRow(`SELECT COUNT(*) FROM conversations`).Scan(&n)
				time.Sleep(time.Millisecond)
				tx.Rollback()
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			for range each {
				if _, _, err := e.messages.SendMessage(user("a", ids[i]), convs[i],
					tidings.NewMessage{Parts: text("64 bytes of message text, which is about one line of a chat.....")}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	rg.Wait()
	// 3,200 messages wrote about 4 pages each, more than 50 MiB of WAL
	// had it not started again.
	st, err := os.Stat(e.path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 16<<20 {
		t.Fatalf("the WAL grew to %d MiB", st.Size()>>20)
	}
	// An operator sees what the writer waited for: each send's time in
	// the store, each commit's, and each hold of the checkpointer's.
	if n := histogramCount(t, e.db, "tidings_store_write_seconds", "job", "send"); n != senders*each {
		t.Errorf("%d sends timed, want the %d sent", n, senders*each)
	}
	if n := histogramCount(t, e.db, "tidings_store_write_seconds", "job", "other"); n < senders {
		t.Errorf("%d other writes timed, want at least the %d conversations created", n, senders)
	}
	if n := histogramCount(t, e.db, "tidings_store_commit_seconds"); n == 0 {
		t.Error("no commit timed")
	}
	if n := histogramCount(t, e.db, "tidings_store_checkpoint_hold_seconds"); n == 0 {
		t.Error("the WAL started again with no hold of the writer timed")
	}
}

// histogramCount is the number of observations of the store's histogram,
// or of its series with the label given (name, value).
func histogramCount(t *testing.T, db *sqlite.DB, name string, label ...string) uint64 {
	t.Helper()
	return storeMetric(t, db, name, label...).GetHistogram().GetSampleCount()
}

// counter is the value of the store's counter.
func counter(t *testing.T, db *sqlite.DB, name string) float64 {
	t.Helper()
	return storeMetric(t, db, name).GetCounter().GetValue()
}

// storeMetric gathers the store's metric called name: its only series,
// or the one with the label given (name, value).
func storeMetric(t *testing.T, db *sqlite.DB, name string, label ...string) *dto.Metric {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(db.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(label) == 0 {
				return m
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == label[0] && l.GetValue() == label[1] {
					return m
				}
			}
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

// The start's warm-up reads the pages of the conversations active in
// the last day, and of no other.
func TestWarmUpReadsTheRecentConversations(t *testing.T) {
	var clock atomic.Int64
	e := newEnvWith(t, func(db *sqlite.DB) { db.Now = func() time.Time { return time.UnixMicro(clock.Load()) } })
	now := time.Now()
	clock.Store(now.Add(-48 * time.Hour).UnixMicro())
	e.mkUsers(t, "a", "alice", "bob")
	e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	clock.Store(now.UnixMicro())
	for range 2 {
		e.mkConv(t, "a", "bob", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "alice"}}})
	}
	n, err := sqlite.Warm(e.db)
	if err != nil || n != 2 {
		t.Fatalf("the warm-up read %d conversations (%v), want the 2 created now", n, err)
	}
}

// The parts of a writer batch are regions of the execution trace, under
// the names docs/bench/tracewriter and docs/architecture.md give them.
func TestBatchPartsAreTraceRegions(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob", "carol")
	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Skipf("an execution trace runs already: %v", err)
	}
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.sendEach(t, "a", c.ID, "alice")
	if err := e.users.DeleteUser(server("a"), "carol", tidings.EraseMessages); err != nil {
		t.Fatal(err)
	}
	if err := sqlite.WriteUnscoped(e.db); err != nil {
		t.Fatal(err)
	}
	trace.Stop()
	for _, name := range []string{"sqlite.job.send", "sqlite.job.other", "sqlite.flush", "sqlite.move", "sqlite.moveAll",
		"sqlite.flushDue", "sqlite.moveDue", "sqlite.dropMoved", "sqlite.commit"} {
		// In the trace's string table, each string follows its length
		// (one byte below 128): sqlite.move is not found in sqlite.moveAll.
		if !bytes.Contains(buf.Bytes(), append([]byte{byte(len(name))}, name...)) {
			t.Errorf("no region %s in the trace of a conversation's creation, a send, a user's deletion and a write without a scope", name)
		}
	}
}
