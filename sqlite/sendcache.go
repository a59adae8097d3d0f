package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/tidings/tidings"
)

// sendCache lets a run of send jobs skip most of their statements.
// Sending a message needs to read the conversation, the sender's role and
// profile, and to write the conversation's last seq and activity time and
// the sender's read mark. The cache keeps what was read, and the writes
// (the marks) are made later, once per conversation and sender, so that a
// send job costs two inserts (message and event).
//
// What it read stays true across transactions as long as only send jobs
// commit, since every other write goes through the writer too, as a job
// that is not a send: the cache is kept from one transaction to the next,
// and emptied before any other job runs (unless that job is set aside
// from it, see job.aside, or has a scope, see scope: then only what it
// read of the scope's conversations and users is forgotten), when a
// transaction is rolled back, and when it holds more than
// maxCachedSenders senders.
//
// The marks of committed sends are written (flushed) in a later
// transaction: before any job that is not a send or set aside (which may
// read them; only those of its conversations before a job with a scope,
// flushConvs), when a reader of conversations or participants asks for
// them (DB.syncMarks: what anyone was told has committed is read back),
// when the writer has had nothing to do for markDelay, and when the
// database closes; those flushes write them all at once. Under load, the
// marks waiting for markDelay (or more than maxPendingMarks) are written
// by a plan instead: its conversations in key order, markChunk of them
// (with their senders' marks; as many as the commit has jobs if that is
// more) in each of the following commits, so that
// no commit holds the sends behind it for the whole flush (2,000
// conversations took 30 to 55 ms, the sends' p99). Under a steady load, a
// conversation's row and its senders' rows are then written once per
// markDelay instead of once per commit: most of the pages a send
// dirtied, beyond its message and event, were these rows. The messages
// themselves are durable at their commit, as before. A crash before the
// marks are flushed leaves them behind the messages; Open puts them right
// again from the messages stored after meta's marks_seq, the newest event
// whose marks were flushed (see repairMarks).
//
// The writer goroutine alone uses it. A send job changes it only once all
// its statements succeeded (see sendCache.sent), so a job rolled back to
// its savepoint leaves no trace; a rolled back transaction discards what
// it read and the marks of its own sends, but not the marks of sends
// committed before, which a conversation read again is brought up to.
type sendCache struct {
	db      *DB
	senders map[senderKey]*senderState
	convs   map[convKey]*convState
	// txn holds the marks of the open transaction's sends not flushed
	// yet; pending those of committed sends not flushed yet.
	txn, pending marks
	// txnThrough and pendingThrough: the newest event of the sends whose
	// marks txn and pending hold; txnSenders and pendingSenders, how
	// many senders' marks they hold.
	txnThrough, pendingThrough int64
	txnSenders, pendingSenders int
	// flushed: pending was written in the open transaction; written,
	// the conversations whose marks it wrote (those pending, if any)
	// before a job with a scope (flushConvs).
	flushed bool
	written map[convKey]bool
	// since is when the marks that are waiting longest began to wait
	// (when pending became non-empty, or the last plan started).
	since time.Time
	// plan lists the conversations of pending, in key order, that a
	// flush spread over commits writes (nil: none under way); the first
	// planDone were written in committed transactions, those up to
	// planNext in the open one. planThrough is pendingThrough when the
	// plan started: meta's marks_seq once it is done.
	plan               []convKey
	planDone, planNext int
	planThrough        int64
}

// marks are the writes sends leave to the cache's flush, by conversation.
type marks map[convKey]*convMarks

// convMarks are a conversation's last seq and last activity time, and the
// read and delivered marks of its senders (each has seen their own
// message and what came before it).
type convMarks struct {
	seq, activity int64
	senders       map[string]int64
}

func newMarks() marks { return marks{} }

func (m marks) empty() bool { return len(m) == 0 }

func (m marks) clear() { clear(m) }

// absorb moves o's marks into m, keeping the newer of two, and says how
// many senders' marks m did not have. A conversation m lacks is taken
// as it is, not copied: o must be cleared after.
func (m marks) absorb(o marks) (added int) {
	for k, v := range o {
		cm := m[k]
		if cm == nil {
			m[k] = v
			added += len(v.senders)
			continue
		}
		cm.seq, cm.activity = max(cm.seq, v.seq), max(cm.activity, v.activity)
		for u, seq := range v.senders {
			old, ok := cm.senders[u]
			if !ok {
				added++
			}
			cm.senders[u] = max(old, seq)
		}
	}
	return added
}

type convKey struct{ app, conv string }

type senderKey struct {
	convKey
	user string
}

// convState is a conversation as sending needs it.
type convState struct {
	isPublic  bool
	deletedAt *time.Time
	roles     tidings.Roles
	lastSeq   int64
	// senders: those read in it, for forgetting them with it.
	senders []senderKey
}

// senderState is a sender as sending needs it.
type senderState struct {
	key     senderKey
	conv    *convState
	role    tidings.Role     // "" when not a participant
	muted   bool             // muted in the conversation
	profile *tidings.Profile // nil when the user does not exist
}

func newSendCache(db *DB) *sendCache {
	return &sendCache{db: db, senders: map[senderKey]*senderState{}, convs: map[convKey]*convState{},
		txn: newMarks(), pending: newMarks(), written: map[convKey]bool{}}
}

// sender returns what sending in conversation conv as user needs, reading
// it from the database if it is not cached. ENotFound if conv does not
// exist.
func (sc *sendCache) sender(tx *Tx, app, conv, user string) (*senderState, error) {
	k := senderKey{convKey{app, conv}, user}
	if s, ok := sc.senders[k]; ok {
		return s, nil
	}
	if cs, ok := sc.convs[k.convKey]; ok {
		return sc.newSender(tx, k, cs)
	}
	var isPublic bool
	var deleted sql.NullInt64
	var rolesJSON string
	var lastSeq int64
	var role, name, avatar, idValue, idKind sql.NullString
	var muted sql.NullBool
	err := tx.queryRow(`SELECT c.is_public, c.deleted_at, c.roles, c.last_seq, p.role, p.muted,
		u.display_name, u.avatar_url, u.identifier_value, u.identifier_kind
		FROM conversations c
		LEFT JOIN participants p ON p.app_id = c.app_id AND p.conversation_id = c.id AND p.user_id = ?
		LEFT JOIN users u ON u.app_id = c.app_id AND u.id = ?
		WHERE c.app_id = ? AND c.id = ?`, []any{user, user, app, conv},
		&isPublic, &deleted, &rolesJSON, &lastSeq, &role, &muted, &name, &avatar, &idValue, &idKind)
	if isNoRows(err) {
		return nil, tidings.ErrConversationNotFound(conv)
	}
	if err != nil {
		return nil, err
	}
	cs, ok := sc.convs[k.convKey]
	if !ok {
		roles, err := sc.db.parseRoles(rolesJSON)
		if err != nil {
			return nil, err
		}
		// Committed sends whose marks are not flushed yet are past the
		// stored last seq.
		if m, ok := sc.pending[k.convKey]; ok {
			lastSeq = max(lastSeq, m.seq)
		}
		cs = &convState{isPublic: isPublic, deletedAt: fromNullMicros(deleted), roles: roles, lastSeq: lastSeq}
		sc.convs[k.convKey] = cs
	}
	s := &senderState{key: k, conv: cs, role: tidings.Role(role.String), muted: muted.Bool}
	if name.Valid {
		s.profile = &tidings.Profile{ID: user, DisplayName: name.String, AvatarURL: avatar.String}
		if idValue.Valid {
			s.profile.Identifier = &tidings.Identifier{Value: idValue.String, Kind: idKind.String}
		}
	}
	sc.senders[k] = s
	cs.senders = append(cs.senders, k)
	return s, nil
}

// newSender reads the sender's role and profile in conversation cs, which
// is cached.
func (sc *sendCache) newSender(tx *Tx, k senderKey, cs *convState) (*senderState, error) {
	var role, name, avatar, idValue, idKind sql.NullString
	var muted sql.NullBool
	err := tx.queryRow(`SELECT p.role, p.muted, u.display_name, u.avatar_url, u.identifier_value, u.identifier_kind
		FROM (SELECT 1) LEFT JOIN participants p ON p.app_id = ? AND p.conversation_id = ? AND p.user_id = ?
		LEFT JOIN users u ON u.app_id = ? AND u.id = ?`, []any{k.app, k.conv, k.user, k.app, k.user},
		&role, &muted, &name, &avatar, &idValue, &idKind)
	if err != nil {
		return nil, err
	}
	s := &senderState{key: k, conv: cs, role: tidings.Role(role.String), muted: muted.Bool}
	if name.Valid {
		s.profile = &tidings.Profile{ID: k.user, DisplayName: name.String, AvatarURL: avatar.String}
		if idValue.Valid {
			s.profile.Identifier = &tidings.Identifier{Value: idValue.String, Kind: idKind.String}
		}
	}
	sc.senders[k] = s
	cs.senders = append(cs.senders, k)
	return s, nil
}

// sent records that s sent message seq, in event eventSeq, at time now
// (in microseconds).
func (sc *sendCache) sent(s *senderState, seq, eventSeq, now int64) {
	s.conv.lastSeq = seq
	cm := sc.txn[s.key.convKey]
	if cm == nil {
		cm = &convMarks{senders: map[string]int64{}}
		sc.txn[s.key.convKey] = cm
	}
	cm.seq, cm.activity = max(cm.seq, seq), max(cm.activity, now)
	old, ok := cm.senders[s.key.user]
	if !ok {
		sc.txnSenders++
	}
	cm.senders[s.key.user] = max(old, seq)
	sc.txnThrough = max(sc.txnThrough, eventSeq)
}

// maxCachedSenders bounds the senders the cache keeps from one
// transaction to the next (about 200 bytes each).
const maxCachedSenders = 1 << 14

// markDelay is how long the marks of committed sends may wait before a
// plan writes them, and how long the writer waits idle before it writes
// them all; maxPendingMarks how many senders' marks may wait; markChunk
// how many conversations' marks a plan writes per commit at least: as
// many as the commit has jobs if that is more. A chunk costs about 20 µs
// a conversation of 1:1 rooms, more in larger rooms (a statement per
// sender): 128 a commit, as before, made about one commit in twelve of
// 1:1 rooms at 2,000 msgs/s last 2 to 3 ms more, and the sends behind it
// waited (docs/benchmarks.md, "The marks' chunks and the 1:1 p90").
// Under load commits hold more jobs, and the chunk grows with them, so
// that a plan still ends within about a second.
const (
	markDelay       = time.Second
	maxPendingMarks = 1 << 14
	markChunk       = 32
)

// flush writes the marks of the committed sends and of the open
// transaction's sends. What was read stays cached.
func (sc *sendCache) flush() error {
	if sc.txn.empty() && (sc.flushed || sc.pending.empty()) {
		return nil
	}
	// pending (unless written already in this transaction), then txn: a
	// conversation in both is written twice, and keeps the newer marks.
	write := func(m marks) error {
		for k, cm := range m {
			if err := sc.write(k, cm); err != nil {
				return err
			}
		}
		return nil
	}
	if !sc.flushed {
		if err := write(sc.pending); err != nil {
			return err
		}
	}
	if err := write(sc.txn); err != nil {
		return err
	}
	// Every event stored so far has its marks written.
	if _, err := sc.db.control(`INSERT INTO meta (key, value) SELECT 'marks_seq', COALESCE(MAX(seq), 0) FROM events WHERE true
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`); err != nil {
		return err
	}
	sc.txn.clear()
	sc.txnThrough, sc.txnSenders = 0, 0
	sc.flushed = true
	return nil
}

// flushConvs writes the marks of conversations keys, of committed sends
// and of the open transaction's: what a job with these conversations in
// its scope needs before it runs (see scope). Those of committed sends
// leave pending once the transaction commits (committed); a conversation
// whose marks were written is in no plan's way: a plan skips it.
func (sc *sendCache) flushConvs(keys []convKey) error {
	for _, k := range keys {
		if cm := sc.pending[k]; cm != nil && !sc.flushed && !sc.written[k] {
			if err := sc.write(k, cm); err != nil {
				return err
			}
		}
		// With no marks pending, k may still have some kept for readers
		// (a plan wrote them, with marks newer than it, and ends later):
		// they are forgotten too (committed).
		sc.written[k] = true
		if cm := sc.txn[k]; cm != nil {
			if err := sc.write(k, cm); err != nil {
				return err
			}
			sc.txnSenders -= len(cm.senders)
			delete(sc.txn, k)
		}
	}
	return nil
}

// write writes the marks of conversation k.
func (sc *sendCache) write(k convKey, cm *convMarks) error {
	if _, err := sc.db.control(`UPDATE conversations SET last_seq = max(last_seq, ?), last_activity_at = max(last_activity_at, ?) WHERE app_id = ? AND id = ?`,
		cm.seq, cm.activity, k.app, k.conv); err != nil {
		return err
	}
	for u, seq := range cm.senders {
		// The sender has seen their own message, and what came before it.
		if _, err := sc.db.control(`UPDATE participants SET delivered_seq = max(delivered_seq, ?), read_seq = max(read_seq, ?)
			WHERE app_id = ? AND conversation_id = ? AND user_id = ?`, seq, seq, k.app, k.conv, u); err != nil {
			return err
		}
	}
	return nil
}

// flushDue writes, before the open transaction commits, the next chunk of
// the plan under way, or of a new one when the marks waiting are due; the
// transaction has jobs jobs.
// A conversation's marks are written with its senders', so that the
// repair after a crash (from the conversation's last seq on) finds every
// sender's mark that is missing.
func (sc *sendCache) flushDue(now time.Time, jobs int) error {
	if sc.flushed {
		return nil
	}
	if sc.plan == nil {
		if sc.pending.empty() || now.Sub(sc.since) < sc.db.marksDue && sc.pendingSenders+sc.txnSenders <= maxPendingMarks {
			return nil
		}
		sc.plan = make([]convKey, 0, len(sc.pending))
		for k := range sc.pending {
			sc.plan = append(sc.plan, k)
		}
		slices.SortFunc(sc.plan, func(a, b convKey) int { return cmp.Or(cmp.Compare(a.app, b.app), cmp.Compare(a.conv, b.conv)) })
		sc.planDone, sc.planNext, sc.planThrough = 0, 0, sc.pendingThrough
		sc.since = now // what comes to wait from now on waits for the next plan
	}
	end := min(len(sc.plan), sc.planNext+max(sc.db.marksChunk, jobs))
	for _, k := range sc.plan[sc.planNext:end] {
		cm := sc.pending[k]
		if cm == nil || sc.written[k] {
			continue // written before a job with a scope
		}
		if err := sc.write(k, cm); err != nil {
			return err
		}
	}
	sc.planNext = end
	if end == len(sc.plan) {
		// Every send of the plan, and so every send committed before it
		// started, has its marks written.
		if _, err := sc.db.control(`INSERT INTO meta (key, value) VALUES ('marks_seq', ?)
			ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)`, sc.planThrough); err != nil {
			return err
		}
	}
	return nil
}

// committed moves the marks of the transaction that has just committed to
// pending, less those it wrote. It reports whether marks are left
// pending.
//
// It keeps sc.db.unwritten, which readers add to what they read, up to
// date: the marks written by a flush or by a plan now done leave it, the
// transaction's own marks come into it.
func (sc *sendCache) committed(now time.Time) bool {
	if sc.flushed {
		sc.pending.clear()
		sc.pendingThrough, sc.pendingSenders = 0, 0
		sc.plan = nil
		sc.flushed = false
		sc.db.unwritten.written(math.MaxInt64) // all it held was pending
	} else {
		for k := range sc.written {
			sc.drop(k)
		}
		if len(sc.written) > 0 {
			// Not kept for readers either: they would add a removed
			// participant's marks to those of one added again.
			sc.db.unwritten.forget(sc.written)
		}
	}
	clear(sc.written)
	if sc.plan != nil {
		for _, k := range sc.plan[sc.planDone:sc.planNext] {
			sc.drop(k)
		}
		sc.planDone = sc.planNext
		if sc.planDone == len(sc.plan) {
			sc.plan = nil
			sc.db.unwritten.written(sc.planThrough)
		}
	}
	if !sc.txn.empty() {
		sc.db.unwritten.add(sc.txn, sc.txnThrough)
		if sc.pending.empty() && sc.plan == nil {
			sc.since = now
		}
		sc.pendingSenders += sc.pending.absorb(sc.txn)
		sc.pendingThrough = max(sc.pendingThrough, sc.txnThrough)
		sc.txn.clear()
		sc.txnThrough, sc.txnSenders = 0, 0
	}
	return !sc.pending.empty()
}

// drop removes conversation k's marks from pending, written.
func (sc *sendCache) drop(k convKey) {
	if cm := sc.pending[k]; cm != nil {
		sc.pendingSenders -= len(cm.senders)
		delete(sc.pending, k)
	}
}

// rolledBack forgets the marks of the transaction rolled back, and what
// was read.
func (sc *sendCache) rolledBack() {
	sc.txn.clear()
	sc.txnThrough, sc.txnSenders = 0, 0
	sc.flushed = false
	clear(sc.written)
	sc.planNext = sc.planDone
	sc.discard()
}

// bound empties the cache if it holds too many senders.
func (sc *sendCache) bound() {
	if len(sc.senders) > maxCachedSenders {
		sc.discard()
	}
}

// forget forgets what the cache read of the conversations and users of
// scope s. Marks are kept.
func (sc *sendCache) forget(s *scope) {
	for _, k := range s.convs {
		if cs := sc.convs[k]; cs != nil {
			for _, sk := range cs.senders {
				delete(sc.senders, sk)
			}
			delete(sc.convs, k)
		}
	}
	if len(s.users) == 0 {
		return
	}
	for k, st := range sc.senders {
		for _, u := range s.users {
			if k.app == u.app && k.user == u.user {
				delete(sc.senders, k)
				// Read again, the sender would be listed twice.
				st.conv.senders = slices.DeleteFunc(st.conv.senders, func(o senderKey) bool { return o == k })
			}
		}
	}
}

// discard empties the cache of what it read. Marks are kept.
func (sc *sendCache) discard() {
	clear(sc.convs)
	clear(sc.senders)
}

// repairMarks writes the marks of the sends committed after meta's
// marks_seq (see sendCache), which a crash left unwritten: each
// conversation's last seq and activity time, and each sender's read and
// delivered mark, from the messages stored past the conversation's last
// seq. A database without marks_seq wrote every send's marks in its
// commit: it starts from its newest event.
func (db *DB) repairMarks(ctx context.Context) (err error) {
	// IMMEDIATE: a deferred transaction that read first could not take
	// the write lock if another process (a server on the same files)
	// committed meanwhile, busy timeout or not ("database is locked").
	if _, err := db.wconn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("sqlite: repair marks: %w", err)
	}
	defer func() {
		if err != nil {
			db.wconn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	tx := db.wconn
	var through int64
	err = tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'marks_seq'`).Scan(&through)
	if isNoRows(err) {
		through = -1
	} else if err != nil {
		return fmt.Errorf("sqlite: repair marks: %w", err)
	}
	if through >= 0 {
		rows, err := tx.QueryContext(ctx, `SELECT DISTINCT app_id, conversation_id FROM events
			WHERE seq > ? AND name = ? AND conversation_id IS NOT NULL`, through, tidings.EventMessageSent)
		if err != nil {
			return fmt.Errorf("sqlite: repair marks: %w", err)
		}
		var convs []convKey
		for rows.Next() {
			var k convKey
			if err := rows.Scan(&k.app, &k.conv); err != nil {
				rows.Close()
				return fmt.Errorf("sqlite: repair marks: %w", err)
			}
			convs = append(convs, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("sqlite: repair marks: %w", err)
		}
		repaired := 0
		for _, k := range convs {
			n, err := repairConversationMarks(ctx, tx, k)
			if err != nil {
				return fmt.Errorf("sqlite: repair marks of conversation %s: %w", k.conv, err)
			}
			repaired += n
		}
		if repaired > 0 {
			db.Logger.Info("wrote the marks of sends committed before a crash", "messages", repaired, "conversations", len(convs))
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) SELECT 'marks_seq', COALESCE(MAX(seq), 0) FROM events WHERE true
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`); err != nil {
		return fmt.Errorf("sqlite: repair marks: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("sqlite: repair marks: %w", err)
	}
	return nil
}

// repairConversationMarks brings conversation k's marks up to the
// messages stored past its last seq, and says how many there were.
func repairConversationMarks(ctx context.Context, tx *sql.Conn, k convKey) (int, error) {
	var last int64
	err := tx.QueryRowContext(ctx, `SELECT last_seq FROM conversations WHERE app_id = ? AND id = ?`, k.app, k.conv).Scan(&last)
	if isNoRows(err) {
		return 0, nil // deleted since
	} else if err != nil {
		return 0, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT sender_id, MAX(seq), MAX(sent_at), COUNT(*) FROM messages
		WHERE app_id = ? AND conversation_id = ? AND seq > ? GROUP BY sender_id`, k.app, k.conv, last)
	if err != nil {
		return 0, err
	}
	type sent struct {
		sender  string
		seq, at int64
	}
	var senders []sent
	newest, activity, count := last, int64(0), 0
	for rows.Next() {
		var s sent
		var n int
		if err := rows.Scan(&s.sender, &s.seq, &s.at, &n); err != nil {
			rows.Close()
			return 0, err
		}
		senders = append(senders, s)
		newest, activity, count = max(newest, s.seq), max(activity, s.at), count+n
	}
	rows.Close()
	if err := rows.Err(); err != nil || count == 0 {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE conversations SET last_seq = ?, last_activity_at = max(last_activity_at, ?) WHERE app_id = ? AND id = ?`,
		newest, activity, k.app, k.conv); err != nil {
		return 0, err
	}
	for _, s := range senders {
		if s.sender == "" {
			continue // system messages move nobody's marks
		}
		if _, err := tx.ExecContext(ctx, `UPDATE participants SET delivered_seq = max(delivered_seq, ?), read_seq = max(read_seq, ?)
			WHERE app_id = ? AND conversation_id = ? AND user_id = ?`, s.seq, s.seq, k.app, k.conv, s.sender); err != nil {
			return 0, err
		}
	}
	return count, nil
}
