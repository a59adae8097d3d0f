package client_test

import (
	"testing"
	"time"

	"github.com/tidings/tidings/client"
)

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	b := client.Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.5}
	for failures, base := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		base *= time.Millisecond
		for range 50 {
			if d := b.Delay(failures); d < base/2 || d > base {
				t.Fatalf("delay after %d failures: %v, want %v to %v", failures, d, base/2, base)
			}
		}
	}
	none := client.Backoff{Initial: 100 * time.Millisecond, Jitter: -1}
	if d := none.Delay(3); d != 800*time.Millisecond {
		t.Fatalf("delay without jitter: %v", d)
	}
	var zero client.Backoff
	if d := zero.Delay(100); d > client.DefaultBackoff.Max || d < client.DefaultBackoff.Max/2 {
		t.Fatalf("default delay after many failures: %v", d)
	}
}

func TestLoginAsAnotherUser(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob", "carol")
	conv := s.conv(t, "carol", "alice", "bob")
	ctx := ctxT(t)
	rec := newRecorder()
	c := newClient(t, s.URL(), client.WithEventListener(rec.listen))
	if err := c.WaitConnected(ctx); err != client.ErrNotLoggedIn {
		t.Fatalf("WaitConnected before login: %v", err)
	}
	if _, err := c.Login(ctx, s.token(t, "alice", time.Hour)); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, c)
	s.send(t, "carol", conv, "m000")
	rec.waitTexts(t, conv, 1)
	if err := c.Logout(); err != nil || c.Status() != client.StatusDisconnected || c.LastRef() != "" {
		t.Fatalf("Logout: %v, %s, %q", err, c.Status(), c.LastRef())
	}
	if _, err := c.Me(ctx); err != client.ErrNotLoggedIn {
		t.Fatalf("REST after Logout: %v", err)
	}
	if _, err := c.LoginWith(ctx, client.StaticToken(s.token(t, "bob", time.Hour))); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, c)
	if c.UserID() != "bob" {
		t.Fatalf("UserID %q", c.UserID())
	}
	s.send(t, "carol", conv, "m001")
	checkSequence(t, rec.waitTexts(t, conv, 2), 2)
	m := waitEvent(t, rec, func(e *client.MessageSent) bool { return e.Message.Parts[0].Data == "m001" })
	waitFor(t, "the last ref to be "+m.Ref, func() bool { return c.LastRef() == m.Ref })
}
