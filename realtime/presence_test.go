package realtime

import "testing"

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
