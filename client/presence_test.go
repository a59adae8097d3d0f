package client_test

import (
	"slices"
	"testing"
	"time"

	"github.com/tidings/tidings/client"
)

// presenceOf returns the presence updates about user received so far.
func presenceOf(evs []client.Event, user string) []*client.PresenceUpdate {
	var out []*client.PresenceUpdate
	for _, e := range evs {
		if p, ok := e.(*client.PresenceUpdate); ok && p.ProfileID == user {
			out = append(out, p)
		}
	}
	return out
}

func TestPresenceSubscriptionsAreMadeAgainAfterAReconnection(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob", "carol") // alice and bob share no conversation
	barrier := s.conv(t, "carol", "alice")
	p := newProxy(t, s.Addr())
	rec, statuses := newRecorder(), &statusLog{}
	c := newClient(t, p.URL(), client.WithToken(s.token(t, "alice", time.Hour)), fastBackoff,
		client.WithEventListener(rec.listen), client.WithStatusListener(statuses.listen))
	waitConnected(t, c)
	ctx := ctxT(t)

	res, err := c.Socket().SubscribePresence(ctx, "bob", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Users) != 1 || res.Users[0].UserID != "bob" || res.Users[0].Status != "offline" || !slices.Equal(res.Unknown, []string{"nobody"}) {
		t.Fatalf("SubscribePresence = %+v, want bob offline and nobody unknown", res)
	}
	if got := c.PresenceSubscriptions(); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("PresenceSubscriptions = %v, want only bob (nobody is unknown)", got)
	}

	bob := newClient(t, s.URL(), client.WithToken(s.token(t, "bob", time.Hour)))
	waitConnected(t, bob)
	rec.waitUntil(t, "bob online", func(evs []client.Event) bool {
		ps := presenceOf(evs, "bob")
		return len(ps) == 1 && ps[0].Online
	})

	// The connection drops; the new one subscribes again, tells bob's
	// status then, and follows him.
	p.Cut()
	waitFor(t, "a second connection", func() bool { return statuses.count(client.StatusConnected) >= 2 })
	rec.waitUntil(t, "bob's status after the reconnection", func(evs []client.Event) bool {
		ps := presenceOf(evs, "bob")
		return len(ps) == 2 && ps[1].Online && ps[1].Actor == nil
	})
	bob.Close()
	rec.waitUntil(t, "bob offline", func(evs []client.Event) bool {
		ps := presenceOf(evs, "bob")
		return len(ps) == 3 && !ps[2].Online
	})

	// Unsubscribed, he is forgotten: no update when he comes back.
	if err := c.Socket().UnsubscribePresence(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if got := c.PresenceSubscriptions(); len(got) != 0 {
		t.Fatalf("PresenceSubscriptions = %v after unsubscribing", got)
	}
	p.Cut()
	waitFor(t, "a third connection", func() bool { return statuses.count(client.StatusConnected) >= 3 })
	bob = newClient(t, s.URL(), client.WithToken(s.token(t, "bob", time.Hour)))
	waitConnected(t, bob)
	// What bob's coming online would have sent comes before the message.
	s.send(t, "carol", barrier, "after bob")
	rec.waitTexts(t, barrier, 1)
	if got := presenceOf(rec.all(), "bob"); len(got) != 3 {
		t.Fatalf("%d presence updates about bob after unsubscribing, want none new", len(got)-3)
	}
}
