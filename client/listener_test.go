package client_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
)

func TestListenersAddedAndRemovedDuringDelivery(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob")
	conv := s.conv(t, "bob", "alice")
	c := newClient(t, s.URL(), client.WithToken(s.token(t, "alice", time.Hour)))

	var mu sync.Mutex
	got := map[string][]string{}
	note := func(name string, e client.Event) (string, bool) {
		m, ok := e.(*client.MessageSent)
		if !ok {
			return "", false
		}
		text := m.Message.Parts[0].Data
		mu.Lock()
		got[name] = append(got[name], text)
		mu.Unlock()
		return text, true
	}
	listenerB := func(e client.Event) { note("B", e) }
	var removeA, removeC func()
	var commandErr error
	removeA = c.AddEventListener(func(e client.Event) {
		text, ok := note("A", e)
		switch {
		case !ok:
		case text == "m001":
			c.AddEventListener(listenerB) // gets the updates after this one
			// Commands work from a listener.
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := c.Ping(ctx); err != nil {
				commandErr = err
			} else if _, err := c.Socket().MarkRead(ctx, conv, 0); err != nil {
				commandErr = err
			}
		case text == "m002":
			removeC() // C, next in line, does not get this one
		case text == "m004":
			removeA() // removing itself
			removeA() // twice is harmless
		}
	})
	removeC = c.AddEventListener(func(e client.Event) { note("C", e) })
	done := newRecorder()
	c.AddEventListener(done.listen)
	waitConnected(t, c)
	for _, text := range expected(6) {
		s.send(t, "bob", conv, text)
	}
	done.waitTexts(t, conv, 6)
	if commandErr != nil {
		t.Fatalf("command from a listener: %v", commandErr)
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string][]string{
		"A": {"m000", "m001", "m002", "m003", "m004"},
		"B": {"m002", "m003", "m004", "m005"},
		"C": {"m000", "m001"},
	}
	for name, w := range want {
		if !slices.Equal(got[name], w) {
			t.Errorf("listener %s got %v, want %v", name, got[name], w)
		}
	}
}

func TestEveryListenerGetsEveryUpdateInOrder(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob")
	conv := s.conv(t, "bob", "alice")
	c := newClient(t, s.URL(), client.WithToken(s.token(t, "alice", time.Hour)))
	recs := []*recorder{newRecorder(), newRecorder(), newRecorder()}
	for _, r := range recs {
		c.AddEventListener(r.listen)
	}
	waitConnected(t, c)
	for _, text := range expected(20) {
		s.send(t, "bob", conv, text)
	}
	for _, r := range recs {
		checkSequence(t, r.waitTexts(t, conv, 20), 20)
	}
	// Each update is the same value for all listeners.
	a, b := recs[0].all(), recs[1].all()
	if len(a) != len(b) || a[0] != b[0] {
		t.Fatalf("listeners got different updates")
	}
}

func TestTokenRefreshedBeforeExpiry(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob", "carol")
	conv := s.conv(t, "bob", "alice", "carol")
	clock := newFakeClock()
	var mu sync.Mutex
	var minted []time.Time // expiry of each token given
	provider := func(ctx context.Context) (string, error) {
		now := clock.Now()
		mu.Lock()
		minted = append(minted, now.Add(10*time.Minute).Truncate(time.Second))
		mu.Unlock()
		return s.token(t, "alice", 10*time.Minute, now), nil
	}
	calls := func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(minted)
	}
	var statuses statusLog
	rec := newRecorder()
	alice := newClient(t, s.URL(), client.WithTokenProvider(provider), client.WithClock(clock),
		client.WithRefreshMargin(time.Minute), fastBackoff,
		client.WithStatusListener(statuses.listen), client.WithEventListener(rec.listen))
	waitConnected(t, alice)
	first := calls()
	if len(first) != 1 || !alice.TokenExpiry().Equal(first[0]) {
		t.Fatalf("provider calls %v, token expiry %v", first, alice.TokenExpiry())
	}
	// Carol's token is the same age as Alice's first, and is not refreshed.
	var carolStatuses statusLog
	carolEvents := newRecorder()
	carol := newClient(t, s.URL(), client.WithToken(s.token(t, "carol", 10*time.Minute, clock.Now())),
		client.WithStatusListener(carolStatuses.listen), client.WithEventListener(carolEvents.listen))
	waitConnected(t, carol)

	// A minute before the expiry, the client gets a new token and
	// authenticates it on the open connection.
	clock.Advance(9*time.Minute + 30*time.Second)
	waitFor(t, "the token refresh", func() bool {
		cs := calls()
		return len(cs) == 2 && alice.TokenExpiry().Equal(cs[1])
	})
	if alice.Status() != client.StatusConnected || statuses.count(client.StatusConnected) != 1 {
		t.Fatalf("the refresh reconnected: %v", statuses.all())
	}

	// Past the first token's expiry, the server
	// ends Carol's connection, but not Alice's.
	s.offset.Store(int64(11 * time.Minute))
	waitFor(t, "carol's token to expire", func() bool { return carolStatuses.count(client.StatusReconnecting) > 0 })
	s.send(t, "bob", conv, "m000")
	rec.waitTexts(t, conv, 1)
	if alice.Status() != client.StatusConnected || statuses.count(client.StatusConnected) != 1 {
		t.Fatalf("alice's connection did not survive the first token's expiry: %v", statuses.all())
	}
	// Carol's client tells why and stops: its token cannot be refreshed.
	ac := waitEvent[*client.AccountClosed](t, carolEvents, nil)
	if ac.Reason != "token_expired" || ac.Account != "default" || ac.Ref != "" {
		t.Errorf("account.closed: %+v", ac)
	}
	waitStatus(t, carol, client.StatusDisconnected)
	var closedByServer bool
	for _, ch := range carolStatuses.all() {
		var ce *client.CloseError
		if asCloseError(ch.Err, &ce) && ce.Code == 4003 {
			closedByServer = true
		}
	}
	if !closedByServer {
		t.Errorf("carol's status changes %v", carolStatuses.all())
	}
	if err := carol.WaitConnected(ctxT(t)); client.ErrorCode(err) != tidings.EUnauthenticated {
		t.Errorf("carol's WaitConnected: %v", err)
	}
}

// Once Close returns, the server has the acknowledgements: the next
// connection of the device, at once, gets only what was not processed.
func TestCloseLeavesTheServerCursorAfterWhatWasProcessed(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob")
	conv := s.conv(t, "bob", "alice")
	for round := range 5 {
		rec := newRecorder()
		c := newClient(t, s.URL(), client.WithToken(s.token(t, "alice", time.Hour)), client.WithDevice("cli"),
			client.WithEventListener(rec.listen))
		waitConnected(t, c)
		text := expected(round + 1)[round]
		s.send(t, "bob", conv, text)
		if got := rec.waitTexts(t, conv, 1); len(got) != 1 || got[0] != text {
			t.Fatalf("round %d: got %v, want [%s]", round, got, text)
		}
		c.Close()
	}
}
