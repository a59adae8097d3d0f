package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Checkpoints. In WAL mode a commit appends the pages it changed to the
// WAL; a checkpoint copies them back into the database file, after which
// the WAL is written again from its start. SQLite's default runs it
// inside the commit that takes the WAL past 1,000 pages: the writer, and
// every send waiting on it, then waited for the copy and its fsync. Here
// the write connection does not checkpoint (wal_autocheckpoint=0), and a
// goroutine of its own does it from a connection of its own: PASSIVE
// checkpoints, which never wait for the writer nor make it wait, once
// checkpointJobs jobs have committed since the last one, and at most
// every CheckpointInterval. Durability does not depend on checkpoints:
// each commit is in the WAL, synced, before it is answered.
//
// The WAL is written again from its start only by a transaction that
// begins when every frame in it has been checkpointed. Under a steady
// flow of commits a checkpoint that runs beside them never catches up:
// the frames committed while it copied are left, and the WAL would grow
// without end. So when the WAL holds restartFrames pages or more, the
// checkpointer, once its checkpoint is done, holds the writer between two
// transactions (walMu) and checkpoints again: only the frames committed
// meanwhile are left to copy, and that checkpoint starts the WAL again
// itself once the reads that use it have ended (RESTART, see restart).
//
// A PASSIVE checkpoint cannot copy the frames that a reader's snapshot
// still needs, nor can the WAL start again from its beginning while one
// reads it. If readers kept that up long enough for the WAL to pass
// maxWALFrames, the checkpointer runs a TRUNCATE checkpoint, which waits
// for them (up to the busy timeout, holding the writer meanwhile) and
// empties the WAL.

// defaultCheckpointInterval is the default of DB.CheckpointInterval.
const defaultCheckpointInterval = 200 * time.Millisecond

// checkpointJobs is how many jobs commit between two checkpoints.
const checkpointJobs = 200

// restartFrames is the size of the WAL, in pages, from which the
// checkpointer has it start again (128 MiB). Each start holds the writer
// for two fsyncs (10 to 25 ms on a loaded disk, 70 to 150 ms on a slow
// one): at 16 MiB, sends at 1,000 a second met one every 0.85 s, and
// they were the largest part of the sends' p99; at 64 MiB, every 8 s,
// and still the p99 on a slow disk (docs/benchmarks.md, "Where a small
// room's p99 goes" and "Ten million messages again"). Reads look up
// only the frames not yet checkpointed: the size costs disk, not time.
const restartFrames = 32768

// maxWALFrames is the size of the WAL, in pages, past which the
// checkpointer makes sure it empties (about 256 MiB).
const maxWALFrames = 1 << 16

// openCheckpointer opens the checkpointer's connection and starts it.
func (db *DB) openCheckpointer(pragmas string) error {
	if db.CheckpointInterval <= 0 {
		db.CheckpointInterval = defaultCheckpointInterval
	}
	if db.restartFrames <= 0 {
		db.restartFrames = restartFrames
	}
	if db.checkpointJobs <= 0 {
		db.checkpointJobs = checkpointJobs
	}
	ck, err := sql.Open("sqlite", "file:"+db.path+"?"+pragmas+"&_pragma=synchronous("+db.Synchronous+")")
	if err != nil {
		return fmt.Errorf("sqlite: open the checkpointer's connection: %w", err)
	}
	ck.SetMaxOpenConns(1)
	ck.SetMaxIdleConns(1)
	ck.SetConnMaxIdleTime(0)
	ck.SetConnMaxLifetime(0)
	db.ckpt = ck
	db.ckptWake = make(chan struct{}, 1)
	db.ckptStop = make(chan struct{})
	db.ckptDone = make(chan struct{})
	go db.checkpointer()
	return nil
}

// checkpointer checkpoints after commits, at most every
// CheckpointInterval, until ckptStop is closed.
func (db *DB) checkpointer() {
	defer close(db.ckptDone)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-db.ckptStop:
			return
		case <-db.ckptWake:
		}
		db.ckptJobs.Store(0)
		db.checkpoint()
		t.Reset(db.CheckpointInterval)
		select {
		case <-db.ckptStop:
			return
		case <-t.C:
		}
	}
}

// checkpoint runs one PASSIVE checkpoint, and a TRUNCATE one if the WAL
// has grown past maxWALFrames.
func (db *DB) checkpoint() {
	ctx := context.Background()
	var busy, frames, copied int
	passive := func() bool {
		if err := db.ckpt.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
			db.Logger.Warn("checkpoint failed", "err", err)
			return false
		}
		db.metrics.checkpoints.Inc()
		return true
	}
	if !passive() {
		return
	}
	db.checkSize(ctx)
	if frames >= db.restartFrames {
		// What was committed while the first one copied, with no commit
		// meanwhile; then the WAL starts again, once the reads that began
		// before the copy ended have ended (restartWait at most).
		db.walMu.Lock()
		start := time.Now()
		ok := db.restart(ctx)
		db.walMu.Unlock()
		db.metrics.holdTime.Observe(time.Since(start).Seconds())
		if !ok {
			return
		}
	}
	if frames <= maxWALFrames {
		return
	}
	db.Logger.Warn("the WAL is large: emptying it, waiting for its readers", "pages", frames, "checkpointed", copied)
	// The writer waits here rather than in SQLite: its BEGIN would fail
	// once its busy timeout passed.
	db.walMu.Lock()
	err := db.ckpt.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &copied)
	db.walMu.Unlock()
	if err != nil {
		db.Logger.Warn("checkpoint failed", "err", err)
	} else if busy != 0 {
		db.Logger.Warn("the WAL could not be emptied: its readers did not finish in time", "pages", frames, "checkpointed", copied)
	}
}

// restartWait bounds how long the checkpoint that starts the WAL again
// waits for the reads that use its frames, holding the writer: reads are
// short, and the reads that begin meanwhile read the database file only.
const restartWait = 20 * time.Millisecond

// restart checkpoints what is left in the WAL and has it start again from
// its beginning, waiting up to restartWait for the reads that use it (a
// RESTART checkpoint). The writer must be held (walMu). It reports whether
// the checkpoint ran; if reads held on past restartWait, the WAL is
// checkpointed but not started again, and the writer's next transaction
// starts it if those reads have ended by then, as after a PASSIVE one.
//
// Left to the writer alone, the WAL never started again under a steady
// flow of short reads (1,000 a second in BenchmarkSendRooms with pushes):
// the writer tries once, at its next transaction, without waiting, and
// one read that began before the copy ended was enough to fail it.
func (db *DB) restart(ctx context.Context) bool {
	conn, err := db.ckpt.Conn(ctx)
	if err != nil {
		db.Logger.Warn("checkpoint failed", "err", err)
		return false
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", restartWait.Milliseconds())); err != nil {
		db.Logger.Warn("checkpoint failed", "err", err)
		return false
	}
	defer conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", busyTimeout.Milliseconds()))
	var busy, frames, copied int
	if err := conn.QueryRowContext(ctx, `PRAGMA wal_checkpoint(RESTART)`).Scan(&busy, &frames, &copied); err != nil {
		db.Logger.Warn("checkpoint failed", "err", err)
		return false
	}
	db.metrics.checkpoints.Inc()
	if busy != 0 {
		db.metrics.restartsMissed.Inc()
	}
	return true
}

// committed tells the checkpointer that the WAL grew by a transaction of
// jobs jobs: it is woken once checkpointJobs jobs have committed since
// its last checkpoint, about as many pages as SQLite's own threshold
// (1,000) for sends, so that a trickle of writes is not checkpointed,
// with its two fsyncs, commit by commit.
func (db *DB) committed(jobs int) {
	if db.ckptJobs.Add(int64(jobs)) < int64(db.checkpointJobs) {
		return
	}
	select {
	case db.ckptWake <- struct{}{}:
	default:
	}
}

// closeCheckpointer stops the checkpointer and closes its connection. The
// writer has stopped: the close of the last connection checkpoints what
// is left.
func (db *DB) closeCheckpointer() error {
	close(db.ckptStop)
	<-db.ckptDone
	return db.ckpt.Close()
}
