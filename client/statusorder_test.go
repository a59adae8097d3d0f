package client_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings/client"
)

// timeline records status changes and events in the order the listeners
// get them.
type timeline struct {
	mu      sync.Mutex
	entries []string // "status:connected", "msg:m003"…
}

func (l *timeline) status(c client.StatusChange) {
	l.mu.Lock()
	l.entries = append(l.entries, "status:"+c.Status.String())
	l.mu.Unlock()
}

func (l *timeline) event(e client.Event) {
	if m, ok := e.(*client.MessageSent); ok && len(m.Message.Parts) > 0 {
		l.mu.Lock()
		l.entries = append(l.entries, "msg:"+m.Message.Parts[0].Data)
		l.mu.Unlock()
	}
}

func (l *timeline) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.entries...)
}

// The listeners learn that the client is connected before they get the
// updates of that connection: those replayed after a reconnection (what
// came while it was away) come after "connected", never between
// "reconnecting" and it.
func TestConnectedComesBeforeTheUpdatesOfItsConnection(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob")
	conv := s.conv(t, "bob", "alice")
	ctx := ctxT(t)

	alice := newClient(t, s.URL(), client.WithToken(s.token(t, "alice", time.Hour)), client.WithMode(client.ManualMode))
	var tl timeline
	alice.AddStatusListener(tl.status)
	alice.AddEventListener(tl.event)
	lastIs := func(want string) func() bool {
		return func() bool {
			all := tl.all()
			return len(all) > 0 && all[len(all)-1] == want
		}
	}
	for round := range 6 {
		if err := alice.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		if round > 0 {
			waitFor(t, "the messages sent while away", lastIs(fmt.Sprintf("msg:r%d-%02d", round-1, 19)))
		}
		if round == 5 {
			break
		}
		if err := alice.Disconnect(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "disconnected", lastIs("status:disconnected"))
		// Sent while alice is away: replayed when she connects again.
		for i := range 20 {
			s.send(t, "bob", conv, fmt.Sprintf("r%d-%02d", round, i))
		}
	}
	var last string // the last status the listeners were told
	for _, e := range tl.all() {
		switch {
		case len(e) > 7 && e[:7] == "status:":
			last = e[7:]
		case last != "connected":
			t.Fatalf("%s came while the status was %q: %v", e, last, tl.all())
		}
	}
}
