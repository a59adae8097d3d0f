package realtime

import (
	"maps"
	"testing"
)

// convSubs holds the same sessions and seqs as a map would, through the
// change from a slice to a map and back down: added once, removed, each
// with its seq.
func TestConvSubsAsAMap(t *testing.T) {
	var c *convSubs
	if c.len() != 0 || c.has(&Session{}) {
		t.Fatal("a nil convSubs has sessions")
	}
	for range c.all() {
		t.Fatal("a nil convSubs yields")
	}
	c = &convSubs{}
	want := map[*Session]int64{}
	check := func(when string) {
		t.Helper()
		got := maps.Collect(c.all())
		if !maps.Equal(got, want) || c.len() != len(want) {
			t.Fatalf("%s: %d sessions (len %d), want %d", when, len(got), c.len(), len(want))
		}
		for s, from := range want {
			if f, ok := c.from(s); !ok || f != from {
				t.Fatalf("%s: from %d, %v; want %d", when, f, ok, from)
			}
		}
	}
	var ss []*Session
	for i := range 2 * convSubsFew {
		s := &Session{}
		ss = append(ss, s)
		if !c.add(s, int64(i)) {
			t.Fatalf("session %d: not added", i)
		}
		if c.add(s, 100) {
			t.Fatalf("session %d: added twice", i)
		}
		want[s] = int64(i)
		check("adding")
	}
	for i, s := range ss {
		c.remove(s)
		delete(want, s)
		if c.has(s) {
			t.Fatalf("session %d still there", i)
		}
		check("removing")
	}
	c = &convSubs{}
	for i := range convSubsFew {
		c.add(ss[i], 1)
		want[ss[i]] = 1
	}
	c.remove(ss[3])
	delete(want, ss[3])
	check("a slice, one removed in the middle")
}
