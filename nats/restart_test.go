package nats

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

const serverBinary = "/usr/sbin/nats-server"

// ownServer is a nats-server of the test's own, which it may stop and
// start again on the same port with the same storage.
type ownServer struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
}

func startOwnServer(t *testing.T) *ownServer {
	t.Helper()
	if _, err := os.Stat(serverBinary); err != nil {
		if os.Getenv("TIDINGS_REQUIRE_SERVICES") == "1" {
			t.Fatalf("%s is required (TIDINGS_REQUIRE_SERVICES=1): %v", serverBinary, err)
		}
		t.Skipf("%s not found (%v): skipped", serverBinary, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &ownServer{t: t, port: port, dir: t.TempDir()}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *ownServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

func (s *ownServer) start() {
	s.t.Helper()
	s.cmd = exec.Command(serverBinary, "-a", "127.0.0.1", "-p", fmt.Sprint(s.port), "-js", "-sd", s.dir)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start nats-server: %v", err)
	}
	waitFor(s.t, "the test's nats-server to listen", func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// stop kills the server (by its process, never by name) and waits for it.
func (s *ownServer) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// When NATS restarts, a subscriber is told Lost and then receives again;
// publishing while it is down fails at once (unavailable), nothing
// queued; KV calls fail within their context, and work again after.
func TestRestart(t *testing.T) {
	srv := startOwnServer(t)
	ctx := testContext(t)
	pub := connect(t, srv.url(), "restart", "publisher")
	node := connect(t, srv.url(), "restart", "subscriber")
	rec := &recorder{}
	if _, err := node.Subscribe(ctx, rec); err != nil {
		t.Fatal(err)
	}
	leases := node.Leases()
	if ok, err := leases.Hold(ctx, "tailer", "n1", 30*time.Second); err != nil || !ok {
		t.Fatalf("hold: %v, %v", ok, err)
	}
	presence := node.Presence()
	if _, err := presence.Connect(ctx, "a", "u", "n1", 0); err != nil {
		t.Fatal(err)
	}
	if err := pub.PublishRange(ctx, tidings.EventRange{From: 1, To: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first range", func() bool { n, _, _ := rec.counts(); return n == 1 })

	srv.stop()
	waitFor(t, "the subscriber to be told Lost", func() bool { _, _, lost := rec.counts(); return lost > 0 })
	waitFor(t, "the publisher to see the connection down", func() bool { return !pub.Connected() })
	err := pub.PublishRange(ctx, tidings.EventRange{From: 2, To: 3})
	if tidings.ErrorCode(err) != tidings.EUnavailable {
		t.Fatalf("publish while NATS is down: %v, want unavailable", err)
	}
	if err := pub.PublishLive(ctx, tidings.LiveUpdate{AppID: "a", Name: "x"}); tidings.ErrorCode(err) != tidings.EUnavailable {
		t.Fatalf("publish live while NATS is down: %v, want unavailable", err)
	}
	kctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = leases.Hold(kctx, "tailer", "n1", 30*time.Second)
	cancel()
	if err == nil {
		t.Fatal("hold while NATS is down: no error")
	}
	kctx, cancel = context.WithTimeout(ctx, 3*time.Second)
	_, err = presence.Connect(kctx, "a", "v", "n1", 0)
	cancel()
	if err == nil {
		t.Fatal("presence connect while NATS is down: no error")
	}

	srv.start()
	waitFor(t, "both connections to come back", func() bool { return pub.Connected() && node.Connected() })
	_, _, lostBefore := rec.counts()
	// The subscription is made again on reconnection, as the server
	// learns it: publish until one arrives.
	waitFor(t, "a range after the restart", func() bool {
		err := pub.PublishRange(ctx, tidings.EventRange{From: 3, To: 4})
		if err != nil && !errors.Is(err, errUnavailable) {
			t.Fatal(err)
		}
		n, _, _ := rec.counts()
		return n > 1
	})
	got, _ := rec.snapshot()
	if got[0].To != 2 || got[1].From != 3 {
		t.Fatalf("ranges received: %+v; want (1, 2] then (3, 4]", got)
	}
	if _, _, lost := rec.counts(); lost < lostBefore {
		t.Fatal("lost count went down")
	}
	rec.mu.Lock()
	if rec.overlap {
		t.Error("handler calls overlapped")
	}
	rec.mu.Unlock()

	// The buckets kept their state across the restart (file storage).
	waitFor(t, "the lease to be renewed after the restart", func() bool {
		ok, err := leases.Hold(ctx, "tailer", "n1", 30*time.Second)
		return err == nil && ok
	})
	if got, err := presence.Online(ctx, "a", []string{"u"}); err != nil || len(got) != 1 {
		t.Fatalf("online after the restart: %v, %v; want u", got, err)
	}
}
