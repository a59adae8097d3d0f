package ws

import (
	"context"
	"testing"
	"time"
)

// A replay waiting for room in a connection whose socket is being drained
// (its peer's window full) leaves the verdict to drain's write, which
// gives a slow peer one more linger ahead of its close frame: it does not
// give up after WriteTimeout on its own, which raced drain's timeout and
// cut the close frame queued behind the backlog (a slow reader of a
// replay got a reset instead of 4009). Once the socket takes frames again
// and the queue still does not shrink, it gives up as before; and room
// made in the queue ends the wait.
func TestWaitRoomLeavesADrainingSocketToDrain(t *testing.T) {
	const timeout = 100 * time.Millisecond
	h := &Handler{WriteQueue: 8, WriteTimeout: timeout}
	lc := &lingerConn{}
	lc.draining.Store(true)
	c := &conn{h: h, lc: lc, queue: make([][]byte, 8)}
	got := make(chan int, 1)
	go func() { got <- c.WaitRoom(context.Background()) }()
	select {
	case n := <-got:
		t.Fatalf("gave up (%d) while the socket was being drained", n)
	case <-time.After(5 * timeout):
	}
	lc.wmu.Lock()
	lc.draining.Store(false)
	lc.wmu.Unlock()
	if n := waitResult(t, got, "a socket that takes frames but a queue that does not shrink"); n != 0 {
		t.Fatalf("room for %d frames in a full queue", n)
	}

	// Room made while the socket drains ends the wait: half the queue,
	// less what is still queued.
	lc.draining.Store(true)
	go func() { got <- c.WaitRoom(context.Background()) }()
	time.Sleep(2 * timeout)
	c.mu.Lock()
	c.queue = c.queue[:1]
	c.signalDrained()
	c.mu.Unlock()
	if n := waitResult(t, got, "room made in the queue"); n != 3 {
		t.Fatalf("room for %d frames, want 3", n)
	}
}

// waitResult returns what WaitRoom returned on got, within 10 s.
func waitResult(t *testing.T, got <-chan int, after string) int {
	t.Helper()
	select {
	case n := <-got:
		return n
	case <-time.After(10 * time.Second):
		t.Fatalf("WaitRoom still waits after %s", after)
		return 0
	}
}
