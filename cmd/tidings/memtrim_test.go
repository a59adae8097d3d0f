package main

import "testing"

// A trim comes once a burst is over, and only when it gives back enough:
// never while the server allocates (a busy server would pay a collection
// for nothing), nor for a few MiB.
func TestTrimDueOnlyWhenQuietAndWorthIt(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name                           string
		allocated, live, objects, free uint64
		want                           bool
	}{
		{"quiet after a burst: the live heap held twice", 1 * mib, 40 * mib, 70 * mib, 15 * mib, true},
		{"still busy", 20 * mib, 40 * mib, 70 * mib, 15 * mib, false},
		{"quiet, little to give back", 1 * mib, 40 * mib, 45 * mib, 5 * mib, false},
		{"quiet, a small heap: under 16 MiB to give back", 0, 8 * mib, 12 * mib, 10 * mib, false},
		{"quiet, a small heap: 16 MiB to give back", 0, 8 * mib, 14 * mib, 10 * mib, true},
		{"less held than live (stats of different moments)", 0, 40 * mib, 30 * mib, 5 * mib, false},
	} {
		if got := trimDue(tc.allocated, tc.live, tc.objects, tc.free); got != tc.want {
			t.Errorf("%s: trimDue = %v, want %v", tc.name, got, tc.want)
		}
	}
}
