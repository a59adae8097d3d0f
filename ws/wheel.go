package ws

import "time"

// pingWheel holds the heartbeat's next look at each connection, by when it
// is due: a ping once the connection has been quiet for PingInterval, a
// close once PongTimeout has passed on top of it. A tick takes only the
// connections due by then, so that an idle server does not walk all its
// connections every second (at 19,000 connections that walk cost about
// 2 ms a tick, each connection a cache miss, against a few hundred due).
//
// Slot n holds the looks due in ((n-1)·width, n·width]; a look is never
// taken early: a connection is put in the slot whose end is at or after
// its time, and slot n is taken once the clock has passed n·width. Times
// only ever move later (frames from the peer push a connection's quiet
// time back), so a look found to be early is put back for its new time.
// Guarded by Handler.mu.
type pingWheel struct {
	width int64     // nanoseconds a slot spans
	slots [][]*conn // a ring of slots, over more than the longest wait
	next  int64     // the first slot not taken yet
}

// newPingWheel makes the wheel of a heartbeat: slots of a second, or half
// the ping interval when it is shorter than two seconds, over
// PingInterval+PongTimeout (the longest a look waits).
func newPingWheel(pingInterval, pongTimeout time.Duration, now int64) *pingWheel {
	width := int64(max(min(time.Second, pingInterval/2), time.Millisecond))
	n := int64(pingInterval+pongTimeout)/width + 2
	return &pingWheel{width: width, slots: make([][]*conn, n), next: now/width + 1}
}

// wait is how long the heartbeat waits, from now, for the end of the next
// slot to take: taken when it ends, a slot's looks are at most one slot
// late (a second at most, as when the heartbeat walked every connection
// every second), and the pings of a slot go out together.
func (w *pingWheel) wait(now int64) time.Duration {
	return time.Duration(max(w.next*w.width-now, 0))
}

// add puts c in the slot of time at (unix nanoseconds); c must not be in
// the wheel. A time past the ring's reach goes to its last slot, to be
// put back from there.
func (w *pingWheel) add(c *conn, at int64) {
	n := (at + w.width - 1) / w.width // the first slot ending at or after at
	n = max(n, w.next)
	n = min(n, w.next+int64(len(w.slots))-1)
	s := &w.slots[n%int64(len(w.slots))]
	c.slot, c.slotIndex = n, len(*s)
	*s = append(*s, c)
}

// remove takes c out of the wheel, if it is in it.
func (w *pingWheel) remove(c *conn) {
	if c.slot == 0 {
		return
	}
	s := &w.slots[c.slot%int64(len(w.slots))]
	last := len(*s) - 1
	moved := (*s)[last]
	(*s)[c.slotIndex] = moved
	moved.slotIndex = c.slotIndex
	(*s)[last] = nil
	*s = (*s)[:last]
	c.slot = 0
}

// take appends to into the connections of the slots that ended by now and
// takes them out of the wheel.
func (w *pingWheel) take(now int64, into []*conn) []*conn {
	end := now / w.width // the last slot that ended
	if end-w.next >= int64(len(w.slots)) {
		w.next = end - int64(len(w.slots)) + 1 // a long pause: each slot once
	}
	for ; w.next <= end; w.next++ {
		s := &w.slots[w.next%int64(len(w.slots))]
		for i, c := range *s {
			c.slot = 0
			(*s)[i] = nil
			into = append(into, c)
		}
		if cap(*s) > 1024 && len(*s) < cap(*s)/4 {
			*s = nil // a burst's array is left to the collector
		} else {
			*s = (*s)[:0]
		}
	}
	return into
}
