package client_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings/client"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for len(clientGoroutines()) > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if gs := clientGoroutines(); len(gs) > 0 {
			fmt.Fprintf(os.Stderr, "%d goroutines of package client leaked:\n\n%s\n", len(gs), strings.Join(gs, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// TestCloseStopsEverything is not parallel: it checks that no goroutine of
// the package is left once its clients are closed, in every state.
func TestCloseStopsEverything(t *testing.T) {
	s := startServer(t)
	s.mkUsers(t, "alice", "bob")
	conv := s.conv(t, "bob", "alice")
	ctx := ctxT(t)
	tok := s.token(t, "alice", time.Hour)
	var clients []*client.Client
	mk := func(url string, opts ...client.Option) *client.Client {
		c, err := client.New(url, opts...)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		return c
	}

	// Connected, with updates flowing and listeners.
	auto := mk(s.URL(), client.WithTokenProvider(client.StaticToken(tok)), client.WithKeepAlive(50*time.Millisecond, time.Second))
	rec := newRecorder()
	auto.AddEventListener(rec.listen)
	auto.AddStatusListener(func(client.StatusChange) {})
	waitConnected(t, auto)
	s.send(t, "bob", conv, "m000")
	rec.waitTexts(t, conv, 1)
	// Manual mode, connected, in the background.
	manual := mk(s.URL(), client.WithToken(tok), client.WithMode(client.ManualMode))
	if err := manual.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	manual.EnterBackground()
	// Trying to reach a server that accepts connections and says nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var muteMu sync.Mutex
	var held []net.Conn // referenced, or the GC closes them
	accepted, acceptDone := make(chan struct{}, 100), make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			muteMu.Lock()
			held = append(held, c)
			muteMu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	dialing := mk("http://"+ln.Addr().String(), client.WithToken(tok))
	<-accepted
	if dialing.Status() != client.StatusConnecting {
		t.Errorf("status while dialing: %s", dialing.Status())
	}
	// Waiting to reconnect to a server that is gone.
	p := newProxy(t, s.Addr())
	retrying := mk(p.URL(), client.WithToken(tok), client.WithBackoff(client.Backoff{Initial: time.Hour}))
	waitConnected(t, retrying)
	p.Close()
	waitStatus(t, retrying, client.StatusReconnecting)
	// A Connect in progress.
	waiting := mk("http://"+ln.Addr().String(), client.WithToken(tok), client.WithMode(client.ManualMode))
	connectErr := make(chan error, 1)
	go func() { connectErr <- waiting.Connect(context.Background()) }()
	<-accepted
	// A listener in the middle of an update when Close is called.
	blocked := mk(s.URL(), client.WithToken(s.token(t, "bob", time.Hour)))
	in, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	blocked.AddEventListener(func(client.Event) {
		once.Do(func() {
			in <- struct{}{}
			<-release
		})
	})
	waitConnected(t, blocked)
	s.send(t, "alice", conv, "m001")
	<-in
	closed := make(chan struct{})
	go func() { blocked.Close(); close(closed) }()
	close(release)
	<-closed

	for _, c := range clients {
		c.Close()
		c.Close() // twice is harmless
	}
	if err := <-connectErr; err != client.ErrClosed {
		t.Errorf("Connect interrupted by Close: %v", err)
	}
	ln.Close()
	<-acceptDone
	for _, c := range held {
		c.Close()
	}
	checkNoClientGoroutines(t)
}
