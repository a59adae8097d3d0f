package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tidings/tidings"
)

// FillHistory adds perConv messages to each conversation of app whose id
// starts with prefix, in the database file at path, for benchmarks: they
// measure a server whose database holds millions of messages without
// sending them one by one. The database must exist (opened once, so that
// it has its schema) and no server may use it meanwhile.
//
// The messages are stored as sends store them (a message row and its
// conversationMessage.sent event, the conversation's last seq moved), sent
// by the conversation's creator, in rounds of one message to each
// conversation, so that the tables and indexes grow as they do under a
// real load spread over the conversations. A round is one statement per
// table, run by SQLite itself, without a journal; progress, if not nil, is called after each
// commit with the number of messages added so far. The writes are not
// synced (synchronous=OFF): a crash during the fill may corrupt the
// database, which is a benchmark's.
func FillHistory(ctx context.Context, path, app, prefix string, perConv int, progress func(added int64)) (int64, error) {
	if perConv <= 0 {
		return 0, errors.New("sqlite: fill: perConv must be positive")
	}
	// The server's lock: filling without a journal beside a server would
	// corrupt the file.
	lf, err := lockServer(path)
	if err != nil && !errors.Is(err, errNoLocks) {
		return 0, err
	}
	defer lf.Close()
	// No journal while filling: pages are written once, straight to the
	// database file. The database goes back to WAL at the end.
	h, err := sql.Open("sqlite", "file:"+path+"?mode=rw&_pragma=journal_mode(OFF)&_pragma=synchronous(OFF)&_pragma=cache_size(-262144)&_pragma=temp_store(MEMORY)")
	if err != nil {
		return 0, fmt.Errorf("sqlite: fill: %w", err)
	}
	defer h.Close()
	h.SetMaxOpenConns(1)
	conn, err := h.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("sqlite: fill: %w", err)
	}
	defer conn.Close()
	// The messages a server left in the message journal come before those
	// added here.
	if _, err := moveJournal(ctx, conn); err != nil {
		return 0, err
	}
	// Without a journal, a transaction cut short cannot be rolled back:
	// ctx is checked between transactions only, never interrupts one.
	txCtx := context.WithoutCancel(ctx)
	exec := func(q string, args ...any) error {
		_, err := conn.ExecContext(txCtx, q, args...)
		return err
	}
	if err := exec(`CREATE TEMP TABLE fill_convs AS
		SELECT c.id AS id, c.last_seq AS last_seq, c.created_by AS sender, u.display_name AS name
		FROM conversations c JOIN users u ON u.app_id = c.app_id AND u.id = c.created_by
		WHERE c.app_id = ? AND c.id >= ? AND c.id < ? AND c.deleted_at IS NULL`, app, prefix, prefix+"\U0010FFFF"); err != nil {
		return 0, fmt.Errorf("sqlite: fill: list the conversations: %w", err)
	}
	defer exec(`DROP TABLE temp.fill_convs`)
	var convs int64
	if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM temp.fill_convs`).Scan(&convs); err != nil {
		return 0, err
	}
	if convs == 0 {
		return 0, fmt.Errorf("sqlite: fill: app %q has no conversation whose id starts with %q", app, prefix)
	}
	// Each round: one message per conversation, at seq last_seq + round,
	// with an id that sorts by time as the real ones do (NewID), and a
	// client id, as the SDKs give every send (the server's client-id
	// filter reads them all at start-up).
	const text = `64 bytes of message text, which is about one line of a chat.....`
	// Each message names its event (event_seq, see userStreamQuery): the
	// events are inserted next, in the same order, each at the newest seq
	// plus one, and fill_convs's rowids run from 1.
	insMessages := `INSERT INTO messages (app_id, conversation_id, seq, id, sender_id, client_id, parts, sent_at, event_seq)
		SELECT ?1, id, last_seq + ?2, printf('%013x%013x', ?3, rowid), sender, printf('fill-%013x%013x', ?3, rowid),
			'[{"type":"text/plain","data":"` + text + `"}]', ?3,
			(SELECT COALESCE(MAX(seq), 0) FROM events) + rowid
		FROM temp.fill_convs ORDER BY rowid`
	insEvents := `INSERT INTO events (id, app_id, name, time, actor, conversation_id, user_id, payload)
		SELECT printf('%013x%013x', ?3, rowid + 1000000000), ?1, 'conversationMessage.sent', ?3,
			json_object('id', sender, 'displayName', name), id, NULL,
			json_object('id', printf('%013x%013x', ?3, rowid), 'conversationId', id, 'seq', last_seq + ?2,
				'sender', json_object('id', sender, 'displayName', name),
				'clientId', printf('fill-%013x%013x', ?3, rowid),
				'parts', json('[{"type":"text/plain","data":"` + text + `"}]'),
				'sentAt', strftime('%Y-%m-%dT%H:%M:%fZ', ?3 / 1e6, 'unixepoch'),
				'messageId', printf('%013x%013x', ?3, rowid), 'profileId', sender,
				'timestamp', strftime('%Y-%m-%dT%H:%M:%fZ', ?3 / 1e6, 'unixepoch'))
		FROM temp.fill_convs ORDER BY rowid`
	// The marks a send moves after its commit (its conversation's last
	// seq, its sender's read mark, see sendCache) are written here in the
	// same commit: meta's marks_seq moves with them, unless a crash left
	// marks unwritten before the fill (the next start repairs those, and
	// then these too). Left behind, the next start would read every
	// filled event to repair them.
	var marksWritten bool
	if err := conn.QueryRowContext(ctx, `SELECT NOT EXISTS (SELECT 1 FROM events WHERE name = ?
		AND seq > COALESCE((SELECT value FROM meta WHERE key = 'marks_seq'), (SELECT MAX(seq) FROM events)))`,
		tidings.EventMessageSent).Scan(&marksWritten); err != nil {
		return 0, fmt.Errorf("sqlite: fill: %w", err)
	}
	start := time.Now().UnixMicro() - int64(perConv)*1000 // 1 ms per round, ending now
	var added int64
	const roundsPerTx = 500
	for r := 1; r <= perConv; {
		if err := ctx.Err(); err != nil {
			return added, err
		}
		if err := exec(`BEGIN IMMEDIATE`); err != nil {
			return added, fmt.Errorf("sqlite: fill: %w", err)
		}
		end := min(r+roundsPerTx, perConv+1)
		for ; r < end; r++ {
			at := start + int64(r)*1000
			if err := exec(insMessages, app, r, at); err != nil {
				exec(`ROLLBACK`)
				return added, fmt.Errorf("sqlite: fill: messages: %w", err)
			}
			if err := exec(insEvents, app, r, at); err != nil {
				exec(`ROLLBACK`)
				return added, fmt.Errorf("sqlite: fill: events: %w", err)
			}
			added += convs
		}
		if err := exec(`UPDATE conversations SET last_seq = f.last_seq + ?1, last_activity_at = ?2
			FROM temp.fill_convs f WHERE conversations.app_id = ?3 AND conversations.id = f.id`, end-1, start+int64(end-1)*1000, app); err != nil {
			exec(`ROLLBACK`)
			return added, fmt.Errorf("sqlite: fill: conversations: %w", err)
		}
		if err := exec(`UPDATE participants SET delivered_seq = max(delivered_seq, f.last_seq + ?1), read_seq = max(read_seq, f.last_seq + ?1)
			FROM temp.fill_convs f WHERE participants.app_id = ?2 AND participants.conversation_id = f.id AND participants.user_id = f.sender`, end-1, app); err != nil {
			exec(`ROLLBACK`)
			return added, fmt.Errorf("sqlite: fill: senders' marks: %w", err)
		}
		if marksWritten {
			if err := exec(`INSERT INTO meta (key, value) SELECT 'marks_seq', MAX(seq) FROM events WHERE true
				ON CONFLICT (key) DO UPDATE SET value = excluded.value`); err != nil {
				exec(`ROLLBACK`)
				return added, fmt.Errorf("sqlite: fill: %w", err)
			}
		}
		if err := exec(`COMMIT`); err != nil {
			exec(`ROLLBACK`)
			return added, fmt.Errorf("sqlite: fill: %w", err)
		}
		if progress != nil {
			progress(added)
		}
	}
	if err := exec(`PRAGMA journal_mode = WAL`); err != nil {
		return added, fmt.Errorf("sqlite: fill: back to WAL: %w", err)
	}
	return added, nil
}
