package realtime

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// cursorLog is an EventLog that keeps the cursors it stores, each write
// taking as long as a sync to disk; with block, a write waits for its
// context instead (a stalled disk).
type cursorLog struct {
	tidings.EventLog // not called
	block            bool

	mu      sync.Mutex
	writes  int
	cursors map[string]int64
	chunks  [][]tidings.Cursor // each write's cursors, in its order
}

func (l *cursorLog) UserConversations(context.Context, string, string) ([]tidings.Membership, error) {
	return nil, nil
}

func (l *cursorLog) SaveCursors(ctx context.Context, cs []tidings.Cursor) error {
	if len(cs) == 0 {
		return nil
	}
	if l.block {
		<-ctx.Done()
		return ctx.Err()
	}
	time.Sleep(5 * time.Millisecond) // a sync to disk
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	l.chunks = append(l.chunks, slices.Clone(cs))
	for _, c := range cs {
		l.cursors[c.UserID+"/"+c.Device] = c.Seq
	}
	return nil
}

// closeRecorder is a Transport that records how it was closed.
type closeRecorder struct {
	recordingTransport
	code chan int
}

func (t *closeRecorder) Close(code int, _ string) { t.code <- code }

// onlineClients opens a node on log with n clients, each with a session
// that acknowledged ref 10.
func onlineClients(t *testing.T, log tidings.EventLog, n int) (*Node, []*closeRecorder) {
	t.Helper()
	node := NewNode()
	node.Log = log
	node.CursorFlushInterval = time.Hour // stored only when sessions end
	if err := node.Open(); err != nil {
		t.Fatal(err)
	}
	ts := make([]*closeRecorder, n)
	for i := range n {
		ts[i] = &closeRecorder{code: make(chan int, 1)}
		c := node.Connect(ts[i])
		s := &Session{client: c, account: "default", app: "a", user: fmt.Sprint("u", i), device: "d"}
		s.lastSent.Store(10)
		if err := node.register(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		c.accounts.set(s)
		s.ack(10)
	}
	return node, ts
}

// A shutdown closes every client with "going away" and stores all their
// cursors in one write (up to cursorChunk of them), not one write per
// client.
func TestShutdownStoresAllCursorsInOneWrite(t *testing.T) {
	const clients = 300
	log := &cursorLog{cursors: map[string]int64{}}
	node, ts := onlineClients(t, log, clients)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := node.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for i, tr := range ts {
		select {
		case code := <-tr.code:
			if code != protocol.CloseGoingAway {
				t.Fatalf("client %d closed with %d, want %d", i, code, protocol.CloseGoingAway)
			}
		default:
			t.Fatalf("client %d was not closed", i)
		}
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if log.writes != 1 {
		t.Fatalf("the cursors were stored in %d writes, want 1", log.writes)
	}
	for i := range clients {
		if seq := log.cursors[fmt.Sprint("u", i, "/d")]; seq != 10 {
			t.Fatalf("cursor of u%d stored at %d, want 10", i, seq)
		}
	}
}

// A shutdown whose store does not answer ends when its context does.
func TestShutdownIsBoundedByItsContext(t *testing.T) {
	node, ts := onlineClients(t, &cursorLog{block: true}, 50)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- node.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("shutdown reported success though the cursors could not be stored in time")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("shutdown did not end with its context")
	}
	for i, tr := range ts {
		select {
		case <-tr.code:
		default:
			t.Fatalf("client %d was not closed", i)
		}
	}
}

// Once shutting down, a new connection is closed at once with "going
// away", and starts no goroutine the shutdown would not wait for.
func TestConnectDuringShutdownIsClosed(t *testing.T) {
	node, _ := onlineClients(t, &cursorLog{cursors: map[string]int64{}}, 1)
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}
	tr := &closeRecorder{code: make(chan int, 1)}
	node.Connect(tr)
	select {
	case code := <-tr.code:
		if code != protocol.CloseGoingAway {
			t.Fatalf("closed with %d, want %d", code, protocol.CloseGoingAway)
		}
	default:
		t.Fatal("a connection made during shutdown was left open")
	}
	if node.goTracked(func() {}) {
		t.Fatal("a goroutine started after shutdown")
	}
}

// Shutdown waits for the goroutines of clients (auth, replay), which end
// when the node's context does.
func TestShutdownWaitsForClientGoroutines(t *testing.T) {
	node, _ := onlineClients(t, &cursorLog{cursors: map[string]int64{}}, 1)
	finished := false
	started := make(chan struct{})
	node.goTracked(func() {
		close(started)
		<-node.ctx.Done() // as a replay's read of the log
		finished = true
	})
	<-started
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}
	if !finished {
		t.Fatal("Close returned before a replay's goroutine ended")
	}
}

// batchCounter is a Batcher that counts the batches delivered.
type batchCounter struct{ ended chan struct{} }

func (b *batchCounter) BeginBatch() {}
func (b *batchCounter) EndBatch()   { b.ended <- struct{}{} }

// The store gets its publisher before it opens, so a node may be given
// events before its own Open: they are delivered once it opens.
func TestEventsPublishedBeforeOpenAreDelivered(t *testing.T) {
	node := NewNode()
	node.Log = &cursorLog{cursors: map[string]int64{}}
	b := &batchCounter{ended: make(chan struct{}, 10)}
	node.Batcher = b
	// Two events, published together: a batch (a lone event is
	// delivered without one).
	node.Publish(messageEvent(1), messageEvent(2))
	if err := node.Open(); err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	select {
	case <-b.ended:
	case <-time.After(20 * time.Second):
		t.Fatal("an event published before Open was never delivered")
	}
}
