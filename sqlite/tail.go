package sqlite

import (
	"context"

	"github.com/tidings/tidings"
)

// Tail implements tidings.LogTail on the events table, so that several
// realtime nodes can share one SQLite database (tests of cluster
// delivery; a real cluster runs on PostgreSQL). SQLite has one writer, so
// every committed event is final at once: Final returns the committed
// events after a position.
type Tail struct {
	db *DB
}

var _ tidings.LogTail = (*Tail)(nil)

// NewTail returns the tail of db's event log.
func NewTail(db *DB) *Tail { return &Tail{db: db} }

// Final returns the committed events after `after`, at most limit of
// them, with the conversations a profile event goes through (as the
// writer names them on the events it publishes).
func (t *Tail) Final(ctx context.Context, after int64, limit int) (tidings.EventRange, error) {
	if limit <= 0 {
		limit = 1000
	}
	r := tidings.EventRange{From: after, To: after}
	rows, err := t.db.query(ctx, `SELECT `+eventColumns+` FROM events e WHERE e.seq > ? ORDER BY e.seq LIMIT ?`, after, limit)
	if err != nil {
		return r, err
	}
	defer rows.Close()
	profiles := make(map[int64]*tidings.Event)
	var actors tidings.Actors
	for rows.Next() {
		e, err := scanEvent(rows, &actors)
		if err != nil {
			return r, err
		}
		r.Events = append(r.Events, e)
		if e.Name == tidings.EventProfileUpdate && e.ConversationID == "" {
			profiles[e.Seq] = e
		}
	}
	if err := rows.Err(); err != nil {
		return r, err
	}
	if len(r.Events) == 0 {
		return r, nil
	}
	r.To = r.Events[len(r.Events)-1].Seq
	if len(profiles) == 0 {
		return r, nil
	}
	// Stored in the profile event's own transaction: visible with it.
	shares, err := t.db.query(ctx, `SELECT seq, conversation_id FROM profile_shares WHERE seq > ? AND seq <= ? ORDER BY seq, conversation_id`, after, r.To)
	if err != nil {
		return r, err
	}
	defer shares.Close()
	for shares.Next() {
		var seq int64
		var conv string
		if err := shares.Scan(&seq, &conv); err != nil {
			return r, err
		}
		if e := profiles[seq]; e != nil {
			e.Conversations = append(e.Conversations, conv)
		}
	}
	return r, shares.Err()
}
