package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
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
		q.db.safeSendBatch(batch)
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

// safeSendBatch is sendBatch, turning a panic into an internal error of
// the batch's sends, so that one bad send cannot take the node down.
func (db *DB) safeSendBatch(batch []*sendJob) {
	defer func() {
		if r := recover(); r != nil {
			db.Logger.Error("panic in a send batch", "panic", r, "stack", string(debug.Stack()))
			for _, j := range batch {
				j.msg, j.created, j.err = nil, false, tidings.Errorf(tidings.EInternal, "internal error")
			}
		}
	}()
	db.sendBatch(batch)
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

// batchViews is sendView for the sends of a batch ($1 apps, $2
// conversations, $3 senders: empty for the app's server as itself), but
// for the client ids (batchEarlier): a row per send whose conversation
// exists, with the send's rank (from 1).
// Each row is found by its key (LATERAL): a plan made for batches of any
// size might otherwise read a whole table, as it did users.
const batchViews = `SELECT r.ord, c.is_public, c.deleted_at, c.roles, c.last_seq, p.role, p.muted,
	u.display_name, u.avatar_url, u.identifier_value, u.identifier_kind
	FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS r(app_id, conversation_id, user_id, ord)
	JOIN LATERAL (SELECT is_public, deleted_at, roles, last_seq FROM conversations
		WHERE app_id = r.app_id AND id = r.conversation_id FOR UPDATE) AS c ON true
	LEFT JOIN LATERAL (SELECT role, muted FROM participants
		WHERE app_id = r.app_id AND conversation_id = r.conversation_id AND user_id = r.user_id OFFSET 0) AS p ON true
	LEFT JOIN LATERAL (SELECT display_name, avatar_url, identifier_value, identifier_kind FROM users
		WHERE app_id = r.app_id AND id = r.user_id OFFSET 0) AS u ON true`

// batchEarlier finds the messages that the senders of a batch sent
// already with the client ids they give ($1 apps, $2 conversations, $3
// senders, $4 client ids), with the rank of the send asking. A lookup in
// the unique index per send (LATERAL): a plan made for any batch, not
// knowing how many sends it has, would otherwise read every message. A
// system message (the app's server's, sender empty) has no user.
const batchEarlier = `SELECT r.ord, ` + messageColumns + `
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS r(app_id, conversation_id, sender_id, client_id, ord)
	JOIN LATERAL (SELECT * FROM messages WHERE app_id = r.app_id AND conversation_id = r.conversation_id
		AND sender_id = r.sender_id AND client_id = r.client_id OFFSET 0) AS m ON true
	LEFT JOIN users u ON u.app_id = m.app_id AND u.id = m.sender_id`

// batchInsert is sendInsert for the messages of a batch ($1 apps, $2
// conversations, $3 seqs, $4 ids, $5 senders, $6 client ids, $7 parts,
// $8 metadata, $9 alerts; $10 the time; $11 system or not): each
// conversation's last seq and each sender's own marks move to their last
// message stored (a system message's, whose sender is empty, move none).
// It returns the number of messages stored.
const batchInsert = `WITH m AS (
		INSERT INTO messages (app_id, conversation_id, seq, id, sender_id, client_id, parts, metadata, alert, sent_at, system)
		SELECT r.app_id, r.conversation_id, r.seq, r.id, r.sender_id, r.client_id, r.parts::json, r.metadata::json, r.alert, $10, r.system
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $11::boolean[])
			AS r(app_id, conversation_id, seq, id, sender_id, client_id, parts, metadata, alert, system)
		ON CONFLICT (app_id, conversation_id, sender_id, client_id) WHERE client_id IS NOT NULL DO NOTHING
		RETURNING app_id, conversation_id, sender_id, seq),
	c AS (UPDATE conversations SET last_seq = x.seq, last_activity_at = $10
		FROM (SELECT app_id, conversation_id, max(seq) AS seq FROM m GROUP BY app_id, conversation_id) AS x
		WHERE conversations.app_id = x.app_id AND conversations.id = x.conversation_id),
	p AS (UPDATE participants SET delivered_seq = greatest(delivered_seq, x.seq), read_seq = greatest(read_seq, x.seq)
		FROM (SELECT app_id, conversation_id, sender_id, max(seq) AS seq FROM m GROUP BY app_id, conversation_id, sender_id) AS x
		WHERE participants.app_id = x.app_id AND participants.conversation_id = x.conversation_id AND participants.user_id = x.sender_id)
	SELECT count(*) FROM m`

// batchEvents stores the messageSent events of a batch ($1 ids, $2 apps,
// $3 conversations, $4 actors (NULL: none), $5 payloads; $6 the name, $7 the time),
// drawing their positions in the order given. It returns each event's id
// and position.
const batchEvents = `INSERT INTO events (seq, id, app_id, name, time, actor, conversation_id, payload)
	SELECT nextval('tidings_event_seq'), r.id, r.app_id, $6, $7, r.actor::json, r.conversation_id, r.payload::json
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS r(id, app_id, conversation_id, actor, payload, ord)
	ORDER BY r.ord
	RETURNING id, seq`

// A batchSend is a send's state within one attempt of its batch.
type batchSend struct {
	job *sendJob
	// what the batch read for it
	viewed  bool
	view    tidings.Conversation
	sender  *tidings.Profile // nil: no such user, or the app's server
	earlier *tidings.Message // the sender's message with this client id
	parts   []tidings.Part
	// what it does
	err   error
	first *batchSend // an earlier send of the batch with the same client id
	msg   *tidings.Message
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
	var names, apps, convs, senders []string
	var clientSends []*batchSend
	var cApps, cConvs, cSenders, cClients []string
	seen := make(map[string]bool)
	for i, j := range jobs {
		s := &batchSend{job: j}
		sends[i] = s
		c := j.caller
		name := c.AppID + "/" + j.convID
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
		apps, convs, senders = append(apps, c.AppID), append(convs, j.convID), append(senders, c.UserID)
		if j.nm.ClientID != "" {
			clientSends = append(clientSends, s)
			cApps, cConvs = append(cApps, c.AppID), append(cConvs, j.convID)
			cSenders, cClients = append(cSenders, c.UserID), append(cClients, j.nm.ClientID)
		}
	}

	// 1. Queue for the conversations (the transaction is fresh: no id
	// yet), draw the id, read and lock what the sends need.
	b := &pgx.Batch{}
	// Plans made once per connection: planning these statements anew
	// for each batch's number of sends would cost more than running them.
	b.Queue(`SET LOCAL plan_cache_mode = force_generic_plan`)
	b.Queue(batchLocks, names)
	b.Queue(`SELECT pg_current_xact_id()`)
	b.Queue(batchViews, apps, convs, senders).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var ord int64
			var roles []byte
			var role, name, avatar, idValue, idKind *string
			var muted *bool
			var view tidings.Conversation
			if err := rows.Scan(&ord, &view.IsPublic, &view.DeletedAt, &roles, &view.LastSeq, &role, &muted,
				&name, &avatar, &idValue, &idKind); err != nil {
				return err
			}
			s := sends[ord-1]
			if err := json.Unmarshal(roles, &view.Roles); err != nil {
				return fmt.Errorf("conversation %s: bad roles: %w", s.job.convID, err)
			}
			if role != nil {
				view.Role = tidings.Role(*role)
			}
			view.ID, view.MutedByModerator = s.job.convID, muted != nil && *muted
			s.viewed, s.view = true, view
			if name != nil && !s.job.caller.Server {
				s.sender = &tidings.Profile{ID: s.job.caller.UserID, DisplayName: *name}
				if avatar != nil {
					s.sender.AvatarURL = *avatar
				}
				if idValue != nil && idKind != nil {
					s.sender.Identifier = &tidings.Identifier{Value: *idValue, Kind: *idKind}
				}
			}
		}
		return rows.Err()
	})
	if len(clientSends) > 0 {
		b.Queue(batchEarlier, cApps, cConvs, cSenders, cClients).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var ord int64
				m, err := scanMessage(prefixed{rows, &ord})
				if err != nil {
					return err
				}
				clientSends[ord-1].earlier = m
			}
			return rows.Err()
		})
	}
	if err := tx.tx.SendBatch(tx.ctx, b).Close(); err != nil {
		return err
	}
	tx.hasXID = true
	for _, s := range sends {
		s.err = s.check()
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

	// 3. In queue order: number the messages, then store them, and their
	// events (positions drawn in that order).
	var m struct {
		apps, convs, ids, senders, parts, alerts []string
		seqs                                     []int64
		clients, metadata                        []*string
		systems                                  []bool
	}
	var e struct {
		ids, apps, convs, payloads []string
		actors                     []*string
	}
	var events []*tidings.Event
	b = &pgx.Batch{}
	next := make(map[[2]string]int64)        // app, conversation: its next message seq
	firsts := make(map[[4]string]*batchSend) // app, conversation, sender, client id
	for _, s := range sends {
		if s.err != nil || s.earlier != nil {
			continue
		}
		j := s.job
		c := j.caller
		if j.nm.ClientID != "" {
			key := [4]string{c.AppID, j.convID, c.UserID, j.nm.ClientID}
			if first := firsts[key]; first != nil {
				s.first = first
				continue
			}
			firsts[key] = s
		}
		conv := [2]string{c.AppID, j.convID}
		seq, ok := next[conv]
		if !ok {
			seq = s.view.LastSeq + 1
		}
		next[conv] = seq + 1
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
			System: c.Server, Parts: s.parts, Metadata: j.nm.Metadata, Alert: j.nm.Alert, SentAt: tx.now,
		}
		var sender *tidings.Profile // the event's actor: none for a system message
		if s.sender != nil {
			s.msg.Sender = *s.sender
			p := *s.sender
			sender = &p
		}
		m.apps, m.convs, m.seqs, m.ids = append(m.apps, c.AppID), append(m.convs, j.convID), append(m.seqs, seq), append(m.ids, s.msg.ID)
		m.senders, m.parts, m.alerts = append(m.senders, c.UserID), append(m.parts, string(partsJSON)), append(m.alerts, j.nm.Alert)
		var client, metadata *string
		if j.nm.ClientID != "" {
			client = &j.nm.ClientID
		}
		if len(j.nm.Metadata) > 0 {
			meta := string(j.nm.Metadata)
			metadata = &meta
		}
		m.clients, m.metadata, m.systems = append(m.clients, client), append(m.metadata, metadata), append(m.systems, c.Server)

		ev, actor, err := tx.newEvent(c.AppID, tidings.EventMessageSent, sender, j.convID, "", tidings.NewMessagePayload(s.msg, ""))
		if err != nil {
			return err
		}
		events = append(events, ev)
		e.ids, e.apps, e.convs = append(e.ids, ev.ID), append(e.apps, c.AppID), append(e.convs, j.convID)
		e.actors, e.payloads = append(e.actors, actor), append(e.payloads, string(ev.Payload))
	}
	if len(events) > 0 {
		b.Queue(batchInsert, m.apps, m.convs, m.seqs, m.ids, m.senders, m.clients, m.parts, m.metadata, m.alerts, tx.now, m.systems).QueryRow(func(row pgx.Row) error {
			var stored int
			if err := row.Scan(&stored); err != nil {
				return err
			}
			if stored != len(events) {
				return &cutError{errClientIDTaken}
			}
			return nil
		})
		byID := make(map[string]*tidings.Event, len(events))
		for _, ev := range events {
			byID[ev.ID] = ev
		}
		b.Queue(batchEvents, e.ids, e.apps, e.convs, e.actors, e.payloads, tidings.EventMessageSent, tx.now).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id string
				var seq int64
				if err := rows.Scan(&id, &seq); err != nil {
					return err
				}
				if ev := byID[id]; ev != nil {
					ev.Seq = seq
				}
			}
			return rows.Err()
		})
	}
	if b.Len() > 0 {
		if err := tx.tx.SendBatch(tx.ctx, b).Close(); err != nil {
			return err
		}
	}
	tx.events = append(tx.events, events...)

	// The outcomes, set now and kept if the commit succeeds.
	for _, s := range sends {
		j := s.job
		switch {
		case s.err != nil:
			j.err = s.err
		case s.earlier != nil:
			j.msg = s.earlier
		case s.first != nil:
			m := *s.first.msg
			j.msg = &m
		default:
			j.msg, j.created = s.msg, true
		}
	}
	return nil
}

// check applies the access policy to a send, as SendMessage does for one.
func (s *batchSend) check() error {
	if !s.viewed {
		return tidings.ErrConversationNotFound(s.job.convID)
	}
	return checkSend(s.job.caller, &s.view, s.sender)
}

// prefixed scans a row whose first column is not the caller's.
type prefixed struct {
	rows  pgx.Rows
	first any
}

func (p prefixed) Scan(dest ...any) error {
	return p.rows.Scan(append([]any{p.first}, dest...)...)
}
