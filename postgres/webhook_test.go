package postgres

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidings/tidings"
)

// The rest of the webhook store is tested by the conformance suite
// (storetest.TestWebhooks, in TestConformance).

func newHook(t *testing.T, hooks *WebhookService, app string) *tidings.WebhookEndpoint {
	t.Helper()
	ep, err := hooks.CreateWebhook(serverCtx(app), tidings.NewWebhook{URL: "https://example.com/" + app})
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func saveProgress(t *testing.T, hooks *WebhookService, ps ...tidings.WebhookProgress) {
	t.Helper()
	if err := hooks.SaveWebhookProgress(context.Background(), ps); err != nil {
		t.Fatal(err)
	}
}

func findHook(t *testing.T, hooks *WebhookService, app, id string) *tidings.WebhookEndpoint {
	t.Helper()
	ep, err := hooks.FindWebhook(serverCtx(app), id)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// TestWebhooksPerApp: an app has at most tidings.MaxWebhooksPerApp endpoints,
// however many creations run at once (on several nodes); another app has
// its own; each lists its own, oldest first.
func TestWebhooksPerApp(t *testing.T) {
	db := fixture(t, nil)
	if _, err := NewAppService(db).CreateApp(context.Background(), "b", ""); err != nil {
		t.Fatal(err)
	}
	// Two pools, as two nodes have.
	other := NewDB(db.dsn)
	other.Logger = discard()
	if err := other.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	nodes := []*WebhookService{NewWebhookService(db), NewWebhookService(other)}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		created   int
		conflicts int
	)
	for i := range tidings.MaxWebhooksPerApp + 10 {
		wg.Go(func() {
			_, err := nodes[i%2].CreateWebhook(serverCtx("a"), tidings.NewWebhook{URL: fmt.Sprintf("https://example.com/%d", i)})
			mu.Lock()
			defer mu.Unlock()
			switch tidings.ErrorCode(err) {
			case "":
				created++
			case tidings.EConflict:
				conflicts++
			default:
				t.Errorf("create %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if created != tidings.MaxWebhooksPerApp || conflicts != 10 {
		t.Errorf("%d created, %d refused; want %d and 10", created, conflicts, tidings.MaxWebhooksPerApp)
	}
	list, err := nodes[0].ListWebhooks(serverCtx("a"))
	if err != nil || len(list) != tidings.MaxWebhooksPerApp {
		t.Fatalf("app a lists %d endpoints, %v", len(list), err)
	}
	if !slices.IsSortedFunc(list, func(x, y *tidings.WebhookEndpoint) int { return x.CreatedAt.Compare(y.CreatedAt) }) {
		t.Error("endpoints not listed oldest first")
	}
	b := newHook(t, nodes[1], "b")
	if l, err := nodes[0].ListWebhooks(serverCtx("b")); err != nil || len(l) != 1 || l[0].ID != b.ID || l[0].AppID != "b" {
		t.Errorf("app b lists %v, %v", l, err)
	}
	if all, err := nodes[0].AllWebhooks(context.Background()); err != nil || len(all) != tidings.MaxWebhooksPerApp+1 {
		t.Errorf("AllWebhooks: %d, %v", len(all), err)
	}
}

// TestWebhookProgress: positions and states are saved; attempts are kept,
// newest first, the newest WebhookAttemptsKept of them, also when two
// dispatchers save at once (a lease changing hands); a deletion at the
// same time as a save leaves nothing behind.
func TestWebhookProgress(t *testing.T) {
	db := fixture(t, nil)
	hooks := NewWebhookService(db)
	ctx := context.Background()
	ep := newHook(t, hooks, "a")
	var seqs []int64
	for i := range 3 {
		seqs = append(seqs, say(t, db, "c", fmt.Sprint(i)))
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	attempts := func(from, n int) []tidings.WebhookAttempt {
		var as []tidings.WebhookAttempt
		for i := from; i < from+n; i++ {
			as = append(as, tidings.WebhookAttempt{EndpointID: ep.ID, EventID: "e", EventSeq: seqs[0], EventName: tidings.EventMessageSent,
				Time: now, Attempt: i, Status: 500, Error: "down", LatencyMS: 2.25})
		}
		return as
	}
	saveProgress(t, hooks, tidings.WebhookProgress{EndpointID: ep.ID, Version: ep.Version, LastSeq: seqs[1],
		Failing: true, FailingSince: &now, MissedUpTo: seqs[0], MissedAt: &now, Attempts: attempts(1, 60)})
	got := findHook(t, hooks, "a", ep.ID)
	if got.LastSeq != seqs[1] || !got.Failing || !got.FailingSince.Equal(now) || got.MissedUpTo != seqs[0] || !got.MissedAt.Equal(now) {
		t.Errorf("after a save: %+v", got)
	}
	// 60 more, of which 150 would be too many.
	saveProgress(t, hooks, tidings.WebhookProgress{EndpointID: ep.ID, Version: ep.Version, LastSeq: seqs[2],
		Attempts: attempts(61, 150)})
	list, err := hooks.ListWebhookAttempts(serverCtx("a"), ep.ID, 1000)
	if err != nil || len(list) != tidings.WebhookAttemptsKept {
		t.Fatalf("%d attempts kept, %v; want %d", len(list), err, tidings.WebhookAttemptsKept)
	}
	for i, a := range list {
		if want := 210 - i; a.Attempt != want || a.LatencyMS != 2.25 || a.Error != "down" || !a.Time.Equal(now) || a.EndpointID != ep.ID {
			t.Fatalf("attempt %d: %+v; want number %d", i, a, want)
		}
	}
	got = findHook(t, hooks, "a", ep.ID)
	if got.LastSeq != seqs[2] || got.Failing || got.FailingSince != nil || got.MissedUpTo != seqs[0] {
		t.Errorf("after a second save: %+v (missedUpTo never moves back)", got)
	}

	// Two dispatchers saving at once number their attempts apart.
	var wg sync.WaitGroup
	for d := range 2 {
		wg.Go(func() {
			for i := range 10 {
				p := tidings.WebhookProgress{EndpointID: ep.ID, Version: ep.Version, LastSeq: seqs[2], Attempts: attempts(1000*(d+1)+i*3, 3)}
				if err := hooks.SaveWebhookProgress(ctx, []tidings.WebhookProgress{p}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if list, err = hooks.ListWebhookAttempts(serverCtx("a"), ep.ID, 0); err != nil || len(list) != tidings.WebhookAttemptsKept {
		t.Fatalf("%d attempts, %v", len(list), err)
	}
	var numbers []int
	for _, a := range list[:60] {
		numbers = append(numbers, a.Attempt)
	}
	slices.Sort(numbers)
	if len(slices.Compact(numbers)) != 60 {
		t.Errorf("the 60 attempts saved at once are not all kept: %v", numbers)
	}

	// A deletion running while a save comes: the save waits for it, then
	// saves nothing for the endpoint (and does not fail).
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `DELETE FROM webhook_endpoints WHERE id = $1`, ep.ID); err != nil {
		t.Fatal(err)
	}
	saved := make(chan error, 1)
	go func() {
		saved <- hooks.SaveWebhookProgress(ctx, []tidings.WebhookProgress{{EndpointID: ep.ID, Version: ep.Version, LastSeq: seqs[2],
			Attempts: attempts(5000, 1)}})
	}()
	waitFor(t, "the save to wait for the deletion", func() bool { return waiting(t, db, "transactionid", "tuple") > 0 })
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-saved; err != nil {
		t.Errorf("a save for an endpoint deleted meanwhile: %v", err)
	}
	var left int
	if err := db.queryRow(ctx, `SELECT count(*) FROM webhook_attempts`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d attempts left after the deletion, %v", left, err)
	}
}

// waiting counts the sessions of db's database waiting for a lock of one
// of the kinds given (pg_locks.locktype).
func waiting(t *testing.T, db *DB, kinds ...string) int {
	t.Helper()
	var n int
	if err := db.queryRow(context.Background(), `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE NOT l.granted AND l.locktype = ANY($1) AND a.datname = current_database()`, kinds).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWebhookEventsFinalOnly: while a transaction holding a position is in
// flight, WebhookEvents returns nothing at or above it, even what
// committed above it; once it commits, both come, in order.
func TestWebhookEventsFinalOnly(t *testing.T) {
	db := fixture(t, nil)
	hooks := NewWebhookService(db)
	ctx := context.Background()
	start := say(t, db, "c", "before")
	// Final once the transactions running now (of any database of the
	// server) have ended.
	waitFor(t, "the first event", func() bool {
		evs, pruned, err := hooks.WebhookEvents(ctx, 0, 10)
		if err != nil || pruned != 0 || len(evs) > 1 || len(evs) == 1 && evs[0].Seq != start {
			t.Fatalf("the first event: %v, %d, %v", seqsOf(evs), pruned, err)
		}
		return len(evs) == 1
	})
	drew, release := make(chan int64), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.update(ctx, func(tx *Tx) error {
			ev, err := tx.emitEvent("a", tidings.EventMessageSent, nil, "slow", "", map[string]string{"text": "slow"})
			if err != nil {
				return err
			}
			drew <- ev.Seq
			<-release
			return nil
		})
	}()
	slow := <-drew
	fast := say(t, db, "fast", "fast")
	if fast <= slow {
		t.Fatalf("fast drew %d, slow %d", fast, slow)
	}
	for range 10 {
		// It waits for slow (what was committed when called, fast, is
		// not final before slow ends): it answers nothing in time.
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		evs, _, _ := hooks.WebhookEvents(short, start, 10)
		cancel()
		if len(evs) > 0 {
			close(release)
			t.Fatalf("WebhookEvents returned %v while %d is in flight", seqsOf(evs), slow)
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var got []int64
	waitFor(t, "both events", func() bool {
		evs, _, err := hooks.WebhookEvents(ctx, start, 10)
		if err != nil {
			t.Fatal(err)
		}
		got = seqsOf(evs)
		return len(got) == 2
	})
	if !slices.Equal(got, []int64{slow, fast}) {
		t.Errorf("WebhookEvents returned %v, want %v", got, []int64{slow, fast})
	}
	if evs, _, err := hooks.WebhookEvents(ctx, start, 1); err != nil || !slices.Equal(seqsOf(evs), []int64{slow}) {
		t.Errorf("with limit 1: %v, %v", seqsOf(evs), err)
	}
}

// TestPruneBoundByWebhooks: retention keeps the events after the position
// of an enabled endpoint that is not failing, and only those: a disabled
// or failing endpoint does not hold it, and one at position 0 keeps
// everything.
func TestPruneBoundByWebhooks(t *testing.T) {
	db := fixture(t, nil)
	hooks := NewWebhookService(db)
	log := NewEventLog(db)
	log.PruneChunk = 2
	ctx := context.Background()
	later := time.Now().Add(time.Hour)
	var seqs []int64
	for i := range 8 {
		seqs = append(seqs, say(t, db, "c", fmt.Sprint(i)))
	}
	good, off, failing := newHook(t, hooks, "a"), newHook(t, hooks, "a"), newHook(t, hooks, "a")
	off, err := hooks.UpdateWebhook(serverCtx("a"), off.ID, tidings.WebhookUpdate{Disabled: ptr(true)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	saveProgress(t, hooks,
		tidings.WebhookProgress{EndpointID: good.ID, Version: good.Version, LastSeq: 0},
		tidings.WebhookProgress{EndpointID: off.ID, Version: off.Version, LastSeq: 0},
		tidings.WebhookProgress{EndpointID: failing.ID, Version: failing.Version, LastSeq: 0, Failing: true, FailingSince: &now})
	if n, err := log.Prune(ctx, later); err != nil || n != 0 {
		t.Fatalf("prune with an endpoint at 0: %d removed, %v; want none", n, err)
	}
	saveProgress(t, hooks, tidings.WebhookProgress{EndpointID: good.ID, Version: good.Version, LastSeq: seqs[4]})
	if n, err := log.Prune(ctx, later); err != nil || n != 5 {
		t.Fatalf("prune with an endpoint at the 5th event: %d removed, %v; want 5", n, err)
	}
	if evs, pruned, err := hooks.WebhookEvents(ctx, seqs[4], 100); err != nil || pruned != 0 || !slices.Equal(seqsOf(evs), seqs[5:]) {
		t.Errorf("after the prune, from the endpoint's position: %v, pruned %d, %v; want %v", seqsOf(evs), pruned, err, seqs[5:])
	}
	if evs, pruned, err := hooks.WebhookEvents(ctx, 0, 100); err != nil || pruned != seqs[4] || !slices.Equal(seqsOf(evs), seqs[5:]) {
		t.Errorf("after the prune, from 0: %v, pruned %d, %v; want pruned up to %d", seqsOf(evs), pruned, err, seqs[4])
	}
	// Disabled, it holds nothing either: all but the newest go.
	if _, err := hooks.UpdateWebhook(serverCtx("a"), good.ID, tidings.WebhookUpdate{Disabled: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if n, err := log.Prune(ctx, later); err != nil || n != 2 {
		t.Fatalf("prune with every endpoint disabled or failing: %d removed, %v; want 2", n, err)
	}
	// A new endpoint never stands behind what retention removed.
	if ep := newHook(t, hooks, "a"); ep.LastSeq != seqs[7] {
		t.Errorf("a new endpoint at %d, want %d", ep.LastSeq, seqs[7])
	}
}

// TestPruneAndReplayAtOnce: a replay and a prune running at once on
// different nodes queue on one lock: a replay done first holds the
// retention back from its position; a prune done first makes a replay
// from what it removed fail (resync_required), never accept a position
// whose events then go.
func TestPruneAndReplayAtOnce(t *testing.T) {
	db := fixture(t, nil)
	hooks := NewWebhookService(db)
	log := NewEventLog(db)
	ctx := context.Background()
	later := time.Now().Add(time.Hour)
	ep := newHook(t, hooks, "a")
	var seqs []int64
	for i := range 6 {
		seqs = append(seqs, say(t, db, "c", fmt.Sprint(i)))
	}
	deliveredAll := func(ep *tidings.WebhookEndpoint) {
		saveProgress(t, hooks, tidings.WebhookProgress{EndpointID: ep.ID, Version: ep.Version, LastSeq: seqs[len(seqs)-1]})
	}
	deliveredAll(ep)

	// holdRetention takes the lock as a prune would, so that the two that
	// follow queue in a known order behind it.
	holdRetention := func() pgx.Tx {
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Ended before the DB closes (cleanups run last first), should
		// the test stop on the way.
		t.Cleanup(func() { tx.Rollback(context.Background()) })
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, retentionLockA, retentionLockB); err != nil {
			t.Fatal(err)
		}
		return tx
	}
	type result struct {
		ep  *tidings.WebhookEndpoint
		n   int64
		err error
	}
	replay := func(from int64) chan result {
		ch := make(chan result, 1)
		go func() {
			ep, err := hooks.ReplayWebhook(serverCtx("a"), ep.ID, tidings.WebhookReplay{FromSeq: from})
			ch <- result{ep: ep, err: err}
		}()
		return ch
	}
	prune := func() chan result {
		ch := make(chan result, 1)
		go func() {
			n, err := log.Prune(ctx, later)
			ch <- result{n: n, err: err}
		}()
		return ch
	}

	// The replay first, then the prune.
	tx := holdRetention()
	replayed := replay(seqs[2])
	waitFor(t, "the replay to queue", func() bool { return waiting(t, db, "advisory") == 1 })
	pruned := prune()
	waitFor(t, "the prune to queue", func() bool { return waiting(t, db, "advisory") == 2 })
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-replayed
	if r.err != nil || r.ep.LastSeq != seqs[1] {
		t.Fatalf("replay: %+v, %v", r.ep, r.err)
	}
	if r := <-pruned; r.err != nil || r.n != 2 {
		t.Errorf("prune after the replay: %d removed, %v; want the 2 before its position", r.n, r.err)
	}
	if evs, p, err := hooks.WebhookEvents(ctx, seqs[1], 100); err != nil || p != 0 || !slices.Equal(seqsOf(evs), seqs[2:]) {
		t.Errorf("the replay's events: %v, pruned %d, %v; want %v", seqsOf(evs), p, err, seqs[2:])
	}

	// The prune first, then the replay.
	deliveredAll(r.ep)
	tx = holdRetention()
	pruned = prune()
	waitFor(t, "the prune to queue", func() bool { return waiting(t, db, "advisory") == 1 })
	replayed = replay(seqs[3])
	waitFor(t, "the replay to queue", func() bool { return waiting(t, db, "advisory") == 2 })
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-pruned; r.err != nil || r.n != 3 {
		t.Errorf("prune before the replay: %d removed, %v; want all but the newest", r.n, r.err)
	}
	if r := <-replayed; tidings.ErrorCode(r.err) != tidings.EResyncRequired {
		t.Errorf("replay from an event the prune removed: %+v, %v; want resync_required", r.ep, r.err)
	}
}
