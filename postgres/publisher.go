package postgres

import (
	"context"
	"time"
)

// publishBatch is how many events the publisher reads at once.
const publishBatch = 1000

// publish hands the final events after `after` to db.Publisher, in
// position order, each once, until ctx ends. It looks every PollInterval,
// and at once when a write of this process commits (poke). This is what
// one node on PostgreSQL delivers from; in a cluster, the node holding the
// tailer's lease publishes ranges from LogTail.Final instead.
func (db *DB) publish(ctx context.Context, after int64) {
	defer close(db.done)
	tail := NewEventLog(db)
	timer := time.NewTimer(db.PollInterval)
	defer timer.Stop()
	failing := false
	for {
		wait := db.PollInterval
		r, err := tail.Final(ctx, after, publishBatch)
		switch {
		case ctx.Err() != nil || db.usable() != nil: // closing
			return
		case err != nil:
			if !failing {
				db.Logger.Error("publisher: cannot read the final events; retrying", "err", err)
			}
			failing, wait = true, time.Second
		default:
			if failing {
				db.Logger.Info("publisher: reading the final events again")
			}
			failing = false
			if len(r.Events) > 0 {
				db.Publisher.Publish(r.Events...)
			}
			after = r.To
			if len(r.Events) == publishBatch {
				continue // more are final already
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-db.wake:
		case <-timer.C:
		}
	}
}

// poke wakes the publisher after a commit.
func (db *DB) poke() {
	select {
	case db.wake <- struct{}{}:
	default:
	}
}
