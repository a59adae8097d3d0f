package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tidings/tidings/client"
)

func TestBackgroundAutoModeDisconnectsAtOnce(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob")
	conv := s.conv(t, "bob", "alice")
	clock := newFakeClock()
	c := newClient(t, s.URL(), client.WithToken(s.token(t, "alice", time.Hour)), client.WithClock(clock))
	rec := newRecorder()
	c.AddEventListener(rec.listen)
	waitConnected(t, c)
	s.send(t, "bob", conv, "m000")
	rec.waitTexts(t, conv, 1)

	if err := c.EnterBackground(); err != nil {
		t.Fatal(err)
	}
	if !c.InBackground() || c.Status() != client.StatusDisconnected {
		t.Fatalf("in the background: %v, %s", c.InBackground(), c.Status())
	}
	if err := c.Ping(ctxT(t)); !errors.Is(err, client.ErrNotConnected) {
		t.Fatalf("Ping in the background: %v", err)
	}
	// Nothing brings it back while in the background, however long.
	s.send(t, "bob", conv, "m001")
	clock.Advance(time.Hour)
	if c.Status() != client.StatusDisconnected {
		t.Fatalf("status in the background: %s", c.Status())
	}

	// Back to the foreground: it reconnects and gets what it missed.
	if err := c.EnterForeground(); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, c)
	s.send(t, "bob", conv, "m002")
	checkSequence(t, rec.waitTexts(t, conv, 3), 3)
}

func TestBackgroundManualModeNeedsPings(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob")
	conv := s.conv(t, "bob", "alice")
	clock := newFakeClock()
	c := newClient(t, s.URL(), client.WithToken(s.token(t, "alice", time.Hour)), client.WithClock(clock),
		client.WithMode(client.ManualMode))
	var statuses statusLog
	c.AddStatusListener(statuses.listen)
	ctx := ctxT(t)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}

	// The connection stays in the background while the application pings
	// within the timeout (30s).
	if err := c.EnterBackground(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(20 * time.Second)
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping at 20s: %v", err)
	}
	clock.Advance(20 * time.Second) // 40s in the background, 20s after the ping
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping at 40s: %v", err)
	}
	clock.Advance(29 * time.Second)
	if c.Status() != client.StatusConnected {
		t.Fatalf("dropped 29s after a ping: %s", c.Status())
	}
	rec := newRecorder()
	c.AddEventListener(rec.listen)
	s.send(t, "bob", conv, "m000")
	rec.waitTexts(t, conv, 1)

	// 30s without a ping: dropped.
	clock.Advance(time.Second)
	if c.Status() != client.StatusDisconnected {
		t.Fatalf("not dropped 30s after the last ping: %s", c.Status())
	}
	waitFor(t, "the status change", func() bool {
		ch := statuses.all()
		last := ch[len(ch)-1]
		return last.Status == client.StatusDisconnected && errors.Is(last.Err, client.ErrBackgroundTimeout)
	})
	if err := c.Ping(ctx); !errors.Is(err, client.ErrNotConnected) {
		t.Fatalf("Ping after the timeout: %v", err)
	}

	// Back in the foreground, the application connects again, and the
	// connection no longer needs pings.
	if err := c.EnterForeground(); err != nil {
		t.Fatal(err)
	}
	if c.Status() != client.StatusDisconnected {
		t.Fatalf("manual mode reconnected by itself: %s", c.Status())
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	if c.Status() != client.StatusConnected {
		t.Fatalf("foreground connection dropped: %s", c.Status())
	}
	s.send(t, "bob", conv, "m001")
	checkSequence(t, rec.waitTexts(t, conv, 2), 2)

	// Connecting while in the background starts the timeout too.
	if err := c.EnterBackground(); err != nil {
		t.Fatal(err)
	}
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Second)
	if c.Status() != client.StatusDisconnected {
		t.Fatalf("not dropped 30s after connecting in the background: %s", c.Status())
	}
}

func TestManualModeReconnectsInForegroundOnly(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob")
	conv := s.conv(t, "bob", "alice")
	p := newProxy(t, s.Addr())
	c := newClient(t, p.URL(), client.WithToken(s.token(t, "alice", time.Hour)), client.WithMode(client.ManualMode), fastBackoff)
	rec := newRecorder()
	c.AddEventListener(rec.listen)
	ctx := ctxT(t)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	// In the foreground, a network failure is repaired by the client.
	s.send(t, "bob", conv, "m000")
	rec.waitTexts(t, conv, 1)
	p.Cut()
	waitStatus(t, c, client.StatusConnected)
	s.send(t, "bob", conv, "m001")
	rec.waitTexts(t, conv, 2)

	// In the background, it is not: the application connects again.
	if err := c.EnterBackground(); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	waitStatus(t, c, client.StatusDisconnected)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	s.send(t, "bob", conv, "m002")
	checkSequence(t, rec.waitTexts(t, conv, 3), 3)
}
