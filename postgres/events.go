package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidings/tidings"
)

// Events and their positions (docs/cluster.md, "Delivery positions").
//
// An event's position (its seq, the ref clients see) is drawn from the
// sequence tidings_event_seq in the transaction that stores it. Positions
// then increase in the order they are drawn, not in commit order, so
// readers deliver an event only once every position below it is final:
// committed or abandoned for good. Two rules, kept by the helpers below,
// make that cheap to know:
//
//  1. A transaction has its id (xid) before it draws a position:
//     emitEvent calls pg_current_xact_id() first (nextval gives no id).
//  2. A send queues for its conversation before it has an id
//     (lockConversation, an advisory lock, which gives none), so that
//     sends waiting for a busy conversation do not hold the horizon back.
//
// How the horizon uses rule 1 is explained at finality.advance.

// emit records an event of the change being made: it is stored in the
// event log within the transaction, with its position. It is the one
// place where events are made.
func (tx *Tx) emit(appID, name string, actor *tidings.Profile, conversationID, userID string, payload any) error {
	_, err := tx.emitEvent(appID, name, actor, conversationID, userID, payload)
	return err
}

// emitEvent is emit returning the event, whose Seq is set.
func (tx *Tx) emitEvent(appID, name string, actor *tidings.Profile, conversationID, userID string, payload any) (*tidings.Event, error) {
	// One round trip: the transaction's id first (rule 1), then the
	// position, drawn by the insert.
	b := &pgx.Batch{}
	if !tx.hasXID {
		b.Queue(`SELECT pg_current_xact_id()`)
	}
	ev, err := tx.queueEvent(b, appID, name, actor, conversationID, userID, payload)
	if err != nil {
		return nil, err
	}
	if err := tx.tx.SendBatch(tx.ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("store %s event: %w", name, err)
	}
	tx.hasXID = true
	tx.events = append(tx.events, ev)
	return ev, nil
}

// queueEvent queues the insert of an event on b: its Seq is set once b
// has run. The transaction must have its id by the time b runs (rule 1):
// the caller sees to it.
func (tx *Tx) queueEvent(b *pgx.Batch, appID, name string, actor *tidings.Profile, conversationID, userID string, payload any) (*tidings.Event, error) {
	ev, actorJSON, err := tx.newEvent(appID, name, actor, conversationID, userID, payload)
	if err != nil {
		return nil, err
	}
	b.Queue(`INSERT INTO events (seq, id, app_id, name, time, actor, conversation_id, user_id, payload)
		VALUES (nextval('tidings_event_seq'), $1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq`,
		ev.ID, appID, name, tx.now, actorJSON, nullString(conversationID), nullString(userID), string(ev.Payload),
	).QueryRow(func(row pgx.Row) error { return row.Scan(&ev.Seq) })
	return ev, nil
}

// newEvent makes an event of the change being made, without its
// position, and returns it with its actor in JSON (nil: none).
func (tx *Tx) newEvent(appID, name string, actor *tidings.Profile, conversationID, userID string, payload any) (*tidings.Event, *string, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, nil, fmt.Errorf("encode %s payload: %w", name, err)
	}
	ev := &tidings.Event{
		ID: tidings.NewEventID(name, payload), AppID: appID, Name: name, Time: tx.now, Actor: actor,
		ConversationID: conversationID, UserID: userID, Payload: body,
	}
	var actorJSON *string
	if actor != nil {
		b, err := json.Marshal(actor)
		if err != nil {
			return nil, nil, err
		}
		s := string(b)
		actorJSON = &s
	}
	return ev, actorJSON, nil
}

// lockConversation queues the transaction for a conversation: it returns
// once no other transaction holds the conversation's lock, which is then
// held until tx ends (pg_advisory_xact_lock). It must be the first
// statement of a send's transaction, before anything gives the
// transaction an id (rule 2 above): it fails otherwise.
func lockConversation(ctx context.Context, tx *Tx, appID, convID string) error {
	var fresh bool
	// Keyed by a hash of app and conversation ids, apart by "/", which no
	// id holds (PostgreSQL text cannot hold the NUL byte). Two
	// conversations with the same hash only queue together.
	err := tx.tx.QueryRow(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0)), pg_current_xact_id_if_assigned() IS NULL`,
		appID+"/"+convID).Scan(nil, &fresh)
	if err != nil {
		return fmt.Errorf("lock conversation %s: %w", convID, err)
	}
	if !fresh {
		return fmt.Errorf("lock conversation %s: the transaction already has an id (lockConversation must come first)", convID)
	}
	return nil
}

// finality knows the largest final position: every position at or below
// it is committed or abandoned for good, so no event can appear there
// any more.
type finality struct {
	mu     sync.Mutex
	final  int64
	fences []fence // pending, by increasing pos and xid

	wmu      sync.Mutex
	waiters  []*waiter // the callers of settled not answered yet
	settling bool      // a settler runs
}

// A fence is a transaction id drawn after pos was seen committed: once no
// transaction older than xid is running, every position up to pos is
// final (see advance).
type fence struct{ pos, xid int64 }

// advance takes a step and returns the largest position known final.
//
// Why a position P is final once a fence (P, X) is passed, that is once a
// snapshot S, taken after X's transaction ended, has xmin >= X:
//
//   - P was read as the largest visible seq in a snapshot S0: the event E
//     that drew P had committed before S0. X was drawn after S0 (by
//     pg_current_xact_id() in a later statement, a transaction of its
//     own).
//   - Take any event with a position q < P, of a transaction T. The
//     sequence hands out values in the order nextval is called (CACHE 1),
//     so T drew q before E drew P. By rule 1, T had its id before drawing
//     q: before E committed, so before S0, so before X was drawn. Ids are
//     handed out in increasing order: T's id < X.
//   - S.xmin >= X, and S.xmax > X since X's transaction had ended (it
//     counts among the completed ones). xmin is the oldest id below xmax
//     still running, so no id below X is running at S: T had ended. If it
//     committed, its event is visible in S and in every later snapshot;
//     if it aborted, q is never used.
//
// So once advance reports P final, a read of the positions up to P with a
// snapshot taken after that step sees every event they will ever hold.
//
// Note what is not enough: "a later xmin reaches S0's xmax". A snapshot's
// xmax is one past the newest *completed* id, and ids handed out later but
// not yet completed are not listed in it. T may have taken its id after
// E took its own, yet drawn its position first; with nothing completed
// since E, S0.xmax = E's id + 1 <= T's id, and xmin can reach S0.xmax
// while T still runs. Hence the fence: an id drawn after S0 is above
// every id handed out before it, completed or not. It costs one id for
// each step that sees new events, none when the log is idle.
func (h *finality) advance(ctx context.Context, db *DB) (final int64, err error) {
	return h.step(ctx, db, 0)
}

// step takes a step of advance, unless the horizon is at need already
// (need > 0).
func (h *finality) step(ctx context.Context, db *DB, need int64) (final int64, err error) {
	final, _, err = h.stepTop(ctx, db, need)
	return final, err
}

// stepTop is step, also returning the largest committed position it read
// (0 when it took no step).
func (h *finality) stepTop(ctx context.Context, db *DB, need int64) (final, top int64, err error) {
	if err := db.usable(); err != nil {
		return 0, 0, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if need > 0 && h.final >= need {
		return h.final, 0, nil
	}
	var xmin int64
	if err := db.pool.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
		coalesce((SELECT max(seq) FROM events), 0)`).Scan(&xmin, &top); err != nil {
		return h.final, 0, db.mapError(err)
	}
	h.settle(xmin)
	if top <= h.final || len(h.fences) > 0 && top <= h.fences[len(h.fences)-1].pos {
		return h.final, top, nil
	}
	var x int64
	if err := db.pool.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&x); err != nil {
		return h.final, top, db.mapError(err)
	}
	h.fences = append(h.fences, fence{pos: top, xid: x})
	// Most often nothing older runs: the fence is passed at once.
	if err := db.pool.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint`).Scan(&xmin); err != nil {
		return h.final, top, db.mapError(err)
	}
	h.settle(xmin)
	return h.final, top, nil
}

// settle moves the horizon past the fences that a snapshot with this xmin,
// taken after they were drawn, has passed.
func (h *finality) settle(xmin int64) {
	n := 0
	for _, f := range h.fences {
		if f.xid > xmin {
			break
		}
		h.final = max(h.final, f.pos)
		n++
	}
	h.fences = h.fences[n:]
}

// settled waits until every position committed when it was called is
// final, and returns the largest final position then: what a reader
// sees of its own writes. It waits as long as a transaction that was
// running when it was called runs, or until ctx ends.
//
// Callers do not step the horizon themselves: they wait for one
// goroutine (settler) that steps it for every caller at once, so that a
// storm of readers (thousands of clients resuming on a node) costs a few
// queries a millisecond, not a few each.
func (db *DB) settled(ctx context.Context) (int64, error) {
	w := &waiter{need: -1, done: make(chan struct{})}
	h := &db.horizon
	h.wmu.Lock()
	h.waiters = append(h.waiters, w)
	if !h.settling {
		h.settling = true
		go h.settler(db)
	}
	h.wmu.Unlock()
	select {
	case <-w.done:
		return w.final, w.err
	case <-ctx.Done():
		w.abandoned.Store(true)
		return 0, ctx.Err()
	}
}

// A waiter is a caller of settled: it is answered once the horizon
// reaches need, the largest committed position read after it came (-1
// until a step has read it).
type waiter struct {
	need      int64
	final     int64
	err       error
	inStep    bool // came before the step under way read the top; guarded by wmu
	done      chan struct{}
	abandoned atomic.Bool
}

// settler steps the horizon until every waiter is answered. Each step
// reads the largest committed position after the waiters it answers for
// came, so each is answered only once what it may have written is final.
func (h *finality) settler(db *DB) {
	wait := time.Millisecond
	for {
		h.wmu.Lock()
		ws := h.waiters[:0:0]
		for _, w := range h.waiters {
			if !w.abandoned.Load() {
				w.inStep = true
				ws = append(ws, w)
			}
		}
		h.waiters = ws
		if len(ws) == 0 {
			h.settling = false
			h.wmu.Unlock()
			return
		}
		h.wmu.Unlock()
		// The waiters marked inStep came before this step reads the top.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		final, top, err := h.stepTop(ctx, db, 0)
		cancel()
		h.wmu.Lock()
		rest := h.waiters[:0:0]
		progress := false
		for _, w := range h.waiters {
			switch {
			case err != nil && w.inStep:
				w.err = err
			case w.need < 0 && w.inStep:
				w.need = top
				fallthrough
			case w.need >= 0:
				if w.need > final {
					rest = append(rest, w)
					continue
				}
				w.final = final
			default:
				rest = append(rest, w) // came during the step
				continue
			}
			close(w.done)
			progress = true
		}
		h.waiters = rest
		h.wmu.Unlock()
		if progress {
			wait = time.Millisecond
		} else {
			wait = min(2*wait, 20*time.Millisecond)
		}
		time.Sleep(wait)
	}
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
