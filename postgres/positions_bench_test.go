package postgres

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// What does it cost to give every event a cluster-wide position when
// several writers send at once? Each benchmark op is one durable send, the
// transaction a store runs for it: take the conversation's next message
// seq (a row lock per conversation, which gapless message numbers need
// whatever the positions), insert the message, insert its event with a
// position, commit (synchronous_commit on: the WAL is flushed).
//
// The ways to position the event:
//
//   - counter: one row updated by every sending transaction
//     (UPDATE … SET pos = pos + 1 RETURNING pos). Positions are gapless and
//     in commit order, so refs stay "everything up to N", but the row's
//     lock is held from that update to the commit's flush: every send in
//     the cluster waits in one queue.
//   - sequence: a PostgreSQL sequence (nextval, no lock held) plus a
//     "persisted up to" watermark kept by the writer: the largest position
//     below which no transaction is in flight. Readers deliver only up to
//     the watermark, so an event never overtakes one still being
//     committed; what this costs is delay, reported as the time from a
//     send's commit to the watermark passing its event (lag-p50-µs,
//     lag-p99-µs).
//   - horizon: positions from the sequence as above, but how far they
//     are persisted is told by PostgreSQL, not by the writers: a
//     transaction that still holds a position below an event's is running
//     when the event's commit is seen (it drew that position before the
//     event's was drawn), so once every transaction running at that moment
//     has ended (a later snapshot's xmin reaches that moment's xmax),
//     every position up to the event's is final. (Not quite: an id
//     handed out but not completed may lie above that xmax; the store
//     draws an id of its own instead, see finality.advance in events.go.
//     The lag measured here lacks those two round trips.) Writers keep no state and
//     tell no one; a reader polls pg_current_snapshot() (here every
//     millisecond, as one node of a cluster would for all) and delivers up
//     to the positions it has seen final. A transaction waiting for a lock
//     while holding an id would hold everyone back, so a send queues for
//     its conversation on an advisory lock, before it has an id. Reported:
//     the delay from a send's commit to the poll that makes it final
//     (lag-p50-µs, lag-p99-µs).
//   - xid: the position is the writing transaction's id (xid8) and the
//     event's rank in it; everything below the oldest transaction still
//     running (a snapshot's xmin) is final, and any transaction that starts
//     later gets a larger id. As horizon, with the advisory lock, but an
//     event waits only for the transactions older than its own. Refs would
//     be xid8 × 4096 + rank: larger numbers (see docs/cluster.md).
//   - conversation: no cluster-wide position at all, only the
//     conversation's own seq (Telegram's channel pts): the floor, the cost
//     of the send itself.
//
// Loads: "spread", each writer into a conversation of its own (a busy
// cluster of many conversations), and "hot", all writers into one
// conversation (where the conversation's row serializes sends anyway).
// Batches: 1, a transaction per send; 32, a writer commits 32 sends in one
// transaction, as the SQLite store's group commit does (one flush, one
// counter update, for the batch).
//
//	go test ./postgres/ -run XXX -bench Positions -benchtime 1024x -count 2 -timeout 60m
func BenchmarkPositions(b *testing.B) {
	pool := freshDB(b, 64)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, positionsSchema); err != nil {
		b.Fatal(err)
	}
	// Strategies innermost, so that they are compared under the same load
	// of the machine.
	for _, load := range []string{"spread", "hot"} {
		for _, batch := range []int{1, 32} {
			for _, writers := range []int{1, 8, 32} {
				for _, st := range []string{"counter", "sequence", "horizon", "xid", "conversation"} {
					b.Run(fmt.Sprintf("%s/%s/batch=%d/writers=%d", st, load, batch, writers), func(b *testing.B) {
						benchSends(b, pool, st, load, batch, writers)
					})
				}
			}
		}
	}
}

const positionsSchema = `
CREATE TABLE conversations (id int PRIMARY KEY, last_seq bigint NOT NULL DEFAULT 0);
CREATE TABLE messages (conversation_id int NOT NULL, seq bigint NOT NULL, body text NOT NULL,
	PRIMARY KEY (conversation_id, seq));
CREATE SEQUENCE event_pos;
CREATE TABLE events (pos bigint PRIMARY KEY, conversation_id int NOT NULL, payload text NOT NULL);
CREATE TABLE xid_events (xid xid8 NOT NULL, rank int NOT NULL, conversation_id int NOT NULL, payload text NOT NULL,
	PRIMARY KEY (xid, rank));
CREATE TABLE conversation_events (conversation_id int NOT NULL, pos bigint NOT NULL, payload text NOT NULL,
	PRIMARY KEY (conversation_id, pos));
CREATE TABLE counter (id int PRIMARY KEY, pos bigint NOT NULL);
INSERT INTO counter VALUES (1, 0);
`

func benchSends(b *testing.B, pool *pgxpool.Pool, strategy, load string, batch, writers int) {
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `TRUNCATE conversations, messages, events, xid_events, conversation_events;
		UPDATE counter SET pos = 0; ALTER SEQUENCE event_pos RESTART`); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO conversations (id) SELECT generate_series(0, $1)`, writers); err != nil {
		b.Fatal(err)
	}
	// Warm the pool: every writer has its connection before the clock runs.
	var conns []*pgxpool.Conn
	for range writers {
		c, err := pool.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}

	wm := newWatermark()
	hz := newHorizon()
	stopPoll := make(chan struct{})
	polled := make(chan error, 1)
	if strategy == "horizon" || strategy == "xid" {
		go func() { polled <- hz.poll(ctx, pool, stopPoll) }()
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	payload := `{"name":"conversationMessage.sent","parts":[{"type":"text/plain","data":"Noon at the usual place?"}]}`
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	b.ResetTimer()
	for w := range writers {
		conv := w
		if load == "hot" {
			conv = 0
		}
		wg.Go(func() {
			for left.Add(-int64(batch)) > -int64(batch) {
				if err := send(ctx, pool, wm, hz, strategy, conv, batch, payload); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if strategy == "horizon" || strategy == "xid" {
		hz.waitPassed(time.Now().Add(10 * time.Second))
		close(stopPoll)
		if err := <-polled; err != nil {
			b.Fatal(err)
		}
	}
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
	switch strategy {
	case "sequence":
		p50, p99 := wm.lags()
		b.ReportMetric(float64(p50.Microseconds()), "lag-p50-µs")
		b.ReportMetric(float64(p99.Microseconds()), "lag-p99-µs")
	case "horizon", "xid":
		p50, p99 := percentiles(hz.lags())
		b.ReportMetric(float64(p50.Microseconds()), "lag-p50-µs")
		b.ReportMetric(float64(p99.Microseconds()), "lag-p99-µs")
	}
}

// send runs the transaction of n durable sends into one conversation.
func send(ctx context.Context, pool *pgxpool.Pool, wm *watermark, hz *horizon, strategy string, conv, n int, payload string) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if strategy == "horizon" || strategy == "xid" {
		// Queue for the conversation before the transaction has an id: an
		// advisory lock gives none, while waiting on the row's lock would
		// hold one, and every transaction waiting in the queue would then
		// hold back the horizon (measured: seconds of lag with 32 writers
		// in one conversation).
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, conv); err != nil {
			return err
		}
	}
	var last int64
	if err := tx.QueryRow(ctx, `UPDATE conversations SET last_seq = last_seq + $2 WHERE id = $1 RETURNING last_seq`, conv, n).Scan(&last); err != nil {
		return err
	}
	first := last - int64(n) + 1
	if _, err := tx.Exec(ctx, `INSERT INTO messages (conversation_id, seq, body) SELECT $1, s, $3 FROM generate_series($2::bigint, $2::bigint + $4 - 1) s`,
		conv, first, payload, n); err != nil {
		return err
	}
	switch strategy {
	case "counter":
		// Last before the commit, so that the lock is held as briefly as
		// can be; one statement, as the sequence's, so that the counter
		// costs its lock, not a round trip more.
		_, err = tx.Exec(ctx, `WITH p AS (UPDATE counter SET pos = pos + $3 WHERE id = 1 RETURNING pos)
			INSERT INTO events (pos, conversation_id, payload) SELECT p.pos - $3 + g, $1, $2 FROM p, generate_series(1, $3) g`,
			conv, payload, n)
	case "sequence":
		// In flight from before the positions are drawn until the commit
		// is answered (or fails).
		draw := wm.begin()
		var rows pgx.Rows
		rows, err = tx.Query(ctx, `INSERT INTO events (pos, conversation_id, payload)
			SELECT nextval('event_pos'), $1, $2 FROM generate_series(1, $3) RETURNING pos`, conv, payload, n)
		var pos []int64
		if err == nil {
			pos, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		}
		wm.drawn(draw, pos...)
		defer func() { wm.done(err == nil, pos...) }()
	case "horizon":
		// The transaction has its id already (the update above wrote): a
		// position must never be drawn before, or the transaction could
		// hold it unseen by a snapshot (see horizon).
		_, err = tx.Exec(ctx, `INSERT INTO events (pos, conversation_id, payload)
			SELECT nextval('event_pos'), $1, $2 FROM generate_series(1, $3)`, conv, payload, n)
		if err == nil {
			defer func() {
				if err == nil {
					hz.committed()
				}
			}()
		}
	case "xid":
		var xid int64
		err = tx.QueryRow(ctx, `WITH e AS (INSERT INTO xid_events (xid, rank, conversation_id, payload)
			SELECT pg_current_xact_id(), g, $1, $2 FROM generate_series(1, $3) g RETURNING xid)
			SELECT min(xid::text::bigint) FROM e`, conv, payload, n).Scan(&xid)
		if err == nil {
			defer func() {
				if err == nil {
					hz.committedXID(xid)
				}
			}()
		}
	case "conversation":
		_, err = tx.Exec(ctx, `INSERT INTO conversation_events (conversation_id, pos, payload)
			SELECT $1, s, $3 FROM generate_series($2::bigint, $2::bigint + $4 - 1) s`, conv, first, payload, n)
	}
	if err != nil {
		return err
	}
	err = tx.Commit(ctx)
	return err
}

// watermark is a writer's "persisted up to": the largest position such
// that every position it drew, or may still be drawing, up to it is
// committed or abandoned. Readers deliver events only up to it, so an event
// is never delivered before one with a smaller position that is still in
// flight. It records, for each committed position, how long it waited after
// its commit for the watermark to pass it.
//
// A position is in flight from before it is drawn: the sequence's
// nextval runs without any lock of ours, so a draw that has not returned
// yet may still return any position above the largest one returned before
// it started (sequences only increase), and the watermark must not pass
// that floor until the draw has returned.
type watermark struct {
	mu        sync.Mutex
	drawing   map[int]int64 // draws not returned yet: their floor
	nextDraw  int
	inFlight  map[int64]bool
	max       int64               // largest position drawn
	mark      int64               // persisted up to
	committed map[int64]time.Time // committed above the mark, with their commit time
	lag       []time.Duration
}

func newWatermark() *watermark {
	return &watermark{drawing: map[int]int64{}, inFlight: map[int64]bool{}, committed: map[int64]time.Time{}}
}

// begin is called before drawing a position.
func (w *watermark) begin() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nextDraw++
	w.drawing[w.nextDraw] = w.max
	return w.nextDraw
}

// drawn is called when the draw returned (no position: it failed).
func (w *watermark) drawn(draw int, pos ...int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.drawing, draw)
	for _, p := range pos {
		w.inFlight[p] = true
		w.max = max(w.max, p)
	}
}

// done is called when the transaction holding the positions ended.
func (w *watermark) done(committed bool, pos ...int64) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range pos {
		delete(w.inFlight, p)
		if committed {
			w.committed[p] = now
		}
	}
	mark := w.max
	for p := range w.inFlight {
		mark = min(mark, p-1)
	}
	for _, floor := range w.drawing {
		mark = min(mark, floor)
	}
	if mark <= w.mark {
		return
	}
	w.mark = mark
	for p, at := range w.committed {
		if p <= mark {
			w.lag = append(w.lag, now.Sub(at))
			delete(w.committed, p)
		}
	}
}

// lags returns the median and 99th percentile of the delays.
func (w *watermark) lags() (p50, p99 time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return percentiles(w.lag)
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2], s[len(s)*99/100]
}

// horizon follows PostgreSQL's horizon of ended transactions. Each poll
// takes a snapshot: its xmin is the oldest transaction still running, its
// xmax the next to start. An event committed before poll i started is
// final once a poll j has xmin_j >= xmax_i: every transaction that could
// hold a smaller position (running at poll i) has ended then. It records
// the commit times, and the polls, to tell each commit's delay.
type horizon struct {
	mu      sync.Mutex
	commits []time.Time
	xids    []int64 // with commits, for the xid strategy
	polls   []hpoll
	passed  chan struct{} // signalled after each poll
}

type hpoll struct {
	start, end time.Time
	xmin, xmax int64
}

func newHorizon() *horizon { return &horizon{passed: make(chan struct{}, 1)} }

func (h *horizon) committed() {
	h.mu.Lock()
	h.commits = append(h.commits, time.Now())
	h.mu.Unlock()
}

// committedXID records the commit of transaction xid (xid strategy): it is
// final once a snapshot's xmin passes it.
func (h *horizon) committedXID(xid int64) {
	h.mu.Lock()
	h.commits = append(h.commits, time.Now())
	h.xids = append(h.xids, xid)
	h.mu.Unlock()
}

// poll takes a snapshot every millisecond until stop is closed.
func (h *horizon) poll(ctx context.Context, pool *pgxpool.Pool, stop chan struct{}) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		p := hpoll{start: time.Now()}
		if err := conn.QueryRow(ctx, `SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint
			FROM pg_current_snapshot() s`).Scan(&p.xmin, &p.xmax); err != nil {
			return err
		}
		p.end = time.Now()
		h.mu.Lock()
		h.polls = append(h.polls, p)
		h.mu.Unlock()
		select {
		case h.passed <- struct{}{}:
		default:
		}
	}
}

// lags returns each commit's delay until it was final.
func (h *horizon) lags() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []time.Duration
	if len(h.xids) > 0 {
		i := 0
		for k, c := range h.commits {
			for i < len(h.polls) && h.polls[i].start.Before(c) {
				i++
			}
			j := i
			for j < len(h.polls) && h.polls[j].xmin <= h.xids[k] {
				j++
			}
			if j == len(h.polls) {
				break
			}
			out = append(out, h.polls[j].end.Sub(c))
		}
		return out
	}
	i, j := 0, 0
	for _, c := range h.commits { // in commit order, as the polls
		for i < len(h.polls) && h.polls[i].start.Before(c) {
			i++
		}
		if i == len(h.polls) {
			break
		}
		j = max(j, i)
		for j < len(h.polls) && h.polls[j].xmin < h.polls[i].xmax {
			j++
		}
		if j == len(h.polls) {
			break
		}
		out = append(out, h.polls[j].end.Sub(c))
	}
	return out
}

// final reports whether every commit so far is final.
func (h *horizon) final() bool {
	h.mu.Lock()
	n := len(h.commits)
	h.mu.Unlock()
	return len(h.lags()) == n
}

// waitPassed waits until every commit is final, or the deadline.
func (h *horizon) waitPassed(deadline time.Time) {
	for !h.final() && time.Now().Before(deadline) {
		select {
		case <-h.passed:
		case <-time.After(time.Until(deadline)):
		}
	}
}
