package realtime

import (
	"bytes"
	"fmt"
	"testing"
)

func TestBodyCacheKeepsTheNewestEvents(t *testing.T) {
	c := newBodyCache[eventBody]()
	for seq := int64(1); seq <= bodyCacheSize+10; seq++ {
		c.put(seq, eventBody{own: []byte(fmt.Sprint(seq))})
	}
	if len(c.m) != bodyCacheSize {
		t.Fatalf("the cache holds %d bodies, want at most %d", len(c.m), bodyCacheSize)
	}
	for seq := int64(1); seq <= 10; seq++ {
		if _, ok := c.get(seq); ok {
			t.Fatalf("event %d, among the oldest, is still kept", seq)
		}
	}
	if b, ok := c.get(bodyCacheSize + 10); !ok || !bytes.Equal(b.own, []byte(fmt.Sprint(bodyCacheSize+10))) {
		t.Fatalf("the newest event: %v, %v", b, ok)
	}
}

// A replay after live delivery sends the very bytes that were delivered
// live, encoded once.
func TestReplayReusesTheLiveEncoding(t *testing.T) {
	node, _ := fanoutNode(t, 1)
	ev := messageEvent(42)
	node.dispatch(ev)
	live, ok := node.bodies.get(42)
	if !ok {
		t.Fatal("dispatch did not keep the encoded event")
	}
	again, err := node.encodeStored(messageEvent(42))
	if err != nil || &again.own[0] != &live.own[0] || &again.others[0] != &live.others[0] {
		t.Fatalf("the replay encoded the event again (%v)", err)
	}
}
