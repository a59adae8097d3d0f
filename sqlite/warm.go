package sqlite

import (
	"context"
	"sync"
	"time"
)

// The start's warm-up. A send's message is moved from the journal into
// messages (journal.go) by the writer, which then reads the last pages of
// its conversation in messages and messages_by_id. After a start with a
// cold cache (a reboot, or a system that dropped its page cache), the
// first move of each conversation read them from the disk, one read at
// a time, the sends waiting: with 10 million messages, the first 25 s
// run after such a start read 151 MiB from the disk against 17 MiB in
// the next, and its p99 was 447 against 48 ms (docs/benchmarks.md, "Ten
// million messages again"). So at start a goroutine reads those pages
// for the recently active conversations, off the writer, several at a
// time, through the read connections: they are then in the system's page
// cache when the writer asks. (The client-id filter's start-up read
// reads the whole of messages_by_client_id meanwhile.)

// warmWindow is how recent a conversation's last activity must be for
// the warm-up to read its pages; warmConversations bounds how many it
// reads, the most recent first; warmReaders is how many reads it has in
// flight.
const (
	warmWindow        = 24 * time.Hour
	warmConversations = 20000
	warmReaders       = 4
)

// warmLast reads the last entry of a conversation in messages and in
// messages_by_id, and with them the pages a move into them writes.
const warmLast = `SELECT (SELECT seq FROM messages WHERE app_id = ?1 AND conversation_id = ?2 ORDER BY seq DESC LIMIT 1),
	(SELECT id FROM messages INDEXED BY messages_by_id WHERE app_id = ?1 AND conversation_id = ?2 ORDER BY id DESC LIMIT 1)`

// startWarm starts the warm-up's goroutine; stopWarm ends it and waits.
// An operator's command (Beside) reads what it reads, and no more.
func (db *DB) startWarm() {
	if db.Beside {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	db.warmStop = cancel
	db.warmDone = make(chan struct{})
	go func() {
		defer close(db.warmDone)
		start := time.Now()
		n, err := db.warm(ctx)
		if err != nil && ctx.Err() == nil {
			db.Logger.Warn("could not read the recent conversations' pages at start", "err", err)
			return
		}
		db.Logger.Debug("read the recent conversations' pages", "conversations", n, "took", time.Since(start))
	}()
}

func (db *DB) stopWarm() {
	if db.warmStop != nil {
		db.warmStop()
		<-db.warmDone
	}
}

// warm reads the last pages of the conversations active within
// warmWindow (warmConversations at most, the most recent first), and
// says how many conversations it read. Finding them reads the whole
// conversations table (no index on the last activity), once, a small
// table next to messages.
func (db *DB) warm(ctx context.Context) (int, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT app_id, id FROM conversations
		WHERE last_activity_at >= ? ORDER BY last_activity_at DESC LIMIT ?`,
		micros(db.Now().Add(-warmWindow)), warmConversations)
	if err != nil {
		return 0, err
	}
	var convs []convKey
	for rows.Next() {
		var k convKey
		if err := rows.Scan(&k.app, &k.conv); err != nil {
			rows.Close()
			return 0, err
		}
		convs = append(convs, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	// The first failed read ends the warm-up: the others would fail too.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan convKey)
	var wg sync.WaitGroup
	for range warmReaders {
		wg.Go(func() {
			for k := range next {
				var seq, id any
				if err := db.read.QueryRowContext(ctx, warmLast, k.app, k.conv).Scan(&seq, &id); err != nil {
					cancel(err) // the first cause stays
				}
			}
		})
	}
	n := 0
	for _, k := range convs {
		if ctx.Err() != nil {
			break
		}
		next <- k
		n++
	}
	close(next)
	wg.Wait()
	return n, context.Cause(ctx)
}
