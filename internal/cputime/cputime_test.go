package cputime

import (
	"testing"
	"time"
)

// Work done by this process shows in Self, and it never goes back.
func TestSelfCountsThisProcessWork(t *testing.T) {
	before := Self()
	x := 0
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
		for i := range 1000 {
			x += i
		}
	}
	after := Self()
	if after-before < 10*time.Millisecond {
		t.Fatalf("50 ms of work counted %v of CPU time (from %v to %v), want at least 10 ms (x=%d)", after-before, before, after, x)
	}
}
