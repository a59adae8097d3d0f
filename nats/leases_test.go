package nats

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A lease held by one node cannot be taken by another until released or
// expired; then another takes it.
func TestLeases(t *testing.T) {
	conns := sharedConns(t, 2)
	ctx := testContext(t)
	a, b := conns[0].Leases(), conns[1].Leases()
	const name, ttl = "tailer", 2 * time.Second
	hold := func(l *Leases, node string, want bool) {
		t.Helper()
		got, err := l.Hold(ctx, name, node, ttl)
		if err != nil || got != want {
			t.Fatalf("%s holds: %v, %v; want %v", node, got, err, want)
		}
	}
	hold(a, "A", true)
	hold(b, "B", false)
	// Renewing writes the key again: the bucket's TTL counts from then.
	kv, _, err := a.kv(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	before, err := kv.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	hold(a, "A", true)
	after, err := kv.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision() <= before.Revision() || after.Created().Before(before.Created()) {
		t.Fatalf("renewal did not write the lease again: revision %d then %d", before.Revision(), after.Revision())
	}
	hold(b, "B", false)
	if err := b.Release(ctx, name, "B"); err != nil { // not B's to release
		t.Fatal(err)
	}
	hold(b, "B", false)
	if err := a.Release(ctx, name, "A"); err != nil {
		t.Fatal(err)
	}
	hold(b, "B", true)
	hold(a, "A", false)

	// B stops renewing: A takes it once it expires.
	waitFor(t, "B's lease to expire", func() bool {
		ok, err := a.Hold(ctx, name, "A", ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	})
	hold(b, "B", false)
	// Another lease, with another ttl, is held apart.
	if ok, err := b.Hold(ctx, "other", "B", 5*time.Second); err != nil || !ok {
		t.Fatalf("B holds another lease: %v, %v", ok, err)
	}
}

// Of nodes taking a free lease at once, exactly one holds it.
func TestLeasesOneWinner(t *testing.T) {
	conns := sharedConns(t, 2)
	ctx := testContext(t)
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		l := conns[i%2].Leases()
		wg.Go(func() {
			ok, err := l.Hold(ctx, "race", fmt.Sprintf("node%d", i), 10*time.Second)
			if err != nil {
				t.Errorf("hold: %v", err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d nodes hold the lease, want 1", wins.Load())
	}
}
