package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// sharedURL is the NATS (with JetStream) the tests use unless they start
// their own. They never stop or restart it.
const sharedURL = "nats://127.0.0.1:4222"

// needShared skips the test when the shared NATS is unreachable, or fails
// it when TIDINGS_REQUIRE_SERVICES=1.
func needShared(t *testing.T) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:4222", 2*time.Second)
	if err == nil {
		c.Close()
		return
	}
	if os.Getenv("TIDINGS_REQUIRE_SERVICES") == "1" {
		t.Fatalf("NATS at 127.0.0.1:4222 is required (TIDINGS_REQUIRE_SERVICES=1) but unreachable: %v", err)
	}
	t.Skipf("NATS at 127.0.0.1:4222 unreachable (%v): skipped; start nats-server -js, or set TIDINGS_REQUIRE_SERVICES=1 to fail instead", err)
}

// testPrefix returns a prefix no other test run uses.
func testPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

// connect returns a connection to url with prefix, closed at the end of
// the test.
func connect(t *testing.T, url, prefix, name string) *Conn {
	t.Helper()
	c, err := Connect(url, Options{Name: name, Prefix: prefix})
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sharedConns connects n "nodes" to the shared NATS with one fresh
// prefix, whose buckets are deleted at the end of the test.
func sharedConns(t *testing.T, n int) []*Conn {
	t.Helper()
	needShared(t)
	prefix := testPrefix()
	conns := make([]*Conn, n)
	for i := range conns {
		conns[i] = connect(t, sharedURL, prefix, t.Name())
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := conns[0].DeleteBuckets(ctx); err != nil {
			t.Errorf("delete buckets: %v", err)
		}
	})
	return conns
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds, failing the test after 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recorder is a BrokerHandler that keeps what it receives, and checks
// that its calls never overlap.
type recorder struct {
	mu     sync.Mutex
	busy   bool
	ranges []tidings.EventRange
	live   []tidings.LiveUpdate
	lost   int
	// log is every call in order: "range", "live" or "lost".
	log     []string
	overlap bool
}

func (r *recorder) enter(kind string) {
	r.mu.Lock()
	if r.busy {
		r.overlap = true
	}
	r.busy = true
	r.log = append(r.log, kind)
	r.mu.Unlock()
}

func (r *recorder) leave() {
	r.mu.Lock()
	r.busy = false
	r.mu.Unlock()
}

func (r *recorder) Range(er tidings.EventRange) {
	r.enter("range")
	defer r.leave()
	r.mu.Lock()
	r.ranges = append(r.ranges, er)
	r.mu.Unlock()
}

func (r *recorder) Live(u tidings.LiveUpdate) {
	r.enter("live")
	defer r.leave()
	r.mu.Lock()
	r.live = append(r.live, u)
	r.mu.Unlock()
}

func (r *recorder) Lost() {
	r.enter("lost")
	defer r.leave()
	r.mu.Lock()
	r.lost++
	r.mu.Unlock()
}

func (r *recorder) counts() (ranges, live, lost int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ranges), len(r.live), r.lost
}

func (r *recorder) snapshot() ([]tidings.EventRange, []tidings.LiveUpdate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]tidings.EventRange(nil), r.ranges...), append([]tidings.LiveUpdate(nil), r.live...)
}
