package sqlite

import (
	"fmt"
	"testing"
)

// The filter never says absent of a client id it was given, as recent
// grows past its first layer, and says "maybe" of few it was not given.
func TestClientFilterHasNoFalseNegatives(t *testing.T) {
	f := newClientFilter()
	base := newBloom(1000)
	k := convKey{"a", "c"}
	for i := range 1000 {
		base.add(f.hash(k, "u", fmt.Sprint("base-", i)))
	}
	if f.absent(k, "u", "never") != false {
		t.Fatal("absent said true before base was read")
	}
	f.base.Store(base)
	const n = 3*recentFirst + 100
	for i := range n {
		f.added(k, "u", fmt.Sprint("recent-", i))
	}
	if len(f.recent) < 2 {
		t.Fatalf("recent has %d layer after %d client ids, want it grown past its first (%d)", len(f.recent), n, recentFirst)
	}
	for i := range 1000 {
		if f.absent(k, "u", fmt.Sprint("base-", i)) {
			t.Fatalf("base-%d said absent", i)
		}
	}
	for i := range n {
		if f.absent(k, "u", fmt.Sprint("recent-", i)) {
			t.Fatalf("recent-%d said absent", i)
		}
	}
	// Other client ids, and the same ids of another sender or conversation.
	maybe := 0
	for i := range 100000 {
		if !f.absent(k, "u", fmt.Sprint("other-", i)) {
			maybe++
		}
	}
	for i := range 1000 {
		if !f.absent(k, "v", fmt.Sprint("base-", i)) || !f.absent(convKey{"a", "d"}, "u", fmt.Sprint("recent-", i)) {
			maybe++
		}
	}
	if rate := float64(maybe) / 101000; rate > 0.02 {
		t.Fatalf("%.2f %% of client ids never given said maybe there, want under 2 %%", 100*rate)
	}
}
