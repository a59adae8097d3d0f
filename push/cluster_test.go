package push_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/push"
)

// fanout hands the store's events to dispatchers the test chooses.
type fanout struct {
	mu sync.Mutex
	to []tidings.EventPublisher
}

func (f *fanout) Publish(events ...*tidings.Event) {
	f.mu.Lock()
	to := f.to
	f.mu.Unlock()
	for _, p := range to {
		p.Publish(events...)
	}
}

func (f *fanout) set(to ...tidings.EventPublisher) {
	f.mu.Lock()
	f.to = to
	f.mu.Unlock()
}

// leases is tidings.Leases in memory.
type leases struct {
	mu     sync.Mutex
	holder map[string]string
	until  map[string]time.Time
}

func (l *leases) Hold(_ context.Context, name, node string, ttl time.Duration) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder == nil {
		l.holder, l.until = map[string]string{}, map[string]time.Time{}
	}
	if h := l.holder[name]; h != "" && h != node && time.Now().Before(l.until[name]) {
		return false, nil
	}
	l.holder[name], l.until[name] = node, time.Now().Add(ttl)
	return true, nil
}

func (l *leases) Release(_ context.Context, name, node string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder[name] == node {
		delete(l.holder, name)
	}
	return nil
}

// presenceStore is a tidings.PresenceStore in memory that answers Online
// only: the users it holds online are online on some other node.
type presenceStore struct {
	tidings.PresenceStore
	mu     sync.Mutex
	online []string
	asked  int
}

func (p *presenceStore) Online(_ context.Context, _ string, users []string) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked++
	var out []string
	for _, u := range users {
		if slices.Contains(p.online, u) {
			out = append(out, u)
		}
	}
	return out, nil
}

// clusterDispatcher returns a dispatcher of node that pushes as w's does,
// for the node holding the lease, with the cluster's presence.
func (w *world) clusterDispatcher(t *testing.T, node string, l tidings.Leases, ps tidings.PresenceStore) *push.Dispatcher {
	t.Helper()
	d := &push.Dispatcher{Store: w.push, Providers: w.disp.Providers, Window: w.disp.Window, Logger: slog.New(slog.DiscardHandler),
		Presence: &push.ClusterPresence{Local: w.presence, Store: ps, Logger: slog.New(slog.DiscardHandler)},
		Leases:   l, Node: node, LeaseTTL: time.Second}
	if err := d.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30 s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// In a cluster every node's dispatcher is handed every message; only the
// lease's holder pushes, to the users online on no node; when it stops,
// another takes over.
func TestDispatcherLease(t *testing.T) {
	w := newWorld(t, 50*time.Millisecond)
	l, ps := &leases{}, &presenceStore{online: []string{"carol"}}
	d1 := w.clusterDispatcher(t, "n1", l, ps)
	waitFor(t, "n1 to hold the lease", d1.Holding)
	d2 := w.clusterDispatcher(t, "n2", l, ps)
	w.fan.set(d1, d2)
	w.register(t, "bob", w.web.Subscribe("bob-laptop"))
	w.register(t, "carol", w.web.Subscribe("carol-laptop")) // online on another node
	if d2.Holding() {
		t.Fatal("n2 holds the lease n1 holds")
	}

	w.send(t, "alice", "c", "one", "")
	got := w.web.Box.WaitFor(t, 1)
	waitFor(t, "n1 to push to bob", func() bool { return d1.Stats().Pushes == 1 })
	if got[0].Target != "bob-laptop" || got[0].Payload["body"] != "one" {
		t.Errorf("pushed %+v, want one to bob's laptop", got)
	}
	if s := d2.Stats(); s.Messages != 0 || s.Pushes != 0 {
		t.Errorf("n2, not holding the lease, looked at messages: %+v", s)
	}
	ps.mu.Lock()
	asked := ps.asked
	ps.mu.Unlock()
	if asked == 0 {
		t.Error("the presence store was never asked who is online")
	}

	// n1 stops (and releases the lease): n2 takes over.
	d1.Close()
	waitFor(t, "n2 to take the lease", d2.Holding)
	w.send(t, "alice", "c", "two", "")
	got = w.web.Box.WaitFor(t, 2)
	waitFor(t, "n2 to push to bob", func() bool { return d2.Stats().Pushes == 1 })
	if got[1].Target != "bob-laptop" || got[1].Payload["body"] != "two" {
		t.Errorf("pushed %+v, want two to bob's laptop", got[1])
	}
	if n := len(w.web.Box.All()); n != 2 {
		t.Errorf("%d pushes, want 2 (none to carol, online on another node)", n)
	}
}
