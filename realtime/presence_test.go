package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

func TestPresenceSkipsLargeConversations(t *testing.T) {
	node, _ := fanoutNode(t, 5)
	var s *Session
	for x := range node.convs[convKey{"a", "c"}].all() {
		s = x
		break
	}
	node.PresenceLimit = 5
	if got := len(node.peersLocked(s)); got != 4 {
		t.Errorf("a conversation of 5 online sessions, limit 5: %d peers, want 4", got)
	}
	node.PresenceLimit = 4
	if got := len(node.peersLocked(s)); got != 0 {
		t.Errorf("a conversation of 5 online sessions, limit 4: %d peers, want none", got)
	}
}

// A typing indicator, or presence.get, right after the conversation was
// created (by the REST API, say, whose answer comes once the event is
// published to the node, maybe before the node has dispatched it to its
// index): the command waits for that dispatch instead of answering that
// the conversation is not found.
func TestTypingRightAfterTheConversationIsCreated(t *testing.T) {
	node := cursorNode(t, &cursorLog{cursors: map[string]int64{}}, &fakeClock{t: time.Now()}, time.Second)
	c := node.Connect(&closeRecorder{code: make(chan int, 1)})
	s := &Session{client: c, account: "default", app: "a", user: "u0", device: "d"}
	if err := node.register(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	c.accounts.set(s)
	for i := range 100 {
		conv := fmt.Sprint("c", i)
		payload, _ := json.Marshal(tidings.ConversationPayload{ConversationID: conv,
			Participants: []tidings.NewParticipant{{UserID: "u0"}, {UserID: "u1"}}})
		node.Publish(&tidings.Event{Seq: int64(2*i + 1), ID: fmt.Sprint("e", i), AppID: "a", Name: tidings.EventConversationCreate,
			Time: time.Now(), ConversationID: conv, Payload: payload})
		if err := node.setTyping(s, conv, true); err != nil {
			t.Fatalf("typing.start in conversation %d right after it was created: %v", i, err)
		}
		if _, err := node.presenceOf(context.Background(), s, conv); err != nil {
			t.Fatalf("presence.get in conversation %d right after it was created: %v", i, err)
		}
	}
	// What the user takes no part in is still not found, once dispatched.
	if err := node.setTyping(s, "elsewhere", true); tidings.ErrorCode(err) != tidings.ENotFound {
		t.Fatalf("typing.start in a conversation the user is not in: %v, want %s", err, tidings.ENotFound)
	}
}
