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
	return fanoutNodeOf(tb, n, false)
}

// fanoutNodeOf is fanoutNode, its sessions speaking tidings.v2 when v2.
func fanoutNodeOf(tb testing.TB, n int, v2 bool) (*Node, []*countingTransport) {
	node := NewNode()
	node.convs = make(map[convKey]*convSubs)
	node.users = make(map[userKey][]*Session)
	node.clients = make(map[*Client]struct{})
	node.typing = make(map[typingKey]typingState)
	node.people = make(map[userKey]*presenceState)
	node.watchers = make(map[userKey]map[*Session]struct{})
	node.lastSeen = make(map[userKey]time.Time)
	ts := make([]*countingTransport, n)
	for i := range n {
		ts[i] = &countingTransport{}
		c := &Client{node: node, t: ts[i], v2: v2}
		s := &Session{client: c, account: "default", app: "a", user: fmt.Sprint("u", i)}
		node.subscribeLocked(convKey{"a", "c"}, s, 0)
	}
	return node, ts
}

func messageEvent(seq int64) *tidings.Event {
	payload, _ := json.Marshal(tidings.MessagePayload{Message: &tidings.Message{
		ID: "m", ConversationID: "c", Seq: seq, Sender: tidings.Profile{ID: "u0", DisplayName: "U0"}, ClientID: "u0-1764622564-1",
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
	if !f0.Silent || f1.Silent || f1.Ref != "7" {
		t.Fatalf("frames %s / %s", frames[0], frames[1])
	}
	if &frames[1][0] != &frames[2][0] {
		t.Fatal("two receivers with the same account and silence got separately encoded frames")
	}
	// The event's seq is the frame's ref, and its app the account's: the
	// wire leaves them out.
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(f1.Event, &ev); err != nil || string(ev["name"]) != `"`+tidings.EventMessageSent+`"` ||
		ev["seq"] != nil || ev["app"] != nil || f1.Account != "" {
		t.Fatalf("frame %s: %v", frames[1], err)
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

// BenchmarkFanoutV2 is BenchmarkFanout with tidings.v2 sessions (and a
// room of 5), each event new to the node.
func BenchmarkFanoutV2(b *testing.B) {
	for _, v2 := range []bool{false, true} {
		for _, n := range []int{5, 1000} {
			b.Run(fmt.Sprintf("v2=%t/subscribers=%d", v2, n), func(b *testing.B) {
				node, _ := fanoutNodeOf(b, n, v2)
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					node.dispatch(messageEvent(int64(i + 1)))
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
			})
		}
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

// batchingNode runs a node whose Batcher records what it is told, with
// two sessions in conversation c, each writing through it.
func batchingNode(t *testing.T) (*Node, *recordingBatcher) {
	t.Helper()
	node, _ := fanoutNode(t, 0)
	b := &recordingBatcher{}
	node.Batcher = b
	for i := range 2 {
		c := &Client{node: node, t: batchTransport{b}}
		s := &Session{client: c, account: "default", app: "a", user: fmt.Sprint("r", i)}
		node.subscribeLocked(convKey{"a", "c"}, s, 0)
	}
	node.wake = make(chan struct{}, 1)
	node.ctx, node.cancel = context.WithCancel(context.Background())
	node.wg.Add(1)
	go node.run()
	t.Cleanup(func() { node.cancel(); node.wg.Wait() })
	return node, b
}

// waitRecorded waits until the batcher has recorded want.
func waitRecorded(t *testing.T, b *recordingBatcher, want string) {
	t.Helper()
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

func TestEventsPublishedTogetherAreDeliveredInOneBatch(t *testing.T) {
	node, b := batchingNode(t)
	node.Publish(messageEvent(1), messageEvent(2), messageEvent(3))
	waitRecorded(t, b, "begin write write write write write write end")
}

// A lone event is not held for the end of a batch: its first receivers
// are written to while the others are still being queued.
func TestALoneEventIsDeliveredWithoutABatch(t *testing.T) {
	node, b := batchingNode(t)
	node.Publish(messageEvent(1))
	waitRecorded(t, b, "write write")
}

// A profile event goes once to each online session of the users who share
// one of the conversations it names at the time of the event (however
// many they share), and to its user's own sessions, and to no one else.
func TestProfileEventReachesThoseWhoShareAConversationOnce(t *testing.T) {
	node := NewNode()
	node.convs = make(map[convKey]*convSubs)
	node.users = make(map[userKey][]*Session)
	got := map[string]*countingTransport{}
	session := func(user string, convs map[string]int64) {
		tr := &countingTransport{}
		got[user] = tr
		c := &Client{node: node, t: tr}
		s := &Session{client: c, account: "default", app: "a", user: user}
		uk := userKey{"a", user}
		node.users[uk] = append(node.users[uk], s)
		for conv, from := range convs {
			node.subscribeLocked(convKey{"a", conv}, s, from)
		}
	}
	session("alice", map[string]int64{"c1": 1, "c2": 2})
	session("bob", map[string]int64{"c1": 1, "c2": 2})     // shares both
	session("carol", map[string]int64{"other": 1})         // shares nothing
	session("dave", map[string]int64{"c2": 50})            // joined after the change
	session("erin", map[string]int64{"c2": 3, "other": 1}) // shares one
	payload, _ := json.Marshal(tidings.ProfilePayload{ProfileID: "alice", User: &tidings.User{ID: "alice", DisplayName: "Alice Smith"}})
	node.dispatch(&tidings.Event{Seq: 10, ID: "e", AppID: "a", Name: tidings.EventProfileUpdate, Time: time.Now(),
		Actor: &tidings.Profile{ID: "alice", DisplayName: "Alice Smith"}, UserID: "alice", Payload: payload,
		Conversations: []string{"c1", "c2"}})
	want := map[string]int64{"alice": 1, "bob": 1, "carol": 0, "dave": 0, "erin": 1}
	for user, n := range want {
		if f := got[user].frames.Load(); f != n {
			t.Errorf("%s got %d frames, want %d", user, f, n)
		}
	}
	var f protocol.Frame
	json.Unmarshal(got["bob"].last, &f)
	if f.Ref != "10" || !f.Silent {
		t.Fatalf("bob's frame %s: want ref 10, silent, update", got["bob"].last)
	}
}

// Each form of an event is encoded only for an audience that speaks it:
// the tidings.v2 sessions of the SDKs cost no tidings.v1 encoding (and
// the other way round), and both reach everyone.
func TestDispatchEncodesOnlyTheFormsItsAudienceSpeaks(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		node, ts := fanoutNodeOf(t, 3, v2)
		node.dispatch(messageEvent(7))
		for i, tr := range ts {
			if tr.frames.Load() != 1 {
				t.Fatalf("v2=%t: session %d got %d frames, want 1", v2, i, tr.frames.Load())
			}
		}
		_, hasV1 := node.bodies.get(7)
		_, hasV2 := node.bodiesV2.get(7)
		if hasV1 == v2 || hasV2 != v2 {
			t.Errorf("sessions speaking v2=%t: tidings.v1 form encoded %t, tidings.v2 form %t; want only their own", v2, hasV1, hasV2)
		}
	}
}
