package client_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings/client"
)

// sender sends n numbered messages from a client through the REST API, one
// after the other, retrying each (with the same ClientID, so a retry never
// makes a second message) until the server takes it.
func sender(t *testing.T, c *client.Client, conv string, n int) (wait func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			m := textMessage(fmt.Sprintf("m%03d", i))
			m.ClientID = fmt.Sprintf("c%03d", i)
			for {
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := c.SendMessage(rctx, conv, m)
				rcancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return wg.Wait
}

func expected(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("m%03d", i)
	}
	return out
}

func checkSequence(t *testing.T, got []string, n int) {
	t.Helper()
	if want := expected(n); !slices.Equal(got, want) {
		t.Fatalf("received %d messages, not exactly the %d sent in order:\n%v", len(got), n, got)
	}
}

func TestAutoModeResumesAfterCutsWithoutLossOrDuplicate(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob")
	conv := s.conv(t, "bob", "alice")
	p := newProxy(t, s.Addr())

	rec := newRecorder()
	var statuses statusLog
	alice := newClient(t, p.URL(), client.WithToken(s.token(t, "alice", time.Hour)), client.WithDevice("phone"), fastBackoff,
		client.WithEventListener(rec.listen), client.WithStatusListener(statuses.listen))
	waitConnected(t, alice)

	bob := newClient(t, s.URL(), client.WithToken(s.token(t, "bob", time.Hour)), client.WithMode(client.ManualMode))
	const n, cuts = 240, 5
	done := sender(t, bob, conv, n)
	for i := 1; i <= cuts; i++ {
		rec.waitTexts(t, conv, i*n/(cuts+1))
		// Each cut hits a connection of its own: the one the listeners
		// were told of (the texts seen may have come before the last cut,
		// and the client still be reconnecting).
		waitFor(t, fmt.Sprintf("connection %d", i), func() bool { return statuses.count(client.StatusConnected) >= i })
		p.Cut() // mid-stream: messages keep coming
	}
	got := rec.waitTexts(t, conv, n)
	done()
	checkSequence(t, got, n)
	waitConnected(t, alice)
	// The listeners are told on their own goroutine, after Status changed.
	waitFor(t, fmt.Sprintf("connected %d times through %d cuts", cuts+1, cuts), func() bool {
		return statuses.count(client.StatusConnected) >= cuts+1
	})
	if statuses.count(client.StatusReconnecting) < cuts {
		t.Errorf("status changes %v", statuses.all())
	}
	// The last message's ref is the last processed.
	evs := rec.all()
	last := evs[len(evs)-1].Info().Ref
	waitFor(t, "the last ref to be "+last, func() bool { return alice.LastRef() == last })
}

func TestAutoModeSurvivesServerRestart(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob")
	conv := s.conv(t, "bob", "alice")

	rec := newRecorder()
	var statuses statusLog
	alice := newClient(t, s.URL(), client.WithToken(s.token(t, "alice", time.Hour)), fastBackoff,
		client.WithEventListener(rec.listen), client.WithStatusListener(statuses.listen))
	waitConnected(t, alice)

	bob := newClient(t, s.URL(), client.WithToken(s.token(t, "bob", time.Hour)), client.WithMode(client.ManualMode))
	const n = 150
	done := sender(t, bob, conv, n)
	for _, at := range []int{40, 90} {
		rec.waitTexts(t, conv, at)
		if err := s.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	got := rec.waitTexts(t, conv, n)
	done()
	checkSequence(t, got, n)
	waitConnected(t, alice)
	if c := statuses.count(client.StatusConnected); c < 3 {
		t.Errorf("connected %d times through 2 restarts", c)
	}
	var sawGoingAway bool
	for _, ch := range statuses.all() {
		var ce *client.CloseError
		if ch.Status == client.StatusReconnecting && asCloseError(ch.Err, &ce) && ce.Code == 1001 {
			sawGoingAway = true
		}
	}
	if !sawGoingAway {
		t.Errorf("no reconnection after a going-away close: %v", statuses.all())
	}
}
