package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tidings/tidings"
)

// EventLog implements tidings.EventLog on the events table.
type EventLog struct {
	db *DB
	// PruneChunk bounds the events one write of Prune removes (default
	// the constant PruneChunk).
	PruneChunk int

	beforeChunk func() // for tests: runs before each write of Prune
}

var _ tidings.EventLog = (*EventLog)(nil)

func NewEventLog(db *DB) *EventLog { return &EventLog{db: db} }

const eventColumns = `e.seq, e.id, e.app_id, e.name, e.time, e.actor, e.conversation_id, e.user_id, e.payload`

// userStreamQuery returns the query of a user's stream after a seq: the
// events of the conversations they took part in, within their
// memberships; those about them outside any conversation (their
// profile); and the profile changes of the others who took part in one of
// those conversations at the same time, found through profile_shares
// within the same memberships (a range seek per membership, as for the
// conversations' events, and once each however many conversations the
// two share). Arguments: after; app, user, after, after; after, app,
// user, after, after; app, user, after; app, user, user, after, after;
// user, the journal's bound, app; user, the journal's rows, app; limit.
//
// A conversation's events come in two parts. Those in
// events_by_conversation (all but the sent events after k, the
// sendsIndexedThrough of the database) by a range seek of the index per
// membership. The sends after k through messages, each naming its event
// (event_seq): within a conversation message seqs and the seqs of their
// events grow together, so the sends after an event seq L are the
// messages after the newest one whose event is at or before L (or that
// names none: stored before migration 0011, or before L). That one is
// found by walking the conversation's messages back from the newest, as
// many as the replay returns plus one; the events themselves by rowid,
// as stored.
//
// The sends whose messages are still in the message journal (the newest
// of their conversations, see journal.go) come through it, each within a
// membership of the user and past its conversation's newest message in
// messages (the rows of moved messages stay a while). The journal holds
// the last seconds of every conversation's sends: a replay from a resume
// point that many sends back reads only its user's rows there, by their
// key, which the writer's journal lists (journal.replayRows), and scans
// the rows after the newest it knew of; a replay from a recent one scans
// the rows after it (UserEvents).
//
// The query is led, when retention removed events after the resume point,
// by a row that says so: its seq is the newest seq removed, negated
// (events have positive seqs, so it comes first). Read in the same
// statement as the events, the check cannot miss a prune committed
// between the two, which removes events and moves pruned_seq at once.
// Its argument comes first: after.
func userStreamQuery(k int64) string {
	return `SELECT -value, '', '', '', 0, NULL, NULL, NULL, 'null' FROM meta WHERE key = 'pruned_seq' AND value > ?
	UNION ALL
	SELECT ` + eventColumns + ` FROM memberships m
	JOIN events e ON e.app_id = m.app_id AND e.conversation_id = m.conversation_id
		AND e.seq >= m.from_seq AND (m.to_seq IS NULL OR e.seq <= m.to_seq)
	WHERE m.app_id = ? AND m.user_id = ? AND e.seq > ? AND (m.to_seq IS NULL OR m.to_seq > ?) AND ` + eventIndexed(k, "e") + `
	UNION ALL
	SELECT ` + eventColumns + ` FROM memberships m
	JOIN messages s ON s.app_id = m.app_id AND s.conversation_id = m.conversation_id
		AND s.seq > COALESCE((SELECT x.seq FROM messages x
			WHERE x.app_id = m.app_id AND x.conversation_id = m.conversation_id
				AND (x.event_seq IS NULL OR x.event_seq <= max(?, m.from_seq - 1))
			ORDER BY x.seq DESC LIMIT 1), 0)
	JOIN events e ON e.seq = s.event_seq
	WHERE m.app_id = ? AND m.user_id = ? AND (m.to_seq IS NULL OR m.to_seq > ?)
		AND (m.to_seq IS NULL OR s.event_seq <= m.to_seq) AND s.event_seq > max(?, m.from_seq - 1) AND s.event_seq > ` + fmt.Sprint(k) + `
	UNION ALL
	SELECT ` + eventColumns + ` FROM events e
	WHERE e.app_id = ? AND e.user_id = ? AND e.conversation_id IS NULL AND e.seq > ?
	UNION ALL
	SELECT ` + eventColumns + ` FROM events e
	WHERE e.seq IN (SELECT s.seq FROM memberships m
		JOIN profile_shares s ON s.app_id = m.app_id AND s.conversation_id = m.conversation_id
			AND s.seq >= m.from_seq AND (m.to_seq IS NULL OR s.seq <= m.to_seq)
		WHERE m.app_id = ? AND m.user_id = ? AND s.user_id <> ? AND s.seq > ? AND (m.to_seq IS NULL OR m.to_seq > ?))
	UNION ALL
	` + journalStream("j.event_seq > ?") + `
	UNION ALL
	` + journalStream("j.event_seq IN (SELECT value FROM json_each(?))") + `
	ORDER BY 1 LIMIT ?`
}

// journalStream is a branch of userStreamQuery: the sends in the journal
// that rows selects (its argument comes second: user, rows', app), each
// within a membership of the user and past its conversation's newest
// message in messages.
func journalStream(rows string) string {
	return `SELECT ` + eventColumns + ` FROM message_journal j
	CROSS JOIN memberships m ON m.app_id = j.app_id AND m.user_id = ? AND m.conversation_id = j.conversation_id
		AND j.event_seq >= m.from_seq AND (m.to_seq IS NULL OR j.event_seq <= m.to_seq)
	JOIN events e ON e.seq = j.event_seq
	WHERE ` + rows + ` AND j.app_id = ?
		AND j.seq > COALESCE((SELECT x.seq FROM messages x WHERE x.app_id = j.app_id AND x.conversation_id = j.conversation_id
			ORDER BY x.seq DESC LIMIT 1), 0)`
}

// scanEvent reads an event of eventColumns; the events of one read share
// actors (nil: none shared).
func scanEvent(row interface{ Scan(...any) error }, actors *tidings.Actors) (*tidings.Event, error) {
	var e tidings.Event
	var at int64
	var conv, user sql.NullString
	var actor []byte
	var payload string
	if err := row.Scan(&e.Seq, &e.ID, &e.AppID, &e.Name, &at, &actor, &conv, &user, &payload); err != nil {
		return nil, err
	}
	e.Time = fromMicros(at)
	if actor != nil {
		var err error
		if e.Actor, err = actors.Decode(actor); err != nil {
			return nil, fmt.Errorf("event %d: bad actor: %w", e.Seq, err)
		}
	}
	e.ConversationID, e.UserID = conv.String, user.String
	e.Payload = json.RawMessage(payload)
	return &e, nil
}

func (l *EventLog) UserEvents(ctx context.Context, appID, userID string, after int64, limit int) ([]*tidings.Event, error) {
	if limit <= 0 {
		limit = 100
	}
	// The journal's part: the rows after after, scanned, when they are
	// few; else the first limit of the user's rows up to the newest the
	// journal knows of, by their key, and the rows after it, scanned
	// (journal.replayRows). A scan of the whole journal was 23 ms of CPU
	// with 20,000 messages in it (BenchmarkReplayBesideTheJournal).
	bound, listed := after, "[]"
	if b := l.db.journal.replayBound(); b-after > journalScan {
		spans, err := l.replaySpans(ctx, appID, userID, after)
		if err != nil {
			return nil, err
		}
		bound = b
		listed = seqList(l.db.journal.replayRows(appID, spans, after, b, limit))
	}
	// Prepared once (as every read): parsing this query again for every
	// read was a third of the CPU of a reconnect storm, which reads each
	// client's stream two or three times. It checks retention too.
	rows, err := l.db.query(ctx, l.db.userStream, after, appID, userID, after, after, after, appID, userID, after, after,
		appID, userID, after, appID, userID, userID, after, after, userID, bound, appID, userID, listed, appID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var evs []*tidings.Event
	var actors tidings.Actors
	for rows.Next() {
		e, err := scanEvent(rows, &actors)
		if err != nil {
			return nil, err
		}
		if e.Seq < 0 {
			return nil, tidings.Pruned(after, -e.Seq)
		}
		evs = append(evs, e)
	}
	return evs, rows.Err()
}

// journalScan is how many event seqs after a replay's resume point the
// journal's rows are scanned rather than found by the user's
// conversations (UserEvents). A row scanned costs about 0.8 µs: with
// 100 rows after the resume point, the scan made the replay 120 µs, the
// user's conversations 37 to 52 (BenchmarkReplayBesideTheJournal).
const journalScan = 64

// replaySpans returns the memberships of user of app that end after seq
// after (or have not ended).
func (l *EventLog) replaySpans(ctx context.Context, appID, userID string, after int64) ([]span, error) {
	rows, err := l.db.query(ctx, `SELECT conversation_id, from_seq, COALESCE(to_seq, 0) FROM memberships
		WHERE app_id = ? AND user_id = ? AND (to_seq IS NULL OR to_seq > ?)`, appID, userID, after)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var spans []span
	for rows.Next() {
		var sp span
		if err := rows.Scan(&sp.conv, &sp.from, &sp.to); err != nil {
			return nil, err
		}
		spans = append(spans, sp)
	}
	return spans, rows.Err()
}

// Kept returns EResyncRequired, as UserEvents does, when the events after
// seq after are no longer all kept (retention removed some), and nil
// when they are: the check of UserEvents without the read of the events,
// which a connect that only needs the check (realtime's resume point)
// would read and throw away.
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

func (l *EventLog) LastEventSeq(ctx context.Context) (int64, error) {
	var seq sql.NullInt64
	err := l.db.queryRow(ctx, `SELECT MAX(seq) FROM events`).Scan(&seq)
	return seq.Int64, err
}

func (l *EventLog) UserConversations(ctx context.Context, appID, userID string) ([]tidings.Membership, error) {
	rows, err := l.db.query(ctx, `SELECT conversation_id, from_seq FROM memberships
		WHERE app_id = ? AND user_id = ? AND to_seq IS NULL`, appID, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ms []tidings.Membership
	for rows.Next() {
		var m tidings.Membership
		if err := rows.Scan(&m.ConversationID, &m.FromSeq); err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, rows.Err()
}

// UserConversationsAndPresence returns UserConversations and the user's
// row of UsersPresence (nil when there is no such user), read in one
// query (one read where registering a session made two).
func (l *EventLog) UserConversationsAndPresence(ctx context.Context, appID, userID string) ([]tidings.Membership, *tidings.UserPresence, error) {
	rows, err := l.db.query(ctx, `SELECT 0, conversation_id, from_seq, 0, NULL FROM memberships
		WHERE app_id = ? AND user_id = ? AND to_seq IS NULL
		UNION ALL
		SELECT 1, id, 0, presence_hidden, last_seen_at FROM users WHERE app_id = ? AND id = ?`, appID, userID, appID, userID)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var ms []tidings.Membership
	var p *tidings.UserPresence
	for rows.Next() {
		var user bool
		var id string
		var from int64
		var hidden bool
		var seen sql.NullInt64
		if err := rows.Scan(&user, &id, &from, &hidden, &seen); err != nil {
			return nil, nil, err
		}
		if !user {
			ms = append(ms, tidings.Membership{ConversationID: id, FromSeq: from})
			continue
		}
		p = &tidings.UserPresence{UserID: id, Hidden: hidden}
		if seen.Valid {
			p.LastSeenAt = fromMicros(seen.Int64)
		}
	}
	return ms, p, rows.Err()
}

func (l *EventLog) Cursor(ctx context.Context, appID, userID, device string) (int64, error) {
	var seq int64
	err := l.db.queryRow(ctx, `SELECT seq FROM cursors WHERE app_id = ? AND user_id = ? AND device = ?`,
		appID, userID, device).Scan(&seq)
	if isNoRows(err) {
		return 0, nil
	}
	return seq, err
}

func (l *EventLog) SaveCursors(ctx context.Context, cursors []tidings.Cursor) error {
	if len(cursors) == 0 {
		return nil
	}
	return l.db.updateAside(ctx, func(tx *Tx) error {
		// Most devices have a row already (the first is written when the
		// device connects): each is one update by its key, which costs
		// about 40 % less CPU than going through the upsert below
		// (BenchmarkSaveCursors). The upsert is left for the others.
		missing := cursors[:0:0]
		now := micros(tx.now)
		for _, c := range cursors {
			res, err := tx.exec(`UPDATE cursors SET seq = max(seq, ?), updated_at = ? WHERE app_id = ? AND user_id = ? AND device = ?`,
				c.Seq, now, c.AppID, c.UserID, c.Device)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				missing = append(missing, c)
			}
		}
		cursors = missing
		for len(cursors) > 0 {
			chunk := cursors[:min(len(cursors), cursorChunk)]
			cursors = cursors[len(chunk):]
			// One statement for the chunk: [[app, user, device, seq], …].
			rows := make([][4]any, len(chunk))
			for i, c := range chunk {
				rows[i] = [4]any{c.AppID, c.UserID, c.Device, c.Seq}
			}
			list, err := json.Marshal(rows)
			if err != nil {
				return err
			}
			// The join leaves out the users deleted meanwhile: no row may
			// name them. (WHERE true: the ON of an upsert would else be
			// read as the join's.) A cursor twice in the chunk is one row
			// updated by the second.
			if _, err := tx.exec(`INSERT INTO cursors (app_id, user_id, device, seq, updated_at)
				SELECT s.app, s.usr, s.device, s.seq, ? FROM
					(SELECT value ->> 0 AS app, value ->> 1 AS usr, value ->> 2 AS device, value ->> 3 AS seq FROM json_each(?)) AS s
					JOIN users AS u ON u.app_id = s.app AND u.id = s.usr
				WHERE true
				ON CONFLICT (app_id, user_id, device) DO UPDATE SET seq = max(seq, excluded.seq), updated_at = excluded.updated_at`,
				now, string(list)); err != nil {
				return err
			}
		}
		return nil
	})
}

// cursorChunk is how many cursors one statement of SaveCursors stores.
const cursorChunk = 1000

// PruneChunk is how many events one write of Prune removes at most: a
// prune of a long log is many short writes, between which sends go
// through, rather than one that holds the writer for seconds.
const PruneChunk = 2000

// Prune removes the oldest events, from the start of the log up to the
// first one not older than before (events are in seq order, and their
// times grow with it), and never the newest event, whose seq
// LastEventSeq gives. It reads only the events it removes, a chunk per
// write, plus one: a query for the newest event older than before read
// the whole table, a read of 27 s holding one snapshot with 10 million
// events, during which no checkpoint could copy the WAL past it
// (docs/benchmarks.md, "Ten million messages again").
func (l *EventLog) Prune(ctx context.Context, before time.Time) (int64, error) {
	chunk := l.PruneChunk
	if chunk <= 0 {
		chunk = PruneChunk
	}
	var cut sql.NullInt64
	if err := l.db.queryRow(ctx, `SELECT MAX(seq) - 1 FROM events`).Scan(&cut); err != nil || !cut.Valid {
		return 0, err
	}
	// Nor the events a webhook endpoint in good standing (enabled, not
	// failing) has not received: the log is their outbox.
	var hooks sql.NullInt64
	if err := l.db.queryRow(ctx, `SELECT MIN(last_seq) FROM webhook_endpoints WHERE NOT disabled AND NOT failing`).Scan(&hooks); err != nil {
		return 0, err
	}
	if hooks.Valid && hooks.Int64 < cut.Int64 {
		if hooks.Int64 <= 0 {
			return 0, nil
		}
		cut.Int64 = hooks.Int64
	}
	var total int64
	for done := false; !done; {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		// Each chunk is a write job of its own: the oldest events up to the
		// cut, the spans of membership that ended among them, the profile
		// shares of those events, and the pruned mark, so that a reader
		// never finds a hole it is not told of.
		var n int64 // set, not added to, in the job: a job may run twice (see writer.go)
		if l.beforeChunk != nil {
			l.beforeChunk()
		}
		// Set aside (job.aside): events, ended spans of membership and
		// profile shares are none of what the send cache holds or the
		// journal keeps (the journal's messages name their events, but
		// neither a move nor a read of history needs them), so a chunk
		// does not write every mark, empty the cache and move the whole
		// journal, which stalled the sends once a chunk.
		err := l.db.updateAside(ctx, func(tx *Tx) error {
			n, done = 0, false
			// The oldest chunk events up to the cut, up to the first one
			// not older than before.
			rows, err := tx.query(`SELECT seq, time FROM events WHERE seq <= ? ORDER BY seq LIMIT ?`, cut.Int64, chunk)
			if err != nil {
				return err
			}
			var upto sql.NullInt64
			read := 0
			for rows.Next() {
				var seq, at int64
				if err := rows.Scan(&seq, &at); err != nil {
					rows.Close()
					return err
				}
				read++
				if at >= micros(before) {
					done = true
					break
				}
				upto = sql.NullInt64{Int64: seq, Valid: true}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if read < chunk {
				done = true
			}
			if !upto.Valid {
				done = true
				return nil
			}
			// Read the webhooks' bound again in the job: a replay or an
			// endpoint enabled since the bound above was read committed
			// before this job, and the events it now needs must stay.
			var hooks sql.NullInt64
			if err := tx.queryRow(`SELECT MIN(last_seq) FROM webhook_endpoints WHERE NOT disabled AND NOT failing`, nil, &hooks); err != nil {
				return err
			}
			if hooks.Valid && hooks.Int64 < upto.Int64 {
				upto.Int64, done = hooks.Int64, true
			}
			if upto.Int64 <= 0 {
				n = 0
				return nil
			}
			res, err := tx.exec(`DELETE FROM events WHERE seq <= ?`, upto.Int64)
			if err != nil {
				return err
			}
			n, _ = res.RowsAffected()
			if _, err := tx.exec(`DELETE FROM memberships WHERE to_seq IS NOT NULL AND to_seq <= ?`, upto.Int64); err != nil {
				return err
			}
			if _, err := tx.exec(`DELETE FROM profile_shares WHERE seq <= ?`, upto.Int64); err != nil {
				return err
			}
			_, err = tx.exec(`INSERT INTO meta (key, value) VALUES ('pruned_seq', ?)
				ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)`, upto.Int64)
			return err
		})
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
