package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"runtime/trace"
	"strings"
	"time"

	"github.com/tidings/tidings"
)

// job is one write request waiting for the writer.
type job struct {
	ctx context.Context
	fn  func(*Tx) error
	// sends marks a job that only sends messages: it may use the send
	// cache (see sendcache.go) and leave writes to the cache's flush.
	sends bool
	// aside marks a job that reads and writes none of what the send
	// cache holds or will write (conversations, participants, the
	// profiles of users) nor the messages the journal keeps: the cache
	// is neither flushed before it nor emptied, and nothing is moved. The
	// once-a-second saves of cursors, last seen times and webhook
	// positions are such jobs (were they not, each would empty the cache
	// and the sends after it would read their senders again), and so are
	// the writes of apps, webhooks, push targets and settings, the
	// before-send hook and the prune of old events.
	aside bool
	// marks marks a job that reads the marks sends leave to the cache's
	// flush, and changes none of what the cache holds (the marks of
	// message status, DB.syncMarks): the cache is flushed before it, not
	// emptied.
	marks bool
	// scope, for a job that is neither a send nor set aside, names the
	// conversations and users whose part of what the send cache and the
	// journal hold it reads or changes; nil: any (see scope).
	scope *scope
	// scopeOf, for a job whose scope only the writer can read (a user
	// deleted: every conversation they took part in), reads it in the
	// job's transaction, just before the job (see prepare).
	scopeOf func(*Tx) (*scope, error)
	queued  time.Time // when it was submitted
	err     error
	events  []*tidings.Event
	done    chan struct{}
}

// scope is what a job reads or changes among what the send cache holds
// or will write and what the journal keeps: conversations (their row,
// participants, marks and messages) and users (their profile). Before a
// job with a scope, the writer writes the waiting marks of its
// conversations alone, forgets what the cache read of them and of its
// users, and moves their messages of the journal, where before a job
// without one it writes every mark, empties the cache and moves the whole
// journal: under 2,000 sends a second, that took 100 to 200 ms and every
// send waited behind it (docs/benchmarks.md, "A write that is not a send
// no longer stalls the sends").
//
// A job with a scope must not read or change, beyond its scope,
// conversations, participants, marks, messages or the profiles of users
// (reading who takes part in a conversation is fine: the cache leaves
// that to the database). A job whose scope depends on what the
// transaction holds when it runs (a user deleted: the conversations they
// took part in, which a job before it in the batch may change) has it
// read by the writer just before it (job.scopeOf).
type scope struct {
	convs []convKey
	users []userKey
}

type userKey struct{ app, user string }

// region names j's part of a batch in the execution trace.
func (j *job) region() string {
	switch {
	case j.sends:
		return "sqlite.job.send"
	case j.aside:
		return "sqlite.job.aside"
	case j.marks:
		return "sqlite.job.marks"
	}
	return "sqlite.job.other"
}

// update runs fn in a write transaction and returns once that transaction
// has committed (and is durable) or fn has failed. fn may run in the same
// transaction as other jobs, inside a savepoint of its own: if fn returns
// an error, its writes are undone and the others are not affected. fn must
// only use tx, and must not keep it.
func (db *DB) update(ctx context.Context, fn func(*Tx) error) error {
	return db.submit(&job{ctx: ctx, fn: fn, done: make(chan struct{})})
}

// updateAside is update for a job that touches nothing the send cache
// holds (see job.aside).
func (db *DB) updateAside(ctx context.Context, fn func(*Tx) error) error {
	return db.submit(&job{ctx: ctx, fn: fn, aside: true, done: make(chan struct{})})
}

// updateConv is update for a job whose scope is conversation conv of app:
// it reads or changes nothing the send cache holds or the journal keeps
// of other conversations, nor any user's profile (see scope).
func (db *DB) updateConv(ctx context.Context, app, conv string, fn func(*Tx) error) error {
	return db.submit(&job{ctx: ctx, fn: fn, scope: &scope{convs: []convKey{{app, conv}}}, done: make(chan struct{})})
}

// updateUser is update for a job whose scope is user of app: it changes
// their profile, and reads or changes no conversation's marks or
// messages (see scope).
func (db *DB) updateUser(ctx context.Context, app, user string, fn func(*Tx) error) error {
	return db.submit(&job{ctx: ctx, fn: fn, scope: &scope{users: []userKey{{app, user}}}, done: make(chan struct{})})
}

// updateScopedBy is update for a job whose scope scopeOf reads in the
// job's transaction, just before the job (see job.scopeOf).
func (db *DB) updateScopedBy(ctx context.Context, scopeOf func(*Tx) (*scope, error), fn func(*Tx) error) error {
	return db.submit(&job{ctx: ctx, fn: fn, scopeOf: scopeOf, done: make(chan struct{})})
}

// updateMarksOf is update for a job that reads the marks of sends in
// conversation conv of app alone, and changes nothing the send cache
// holds (see job.marks): only that conversation's marks are written
// before it.
func (db *DB) updateMarksOf(ctx context.Context, app, conv string, fn func(*Tx) error) error {
	return db.submit(&job{ctx: ctx, fn: fn, marks: true, scope: &scope{convs: []convKey{{app, conv}}}, done: make(chan struct{})})
}

// updateSends is update for a job that only sends messages.
func (db *DB) updateSends(ctx context.Context, fn func(*Tx) error) error {
	return db.submit(&job{ctx: ctx, fn: fn, sends: true, done: make(chan struct{})})
}

func (db *DB) submit(j *job) error {
	ctx := j.ctx
	db.closeMu.RLock()
	if db.closed || db.jobs == nil {
		db.closeMu.RUnlock()
		return tidings.Errorf(tidings.EUnavailable, "the database is closed")
	}
	j.queued = time.Now()
	select {
	case db.jobs <- j:
		db.closeMu.RUnlock()
		tidings.Queued(ctx) // what is queued next commits after j
	case <-ctx.Done():
		db.closeMu.RUnlock()
		return ctx.Err()
	}
	// Wait for the outcome even if ctx ends meanwhile: once queued, a job
	// is committed or not as a whole, and the caller must learn which.
	<-j.done
	return j.err
}

// syncMarks returns once the marks of every send committed so far are
// written (see sendCache), at once when none is waiting. Readers of what
// sends leave to the cache's flush (a conversation's last seq and activity
// time, a participant's marks) call it first, so that they read back what
// anyone was told has committed.
func (db *DB) syncMarks(ctx context.Context) error {
	if !db.marksPending.Load() {
		return nil
	}
	// The caller's next write may not start on this job being queued:
	// it is not the caller's write (a send after a read, in order).
	return db.submit(marksJob(tidings.WithoutQueued(ctx)))
}

// syncMarksOf is syncMarks for the marks of conversations keys alone:
// only theirs are written (see scope).
func (db *DB) syncMarksOf(ctx context.Context, keys []convKey) error {
	if len(keys) == 0 {
		return nil
	}
	j := marksJob(tidings.WithoutQueued(ctx))
	j.scope = &scope{convs: keys}
	return db.submit(j)
}

func marksJob(ctx context.Context) *job {
	return &job{ctx: ctx, fn: func(*Tx) error { return nil }, marks: true, done: make(chan struct{})}
}

// idleJob writes the marks of the sends committed so far and moves the
// messages of the journal: what the writer does when it has nothing else
// to do, and before the database closes.
func idleJob() *job {
	j := marksJob(context.Background())
	j.fn = func(tx *Tx) error {
		tx.wrote = true
		return tx.db.journal.moveAll(tx.execOnly, moveWhyIdle)
	}
	return j
}

// writer commits the queued jobs in groups until the queue is closed.
// When marks or messages of the journal are left waiting and no job comes
// for markDelay, it writes them (idleJob); it writes those left when the
// queue closes.
func (db *DB) writer() {
	defer close(db.done)
	batch := make([]*job, 0, db.MaxBatch)
	idle := time.NewTimer(db.marksIdle)
	idle.Stop()
	var lastStart time.Time
	for {
		var j *job
		if db.marksPending.Load() || !db.journal.empty() {
			idle.Reset(db.marksIdle)
			select {
			case j = <-db.jobs:
			case <-idle.C:
				j = idleJob()
			}
		} else {
			j = <-db.jobs
		}
		if j == nil { // closed
			break
		}
		batch = append(batch[:0], j)
		var gather <-chan time.Time
		if wait := time.Until(lastStart.Add(db.CommitInterval)); wait > 0 {
			gather = time.After(wait)
		}
	fill:
		for len(batch) < db.MaxBatch {
			select {
			case j, ok := <-db.jobs:
				if !ok {
					break fill
				}
				batch = append(batch, j)
				continue
			default:
			}
			if gather == nil {
				break
			}
			select {
			case j, ok := <-db.jobs:
				if !ok {
					break fill
				}
				batch = append(batch, j)
			case <-gather:
				break fill
			}
		}
		lastStart = time.Now()
		db.resizeCache(len(batch), db.Now())
		db.walMu.Lock()
		db.takeTurn()
		db.commit(batch)
		db.endTurn()
		db.walMu.Unlock()
		db.metrics.batchSize.Observe(float64(len(batch)))
	}
	if db.marksPending.Load() || !db.journal.empty() {
		j := idleJob()
		db.walMu.Lock()
		db.takeTurn()
		db.commit([]*job{j})
		db.endTurn()
		db.walMu.Unlock()
		if j.err != nil {
			db.Logger.Error("the marks of the last sends, or the messages of the journal, could not be written: they are put right at the next start", "err", j.err)
		}
	}
}

// commit runs a group of jobs in one transaction and answers them.
//
// It first runs every job straight in the transaction. If one fails, that
// pass is rolled back and the group runs again with each job in a
// savepoint of its own, so that a failing job undoes only its own writes.
// Savepoints are not used in the first pass because they copy every page a
// job touches, which costs more than the jobs themselves; jobs rarely fail
// inside the transaction (input is validated before), so the second pass
// is rare.
func (db *DB) commit(batch []*job) {
	defer func() {
		for _, j := range batch {
			close(j.done)
		}
	}()
	err := db.runBatch(batch, false)
	if errors.Is(err, errJobFailed) {
		db.metrics.reruns.Inc()
		for _, j := range batch {
			if j.err == nil {
				j.events = nil
			}
		}
		err = db.runBatch(batch, true)
	}
	if err != nil {
		db.Logger.Error("write transaction failed", "err", err, "jobs", len(batch))
		db.control("ROLLBACK")
		db.cache.rolledBack()
		db.journal.rolledBack()
		db.checkPushApps()
		for _, j := range batch {
			if j.err == nil {
				j.err = tidings.Errorf(tidings.EInternal, "the write could not be stored")
			}
			j.events = nil
		}
		return
	}
	now := time.Now()
	db.metrics.commits.Inc()
	for _, j := range batch {
		if j.err == nil && !j.queued.IsZero() {
			o := db.metrics.writeOther
			if j.sends {
				o = db.metrics.writeSend
			}
			o.Observe(now.Sub(j.queued).Seconds())
		}
	}
	db.marksPending.Store(db.cache.committed(now))
	db.journal.committed(now)
	db.committed(len(batch))
	// Before the events are published: the push dispatcher asks it for
	// the messages of this commit.
	db.checkPushApps()
	if db.Publisher == nil {
		return
	}
	for _, j := range batch {
		if len(j.events) > 0 {
			db.Publisher.Publish(j.events...)
		}
	}
}

// errJobFailed ends a pass without savepoints in which a job failed.
var errJobFailed = errors.New("a job failed")

// runBatch runs the jobs that have not failed yet in one transaction and
// commits it. Without savepoints, the first job to fail rolls the whole
// transaction back and runBatch returns errJobFailed. Any other error
// leaves the transaction open for the caller to roll back.
//
// The send cache outlives the transaction when only sends ran since it
// was filled (see sendCache): before any other job it is flushed and
// emptied, since that job may change what it holds, unless the job is set
// aside from it (job.aside), or only for the conversations and users of
// the job's scope (job.scope); before a marks job it is flushed. The
// marks of committed sends are also written when they are due, a chunk
// per commit (sendCache.flushDue). The journal is moved likewise (see
// prepare).
//
// Its parts are regions of the execution trace (go tool trace, from
// /debug/pprof/trace): sqlite.job.send, .aside, .marks and .other for
// each job, sqlite.flush before a job that needs it, sqlite.move (a
// scope's conversations) or sqlite.moveAll (the whole journal) before a
// job that needs it,
// sqlite.flushDue, sqlite.moveDue, sqlite.dropMoved and sqlite.commit, so
// that a slow batch shows what made it slow.
func (db *DB) runBatch(batch []*job, savepoints bool) error {
	if _, err := db.control("BEGIN IMMEDIATE"); err != nil {
		return err
	}
	for _, j := range batch {
		if j.err != nil {
			continue
		}
		if err := db.prepare(j); err != nil {
			return err
		}
		if err := j.ctx.Err(); err != nil {
			j.err = err
			continue
		}
		if savepoints {
			if _, err := db.control("SAVEPOINT job"); err != nil {
				return err
			}
		}
		// The job's statements run to their end even if its context ends
		// meanwhile: the job was checked just above, and it is committed or
		// not as a whole anyway. A statement with a context that can end
		// costs a goroutine (the driver's, to interrupt it; database/sql's,
		// to close its rows) and a progress handler.
		tx := &Tx{db: db, ctx: context.WithoutCancel(j.ctx), now: db.Now().UTC().Truncate(time.Microsecond)}
		if err := traced(j.region(), func() error { return tx.run(j.fn) }); err != nil {
			j.err = err
			if !savepoints && !tx.wrote {
				// Refused before it wrote anything (a send to a
				// conversation its sender may not see): nothing to undo,
				// and the others go on. Running the batch again would
				// let each such job cost a whole batch.
				continue
			}
			if !savepoints {
				db.cache.rolledBack()
				db.journal.rolledBack()
				if _, err := db.control("ROLLBACK"); err != nil {
					return err
				}
				return errJobFailed
			}
			if _, err := db.control("ROLLBACK TO job"); err != nil {
				return err
			}
		} else {
			j.events = tx.events
		}
		if savepoints {
			if _, err := db.control("RELEASE job"); err != nil {
				return err
			}
		}
	}
	if err := traced("sqlite.flushDue", func() error { return db.cache.flushDue(time.Now(), len(batch)) }); err != nil {
		return err
	}
	if err := traced("sqlite.moveDue", func() error { return db.journal.moveDue(db.controlOnly, time.Now(), db.moveDelay) }); err != nil {
		return err
	}
	if err := traced("sqlite.dropMoved", func() error { return db.journal.dropMoved(db.controlOnly) }); err != nil {
		return err
	}
	db.cache.bound()
	start := time.Now()
	err := traced("sqlite.commit", func() error { return db.controlOnly("COMMIT") })
	if err == nil {
		db.metrics.commitTime.Observe(time.Since(start).Seconds())
	}
	return err
}

// prepare makes the send cache and the journal ready for job j (see
// runBatch): for a job with a scope, the marks of its conversations are
// written, what the cache read of them and of its users is forgotten and
// their messages moved; for one without, all of it.
func (db *DB) prepare(j *job) error {
	if j.scopeOf != nil {
		s, err := j.scopeOf(&Tx{db: db, ctx: context.WithoutCancel(j.ctx)})
		if err != nil {
			return err
		}
		j.scope = s
	}
	switch {
	case j.sends || j.aside:
		return nil
	case j.scope != nil:
		if err := traced("sqlite.flush", func() error { return db.cache.flushConvs(j.scope.convs) }); err != nil {
			return err
		}
		if j.marks {
			return nil
		}
		db.cache.forget(j.scope)
		return traced("sqlite.move", func() error {
			return db.journal.move(db.controlOnly, j.scope.convs, moveWhyWrite)
		})
	}
	if err := traced("sqlite.flush", db.cache.flush); err != nil {
		return err
	}
	if j.marks {
		return nil
	}
	db.cache.discard()
	return traced("sqlite.moveAll", func() error {
		return db.journal.moveAll(db.controlOnly, moveWhyWrite)
	})
}

// traced runs fn as a region of the execution trace called name (see
// runBatch); nothing is recorded while no trace is taken.
func traced(name string, fn func() error) error {
	defer trace.StartRegion(context.Background(), name).End()
	return fn()
}

// controlOnly is control without its result.
func (db *DB) controlOnly(query string, args ...any) error {
	_, err := db.control(query, args...)
	return err
}

// control runs a statement of the writer's own (transaction control,
// cache flushes), prepared once.
func (db *DB) control(query string, args ...any) (sql.Result, error) {
	s, ok := db.stmts[query]
	if !ok {
		var err error
		if s, err = db.wconn.PrepareContext(context.Background(), query); err != nil {
			return nil, err
		}
		db.stmts[query] = s
	}
	return s.Exec(args...)
}

// Tx is one job's view of the write transaction.
//
// A job writes through exec, or query (a write with RETURNING); queryRow,
// stmt and the write connection itself are for reads. A job that fails
// before it called exec or query has written nothing (Tx.wrote), and is
// not undone.
type Tx struct {
	db     *DB
	ctx    context.Context
	now    time.Time
	events []*tidings.Event
	wrote  bool // exec or query was called (see Tx)
}

// run calls fn, turning a panic into an internal error so that one bad job
// cannot take the writer down.
func (tx *Tx) run(fn func(*Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			tx.db.Logger.Error("panic in write job", "panic", r, "stack", string(debug.Stack()))
			err = tidings.Errorf(tidings.EInternal, "internal error")
		}
	}()
	return fn(tx)
}

// stmt returns the statement for query, prepared once on the write
// connection.
func (tx *Tx) stmt(query string) (*sql.Stmt, error) {
	if s, ok := tx.db.stmts[query]; ok {
		return s, nil
	}
	s, err := tx.db.wconn.PrepareContext(context.Background(), query)
	if err != nil {
		return nil, fmt.Errorf("prepare %q: %w", query, err)
	}
	tx.db.stmts[query] = s
	return s, nil
}

// QueryRowContext runs query, a statement prepared once (see stmt), in
// the write transaction: tx is a rowQuerier for the reads the readers
// share with the writer's jobs (loadConversation, findParticipant...),
// which would otherwise parse their SQL at each call (a read receipt
// spent 10 % of the server's CPU parsing its two reads).
func (tx *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if !isRead(query) {
		tx.wrote = true
	}
	s, err := tx.stmt(query)
	if err != nil {
		return tx.db.wconn.QueryRowContext(ctx, query, args...) // fails the same way
	}
	return s.QueryRowContext(ctx, args...)
}

// QueryContext is QueryRowContext for several rows.
func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if !isRead(query) {
		tx.wrote = true
	}
	s, err := tx.stmt(query)
	if err != nil {
		return nil, err
	}
	return s.QueryContext(ctx, args...)
}

func (tx *Tx) exec(query string, args ...any) (sql.Result, error) {
	tx.wrote = true
	s, err := tx.stmt(query)
	if err != nil {
		return nil, err
	}
	return s.ExecContext(tx.ctx, args...)
}

// queryRow runs a query expected to return one row and scans it into dest.
// It returns sql.ErrNoRows when there is none.
// execOnly is exec without its result.
func (tx *Tx) execOnly(query string, args ...any) error {
	_, err := tx.exec(query, args...)
	return err
}

func (tx *Tx) queryRow(query string, args []any, dest ...any) error {
	if !isRead(query) {
		tx.wrote = true
	}
	s, err := tx.stmt(query)
	if err != nil {
		return err
	}
	return s.QueryRowContext(tx.ctx, args...).Scan(dest...)
}

// isRead says whether query only reads: a SELECT (anything else counts as
// a write).
func isRead(query string) bool {
	q := strings.TrimLeft(query, " \t\n")
	return len(q) >= 6 && strings.EqualFold(q[:6], "SELECT")
}

// query runs a query (SELECT, or a write with RETURNING) in the
// transaction, through a statement prepared once.
func (tx *Tx) query(query string, args ...any) (*sql.Rows, error) {
	tx.wrote = true
	s, err := tx.stmt(query)
	if err != nil {
		return nil, err
	}
	return s.QueryContext(tx.ctx, args...)
}

// emit records an event of the change being made: it is stored in the
// event log within the transaction, and published once the transaction
// has committed. It is the one place where events are made.
func (tx *Tx) emit(appID, name string, actor *tidings.Profile, conversationID, userID string, payload any) error {
	_, err := tx.emitEvent(appID, name, actor, conversationID, userID, payload)
	return err
}

// emitEvent is emit returning the event, whose Seq is set.
func (tx *Tx) emitEvent(appID, name string, actor *tidings.Profile, conversationID, userID string, payload any) (*tidings.Event, error) {
	var body []byte
	var err error
	msg, isMsg := payload.(tidings.MessagePayload)
	if isMsg {
		body, err = msg.MarshalJSON() // compact already: no pass of encoding/json over it
	} else {
		body, err = json.Marshal(payload)
	}
	if err != nil {
		return nil, fmt.Errorf("encode %s payload: %w", name, err)
	}
	ev := &tidings.Event{
		ID: tidings.NewEventID(name, payload), AppID: appID, Name: name, Time: tx.now, Actor: actor,
		ConversationID: conversationID, UserID: userID, Payload: body,
	}
	if isMsg && msg.Message != nil {
		m := *msg.Message // the caller's message may change after this
		msg.Message = &m
		ev.Message = &msg
	}
	var actorJSON []byte
	if actor != nil {
		actorJSON = actor.AppendJSON(make([]byte, 0, 128))
	}
	// LastInsertId rather than RETURNING: it costs far less in SQLite.
	res, err := tx.exec(`INSERT INTO events (id, app_id, name, time, actor, conversation_id, user_id, payload)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		ev.ID, appID, name, tx.now.UnixMicro(), nullText(actorJSON), nullString(conversationID), nullString(userID), text(body))
	if err == nil {
		ev.Seq, err = res.LastInsertId()
	}
	if err != nil {
		return nil, fmt.Errorf("store %s event: %w", name, err)
	}
	tx.events = append(tx.events, ev)
	return ev, nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nullText is nullBytes without a copy of b (see text).
func nullText(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return text(b)
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}
