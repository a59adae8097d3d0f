package ws_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/tidings/tidings/protocol"
)

// Promises of docs/protocol.md, each checked against the real server.

// "Updates that were sent but not acknowledged ... are sent again the next
// time the device resumes": also for a device whose first auth asked for
// "latest", and whose cursor therefore never came from a reply.
func TestNewDeviceStartingAtLatestGetsUnacknowledgedUpdatesAgain(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	s.send("a", "alice", conv, "history")

	bob := dial(t, s)
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "fresh", ResumeAfter: "latest"})
	for i := range 3 {
		s.send("a", "alice", conv, fmt.Sprint(i))
	}
	if got := textsUntil(bob, "2"); !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Fatalf("live, bob got %v", got)
	}
	bob.hangUp() // no reply sent

	bob = dial(t, s)
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "fresh"})
	if got := textsUntil(bob, "2"); !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Fatalf("resuming from the device's cursor bob got %v, want the three unacknowledged", got)
	}

	// The same through polling: a poll after=latest records where the
	// device starts, and the next poll from the cursor returns what was
	// not acknowledged.
	tok := s.token("a", "bob")
	us, last := s.poll(tok, "device=pollfresh&after=latest")
	if len(us) != 0 || last != s.lastRef() {
		t.Fatalf("a poll after latest returned %d updates and lastRef %q, want none and the newest ref %s", len(us), last, s.lastRef())
	}
	s.send("a", "alice", conv, "polled")
	us, _ = s.poll(tok, "device=pollfresh&after="+last)
	if got := texts(us); !slices.Equal(got, []string{"polled"}) {
		t.Fatalf("poll after %s: %v", last, got)
	}
	us, _ = s.poll(tok, "device=pollfresh")
	if got := texts(us); !slices.Equal(got, []string{"polled"}) {
		t.Fatalf("poll from the cursor of a device that started at latest: %v, want the unacknowledged message", got)
	}
}
