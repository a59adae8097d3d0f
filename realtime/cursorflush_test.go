package realtime

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// fakeClock is a Node.Now that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// cursorNode opens a node on log whose clock is clock.
func cursorNode(t *testing.T, log *cursorLog, clock *fakeClock, interval time.Duration) *Node {
	t.Helper()
	n := NewNode()
	n.Log = log
	n.Now = clock.Now
	n.CursorFlushInterval = interval
	if err := n.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	return n
}

func (l *cursorLog) stored() map[string]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[string]int64, len(l.cursors))
	for k, v := range l.cursors {
		m[k] = v
	}
	return m
}

// With a CursorFlushInterval of several seconds, the cursors that devices
// acknowledged at the same moment (every receiver of one message) are
// stored over the second half of the interval, not all in one write; each
// within the interval; and a shutdown stores what is left at once.
func TestCursorsAcknowledgedTogetherAreStoredSpreadOverTheInterval(t *testing.T) {
	const devices = 1000
	log := &cursorLog{cursors: map[string]int64{}}
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: t0}
	n := cursorNode(t, log, clock, 10*time.Second)
	ctx := context.Background()
	for i := range devices {
		n.noteAck(deviceKey{"a", fmt.Sprint("u", i), "phone"}, 5, t0)
	}
	at := func(d time.Duration) int {
		t.Helper()
		clock.Set(t0.Add(d))
		if err := n.flushDueCursors(ctx); err != nil {
			t.Fatal(err)
		}
		return len(log.stored())
	}
	if got := at(4900 * time.Millisecond); got != 0 {
		t.Fatalf("%d cursors stored before half the interval, want none", got)
	}
	before := 0
	for s := 5; s <= 10; s++ {
		got := at(time.Duration(s) * time.Second)
		if s > 5 && (got-before < devices/5/2 || got-before > devices/5*2) {
			t.Errorf("second %d stored %d cursors; want about %d (a fifth of them each second)", s, got-before, devices/5)
		}
		before = got
	}
	if before != devices {
		t.Fatalf("%d of %d cursors stored within the interval", before, devices)
	}
	for k, seq := range log.stored() {
		if seq != 5 {
			t.Fatalf("cursor %s stored at %d, want 5", k, seq)
		}
	}

	// Acknowledging again: stored once more within the interval, at the
	// newest ref, however many acknowledgements came meanwhile.
	k := deviceKey{"a", "u7", "phone"}
	n.noteAck(k, 6, t0.Add(10*time.Second))
	n.noteAck(k, 9, t0.Add(12*time.Second))
	at(20 * time.Second)
	if got := log.stored()["u7/phone"]; got != 9 {
		t.Errorf("after acknowledging 6 then 9, stored %d, want 9", got)
	}

	// What is not due yet is stored by a shutdown all the same.
	n.noteAck(deviceKey{"a", "u8", "phone"}, 11, t0.Add(20*time.Second))
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if got := log.stored()["u8/phone"]; got != 11 {
		t.Errorf("after a shutdown, the cursor acknowledged just before is %d, want 11", got)
	}
}

// With the default CursorFlushInterval (a second), every tick stores all
// that was acknowledged since the last.
func TestCursorsAreStoredAtTheNextFlushWithAShortInterval(t *testing.T) {
	log := &cursorLog{cursors: map[string]int64{}}
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: t0}
	n := cursorNode(t, log, clock, time.Second)
	for i := range 100 {
		n.noteAck(deviceKey{"a", fmt.Sprint("u", i), "phone"}, 3, t0)
	}
	if err := n.flushDueCursors(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(log.stored()); got != 100 {
		t.Errorf("%d of 100 cursors stored by the next flush, want all", got)
	}
}

// A flush stores its cursors in the stores' key order (app, user,
// device), each write a range of keys after the last write's, so that the
// writes of a flush of thousands of devices cover a part of the cursors
// table each rather than pages all over it.
func TestCursorsAreStoredInKeyOrder(t *testing.T) {
	log := &cursorLog{cursors: map[string]int64{}}
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: t0}
	n := cursorNode(t, log, clock, time.Second)
	const devices = 3*cursorChunk + 17
	for _, i := range rand.Perm(devices) {
		app := []string{"b", "a"}[i%2]
		n.noteAck(deviceKey{app, fmt.Sprintf("u%d", i/4), []string{"phone", "laptop"}[i/2%2]}, int64(i+1), t0)
	}
	if err := n.flushDueCursors(context.Background()); err != nil {
		t.Fatal(err)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.chunks) != 4 {
		t.Fatalf("%d cursors stored in %d writes, want 4 (%d a write)", devices, len(log.chunks), cursorChunk)
	}
	var all []tidings.Cursor
	for _, c := range log.chunks {
		all = append(all, c...)
	}
	if len(all) != devices {
		t.Fatalf("%d cursors stored, want %d", len(all), devices)
	}
	for i := 1; i < len(all); i++ {
		if tidings.CompareCursorKeys(all[i-1], all[i]) >= 0 {
			t.Fatalf("cursor %d (%s/%s/%s) stored after %s/%s/%s: want the key order over all the writes",
				i, all[i].AppID, all[i].UserID, all[i].Device, all[i-1].AppID, all[i-1].UserID, all[i-1].Device)
		}
	}
	if all[0].AppID != "a" || all[0].UserID != "u0" || all[0].Device != "laptop" {
		t.Errorf("first cursor stored %s/%s/%s, want a/u0/laptop", all[0].AppID, all[0].UserID, all[0].Device)
	}
}
