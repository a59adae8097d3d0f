package realtime

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// slowMembershipsLog is an EventLog whose UserConversations waits for the
// test before it answers with the conversations given.
type slowMembershipsLog struct {
	tidings.EventLog // not called
	ms               []tidings.Membership
	entered, release chan struct{}
}

func (l *slowMembershipsLog) UserConversations(ctx context.Context, app, user string) ([]tidings.Membership, error) {
	close(l.entered)
	<-l.release
	return l.ms, nil
}

// registering starts registering a session of user "new" in app "a" on
// node, and returns it once it is reading its conversations from the log,
// with a channel that gives register's outcome.
func registering(t *testing.T, node *Node, ms []tidings.Membership) (*Session, *slowMembershipsLog, chan error) {
	t.Helper()
	log := &slowMembershipsLog{ms: ms, entered: make(chan struct{}), release: make(chan struct{})}
	node.Log = log
	s := &Session{client: &Client{node: node, t: &recordingTransport{}},
		account: "default", app: "a", user: "new", replaying: true}
	t.Cleanup(func() {
		select {
		case <-log.release:
		default:
			close(log.release) // a failed test lets register end
		}
	})
	done := make(chan error, 1)
	go func() { done <- node.register(context.Background(), s) }()
	select {
	case <-log.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("register did not read the conversations")
	}
	return s, log, done
}

func waitErr(t *testing.T, done chan error, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not end", what)
	}
}

// A session that registers while its conversations are read from a slow
// store does not hold up the delivery of events to everyone else.
func TestRegisteringDoesNotHoldUpDelivery(t *testing.T) {
	node, ts := fanoutNode(t, 2)
	_, log, registered := registering(t, node, nil)
	delivered := make(chan error, 1)
	go func() {
		node.dispatch(messageEvent(7))
		delivered <- nil
	}()
	waitErr(t, delivered, "the delivery to the online sessions, during a registration,")
	for i, tr := range ts {
		if tr.frames.Load() != 1 {
			t.Fatalf("session %d got %d frames, want 1", i, tr.frames.Load())
		}
	}
	close(log.release)
	waitErr(t, registered, "register")
}

// A removal dispatched while a registering session reads its
// conversations (which it read before the removal was committed) is not
// undone: the session gets nothing more of that conversation. One added
// meanwhile is subscribed from its event on.
func TestRegisteringKeepsRemovalsAndAdditionsDispatchedMeanwhile(t *testing.T) {
	node, _ := fanoutNode(t, 1)
	s, log, registered := registering(t, node, []tidings.Membership{{ConversationID: "c", FromSeq: 1}})
	removed, _ := json.Marshal(tidings.ParticipantPayload{ProfileID: "new"})
	node.dispatch(&tidings.Event{Seq: 5, ID: "r", AppID: "a", Name: tidings.EventParticipantRemoved,
		ConversationID: "c", UserID: "new", Payload: removed, Time: time.Now()})
	node.dispatch(&tidings.Event{Seq: 6, ID: "add", AppID: "a", Name: tidings.EventParticipantAdded,
		ConversationID: "d", UserID: "new", Payload: removed, Time: time.Now()})
	close(log.release)
	waitErr(t, registered, "register")

	node.mu.Lock()
	inC := node.convs[convKey{"a", "c"}].has(s)
	fromD, inD := node.convs[convKey{"a", "d"}].from(s)
	node.mu.Unlock()
	if inC {
		t.Fatal("the session is subscribed to a conversation its user was removed from while it registered")
	}
	if !inD || fromD != 6 {
		t.Fatalf("conversation added while it registered: subscribed %v from %d, want from 6", inD, fromD)
	}
	// And so a message in c after the removal does not reach it.
	s.mu.Lock()
	s.replaying = false
	s.mu.Unlock()
	node.dispatch(messageEvent(8))
	tr := s.client.t.(*recordingTransport)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, f := range tr.frames {
		var fr struct{ Ref string }
		json.Unmarshal(f, &fr)
		if fr.Ref == "8" {
			t.Fatalf("the removed user got a message of the conversation: %s", f)
		}
	}
}
