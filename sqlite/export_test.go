package sqlite

import (
	"context"
	"errors"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// SetBeforePruneChunk has Prune call f before each of its writes.
func SetBeforePruneChunk(l *EventLog, f func()) { l.beforeChunk = f }

// InsertPushTargetThenFail runs a write that adds a push target for the
// user and then fails: it must leave no trace.
func InsertPushTargetThenFail(db *DB, app, user string) error {
	return db.update(context.Background(), func(tx *Tx) error {
		tx.pushTargetsChanged(app)
		if _, err := tx.exec(`INSERT INTO push_targets (`+pushTargetColumns+`) VALUES ('failed', ?, ?, '', 'fcm', 'failed-token', '', '', 0)`,
			app, user); err != nil {
			return err
		}
		return errors.New("failing on purpose")
	})
}

// SetUnwrittenTries sets how many times a read that adds the marks not
// written yet reads before it gives up and has them written (see
// unwritten.read).
func SetUnwrittenTries(db *DB, n int) { db.unwritten.tries = n }

// WriteUnscoped runs a write without a scope (see scope) that changes
// nothing.
func WriteUnscoped(db *DB) error {
	return db.update(context.Background(), func(tx *Tx) error {
		_, err := tx.exec(`UPDATE meta SET value = value WHERE key = 'marks_seq'`)
		return err
	})
}

// SetWALRestartPages sets the size of the WAL, in pages, from which the
// checkpointer has it start again. Set it before Open.
func SetWALRestartPages(db *DB, n int) { db.restartFrames = n }

// SetCheckpointJobs sets how many jobs commit between two checkpoints.
// Set it before Open.
func SetCheckpointJobs(db *DB, n int) { db.checkpointJobs = n }

// CachedSenders says how many senders the send cache holds, read on the
// writer between two transactions' jobs without flushing or emptying it.
func CachedSenders(db *DB) (int, error) {
	var n int
	err := db.updateAside(context.Background(), func(tx *Tx) error {
		n = len(tx.db.cache.senders)
		return nil
	})
	return n, err
}

// ListedSenders says how many senders the send cache lists for
// conversation conv of app (-1: the conversation is not cached), read on
// the writer like CachedSenders.
func ListedSenders(db *DB, app, conv string) (int, error) {
	n := -1
	err := db.updateAside(context.Background(), func(tx *Tx) error {
		if cs := tx.db.cache.convs[convKey{app, conv}]; cs != nil {
			n = len(cs.senders)
		}
		return nil
	})
	return n, err
}

// MarksPending says whether committed sends have marks not written yet.
func MarksPending(db *DB) bool { return db.marksPending.Load() }

// Commits says how many write transactions committed.
func Commits(db *DB) int64 {
	var m dto.Metric
	if err := db.metrics.commits.Write(&m); err != nil {
		panic(err)
	}
	return int64(m.GetCounter().GetValue())
}

// SetMarkFlush sets how long the marks of committed sends wait before a
// plan writes them (due), how long the writer waits idle before it
// writes them all (idle), and how many conversations' marks a plan
// writes per commit (chunk). Set it before Open.
func SetMarkFlush(db *DB, due, idle time.Duration, chunk int) {
	db.marksDue, db.marksIdle, db.marksChunk = due, idle, chunk
}

// QueuedJobs says how many jobs wait for the writer.
func QueuedJobs(db *DB) int { return len(db.jobs) }

// HoldWriter has the writer run a job that waits until release is
// called; the jobs queued meanwhile commit together after it.
func HoldWriter(db *DB) (release func()) {
	started, hold, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- db.updateAside(context.Background(), func(*Tx) error {
			close(started)
			<-hold
			return nil
		})
	}()
	<-started
	return func() {
		close(hold)
		if err := <-done; err != nil {
			panic(err)
		}
	}
}

// SetLargePages sets the size, in pages, from which the writer's page
// cache is CacheMiB. Set it before Open.
func SetLargePages(db *DB, n int64) { db.largePages = n }

// SetOverloadHold sets how long the writer's cache stays large after its
// last batch of overloadBatch jobs or more. Set it before Open.
func SetOverloadHold(db *DB, d time.Duration) { db.overloadHold = d }

// OverloadBatch is the batch, in jobs, from which the writer is behind.
const OverloadBatch = overloadBatch

// WriterCacheKiB reads the writer's page cache size, in KiB, on the writer
// between two transactions' jobs.
func WriterCacheKiB(db *DB) (int64, error) {
	var n int64
	err := db.updateAside(context.Background(), func(tx *Tx) error {
		return tx.queryRow(`PRAGMA cache_size`, nil, &n)
	})
	return -n, err
}

// DatabasePages reads the database's size, in pages, on the writer.
func DatabasePages(db *DB) (int64, error) {
	var n int64
	err := db.updateAside(context.Background(), func(tx *Tx) error {
		return tx.queryRow(`PRAGMA page_count`, nil, &n)
	})
	return n, err
}

// SetMoveDelay sets how long the messages of a conversation wait in the
// message journal before they are due to move. Set it before Open.
func SetMoveDelay(db *DB, d time.Duration) { db.moveDelay = d }

// JournalWaiting says how many committed messages wait in the message
// journal.
func JournalWaiting(db *DB) int {
	db.journal.mu.RLock()
	defer db.journal.mu.RUnlock()
	return db.journal.count
}

// HoldClientFilter has the client-id filter's reads of the client ids of
// messages wait, from now on, until release is called. Call it before
// Open to hold the first, or before the writes that start a read again.
func HoldClientFilter(db *DB) (release func()) {
	db.clientIDsHold = make(chan struct{})
	return func() { close(db.clientIDsHold) }
}

// SetClientFilterRebuild sets from how many client ids sent since its
// last read the filter reads messages again. Set it before Open.
func SetClientFilterRebuild(db *DB, n int) { db.clientIDsRebuildFrom = n }

// WaitClientFilter waits until the client-id filter's reads under way
// are done, and says whether it can be used (false: the database closed
// before its first read was).
func WaitClientFilter(db *DB) bool {
	db.clientIDs.reading.Wait()
	return db.clientIDs.base.Load() != nil
}

// ClientFilterState says how many reads again of messages the client-id
// filter started, and how many client ids its recent part holds, as the
// writer sees them.
func ClientFilterState(db *DB) (reads, recent int, err error) {
	err = db.updateAside(context.Background(), func(tx *Tx) error {
		f := tx.db.clientIDs
		f.switchToNext()
		reads = f.reads
		for _, b := range f.recent {
			recent += b.n
		}
		return nil
	})
	return reads, recent, err
}

// ClientIDChecks says how many sends' client ids the filter found new
// without a read (filtered) and how many were looked for in messages.
func ClientIDChecks(db *DB) (filtered, looked int64) {
	var f, l dto.Metric
	if err := db.metrics.clientIDFiltered.Write(&f); err != nil {
		panic(err)
	}
	if err := db.metrics.clientIDLooked.Write(&l); err != nil {
		panic(err)
	}
	return int64(f.GetCounter().GetValue()), int64(l.GetCounter().GetValue())
}

// OperatorWaitsOut says how many times the writer stopped waiting for an
// operator command's lock (lock.go).
func OperatorWaitsOut(db *DB) int64 { return db.turnWaitsOut.Load() }

// Warm runs the start's warm-up again and says how many conversations it
// read.
func Warm(db *DB) (int, error) { return db.warm(context.Background()) }

// JournalCount says how many committed messages the journal holds, not
// moved yet, read on the writer like CachedSenders.
func JournalCount(db *DB) (int, error) {
	var n int
	err := db.updateAside(context.Background(), func(tx *Tx) error {
		n = tx.db.journal.count
		return nil
	})
	return n, err
}
