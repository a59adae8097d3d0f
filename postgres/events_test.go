package postgres

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// recorder is an EventPublisher that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	events []*tidings.Event
}

func (r *recorder) Publish(evs ...*tidings.Event) {
	r.mu.Lock()
	r.events = append(r.events, evs...)
	r.mu.Unlock()
}

func (r *recorder) all() []*tidings.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// emitOne stores one event in tx.
func emitOne(tx *Tx, user string) (*tidings.Event, error) {
	return tx.emitEvent("a", tidings.EventProfileUpdate, nil, "", user, map[string]string{"user": user})
}

// TestFinalNeverSkipsInFlight: two transactions commit out of position
// order. While the one holding the smaller position is in flight, Final
// never reaches the larger one, nor does the publisher publish it; once
// it commits, both come, in position order, each once.
//
// The transaction that commits first takes its id first, and draws its
// position last: then no transaction has completed since it, so a rule
// that waits only for the ids below its snapshot's xmax would call the
// larger position final while the smaller is still in flight (see
// finality.advance).
func TestFinalNeverSkipsInFlight(t *testing.T) {
	pub := &recorder{}
	db := openDB(t, pub)
	log := NewEventLog(db)
	ctx := context.Background()
	start, err := log.LastEventSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}

	firstHasID := make(chan struct{})
	slowDrew := make(chan struct{})
	releaseSlow := make(chan struct{})
	fastDone := make(chan int64, 1)
	var wg sync.WaitGroup
	// fast: takes its id, waits for slow to draw, draws, commits.
	wg.Go(func() {
		var seq int64
		err := db.update(ctx, func(tx *Tx) error {
			if _, err := tx.exec(`SELECT pg_current_xact_id()`); err != nil {
				return err
			}
			tx.hasXID = true
			close(firstHasID)
			<-slowDrew
			ev, err := emitOne(tx, "fast")
			if err != nil {
				return err
			}
			seq = ev.Seq
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		fastDone <- seq
	})
	// slow: takes its id after fast, draws first, commits when released.
	var slowSeq, slowXID int64
	wg.Go(func() {
		<-firstHasID
		err := db.update(ctx, func(tx *Tx) error {
			ev, err := emitOne(tx, "slow")
			if err != nil {
				return err
			}
			if slowSeq == 0 { // not run again: it is not cut
				if err := tx.queryRow(`SELECT pg_current_xact_id()::text::bigint`).Scan(&slowXID); err != nil {
					return err
				}
				slowSeq = ev.Seq
				close(slowDrew)
			}
			<-releaseSlow
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})
	fastSeq := <-fastDone
	p := slowSeq
	if !(p < fastSeq) {
		t.Fatalf("slow drew %d, fast %d: want slow first", p, fastSeq)
	}
	var xmax int64
	if err := db.queryRow(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint`).Scan(&xmax); err != nil {
		t.Fatal(err)
	}
	t.Logf("slow's id %d, snapshot's xmax %d after fast's commit (slow unlisted: %v)", slowXID, xmax, slowXID >= xmax)
	// fast has committed; slow is in flight. Nothing at or above slow's
	// position is final, however often one asks.
	for range 20 {
		r, err := log.Final(ctx, start, 100)
		if err != nil {
			t.Fatal(err)
		}
		if r.To >= p {
			t.Fatalf("Final reached %d with position %d in flight (events %v)", r.To, p, seqsOf(r.Events))
		}
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, err = log.LastEventSeq(short)
		cancel()
		if err == nil {
			t.Fatalf("LastEventSeq answered while position %d is in flight below a committed %d", p, fastSeq)
		}
	}
	for _, e := range pub.all() {
		if e.Seq >= p {
			t.Fatalf("published %d while %d is in flight", e.Seq, p)
		}
	}
	close(releaseSlow)
	wg.Wait()

	// Both come, in order, from Final and from the publisher.
	var got []int64
	deadline := time.Now().Add(20 * time.Second)
	for after := start; after < fastSeq; {
		r, err := log.Final(ctx, after, 100)
		if err != nil {
			t.Fatal(err)
		}
		if r.From != after || r.To < after {
			t.Fatalf("Final(%d) = (%d, %d]", after, r.From, r.To)
		}
		got = append(got, seqsOf(r.Events)...)
		after = r.To
		if time.Now().After(deadline) {
			t.Fatalf("Final stuck at %d, want %d", after, fastSeq)
		}
	}
	if want := []int64{slowSeq, fastSeq}; !slices.Equal(got, want) {
		t.Errorf("Final returned %v, want %v", got, want)
	}
	waitFor(t, "the publisher", func() bool {
		evs := pub.all()
		return len(evs) > 0 && evs[len(evs)-1].Seq >= fastSeq
	})
	if got := seqsOf(pub.all()); !slices.Equal(got, []int64{slowSeq, fastSeq}) {
		t.Errorf("published %v, want %v", got, []int64{slowSeq, fastSeq})
	}
	if last, err := log.LastEventSeq(ctx); err != nil || last != fastSeq {
		t.Errorf("last event seq %d, %v; want %d", last, err, fastSeq)
	}
}

func seqsOf(evs []*tidings.Event) []int64 {
	var s []int64
	for _, e := range evs {
		s = append(s, e.Seq)
	}
	return s
}

// waitFor polls cond until it holds, or fails after a generous deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLockConversation: sends to one conversation queue on its lock, which
// a transaction takes before it has an id; taking it later is refused.
func TestLockConversation(t *testing.T) {
	db := openDB(t, nil)
	ctx := context.Background()
	held := make(chan struct{})
	heldOnce := sync.OnceFunc(func() { close(held) })
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer heldOnce() // even on failure: the test goes on and fails
		err := db.update(ctx, func(tx *Tx) error {
			if err := lockConversation(ctx, tx, "a", "c"); err != nil {
				return err
			}
			heldOnce()
			<-release
			_, err := emitOne(tx, "first")
			return err
		})
		if err != nil {
			t.Error(err)
		}
	})
	<-held
	var order []string
	var mu sync.Mutex
	wg.Go(func() {
		err := db.update(ctx, func(tx *Tx) error {
			if err := lockConversation(ctx, tx, "a", "c"); err != nil {
				return err
			}
			mu.Lock()
			order = append(order, "second")
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})
	// Another conversation, or the same id in another app, is not held.
	for _, k := range [][2]string{{"a", "d"}, {"b", "c"}} {
		err := db.update(ctx, func(tx *Tx) error { return lockConversation(ctx, tx, k[0], k[1]) })
		if err != nil {
			t.Errorf("lock %v while a/c is held: %v", k, err)
		}
	}
	// The waiting transaction has no id: it holds nobody's horizon back.
	waitFor(t, "the second sender to wait", func() bool {
		var n int
		err := db.queryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event = 'advisory' AND backend_xid IS NULL`).Scan(&n)
		return err == nil && n == 1
	})
	mu.Lock()
	order = append(order, "first")
	mu.Unlock()
	close(release)
	wg.Wait()
	if !slices.Equal(order, []string{"first", "second"}) {
		t.Errorf("order %v, want the second sender after the first", order)
	}
	// A transaction that already has an id may not queue.
	err := db.update(ctx, func(tx *Tx) error {
		if _, err := emitOne(tx, "x"); err != nil {
			return err
		}
		return lockConversation(ctx, tx, "a", "c")
	})
	if err == nil {
		t.Error("lockConversation after the transaction took an id: no error")
	}
}

func unmarshalJSON(b []byte, v any) error { return json.Unmarshal(b, v) }

func cmpString(a, b string) int { return strings.Compare(a, b) }
