package nats

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

func online(t *testing.T, p *Presence, app string, users ...string) []string {
	t.Helper()
	got, err := p.Online(context.Background(), app, users)
	if err != nil {
		t.Fatalf("online: %v", err)
	}
	return got
}

// Two nodes, each with its own connection, hold sessions of one user:
// the first session in the cluster is first, the last is last, and the
// limit counts the sessions of every node.
func TestPresenceTwoNodes(t *testing.T) {
	conns := sharedConns(t, 2)
	ctx := testContext(t)
	p1, p2 := conns[0].Presence(), conns[1].Presence()
	const app, user, other = "shop.eu", "alice@example.com", "bob"

	check := func(what string, got bool, err error, want bool) {
		t.Helper()
		if err != nil || got != want {
			t.Fatalf("%s: %v, %v; want %v", what, got, err, want)
		}
	}
	first, err := p1.Connect(ctx, app, user, "n1", 3)
	check("first session, on n1", first, err, true)
	first, err = p2.Connect(ctx, app, user, "n2", 3)
	check("second session, on n2", first, err, false)
	if got := online(t, p2, app, user, other); !reflect.DeepEqual(got, []string{user}) {
		t.Fatalf("online: %v, want [%s]", got, user)
	}
	if got := online(t, p1, "shop", user); len(got) != 0 {
		t.Fatalf("online in another app: %v", got)
	}
	first, err = p2.Connect(ctx, app, user, "n2", 3)
	check("third session, on n2", first, err, false)
	if _, err := p1.Connect(ctx, app, user, "n1", 3); tidings.ErrorCode(err) != tidings.ERateLimited {
		t.Fatalf("a fourth session past a limit of 3: %v, want rate_limited", err)
	}
	first, err = p1.Connect(ctx, app, other, "n1", 1)
	check("another user's session", first, err, true)

	last, err := p1.Disconnect(ctx, app, user, "n1")
	check("n1's session ends", last, err, false)
	first, err = p1.Connect(ctx, app, user, "n1", 3) // room again
	check("a session on n1 again", first, err, false)
	last, err = p1.Disconnect(ctx, app, user, "n1")
	check("n1's session ends again", last, err, false)
	last, err = p2.Disconnect(ctx, app, user, "n2")
	check("one of n2's sessions ends", last, err, false)
	last, err = p2.Disconnect(ctx, app, user, "n2")
	check("n2's last session ends", last, err, true)
	if got := online(t, p1, app, user, other); !reflect.DeepEqual(got, []string{other}) {
		t.Fatalf("online: %v, want [%s]", got, other)
	}
	first, err = p2.Connect(ctx, app, user, "n2", 3)
	check("a session after the last", first, err, true)
}

// Sessions connected and disconnected at once from four nodes on two
// connections: exactly limit are admitted, one of them first, and one
// disconnect is the last.
func TestPresenceConcurrent(t *testing.T) {
	conns := sharedConns(t, 2)
	ctx := testContext(t)
	stores := []*Presence{conns[0].Presence(), conns[1].Presence()}
	const app, user, limit, tries = "a", "u.1", 12, 8
	type session struct {
		p    *Presence
		node string
	}
	var (
		mu       sync.Mutex
		admitted []session
		firsts   atomic.Int32
		wg       sync.WaitGroup
	)
	for n := range 4 {
		p, node := stores[n%2], fmt.Sprintf("node%d", n)
		for range tries {
			wg.Go(func() {
				first, err := p.Connect(ctx, app, user, node, limit)
				switch {
				case tidings.ErrorCode(err) == tidings.ERateLimited:
				case err != nil:
					t.Errorf("connect: %v", err)
				default:
					if first {
						firsts.Add(1)
					}
					mu.Lock()
					admitted = append(admitted, session{p, node})
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if len(admitted) != limit || firsts.Load() != 1 {
		t.Fatalf("%d sessions admitted, %d of them first; want %d, one first", len(admitted), firsts.Load(), limit)
	}
	var lasts atomic.Int32
	for _, s := range admitted {
		wg.Go(func() {
			last, err := s.p.Disconnect(ctx, app, user, s.node)
			if err != nil {
				t.Errorf("disconnect: %v", err)
			}
			if last {
				lasts.Add(1)
			}
		})
	}
	wg.Wait()
	if lasts.Load() != 1 {
		t.Fatalf("%d disconnects were the last, want 1", lasts.Load())
	}
	if got := online(t, stores[0], app, user); len(got) != 0 {
		t.Fatalf("online after every session ended: %v", got)
	}
}

// A node that stops renewing loses its sessions when its lease ends; when
// it renews again, it writes them again.
func TestPresenceLeaseEnds(t *testing.T) {
	conns := sharedConns(t, 2)
	ctx := testContext(t)
	p1, p2 := conns[0].Presence(), conns[1].Presence()
	const app, user = "a", "carol"
	const lease = time.Second
	if err := p2.Renew(ctx, "n2", lease); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if first, err := p2.Connect(ctx, app, user, "n2", 0); err != nil || !first {
		t.Fatalf("connect on n2: %v, %v", first, err)
	}
	if got := online(t, p1, app, user); len(got) != 1 {
		t.Fatalf("online: %v, want carol", got)
	}
	// n2 stops renewing.
	waitFor(t, "n2's sessions to end with its lease", func() bool { return len(online(t, p1, app, user)) == 0 })
	if first, err := p1.Connect(ctx, app, user, "n1", 1); err != nil || !first {
		t.Fatalf("connect on n1 once n2's lease ended: %v, %v; want the first session, within the limit of 1", first, err)
	}
	// n2 renews again: its session counts again.
	if err := p2.Renew(ctx, "n2", lease); err != nil {
		t.Fatalf("renew after the lease ended: %v", err)
	}
	if last, err := p1.Disconnect(ctx, app, user, "n1"); err != nil || last {
		t.Fatalf("disconnect on n1 with n2's session written again: %v, %v; want not the last", last, err)
	}
	if last, err := p2.Disconnect(ctx, app, user, "n2"); err != nil || !last {
		t.Fatalf("disconnect on n2: %v, %v; want the last", last, err)
	}
}

// A node restarted under the same name (a new process, its store empty)
// starts a new incarnation: the sessions of its former life stop
// counting at once, without waiting for the lease.
func TestPresenceNodeRestarted(t *testing.T) {
	conns := sharedConns(t, 3)
	ctx := testContext(t)
	before, observer := conns[0].Presence(), conns[1].Presence()
	if _, err := before.Connect(ctx, "a", "dave", "n1", 0); err != nil {
		t.Fatal(err)
	}
	if got := online(t, observer, "a", "dave"); len(got) != 1 {
		t.Fatalf("online: %v, want dave", got)
	}
	after := conns[2].Presence()
	if first, err := after.Connect(ctx, "a", "erin", "n1", 0); err != nil || !first {
		t.Fatalf("connect on the restarted n1: %v, %v", first, err)
	}
	if got := online(t, observer, "a", "dave", "erin"); !reflect.DeepEqual(got, []string{"erin"}) {
		t.Fatalf("online: %v, want [erin]: dave's session ended with n1's former life", got)
	}
	if first, err := after.Connect(ctx, "a", "dave", "n1", 1); err != nil || !first {
		t.Fatalf("dave connects to the restarted n1: %v, %v; want the first, within a limit of 1", first, err)
	}
}

// A node stops renewing its lease (it died): once the lease lapsed, the
// users whose last session was there are returned by Expired, once
// across the nodes that call it, with the node's last renewal as last
// seen; a user who also holds a session on a live node is not.
func TestPresenceExpired(t *testing.T) {
	conns := sharedConns(t, 3)
	ctx := testContext(t)
	p1, p2, p3 := conns[0].Presence(), conns[1].Presence(), conns[2].Presence()
	const app = "a"
	if got, err := p3.Expired(ctx); err != nil || len(got) != 0 { // no session yet, no bucket
		t.Fatalf("expired with no session: %v, %v", got, err)
	}
	if err := p2.Renew(ctx, "n2", time.Minute); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := p1.Renew(ctx, "n1", time.Second); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"gone", "stays", "gone.too@example.com"} {
		if _, err := p1.Connect(ctx, app, u, "n1", 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p2.Connect(ctx, app, "stays", "n2", 0); err != nil {
		t.Fatal(err)
	}
	if err := p1.Renew(ctx, "n1", time.Second); err != nil { // the last renewal
		t.Fatal(err)
	}
	after := time.Now()
	// Both callers see n1 alive, and nobody expired.
	for _, p := range []*Presence{p2, p3} {
		if got, err := p.Expired(ctx); err != nil || len(got) != 0 {
			t.Fatalf("expired while n1 lives: %v, %v", got, err)
		}
	}
	// n1 stops renewing; n2 and n3 ask at once until both users come.
	var (
		mu  sync.Mutex
		got []tidings.PresenceChange
		wg  sync.WaitGroup
	)
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range []*Presence{p2, p3} {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				chs, err := p.Expired(ctx)
				if err != nil {
					t.Errorf("expired: %v", err)
					return
				}
				mu.Lock()
				got = append(got, chs...)
				n := len(got)
				mu.Unlock()
				if n >= 2 {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	for _, p := range []*Presence{p2, p3} { // nothing more, ever
		chs, err := p.Expired(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, chs...)
	}
	users := make([]string, 0, len(got))
	for _, ch := range got {
		users = append(users, ch.UserID)
		if ch.AppID != app {
			t.Errorf("%s: app %q", ch.UserID, ch.AppID)
		}
		// n1's last renewal, by the NATS server's clock (this machine's).
		if ch.LastSeen.Before(before.Add(-time.Second)) || ch.LastSeen.After(after.Add(time.Second)) {
			t.Errorf("%s last seen at %v, want n1's last renewal, between %v and %v", ch.UserID, ch.LastSeen, before, after)
		}
	}
	slices.Sort(users)
	if want := []string{"gone", "gone.too@example.com"}; !slices.Equal(users, want) {
		t.Fatalf("expired users %v, want %v, each once", users, want)
	}
	if got := online(t, p3, app, "gone", "stays", "gone.too@example.com"); !slices.Equal(got, []string{"stays"}) {
		t.Fatalf("online: %v, want [stays]", got)
	}
	// n2's session of stays is its last: n1's was removed.
	if last, err := p2.Disconnect(ctx, app, "stays", "n2"); err != nil || !last {
		t.Fatalf("disconnect stays on n2: %v, %v; want the last", last, err)
	}
}
