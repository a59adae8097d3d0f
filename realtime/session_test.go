package realtime

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// gatedLog is an EventLog whose first UserEvents call waits for the test,
// to hold a session in its replay.
type gatedLog struct {
	tidings.EventLog // not called
	events           []*tidings.Event
	entered, release chan struct{}
	once             sync.Once
}

func (l *gatedLog) UserEvents(ctx context.Context, app, user string, after int64, limit int) ([]*tidings.Event, error) {
	l.once.Do(func() {
		close(l.entered)
		<-l.release
	})
	var out []*tidings.Event
	for _, ev := range l.events {
		if ev.Seq > after && len(out) < limit {
			out = append(out, ev)
		}
	}
	return out, nil
}

// recordingTransport keeps every frame written to it.
type recordingTransport struct {
	mu     sync.Mutex
	frames [][]byte
}

func (t *recordingTransport) Write(f []byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.frames = append(t.frames, f)
	return true
}
func (t *recordingTransport) Close(int, string) {}

// Updates that come live while a session replays, typing included, follow
// the replay in the order they came; those the replay sent are not sent
// again.
func TestReplayHoldsLiveUpdatesThenSendsThemInOrder(t *testing.T) {
	log := &gatedLog{events: []*tidings.Event{messageEvent(1), messageEvent(2)},
		entered: make(chan struct{}), release: make(chan struct{})}
	node := NewNode()
	node.Log = log
	node.ReplayBatch = 10
	tr := &recordingTransport{}
	c := &Client{node: node, t: tr}
	s := &Session{client: c, account: "default", app: "a", user: "u1", replaying: true}

	done := make(chan error, 1)
	go func() { done <- s.replay(context.Background(), 0) }()
	<-log.entered
	// While the replay reads the log: an event it will find (2), a typing
	// notice, and an event committed after its read (3).
	typing := []byte(`{"type":"update","event":{"name":"conversation.participantTyping"}}`)
	for _, u := range []struct {
		seq   int64
		frame []byte
	}{{2, encodeTestUpdate(t, 2)}, {0, typing}, {3, encodeTestUpdate(t, 3)}} {
		s.deliver(u.seq, u.frame)
	}
	if len(tr.frames) != 0 {
		t.Fatalf("%d frames were written before the replay", len(tr.frames))
	}
	close(log.release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the replay did not end")
	}

	var got []string
	for _, f := range tr.frames {
		var fr protocol.Frame
		if err := json.Unmarshal(f, &fr); err != nil {
			t.Fatalf("frame %s: %v", f, err)
		}
		if fr.Ref == "" {
			got = append(got, "typing")
		} else {
			got = append(got, fr.Ref)
		}
	}
	if want := []string{"1", "2", "typing", "3"}; !slices.Equal(got, want) {
		t.Fatalf("frames in order %v, want %v", got, want)
	}
	// Live now: a live-only update goes straight out.
	s.deliver(0, typing)
	if len(tr.frames) != 5 {
		t.Fatalf("after the replay a live update was not sent at once (%d frames)", len(tr.frames))
	}
}

func encodeTestUpdate(t *testing.T, seq int64) []byte {
	t.Helper()
	body, err := encodeEvent(messageEvent(seq))
	if err != nil {
		t.Fatal(err)
	}
	return updateFrame("default", seq, false, body.others)
}

// replyingTransport replies to each update as it is written, before Write
// returns: a client on another core can read the frame and reply before
// the goroutine that queued it runs on.
type replyingTransport struct{ s *Session }

func (t *replyingTransport) Write(f []byte) bool {
	var fr protocol.Frame
	if json.Unmarshal(f, &fr) == nil {
		if seq, ok := protocol.ParseRef(fr.Ref); ok {
			t.s.replied(seq)
		}
	}
	return true
}
func (t *replyingTransport) Close(int, string) {}

// A reply that comes while the update it acknowledges is still being
// written is not lost: the update counts as sent once it can reach the
// client. (The ref was recorded only after the write, and a reply in
// between was cut down to the ref before: the device's next connection
// got the update again, though the client had processed it and its Close
// had returned. TestCloseLeavesTheServerCursorAfterWhatWasProcessed in
// client failed so under load.)
func TestAReplyDuringTheWriteIsNotLost(t *testing.T) {
	node := NewNode()
	node.acks = make(map[deviceKey]*cursorState) // as Open makes it
	tr := &replyingTransport{}
	s := &Session{client: &Client{node: node, t: tr}, account: "default", app: "a", user: "u1", device: "d"}
	tr.s = s
	for seq := int64(1); seq <= 3; seq++ {
		s.deliver(seq, encodeTestUpdate(t, seq))
		if got := node.ackedInMemory(s.cursorKey()); got != seq {
			t.Fatalf("after update %d and its reply, the device's acknowledged ref is %d", seq, got)
		}
	}
}
