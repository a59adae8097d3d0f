package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// countingTransport counts the frames written to it and keeps the last.
type countingTransport struct {
	frames atomic.Int64
	last   []byte
}

func (t *countingTransport) Write(f []byte) bool {
	t.frames.Add(1)
	t.last = f
	return true
}
func (t *countingTransport) Close(int, string) {}

// fanoutNode returns a node whose conversation "c" of app "a" has n online
// sessions (users u0…), without a store.
func fanoutNode(tb testing.TB, n int) (*Node, []*countingTransport) {
	node := NewNode()
	node.convs = make(map[convKey]map[*Session]int64)
	node.users = make(map[userKey]map[*Session]struct{})
	node.clients = make(map[*Client]struct{})
	node.typing = make(map[typingKey]typingState)
	node.people = make(map[userKey]*presenceState)
	node.watchers = make(map[userKey]map[*Session]struct{})
	node.lastSeen = make(map[userKey]time.Time)
	ts := make([]*countingTransport, n)
	for i := range n {
		ts[i] = &countingTransport{}
		c := &Client{node: node, t: ts[i], accounts: map[string]*Session{}}
		s := &Session{client: c, account: "default", app: "a", user: fmt.Sprint("u", i), subs: map[convKey]struct{}{}}
		node.subscribeLocked(convKey{"a", "c"}, s, 0)
	}
	return node, ts
}

func messageEvent(seq int64) *tidings.Event {
	payload, _ := json.Marshal(tidings.MessagePayload{Message: &tidings.Message{
		ID: "m", ConversationID: "c", Seq: seq, Sender: tidings.Profile{ID: "u0", DisplayName: "U0"},
		Parts: []tidings.Part{{Type: "text/plain", Data: "64 bytes of message text, which is about one line of a chat....."}},
	}})
	return &tidings.Event{Seq: seq, ID: "e", AppID: "a", Name: tidings.EventMessageSent, Time: time.Now(),
		Actor: &tidings.Profile{ID: "u0", DisplayName: "U0"}, ConversationID: "c", Payload: payload}
}

func TestDispatchEncodesOnceAndReachesEveryone(t *testing.T) {
	node, ts := fanoutNode(t, 3)
	node.dispatch(messageEvent(7))
	var frames [][]byte
	for i, tr := range ts {
		if tr.frames.Load() != 1 {
			t.Fatalf("session %d got %d frames", i, tr.frames.Load())
		}
		frames = append(frames, tr.last)
	}
	// The sender's echo is silent, the others' not; the others share one frame.
	var f0, f1 protocol.Frame
	json.Unmarshal(frames[0], &f0)
	json.Unmarshal(frames[1], &f1)
	if !f0.Silent || f1.Silent || f1.Ref != "7" || f1.Action != protocol.ActionNew {
		t.Fatalf("frames %s / %s", frames[0], frames[1])
	}
	if &frames[1][0] != &frames[2][0] {
		t.Fatal("two receivers with the same account and silence got separately encoded frames")
	}
	var ev tidings.Event
	if err := json.Unmarshal(f1.Event, &ev); err != nil || ev.Name != tidings.EventMessageSent || ev.Seq != 7 {
		t.Fatalf("event %s: %v", f1.Event, err)
	}
}

// BenchmarkFanout measures delivering one message event to every online
// participant of a conversation: the event is encoded once and its frame
// shared; ns/delivery is the cost per receiver.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint("subscribers=", n), func(b *testing.B) {
			node, _ := fanoutNode(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				node.dispatch(messageEvent(int64(i + 1)))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

// recordingBatcher records the batches around the writes of a transport.
type recordingBatcher struct {
	mu     sync.Mutex
	events []string
}

func (b *recordingBatcher) BeginBatch() { b.add("begin") }
func (b *recordingBatcher) EndBatch()   { b.add("end") }
func (b *recordingBatcher) add(e string) {
	b.mu.Lock()
	b.events = append(b.events, e)
	b.mu.Unlock()
}

type batchTransport struct{ b *recordingBatcher }

func (t batchTransport) Write([]byte) bool { t.b.add("write"); return true }
func (t batchTransport) Close(int, string) {}

func TestEventsPublishedTogetherAreDeliveredInOneBatch(t *testing.T) {
	node, _ := fanoutNode(t, 0)
	b := &recordingBatcher{}
	node.Batcher = b
	for i := range 2 {
		c := &Client{node: node, t: batchTransport{b}, accounts: map[string]*Session{}}
		s := &Session{client: c, account: "default", app: "a", user: fmt.Sprint("r", i), subs: map[convKey]struct{}{}}
		node.subscribeLocked(convKey{"a", "c"}, s, 0)
	}
	node.wake = make(chan struct{}, 1)
	node.ctx, node.cancel = context.WithCancel(context.Background())
	node.wg.Add(1)
	go node.run()
	defer func() { node.cancel(); node.wg.Wait() }()
	node.Publish(messageEvent(1), messageEvent(2), messageEvent(3))
	want := "begin write write write write write write end"
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		got := strings.Join(b.events, " ")
		b.mu.Unlock()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %q, want %q", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
