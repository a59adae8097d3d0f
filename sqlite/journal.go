package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidings/tidings"
)

// journal keeps track of the messages sent but not moved yet from
// message_journal into messages (migration 0013).
//
// A send inserts its message into message_journal, keyed by its event's
// seq: the sends of a commit share the table's last page. Stored straight
// into messages, each send wrote a page of its conversation's part of
// messages and one of messages_by_client_id, and with thousands of active
// conversations no two sends of a commit shared them. The writer moves a
// conversation's messages into messages later, all of them in one
// transaction, so that those pages are written once for the several
// messages the conversation got meanwhile:
//
//   - when they are due: a conversation waits moveDelay after its first
//     message not moved, or less once more than maxJournal messages wait;
//     a commit moves at most moveChunk of them (moveDue);
//   - before any job that may read or change messages, that is any job
//     but sends, marks jobs and jobs set aside: those of the job's
//     conversations if it has a scope, all of them if not (DB.prepare);
//   - when a reader of a conversation's messages asks (DB.syncMessages);
//   - when the database closes, and at Open for what a crash left.
//
// A conversation's messages move all at once, so that those in
// message_journal are always the newest of their conversation: replay
// (userStreamQuery) reads the older in messages and these in the
// journal. A message is durable at its send's commit, in the journal.
//
// The writer goroutine alone uses it, but for pending and clients, which
// it changes under mu and readers read under mu (has, pendingClientID). A send job adds its message once all its
// statements succeeded (added), so a job rolled back to its savepoint
// leaves no trace; a transaction rolled back forgets what it added and
// moved.
type journal struct {
	mu sync.RWMutex
	// pending: the committed messages not moved, by conversation; count,
	// how many.
	pending map[convKey]*journalConv
	count   int
	// due lists the conversations of pending in the order their first
	// message came (gen tells an entry left by a conversation moved and
	// pending again); its first head entries are gone.
	due  []dueConv
	head int
	gen  uint64
	// txn: the messages the open transaction added; moved, the
	// conversations it moved (pending ones and its own messages at the
	// time).
	txn   []journalRow
	moved map[convKey]bool
	// clients finds the messages of pending by client id; txnClients,
	// those of txn (by index).
	clients    map[clientKey]journalRow
	txnClients map[clientKey]int
	// dropped: the journal's rows are deleted through this event seq
	// (moved); txnDropped, through which the open transaction deleted
	// them (0: none). newest: the newest event seq added.
	dropped, txnDropped, newest int64
	// newestCommitted is the newest event seq of a committed message that
	// came into pending (or was moved by its own transaction), under mu:
	// every message of the journal at or before it is in pending or
	// moved (see replayRows).
	newestCommitted int64
	// allMoved: the open transaction moved every message committed and
	// its own first allMovedTxn (moveAll).
	allMoved    bool
	allMovedTxn int
	// movedTotal counts the messages moved, by why (metrics).
	movedTotal *prometheus.CounterVec
}

// journalRow is a message in the journal, as the writer and the readers
// need it without reading it: its key, for moving and dedupe.
type journalRow struct {
	key      convKey
	eventSeq int64
	seq      int64
	id       string
	sender   string
	clientID string
	moved    bool // in txn: moved by the open transaction
}

type clientKey struct {
	convKey
	sender, clientID string
}

type journalConv struct {
	rows  []journalRow
	since time.Time
	gen   uint64
}

type dueConv struct {
	key convKey
	gen uint64
}

// How long a conversation's messages wait in the journal, how many may
// wait in all before they are moved sooner, and how many a commit moves.
const (
	moveDelay  = 10 * time.Second
	maxJournal = 1 << 16
	moveChunk  = 2048
)

func newJournal(moved *prometheus.CounterVec) *journal {
	return &journal{pending: map[convKey]*journalConv{}, moved: map[convKey]bool{}, movedTotal: moved,
		clients: map[clientKey]journalRow{}, txnClients: map[clientKey]int{}}
}

// Why messages move (the why label of tidings_store_journal_moved_total).
const (
	moveWhyDue   = "due"
	moveWhyWrite = "write"
	moveWhyRead  = "read"
	moveWhyIdle  = "idle"
)

// added records a message the open transaction inserted into the journal.
func (j *journal) added(r journalRow) {
	if r.clientID != "" {
		j.txnClients[clientKey{r.key, r.sender, r.clientID}] = len(j.txn)
	}
	j.txn = append(j.txn, r)
	j.newest = max(j.newest, r.eventSeq)
}

// find returns the message of conversation k that sender sent with
// clientID and is still in the journal, committed or in the open
// transaction. Writer only.
func (j *journal) find(k convKey, sender, clientID string) (journalRow, bool) {
	ck := clientKey{k, sender, clientID}
	if i, ok := j.txnClients[ck]; ok && !j.txn[i].moved {
		return j.txn[i], true
	}
	if j.moved[k] {
		return journalRow{}, false
	}
	r, ok := j.clients[ck]
	return r, ok
}

// idAt returns the id of message seq of conversation k if it is still in
// the journal. Writer only.
func (j *journal) idAt(k convKey, seq int64) (string, bool) {
	for _, r := range j.txn {
		if r.key == k && r.seq == seq && !r.moved {
			return r.id, true
		}
	}
	if pc := j.pending[k]; pc != nil && !j.moved[k] {
		for _, r := range pc.rows {
			if r.seq == seq {
				return r.id, true
			}
		}
	}
	return "", false
}

// has says whether committed messages of conversation k wait in the
// journal. Readers.
func (j *journal) has(k convKey) bool {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.pending[k] != nil
}

// replayBound is where a replay's read of the journal starts: the newest
// event seq of a message committed into it so far. Readers.
func (j *journal) replayBound() int64 {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return j.newestCommitted
}

// span is a membership of a user in a conversation, for replayRows:
// from event seq from through to (0: still a member).
type span struct {
	conv     string
	from, to int64
}

// replayRows returns the event seqs, after after and at or before bound,
// of the messages that wait in the journal within spans of app, in
// order: the first limit of them, those a replay of limit events may
// return. Readers.
//
// With bound read first (replayBound), then the user's spans, then these,
// a replay finds every message of the journal it must without scanning
// it: those after bound by the table's key, those at or before it here.
// A message at or before bound had come into pending when bound was read:
// it is here unless it was moved since (then messages has it, and the
// replay's read of messages returns it: it still counts towards limit);
// in a conversation the user joined after their spans were read, it came
// before the join, which they do not see. Only this writer adds rows to
// the journal (one server per database; the operator commands send no
// messages, and their Open only moves rows out).
func (j *journal) replayRows(app string, spans []span, after, bound int64, limit int) []int64 {
	var seqs []int64
	j.mu.RLock()
	for _, sp := range spans {
		pc := j.pending[convKey{app, sp.conv}]
		if pc == nil {
			continue
		}
		n := 0
		for _, r := range pc.rows { // in seq order
			if r.eventSeq <= after || r.eventSeq < sp.from {
				continue
			}
			if r.eventSeq > bound || (sp.to > 0 && r.eventSeq > sp.to) || n == limit {
				break
			}
			seqs = append(seqs, r.eventSeq)
			n++
		}
	}
	j.mu.RUnlock()
	slices.Sort(seqs)
	return seqs[:min(len(seqs), limit)]
}

// pendingClientID says whether a committed message of conversation k that
// sender sent with clientID waits in the journal. Readers.
func (j *journal) pendingClientID(k convKey, sender, clientID string) bool {
	j.mu.RLock()
	defer j.mu.RUnlock()
	_, ok := j.clients[clientKey{k, sender, clientID}]
	return ok
}

// empty says whether no message waits, committed or not. Writer only.
func (j *journal) empty() bool {
	return len(j.pending) == 0 && len(j.txn) == 0
}

// moveAll moves every message of the journal, committed or not.
func (j *journal) moveAll(exec func(query string, args ...any) error, why string) error {
	if j.empty() {
		return nil
	}
	// Once all moved in this transaction, only the sends since.
	var keys []convKey
	from := 0
	if j.allMoved {
		from = j.allMovedTxn
	} else {
		keys = make([]convKey, 0, len(j.pending))
		for k := range j.pending {
			keys = append(keys, k)
		}
	}
	for _, r := range j.txn[from:] {
		keys = append(keys, r.key)
	}
	if err := j.move(exec, keys, why); err != nil {
		return err
	}
	j.allMoved, j.allMovedTxn = true, len(j.txn)
	return nil
}

// moveDue moves the conversations whose messages are due, the longest
// waiting first, at most about moveChunk messages.
func (j *journal) moveDue(exec func(query string, args ...any) error, now time.Time, delay time.Duration) error {
	if j.allMoved {
		return nil // what came since is not due
	}
	var keys []convKey
	n, over := 0, j.count-maxJournal
	for i := j.head; i < len(j.due) && n < moveChunk; i++ {
		d := j.due[i]
		pc := j.pending[d.key]
		if pc == nil || pc.gen != d.gen || j.moved[d.key] {
			continue
		}
		if now.Sub(pc.since) < delay && n >= over {
			break
		}
		keys = append(keys, d.key)
		n += len(pc.rows)
	}
	if len(keys) == 0 {
		return nil
	}
	return j.move(exec, keys, moveWhyDue)
}

// move moves the messages of conversations keys, committed and of the
// open transaction, into messages, in key order (moveQuery).
func (j *journal) move(exec func(query string, args ...any) error, keys []convKey, why string) error {
	var seqs []int64
	want := make(map[convKey]bool, len(keys))
	for _, k := range keys {
		want[k] = true
		if pc := j.pending[k]; pc != nil && !j.moved[k] {
			for _, r := range pc.rows {
				seqs = append(seqs, r.eventSeq)
			}
		}
	}
	var own []int
	for i, r := range j.txn {
		if want[r.key] && !r.moved {
			seqs = append(seqs, r.eventSeq)
			own = append(own, i)
		}
	}
	if len(seqs) > 0 {
		list := seqList(seqs)
		if err := exec(moveQuery, list); err != nil {
			return fmt.Errorf("move the journal's messages: %w", err)
		}
		// Counted as tried: a transaction rolled back moves them again.
		j.movedTotal.WithLabelValues(why).Add(float64(len(seqs)))
	}
	for k := range want {
		j.moved[k] = true
	}
	for _, i := range own {
		j.txn[i].moved = true
	}
	return nil
}

// moveQuery copies the journal's messages whose event seqs are listed (a
// JSON array) into messages.
var moveQuery = moveSQL(`event_seq IN (SELECT value FROM json_each(?))`)

// moveSQL copies the journal's messages that match where into messages,
// in key order. One already there under a key of messages is skipped:
// moved before (Open's move after a stop: its row was left for
// dropMoved), or, with a client id its sender used before, a send that
// should have found the earlier message (inserted, it would fail the
// commit, and with it every commit after). OR IGNORE rather than ON
// CONFLICT DO NOTHING, which skips the same rows here (messages has no
// CHECK, and the journal's NOT NULL columns are messages'): it cost 14 %
// more per message moved (docs/benchmarks.md, "The journal's move:
// INSERT OR IGNORE").
func moveSQL(where string) string {
	return `INSERT OR IGNORE INTO messages (app_id, conversation_id, seq, id, sender_id, client_id, parts, metadata, alert, sent_at, event_seq)
	SELECT app_id, conversation_id, seq, id, sender_id, client_id, parts, metadata, alert, sent_at, event_seq
	FROM message_journal WHERE ` + where + `
	ORDER BY app_id, conversation_id, seq`
}

func seqList(seqs []int64) string {
	var b strings.Builder
	b.Grow(len(seqs) * 8)
	b.WriteByte('[')
	for i, s := range seqs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(s, 10))
	}
	b.WriteByte(']')
	return b.String()
}

// dropMoved deletes the journal's rows before the oldest message not
// moved, once there are dropChunk of them or none is left to move. A
// moved message's row is left until then: deleted with its conversation's
// move, rows all over the journal (the conversations move in the order
// their first message came, not their others) would each dirty a page.
// Deleted from its start, they free its pages whole.
func (j *journal) dropMoved(exec func(query string, args ...any) error) error {
	through := j.newest
	for i := j.head; i < len(j.due) && !j.allMoved; i++ {
		d := j.due[i]
		if pc := j.pending[d.key]; pc != nil && pc.gen == d.gen && !j.moved[d.key] {
			through = pc.rows[0].eventSeq - 1
			break
		}
	}
	for _, r := range j.txn {
		if !r.moved {
			through = min(through, r.eventSeq-1)
			break
		}
	}
	if through <= j.dropped || through-j.dropped < dropChunk && through < j.newest {
		return nil
	}
	if err := exec(`DELETE FROM message_journal WHERE event_seq <= ?`, through); err != nil {
		return fmt.Errorf("delete the journal's moved messages: %w", err)
	}
	j.txnDropped = through
	return nil
}

// dropChunk is how many rows of moved messages the journal deletes at
// once, at least, while messages wait.
const dropChunk = 512

// committed applies the open transaction, which has committed: the
// conversations it moved leave pending, the messages it added and did not
// move come in.
func (j *journal) committed(now time.Time) {
	if j.txnDropped > 0 {
		j.dropped, j.txnDropped = j.txnDropped, 0
	}
	j.allMoved = false
	if len(j.moved) == 0 && len(j.txn) == 0 {
		return
	}
	j.mu.Lock()
	for k := range j.moved {
		if pc := j.pending[k]; pc != nil {
			j.count -= len(pc.rows)
			delete(j.pending, k)
			for _, r := range pc.rows {
				if r.clientID != "" {
					delete(j.clients, clientKey{k, r.sender, r.clientID})
				}
			}
		}
	}
	for _, r := range j.txn {
		j.newestCommitted = max(j.newestCommitted, r.eventSeq)
		if r.moved {
			continue
		}
		pc := j.pending[r.key]
		if pc == nil {
			j.gen++
			pc = &journalConv{since: now, gen: j.gen}
			j.pending[r.key] = pc
			j.due = append(j.due, dueConv{r.key, pc.gen})
		}
		pc.rows = append(pc.rows, r)
		j.count++
		if r.clientID != "" {
			j.clients[clientKey{r.key, r.sender, r.clientID}] = r
		}
	}
	j.mu.Unlock()
	clear(j.moved)
	clear(j.txnClients)
	j.txn = j.txn[:0]
	// Drop the entries of due that are gone from its front, and compact
	// it once they are most of it.
	for j.head < len(j.due) {
		d := j.due[j.head]
		if pc := j.pending[d.key]; pc != nil && pc.gen == d.gen {
			break
		}
		j.due[j.head] = dueConv{}
		j.head++
	}
	if j.head > 1024 && j.head > len(j.due)/2 {
		n := 0
		for _, d := range j.due[j.head:] {
			if pc := j.pending[d.key]; pc != nil && pc.gen == d.gen {
				j.due[n] = d
				n++
			}
		}
		clear(j.due[n:])
		j.due, j.head = j.due[:n], 0
	}
}

// rolledBack forgets what the open transaction added and moved.
func (j *journal) rolledBack() {
	j.txnDropped = 0
	j.allMoved = false
	clear(j.moved)
	clear(j.txnClients)
	j.txn = j.txn[:0]
}

// syncMessages returns once the messages of conversation convID of app
// are in messages, at once when none waits in the journal: readers of a
// conversation's messages call it first, so that they read what anyone
// was told has committed.
func (db *DB) syncMessages(ctx context.Context, app, convID string) error {
	k := convKey{app, convID}
	if !db.journal.has(k) {
		return nil
	}
	// Set aside from the send cache: it changes nothing the cache holds.
	// Not the caller's write: the caller's next write may not start on it
	// being queued.
	return db.submit(&job{ctx: tidings.WithoutQueued(ctx), aside: true, done: make(chan struct{}), fn: func(tx *Tx) error {
		tx.wrote = true // a move half done must be undone
		return tx.db.journal.move(tx.execOnly, []convKey{k}, moveWhyRead)
	}})
}

// moveJournal moves every message of the journal not moved yet into
// messages, in a transaction of its own on a connection no writer uses
// (Open, FillHistory), says how many, and empties the journal. A row of
// a message moved before is in messages under the same key (edited or
// anonymized since, maybe): it is skipped.
func moveJournal(ctx context.Context, conn *sql.Conn) (n int64, err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return 0, fmt.Errorf("sqlite: move the message journal: %w", err)
	}
	defer func() {
		if err != nil {
			conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
			err = fmt.Errorf("sqlite: move the message journal: %w", err)
		}
	}()
	res, err := conn.ExecContext(ctx, moveSQL("true"))
	if err != nil {
		return 0, err
	}
	if n, err = res.RowsAffected(); err != nil {
		return 0, err
	}
	if _, err := conn.ExecContext(ctx, `DELETE FROM message_journal`); err != nil {
		return 0, err
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return 0, err
	}
	return n, nil
}
