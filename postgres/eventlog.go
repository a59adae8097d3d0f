package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/tidings/tidings"
)

// EventLog implements tidings.EventLog on the events table, and
// tidings.LogTail.
//
// Its readers see final positions only (see finality.advance): UserEvents
// returns no event above the final horizon, and LastEventSeq is that
// horizon, so that a replay never sends an event that one still being
// committed, below it, could then overtake. Both first wait until what was
// committed when they were called is final (usually at once; as long as
// the longest transaction then running otherwise), so that a caller reads
// its own writes. (So never call them inside a write transaction: it
// would wait for itself.)
type EventLog struct {
	db *DB
	// PruneChunk bounds the events one transaction of Prune removes
	// (default the constant PruneChunk).
	PruneChunk int
}

var (
	_ tidings.EventLog = (*EventLog)(nil)
	_ tidings.LogTail  = (*EventLog)(nil)
)

func NewEventLog(db *DB) *EventLog { return &EventLog{db: db} }

const eventColumns = `e.seq, e.id, e.app_id, e.name, e.time, e.actor, e.conversation_id, e.user_id, e.payload`

// userStream selects the events of a user's stream in (after, upto]: those
// of the conversations they took part in, within their memberships; those
// about them outside any conversation (their profile); and the profile
// changes of the others who took part in one of those conversations at
// the same time, found through profile_shares within the same memberships
// (once each however many conversations the two share). As SQLite's.
// Arguments: app, user, after, upto, limit.
const userStream = `SELECT ` + eventColumns + ` FROM memberships m
	JOIN events e ON e.app_id = m.app_id AND e.conversation_id = m.conversation_id
		AND e.seq >= m.from_seq AND (m.to_seq IS NULL OR e.seq <= m.to_seq)
	WHERE m.app_id = $1 AND m.user_id = $2 AND e.seq > $3 AND e.seq <= $4 AND (m.to_seq IS NULL OR m.to_seq > $3)
	UNION ALL
	SELECT ` + eventColumns + ` FROM events e
	WHERE e.app_id = $1 AND e.user_id = $2 AND e.conversation_id IS NULL AND e.seq > $3 AND e.seq <= $4
	UNION ALL
	SELECT ` + eventColumns + ` FROM events e
	WHERE e.seq IN (SELECT s.seq FROM memberships m
		JOIN profile_shares s ON s.app_id = m.app_id AND s.conversation_id = m.conversation_id
			AND s.seq >= m.from_seq AND (m.to_seq IS NULL OR s.seq <= m.to_seq)
		WHERE m.app_id = $1 AND m.user_id = $2 AND s.user_id <> $2 AND s.seq > $3 AND s.seq <= $4
			AND (m.to_seq IS NULL OR m.to_seq > $3))
	ORDER BY 1 LIMIT $5`

// scanEvent reads an event of eventColumns; the events of one read share
// actors (nil: none shared).
func scanEvent(row interface{ Scan(...any) error }, actors *tidings.Actors) (*tidings.Event, error) {
	var e tidings.Event
	var actor, payload []byte
	var conv, user *string
	if err := row.Scan(&e.Seq, &e.ID, &e.AppID, &e.Name, &e.Time, &actor, &conv, &user, &payload); err != nil {
		return nil, err
	}
	e.Time = e.Time.UTC()
	if actor != nil {
		var err error
		if e.Actor, err = actors.Decode(actor); err != nil {
			return nil, fmt.Errorf("event %d: bad actor: %w", e.Seq, err)
		}
	}
	if conv != nil {
		e.ConversationID = *conv
	}
	if user != nil {
		e.UserID = *user
	}
	e.Payload = json.RawMessage(payload)
	return &e, nil
}

func (l *EventLog) UserEvents(ctx context.Context, appID, userID string, after int64, limit int) ([]*tidings.Event, error) {
	if limit <= 0 {
		limit = 100
	}
	upto, err := l.db.settled(ctx)
	if err != nil {
		return nil, err
	}
	if upto <= after {
		return nil, l.Kept(ctx, after)
	}
	evs, err := l.readStream(ctx, appID, userID, after, upto, limit)
	if err != nil {
		return nil, err
	}
	// Retention is checked after the read: a prune removes events and
	// moves pruned_seq in one transaction, so one committed before the
	// read's snapshot (the events it removed missing from the read) shows
	// here. (One statement for both cost a reconnect storm more than the
	// second query: docs/benchmarks.md.)
	if err := l.Kept(ctx, after); err != nil {
		return nil, err
	}
	return evs, nil
}

// readStream reads the events of a user's stream in (after, upto].
func (l *EventLog) readStream(ctx context.Context, appID, userID string, after, upto int64, limit int) ([]*tidings.Event, error) {
	rows, err := l.db.query(ctx, userStream, appID, userID, after, upto, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var evs []*tidings.Event
	var actors tidings.Actors
	for rows.Next() {
		e, err := scanEvent(rows, &actors)
		if err != nil {
			return nil, l.db.mapError(err)
		}
		evs = append(evs, e)
	}
	return evs, l.db.mapError(rows.Err())
}

// Kept returns EResyncRequired, as UserEvents does, when the events after
// seq after are no longer all kept (retention removed some), and nil when
// they are (realtime.KeptChecker): the check of UserEvents without the
// read of the events, which a connect that only needs the check (the
// resume point) would read and throw away.
func (l *EventLog) Kept(ctx context.Context, after int64) error {
	pruned, err := l.prunedSeq(ctx)
	if err != nil {
		return err
	}
	return tidings.Pruned(after, pruned)
}

// prunedSeq is the newest seq removed by retention (0 when none).
func (l *EventLog) prunedSeq(ctx context.Context) (int64, error) {
	var seq int64
	err := l.db.queryRow(ctx, `SELECT value FROM meta WHERE key = 'pruned_seq'`).Scan(&seq)
	if isNoRows(err) {
		return 0, nil
	}
	return seq, err
}

// LastEventSeq returns the last final position: every event up to it is
// in the log for good, and none will appear below it. It is where a new
// device starts.
func (l *EventLog) LastEventSeq(ctx context.Context) (int64, error) {
	return l.db.settled(ctx)
}

func (l *EventLog) UserConversations(ctx context.Context, appID, userID string) ([]tidings.Membership, error) {
	rows, err := l.db.query(ctx, `SELECT conversation_id, from_seq FROM memberships
		WHERE app_id = $1 AND user_id = $2 AND to_seq IS NULL`, appID, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ms []tidings.Membership
	for rows.Next() {
		var m tidings.Membership
		if err := rows.Scan(&m.ConversationID, &m.FromSeq); err != nil {
			return nil, l.db.mapError(err)
		}
		ms = append(ms, m)
	}
	return ms, l.db.mapError(rows.Err())
}

func (l *EventLog) Cursor(ctx context.Context, appID, userID, device string) (int64, error) {
	var seq int64
	err := l.db.queryRow(ctx, `SELECT seq FROM cursors WHERE app_id = $1 AND user_id = $2 AND device = $3`,
		appID, userID, device).Scan(&seq)
	if isNoRows(err) {
		return 0, nil
	}
	return seq, err
}

// SaveCursors stores the cursors in one statement. A cursor never moves
// back, whatever the order in which nodes save them.
func (l *EventLog) SaveCursors(ctx context.Context, cursors []tidings.Cursor) error {
	if len(cursors) == 0 {
		return nil
	}
	// One row per device (an upsert may not touch a row twice), the
	// largest; in key order, so that concurrent saves lock rows in the
	// same order and never deadlock.
	cs := slices.Clone(cursors)
	slices.SortFunc(cs, func(a, b tidings.Cursor) int {
		return cmp.Or(tidings.CompareCursorKeys(a, b), cmp.Compare(b.Seq, a.Seq))
	})
	cs = slices.CompactFunc(cs, func(a, b tidings.Cursor) bool {
		return a.AppID == b.AppID && a.UserID == b.UserID && a.Device == b.Device
	})
	apps, users, devices := make([]string, len(cs)), make([]string, len(cs)), make([]string, len(cs))
	seqs := make([]int64, len(cs))
	for i, c := range cs {
		apps[i], users[i], devices[i], seqs[i] = c.AppID, c.UserID, c.Device, c.Seq
	}
	return l.db.update(ctx, func(tx *Tx) error {
		// Not for a user deleted meanwhile: no row may name them. The
		// user's row is locked (KEY SHARE) until the commit, so that a
		// deletion running at once comes wholly before or after.
		_, err := tx.exec(`INSERT INTO cursors (app_id, user_id, device, seq, updated_at)
			SELECT a, u, d, s, $5 FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS c (a, u, d, s)
			JOIN users ON users.app_id = c.a AND users.id = c.u
			FOR KEY SHARE OF users
			ON CONFLICT (app_id, user_id, device) DO UPDATE
			SET seq = greatest(cursors.seq, excluded.seq), updated_at = excluded.updated_at`,
			apps, users, devices, seqs, tx.now)
		return err
	})
}

// PruneChunk is how many events one transaction of Prune removes at
// most: a prune of a long log is many short transactions, which hold the
// horizon (docs/cluster.md) only briefly each.
const PruneChunk = 2000

// Prune removes the events older than before, never the newest, nor any
// above the final horizon (a reader resuming there is told to resync,
// which an event committed later below the cut would make wrong), nor
// those after the position of a webhook endpoint in good standing
// (enabled, not failing): the log is their outbox. Each transaction reads
// those positions anew under retentionLock, after every creation or
// replay of an endpoint that committed before it.
func (l *EventLog) Prune(ctx context.Context, before time.Time) (int64, error) {
	chunk := l.PruneChunk
	if chunk <= 0 {
		chunk = PruneChunk
	}
	final, err := l.db.settled(ctx)
	if err != nil {
		return 0, err
	}
	var cut *int64
	if err := l.db.queryRow(ctx, `SELECT max(seq) FROM events
		WHERE time < $1 AND seq <= $2 AND seq < (SELECT max(seq) FROM events)`, before, final).Scan(&cut); err != nil || cut == nil {
		return 0, err
	}
	var total int64
	for done := false; !done; {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		// Each chunk is a transaction of its own: the oldest events up to
		// the cut, the spans of membership that ended among them, the
		// profile shares of those events, and the pruned mark, so that a
		// reader never finds a hole it is not told of.
		var n int64 // set, not added to, in the transaction: it may run twice
		err := l.db.update(ctx, func(tx *Tx) error {
			n, done = 0, false
			if err := tx.lockRetention(false); err != nil {
				return err
			}
			limit := *cut
			var hooks *int64
			if err := tx.queryRow(`SELECT min(last_seq) FROM webhook_endpoints WHERE NOT disabled AND NOT failing`).Scan(&hooks); err != nil {
				return err
			}
			if hooks != nil && *hooks < limit {
				limit = *hooks
			}
			if limit <= 0 {
				done = true
				return nil
			}
			var upto *int64
			if err := tx.queryRow(`SELECT seq FROM events WHERE seq <= $1 ORDER BY seq OFFSET $2 LIMIT 1`,
				limit, chunk-1).Scan(&upto); err != nil && !isNoRows(err) {
				return err
			}
			if upto == nil || *upto >= limit {
				upto, done = &limit, true
			}
			tag, err := tx.exec(`DELETE FROM events WHERE seq <= $1`, *upto)
			if err != nil {
				return err
			}
			n = tag.RowsAffected()
			if _, err := tx.exec(`DELETE FROM memberships WHERE to_seq IS NOT NULL AND to_seq <= $1`, *upto); err != nil {
				return err
			}
			if _, err := tx.exec(`DELETE FROM profile_shares WHERE seq <= $1`, *upto); err != nil {
				return err
			}
			_, err = tx.exec(`INSERT INTO meta (key, value) VALUES ('pruned_seq', $1)
				ON CONFLICT (key) DO UPDATE SET value = greatest(meta.value, excluded.value)`, *upto)
			return err
		})
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Final implements tidings.LogTail: the events after `after` up to the
// final horizon (see finality.advance), at most limit of them (default
// 1000). It does not wait: what is not final yet comes in a later call.
// Profile events carry the conversations through which they reach others
// (Event.Conversations), as the events a store publishes do.
func (l *EventLog) Final(ctx context.Context, after int64, limit int) (tidings.EventRange, error) {
	if limit <= 0 {
		limit = 1000
	}
	final, err := l.db.horizon.advance(ctx, l.db)
	if err != nil {
		return tidings.EventRange{}, err
	}
	r := tidings.EventRange{From: after, To: after}
	if final <= after {
		return r, nil
	}
	// Read after the step that found final: every event up to it is
	// visible to this statement's snapshot.
	rows, err := l.db.query(ctx, `SELECT `+eventColumns+` FROM events e
		WHERE e.seq > $1 AND e.seq <= $2 ORDER BY e.seq LIMIT $3`, after, final, limit)
	if err != nil {
		return tidings.EventRange{}, err
	}
	defer rows.Close()
	var profiles []int64
	var actors tidings.Actors
	for rows.Next() {
		e, err := scanEvent(rows, &actors)
		if err != nil {
			return tidings.EventRange{}, l.db.mapError(err)
		}
		if e.Name == tidings.EventProfileUpdate {
			profiles = append(profiles, e.Seq)
		}
		r.Events = append(r.Events, e)
	}
	if err := rows.Err(); err != nil {
		return tidings.EventRange{}, l.db.mapError(err)
	}
	r.To = final
	if len(r.Events) == limit {
		r.To = r.Events[len(r.Events)-1].Seq
	}
	if len(profiles) > 0 {
		if err := l.shares(ctx, r.Events, profiles); err != nil {
			return tidings.EventRange{}, err
		}
	}
	return r, nil
}

// shares sets the Conversations of the profile events among evs (whose
// positions are seqs).
func (l *EventLog) shares(ctx context.Context, evs []*tidings.Event, seqs []int64) error {
	rows, err := l.db.query(ctx, `SELECT seq, conversation_id FROM profile_shares WHERE seq = ANY($1) ORDER BY seq, conversation_id`, seqs)
	if err != nil {
		return err
	}
	defer rows.Close()
	bySeq := make(map[int64]*tidings.Event, len(seqs))
	for _, e := range evs {
		bySeq[e.Seq] = e
	}
	for rows.Next() {
		var seq int64
		var conv string
		if err := rows.Scan(&seq, &conv); err != nil {
			return l.db.mapError(err)
		}
		if e := bySeq[seq]; e != nil {
			e.Conversations = append(e.Conversations, conv)
		}
	}
	return l.db.mapError(rows.Err())
}
