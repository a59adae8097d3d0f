package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tidings/tidings"
)

// Group commit of sends (docs/cluster.md, "How the PostgreSQL store
// writes to a conversation").
//
// A durable send costs a commit, and a commit waits for the WAL to reach
// the disk: one at a time per connection, a few hundred sends a second.
// So the sends of a node queue, and one goroutine commits them in
// batches: the sends that arrived while the last batch committed (up to
// DB.SendBatch) go in one transaction, one flush for all. Each send still
// returns only once its batch has committed.
//
// A batch keeps every rule of a send alone:
//
//   - It queues for every conversation it sends to before the transaction
//     has an id (rule 2 of events.go), taking their advisory locks in one
//     statement in the order of the locks' keys, so that two batches (or
//     a batch and another change) never wait for each other in a cycle.
//     Then it draws its id (rule 1), locks the conversations' rows, and
//     stores the messages and their events in the order they were queued:
//     within a conversation, message seqs and positions follow that order.
//   - Client ids: a send whose client id its sender used already (in the
//     database, or by a send earlier in the same batch) stores nothing and
//     answers the first message.
//   - A send refused (no such conversation, not allowed, a file that is
//     not the conversation's) fails alone: the checks are made in Go on
//     what the batch read, before anything is written. A statement that
//     the server refuses (which the validation should prevent) aborts the
//     transaction: the batch is then sent again one send per transaction,
//     so that only that send fails.
//   - A batch cut before its commit (the connection lost, a deadlock) runs
//     again once, as any transaction does (DB.update); cut during its
//     commit, every send of it is answered EUnavailable, outcome unknown.
//
// Round trips per batch: the BEGIN; the locks, the id and what every send
// reads, in one pipeline; the files' rows, if any send names files; the
// inserts; the COMMIT.

// sendJob is a send waiting for its batch.
type sendJob struct {
	ctx    context.Context
	caller tidings.Caller
	convID string
	nm     tidings.NewMessage

	msg     *tidings.Message
	created bool
	err     error
	done    chan struct{}
}

// sendQueue is the queue of a DB's sends and the goroutine that commits
// them.
type sendQueue struct {
	db   *DB
	jobs chan *sendJob
	done chan struct{} // closed when the committer has stopped

	enqMu  sync.Mutex    // the queue's order is that of queued
	queued atomic.Uint64 // sends queued so far

	mu       sync.Mutex
	answered uint64        // sends answered so far (in queue order)
	moved    chan struct{} // closed when answered moves
}

func (q *sendQueue) start(db *DB) {
	q.db = db
	q.jobs = make(chan *sendJob, 4*db.SendBatch)
	q.done = make(chan struct{})
	q.moved = make(chan struct{})
	go q.commit()
}

// stop closes the queue and returns once every send queued is answered.
// The caller has made sure that no send is queued any more (DB.closed).
func (q *sendQueue) stop() {
	if q.jobs == nil {
		return
	}
	close(q.jobs)
	<-q.done
	q.jobs = nil
}

// send queues j, calls tidings.Queued, and waits for j's outcome.
func (q *sendQueue) send(j *sendJob) error {
	db := q.db
	db.closeMu.RLock()
	if db.closed || q.jobs == nil {
		db.closeMu.RUnlock()
		return tidings.Errorf(tidings.EUnavailable, "the database is closed")
	}
	q.enqMu.Lock()
	select {
	case q.jobs <- j:
		q.queued.Add(1)
		q.enqMu.Unlock()
		db.closeMu.RUnlock()
	case <-j.ctx.Done():
		q.enqMu.Unlock()
		db.closeMu.RUnlock()
		return j.ctx.Err()
	}
	tidings.Queued(j.ctx) // what is queued next commits after j
	// Wait for the outcome even if ctx ends meanwhile: once queued, a
	// send is committed or not with its batch, and the caller must learn
	// which.
	<-j.done
	return j.err
}

// wait returns once every send queued before it was called is answered.
func (q *sendQueue) wait(ctx context.Context) error {
	want := q.queued.Load()
	for {
		q.mu.Lock()
		answered, moved := q.answered, q.moved
		q.mu.Unlock()
		if answered >= want {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// commit commits the queued sends in batches until the queue is closed.
func (q *sendQueue) commit() {
	defer close(q.done)
	batch := make([]*sendJob, 0, q.db.SendBatch)
	for j := range q.jobs {
		batch = append(batch[:0], j)
	fill:
		for len(batch) < q.db.SendBatch {
			select {
			case j, ok := <-q.jobs:
				if !ok {
					break fill
				}
				batch = append(batch, j)
			default:
				break fill
			}
		}
		q.db.sendBatch(batch)
		for _, j := range batch {
			close(j.done)
		}
		q.mu.Lock()
		q.answered += uint64(len(batch))
		close(q.moved)
		q.moved = make(chan struct{})
		q.mu.Unlock()
		clear(batch) // let the answered jobs go
	}
}

// sendBatch commits a batch of sends and sets each one's outcome.
func (db *DB) sendBatch(batch []*sendJob) {
	jobs := make([]*sendJob, 0, len(batch))
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.err = err // given up before its batch began
			continue
		}
		jobs = append(jobs, j)
	}
	if len(jobs) == 0 {
		return
	}
	// The batch goes on as long as one of its senders waits for it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waiting atomic.Int64
	waiting.Store(int64(len(jobs)))
	for _, j := range jobs {
		stop := context.AfterFunc(j.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
	}
	for attempt := 0; ; attempt++ {
		err := db.attemptSends(ctx, jobs)
		if err == nil {
			db.poke()
			return
		}
		var cut *cutError
		if errors.As(err, &cut) && attempt == 0 && ctx.Err() == nil {
			db.Logger.Warn("send batch cut before its commit; running it again", "err", cut.err, "sends", len(jobs))
			continue
		}
		var pe *pgconn.PgError
		if errors.As(err, &pe) && !errors.As(err, &cut) {
			// A statement refused: find the send it was, each alone.
			db.Logger.Warn("send batch refused by the server; sending each alone", "err", err, "sends", len(jobs))
			for _, j := range jobs {
				j.msg, j.created, j.err = db.sendOne(j.ctx, j.caller, j.convID, j.nm)
			}
			return
		}
		err = db.mapError(err)
		for _, j := range jobs {
			j.msg, j.created, j.err = nil, false, err
		}
		return
	}
}

// batchLocks takes the advisory locks of the conversations of a batch
// (as lockConversation does for one), in the order of their keys: $1 is
// the conversations' "app/conversation" names.
const batchLocks = `SELECT pg_advisory_xact_lock(k) FROM (
	SELECT DISTINCT hashtextextended(name, 0) AS k FROM unnest($1::text[]) AS name ORDER BY k) AS keys`

// A batchSend is a send's state within one attempt of its batch.
type batchSend struct {
	job  *sendJob
	view tidings.Conversation
	// what the batch read for it
	lastSeq int64
	sender  *tidings.Profile
	earlier *string // the id of the sender's message with this client id
	parts   []tidings.Part
	// what it does
	err    error
	first  *batchSend // an earlier send of the batch with the same client id
	msg    *tidings.Message
	found  *tidings.Message // the earlier message, read
	stored bool             // the insert stored the message
}

// attemptSends runs a batch in one transaction and commits it, setting
// each job's outcome on success. An error fails the whole batch.
func (db *DB) attemptSends(ctx context.Context, jobs []*sendJob) error {
	for _, j := range jobs {
		j.msg, j.created, j.err = nil, false, nil
	}
	ptx, err := db.pool.Begin(ctx)
	if err != nil {
		if retryable(err) {
			return &cutError{err}
		}
		return err
	}
	committed := false
	defer func() {
		if !committed {
			ptx.Rollback(context.Background())
		}
	}()
	tx := &Tx{db: db, ctx: ctx, tx: ptx, now: db.Now().UTC().Truncate(time.Microsecond)}
	if err := tx.sendBatch(jobs); err != nil {
		if retryable(err) {
			return &cutError{err}
		}
		return err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	err = ptx.Commit(cctx)
	committed = true
	if err != nil {
		if isConnError(err) {
			db.Logger.Error("send batch cut during its commit: outcome unknown", "err", err, "sends", len(jobs))
			return errOutcomeUnknown
		}
		return err
	}
	return nil
}

// errClientIDTaken aborts a batch in which an insert met a client id
// already taken, which the conversation's lock should prevent: run
// again, the batch sees the earlier message.
var errClientIDTaken = errors.New("a client id was taken by a message the batch did not see")

// sendBatch makes the sends of jobs in tx (see the top of this file). A
// send refused sets its job's error; an error returned fails the batch.
func (tx *Tx) sendBatch(jobs []*sendJob) error {
	sends := make([]*batchSend, len(jobs))
	var names []string
	seen := make(map[string]bool)
	for i, j := range jobs {
		sends[i] = &batchSend{job: j}
		name := j.caller.AppID + "/" + j.convID
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}

	// 1. Queue for the conversations (the transaction is fresh: no id
	// yet), draw the id, read and lock what every send needs.
	b := &pgx.Batch{}
	b.Queue(batchLocks, names)
	b.Queue(`SELECT pg_current_xact_id()`)
	for _, s := range sends {
		j := s.job
		b.Queue(sendView, j.caller.UserID, j.caller.AppID, j.convID, nullString(j.nm.ClientID)).QueryRow(func(row pgx.Row) error {
			s.err = s.read(row)
			return nil
		})
	}
	if err := tx.tx.SendBatch(tx.ctx, b).Close(); err != nil {
		return err
	}
	tx.hasXID = true
	for _, s := range sends {
		var te *tidings.Error
		if s.err != nil && !errors.As(s.err, &te) {
			return s.err // not a refusal: the batch fails
		}
	}

	// 2. The files named, locked so that RemoveUnattached leaves them.
	b = &pgx.Batch{}
	for _, s := range sends {
		if s.err != nil || s.earlier != nil {
			continue
		}
		s.parts = append([]tidings.Part(nil), s.job.nm.Parts...)
		for i := range s.parts {
			p := &s.parts[i]
			if p.FileID == "" {
				continue
			}
			b.Queue(`SELECT name, type, size FROM files WHERE app_id = $1 AND conversation_id = $2 AND id = $3 FOR UPDATE`,
				s.job.caller.AppID, s.job.convID, p.FileID).QueryRow(func(row pgx.Row) error {
				var name, typ string
				var size int64
				err := row.Scan(&name, &typ, &size)
				if isNoRows(err) {
					if s.err == nil {
						s.err = tidings.Errorf(tidings.EInvalid, "parts[%d].fileId %q is not a file of this conversation: upload it first", i, p.FileID)
					}
					return nil
				}
				if err != nil {
					return err
				}
				if p.Name == "" {
					p.Name = name
				}
				p.Size = size
				if p.Type == "" {
					p.Type = typ
				}
				return nil
			})
		}
	}
	if b.Len() > 0 {
		if err := tx.tx.SendBatch(tx.ctx, b).Close(); err != nil {
			return err
		}
	}

	// 3. In queue order: number the messages, store them and their events
	// (positions drawn in that order), read the earlier messages.
	b = &pgx.Batch{}
	next := make(map[string]int64)           // conversation: its next message seq
	firsts := make(map[[3]string]*batchSend) // conversation, sender, client id
	for _, s := range sends {
		if s.err != nil {
			continue
		}
		j := s.job
		c := j.caller
		if s.earlier != nil {
			b.Queue(`SELECT `+messageColumns+messageFrom+` WHERE m.app_id = $1 AND m.conversation_id = $2 AND m.id = $3`,
				c.AppID, j.convID, *s.earlier).QueryRow(func(row pgx.Row) error {
				var err error
				s.found, err = scanMessage(row)
				return err
			})
			continue
		}
		if j.nm.ClientID != "" {
			key := [3]string{j.convID, c.UserID, j.nm.ClientID}
			if first := firsts[key]; first != nil {
				s.first = first
				continue
			}
			firsts[key] = s
		}
		seq, ok := next[j.convID]
		if !ok {
			seq = s.lastSeq + 1
		}
		next[j.convID] = seq + 1
		for _, p := range s.parts {
			if p.FileID != "" {
				b.Queue(`UPDATE files SET attached = true WHERE app_id = $1 AND conversation_id = $2 AND id = $3`,
					c.AppID, j.convID, p.FileID)
			}
		}
		partsJSON, err := json.Marshal(s.parts)
		if err != nil {
			return err
		}
		s.msg = &tidings.Message{
			ID: tidings.NewID(), ConversationID: j.convID, Seq: seq, ClientID: j.nm.ClientID,
			Sender: *s.sender, Parts: s.parts, Metadata: j.nm.Metadata, Alert: j.nm.Alert, SentAt: tx.now,
		}
		b.Queue(sendInsert, c.AppID, j.convID, seq, s.msg.ID, c.UserID, nullString(j.nm.ClientID),
			string(partsJSON), nullBytes(j.nm.Metadata), j.nm.Alert, tx.now).QueryRow(func(row pgx.Row) error {
			var stored int64
			err := row.Scan(&stored)
			if isNoRows(err) {
				return nil
			}
			s.stored = err == nil
			return err
		})
		sender := *s.sender
		ev, err := tx.queueEvent(b, c.AppID, tidings.EventMessageSent, &sender, j.convID, "", tidings.NewMessagePayload(s.msg, ""))
		if err != nil {
			return err
		}
		tx.events = append(tx.events, ev)
	}
	if b.Len() > 0 {
		if err := tx.tx.SendBatch(tx.ctx, b).Close(); err != nil {
			return err
		}
	}

	// The outcomes, set now and kept if the commit succeeds.
	for _, s := range sends {
		j := s.job
		switch {
		case s.err != nil:
			j.err = s.err
		case s.found != nil:
			j.msg = s.found
		case s.first != nil:
			if s.first.msg == nil { // cannot be: the first was stored
				return fmt.Errorf("send %s: its first try in the batch has no message", j.nm.ClientID)
			}
			m := *s.first.msg
			j.msg = &m
		case !s.stored:
			return &cutError{errClientIDTaken}
		default:
			j.msg, j.created = s.msg, true
		}
	}
	return nil
}

// read scans s's row of sendView and checks that its sender may send. A
// refusal is a tidings error; any other error fails the batch.
func (s *batchSend) read(row pgx.Row) error {
	j := s.job
	var roles []byte
	var role, name, avatar, idValue, idKind *string
	view := &s.view
	err := row.Scan(&view.IsPublic, &view.DeletedAt, &roles, &s.lastSeq, &role, &name, &avatar, &idValue, &idKind, &s.earlier)
	if isNoRows(err) {
		return tidings.ErrConversationNotFound(j.convID)
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(roles, &view.Roles); err != nil {
		return fmt.Errorf("conversation %s: bad roles: %w", j.convID, err)
	}
	if role != nil {
		view.Role = tidings.Role(*role)
	}
	view.ID, view.LastSeq = j.convID, s.lastSeq
	if err := tidings.CanSeeConversation(j.convID, view); err != nil {
		return err
	}
	if name == nil {
		return tidings.Errorf(tidings.EUnauthenticated, "the user of this token no longer exists")
	}
	if err := tidings.CanSendMessage(j.convID, view); err != nil {
		return err
	}
	s.sender = &tidings.Profile{ID: j.caller.UserID, DisplayName: *name}
	if avatar != nil {
		s.sender.AvatarURL = *avatar
	}
	if idValue != nil && idKind != nil {
		s.sender.Identifier = &tidings.Identifier{Value: *idValue, Kind: *idKind}
	}
	return nil
}
