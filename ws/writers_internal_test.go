package ws

import (
	"fmt"
	"testing"
)

// writersUnderTest is a Handler with n writers that do not run, so that
// what each would write next stays in its lists.
func writersUnderTest(n, conns int) (*Handler, []*conn) {
	h := &Handler{Writers: n, WriteQueue: 4096}
	h.once.Do(func() {}) // no heartbeat, no writer goroutines
	for range n {
		h.writers = append(h.writers, &writer{wake: make(chan struct{}, 1)})
	}
	cs := make([]*conn, conns)
	for i := range cs {
		cs[i] = &conn{h: h, writerIndex: i % n, w: h.writers[i%n]}
	}
	return h, cs
}

// readyOn lists, for each writer, how many connections it has to write.
func readyOn(h *Handler) []int {
	var n []int
	for _, w := range h.writers {
		w.mu.Lock()
		n = append(n, len(w.ready))
		w.mu.Unlock()
	}
	return n
}

// A small batch of events leaves each connection to its own writer; a
// large one (one message to a large room, many at saturation) goes to half
// the writers, and so do the writes outside batches that follow, until a
// batch is small again: fewer writers, each with more connections, put
// more frames in each write.
func TestLargeBatchesGoToHalfTheWriters(t *testing.T) {
	h, cs := writersUnderTest(4, 2*bigBatch)
	frame := []byte(`{"r":"1"}`)
	written := func() {
		for _, w := range h.writers {
			w.mu.Lock()
			w.ready = w.ready[:0]
			w.mu.Unlock()
		}
		for _, c := range cs {
			c.mu.Lock()
			c.queue, c.scheduled = nil, false
			c.mu.Unlock()
		}
	}
	want := func(step string, n ...int) {
		t.Helper()
		if got := readyOn(h); fmt.Sprint(got) != fmt.Sprint(n) {
			t.Fatalf("%s: connections to write by writer %v, want %v", step, got, n)
		}
		written()
	}

	// A small batch: 8 connections, each on its own writer.
	h.BeginBatch()
	for _, c := range cs[:8] {
		c.Write(frame)
	}
	if got := readyOn(h); fmt.Sprint(got) != "[0 0 0 0]" {
		t.Fatalf("written before the batch's end: %v", got)
	}
	h.EndBatch()
	want("small batch", 2, 2, 2, 2)

	// A large batch: every connection, in even shares over writers 0 and 1.
	h.BeginBatch()
	for _, c := range cs {
		c.Write(frame)
	}
	h.EndBatch()
	want("large batch", bigBatch, bigBatch, 0, 0)

	// A lone event's receivers, outside batches: still half the writers.
	for _, c := range cs[:8] {
		c.Write(frame)
	}
	want("after a large batch", 4, 4, 0, 0)

	// A small batch again (its connection still written by the writer of
	// the large batches), and each connection on its own writer after it.
	h.BeginBatch()
	cs[3].Write(frame)
	h.EndBatch()
	want("small batch again", 0, 1, 0, 0)
	for _, c := range cs[:8] {
		c.Write(frame)
	}
	want("after a small batch", 2, 2, 2, 2)
}

// One writer has nothing to share: a large batch stays on it.
func TestLargeBatchOneWriter(t *testing.T) {
	h, cs := writersUnderTest(1, bigBatch)
	h.BeginBatch()
	for _, c := range cs {
		c.Write([]byte(`{}`))
	}
	h.EndBatch()
	if got := readyOn(h); got[0] != bigBatch {
		t.Fatalf("connections to write: %v, want %d", got, bigBatch)
	}
}
