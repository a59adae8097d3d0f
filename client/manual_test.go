package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

func TestManualModeErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob")
	conv := s.conv(t, "bob", "alice")
	ctx := ctxT(t)

	c := newClient(t, s.URL(), client.WithMode(client.ManualMode), fastBackoff)
	var statuses statusLog
	c.AddStatusListener(statuses.listen)
	if err := c.Connect(ctx); !errors.Is(err, client.ErrNotLoggedIn) {
		t.Fatalf("Connect before login: %v", err)
	}
	if err := c.Ping(ctx); !errors.Is(err, client.ErrNotConnected) {
		t.Fatalf("Ping before login: %v", err)
	}
	if _, err := c.Me(ctx); !errors.Is(err, client.ErrNotLoggedIn) {
		t.Fatalf("REST before login: %v", err)
	}
	if _, err := c.Login(ctx, "not a token"); client.ErrorCode(err) != tidings.EUnauthenticated {
		t.Fatalf("Login with a bad token: %v", err)
	}
	u, err := c.Login(ctx, s.token(t, "alice", time.Hour))
	if err != nil || u.ID != "alice" || u.DisplayName != "Alice" || c.UserID() != "alice" {
		t.Fatalf("Login: %+v, %v", u, err)
	}
	if _, err := c.Login(ctx, s.token(t, "alice", time.Hour)); !errors.Is(err, client.ErrAlreadyLoggedIn) {
		t.Fatalf("second Login: %v", err)
	}
	if c.Status() != client.StatusDisconnected {
		t.Fatalf("manual mode connected by itself: %s", c.Status())
	}
	if err := c.Ping(ctx); !errors.Is(err, client.ErrNotConnected) {
		t.Fatalf("Ping while disconnected: %v", err)
	}
	if _, err := c.Socket().SendMessage(ctx, conv, textMessage("x")); !errors.Is(err, client.ErrNotConnected) {
		t.Fatalf("socket command while disconnected: %v", err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if c.Status() != client.StatusConnected {
		t.Fatalf("status after Connect: %s", c.Status())
	}
	if err := c.Connect(ctx); !errors.Is(err, client.ErrAlreadyConnected) {
		t.Fatalf("Connect while connected: %v", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	// A failed command is a typed *Error.
	_, err = c.Socket().SendMessage(ctx, "nope", textMessage("x"))
	var e *client.Error
	if !errors.As(err, &e) || e.Code != tidings.ENotFound || e.Message == "" {
		t.Fatalf("send to an unknown conversation: %#v", err)
	}
	if tidings.ErrorCode(err) != tidings.ENotFound {
		t.Fatalf("tidings.ErrorCode of a client error: %s", tidings.ErrorCode(err))
	}
	if err := c.Disconnect(); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
	if c.Status() != client.StatusDisconnected {
		t.Fatalf("status after Disconnect: %s", c.Status())
	}
	if err := c.Disconnect(); err != nil {
		t.Fatalf("second Disconnect: %v", err)
	}
	if err := c.Ping(ctx); !errors.Is(err, client.ErrNotConnected) {
		t.Fatalf("Ping after Disconnect: %v", err)
	}
	// REST works without a realtime connection.
	if me, err := c.Me(ctx); err != nil || me.ID != "alice" {
		t.Fatalf("Me: %+v, %v", me, err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("Connect again: %v", err)
	}
	if err := c.Logout(); err != nil || c.Status() != client.StatusDisconnected || c.UserID() != "" {
		t.Fatalf("Logout: %v, %s", err, c.Status())
	}
	if err := c.Connect(ctx); !errors.Is(err, client.ErrNotLoggedIn) {
		t.Fatalf("Connect after Logout: %v", err)
	}
	c.Close()
	if c.Status() != client.StatusClosed {
		t.Fatalf("status after Close: %s", c.Status())
	}
	for name, err := range map[string]error{
		"Connect":    c.Connect(ctx),
		"Disconnect": c.Disconnect(),
		"Ping":       c.Ping(ctx),
		"Socket":     c.Socket().StartTyping(ctx, conv),
	} {
		if !errors.Is(err, client.ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
	if _, err := c.Login(ctx, "x"); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Login after Close: %v", err)
	}
	want := []client.Status{client.StatusConnecting, client.StatusConnected, client.StatusDisconnected,
		client.StatusConnecting, client.StatusConnected, client.StatusDisconnected, client.StatusClosed}
	var got []client.Status
	for _, ch := range statuses.all() {
		got = append(got, ch.Status)
	}
	if !equalStatuses(got, want) {
		t.Errorf("status changes %v, want %v", got, want)
	}
}

func equalStatuses(a, b []client.Status) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestConnectionModeErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice")
	ctx := ctxT(t)

	// A rejected token fails Connect with the server's error.
	expired := s.token(t, "alice", time.Second, time.Now().Add(-time.Hour))
	c := newClient(t, s.URL(), client.WithMode(client.ManualMode), client.WithToken(expired))
	err := c.Connect(ctx)
	if client.ErrorCode(err) != tidings.EUnauthenticated || c.Status() != client.StatusDisconnected {
		t.Fatalf("Connect with an expired token: %v, %s", err, c.Status())
	}

	// In auto mode the client manages the connection.
	a := newClient(t, s.URL(), client.WithToken(s.token(t, "alice", time.Hour)))
	if a.UserID() != "alice" || a.Mode() != client.AutoMode || a.Device() != client.DefaultDevice {
		t.Fatalf("user %q, mode %s, device %q", a.UserID(), a.Mode(), a.Device())
	}
	waitConnected(t, a)
	if err := a.Connect(ctx); !errors.Is(err, client.ErrAutoMode) {
		t.Fatalf("Connect in auto mode: %v", err)
	}
	if err := a.Disconnect(); !errors.Is(err, client.ErrAutoMode) {
		t.Fatalf("Disconnect in auto mode: %v", err)
	}
	if err := a.Ping(ctx); err != nil {
		t.Fatalf("Ping in auto mode: %v", err)
	}

	// An auto-mode client whose token the server refuses stops trying.
	var statuses statusLog
	b := newClient(t, s.URL(), client.WithToken(expired), fastBackoff,
		client.WithStatusListener(statuses.listen))
	waitStatus(t, b, client.StatusDisconnected)
	waitFor(t, "the reason of the failure", func() bool {
		ch := statuses.all()
		return len(ch) > 0 && client.ErrorCode(ch[len(ch)-1].Err) == tidings.EUnauthenticated
	})
	if err := b.WaitConnected(ctx); err == nil {
		t.Fatal("WaitConnected succeeded with a bad token")
	}

	if _, err := client.New("ftp://x"); err == nil {
		t.Error("New accepted a URL that is not http")
	}
	if _, err := client.New(s.URL(), client.WithDevice("no spaces")); err == nil {
		t.Error("New accepted a bad device name")
	}
}
