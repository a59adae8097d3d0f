package loadgen

import "testing"

func TestTrackerCountsLossDuplicatesAndOrder(t *testing.T) {
	var tr Tracker
	// Sender 0 sends 1…5, sender 1 sends 1…3; the receiver gets sender 0's
	// 1, 2, 2 again, 4 and 5, sender 1's 1…3, with one ref going back.
	obs := []struct {
		sender, seq int
		ref         int64
	}{{0, 1, 10}, {1, 1, 11}, {0, 2, 12}, {0, 2, 12}, {1, 2, 13}, {0, 4, 15}, {1, 3, 14}, {0, 5, 16}}
	dups := 0
	for _, o := range obs {
		if tr.Observe(o.sender, o.seq, o.ref) {
			dups++
		}
	}
	if dups != 1 || tr.Duplicates != 1 || tr.Received != 8 {
		t.Errorf("duplicates %d (returned %d), received %d", tr.Duplicates, dups, tr.Received)
	}
	// 12 repeated, then 14 after 15.
	if tr.OutOfOrder != 2 {
		t.Errorf("out of order %d, want 2", tr.OutOfOrder)
	}
	expected := []bitset{set(1, 2, 3, 4, 5), set(1, 2, 3)}
	if got := tr.Missing(expected); got != 1 {
		t.Errorf("missing %d, want 1 (sender 0's 3)", got)
	}
	if tr.Contiguous(0) != 2 || tr.Contiguous(1) != 3 || tr.Contiguous(7) != 0 {
		t.Errorf("contiguous %d %d %d", tr.Contiguous(0), tr.Contiguous(1), tr.Contiguous(7))
	}
	tr.Observe(0, 3, 17)
	if tr.Contiguous(0) != 5 || tr.Missing(expected) != 0 {
		t.Errorf("after the gap is filled: contiguous %d, missing %d", tr.Contiguous(0), tr.Missing(expected))
	}
	// A message the server did not acknowledge (its answer was lost) is
	// not missing when it does not come, nor a duplicate when it does.
	if tr.Missing([]bitset{set(1, 2, 3, 4, 5), set(1, 2, 3), nil}) != 0 || tr.Observe(2, 1, 18) {
		t.Error("an unacknowledged message counted")
	}
	if got := tr.Missing([]bitset{nil, nil, nil, set(1, 200)}); got != 2 {
		t.Errorf("missing from a sender never heard: %d, want 2", got)
	}
	if tr.LastRef() != 18 {
		t.Errorf("last ref %d", tr.LastRef())
	}
}

func TestTrackerIgnoresRefsOfLiveUpdates(t *testing.T) {
	var tr Tracker
	tr.Observe(0, 1, 5)
	tr.Observe(0, 2, 0) // no ref known: not an order violation
	tr.Observe(0, 3, 6)
	if tr.OutOfOrder != 0 {
		t.Errorf("out of order %d", tr.OutOfOrder)
	}
}

func TestBitset(t *testing.T) {
	var b bitset
	for _, i := range []int{0, 63, 64, 1000} {
		if b.add(i) {
			t.Errorf("%d already in an empty set", i)
		}
		if !b.add(i) || !b.has(i) {
			t.Errorf("%d not kept", i)
		}
	}
	if b.count() != 4 || b.has(999) || b.has(100000) {
		t.Errorf("count %d", b.count())
	}
	if n := set(1, 2, 3, 500).andNotCount(set(2, 3)); n != 2 {
		t.Errorf("andNotCount %d", n)
	}
}

func set(xs ...int) bitset {
	var b bitset
	for _, x := range xs {
		b.add(x)
	}
	return b
}
