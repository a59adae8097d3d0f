package http_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/ratelimit"
	"github.com/tidings/tidings/sqlite"
)

// limitedWorld is a world whose server applies cfg.
func limitedWorld(t *testing.T, cfg ratelimit.Config) *world {
	t.Helper()
	s, db := startStack(t, stackOptions{limits: ratelimit.New(cfg)})
	w := &world{t: t, srv: s, db: db, apps: s.Apps.(*sqlite.AppService), logs: &lockedBuffer{},
		client: &http.Client{Timeout: 10 * time.Second}}
	var err error
	if w.acme, err = w.apps.CreateApp(context.Background(), "acme", "Acme"); err != nil {
		t.Fatal(err)
	}
	if w.globex, err = w.apps.CreateApp(context.Background(), "globex", "Globex"); err != nil {
		t.Fatal(err)
	}
	return w
}

// untilLimited repeats call until it is refused, at most max times, and
// returns how many were accepted and the refusal.
func untilLimited(t *testing.T, max int, call func(i int) result) (int, result) {
	t.Helper()
	for i := 0; i < max; i++ {
		r := call(i)
		if r.status == http.StatusTooManyRequests {
			return i, r
		}
		if r.status >= 300 {
			t.Fatalf("%s %s: %d %s", r.method, r.path, r.status, r.body)
		}
	}
	return max, result{}
}

// wantRateLimited checks a 429 rate_limited with a Retry-After of at
// least one second.
func wantRateLimited(t *testing.T, r result) {
	t.Helper()
	r.fails(t, http.StatusTooManyRequests, tidings.ERateLimited)
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q; want a number of seconds", r.header.Get("Retry-After"))
	}
}

// A user who sends as fast as they can over REST is held to their budget
// (it was not: 2000 sends at 4800/s were all answered 201).
func TestRESTRequestsAreRateLimitedPerUser(t *testing.T) {
	// A slow refill, so that the count does not depend on the machine's speed.
	w := limitedWorld(t, ratelimit.Config{User: ratelimit.Limit{Rate: 0.01, Burst: 20}})
	alice := w.createUser(w.acme, "alice")
	bob := w.createUser(w.acme, "bob")
	w.call("POST", "/v1/conversations", alice, map[string]any{"id": "c", "name": "C", "participants": []map[string]string{{"userId": "bob"}}}).ok(t, 201, nil)

	n, r := untilLimited(t, 100, func(i int) result {
		return w.call("POST", "/v1/conversations/c/messages", alice, text(fmt.Sprint("m", i)))
	})
	if n != 19 { // 20, the conversation's creation included
		t.Errorf("%d sends accepted; want 19", n)
	}
	wantRateLimited(t, r)
	// Reads count too; the refused requests did nothing.
	wantRateLimited(t, w.call("GET", "/v1/conversations/c/messages", alice, nil))
	var page tidings.MessagePage
	w.call("GET", "/v1/conversations/c/messages?limit=100", bob, nil).ok(t, 200, &page)
	if len(page.Messages) != 19 {
		t.Errorf("%d messages stored; want 19", len(page.Messages))
	}
	// Bob and the server key have budgets of their own.
	w.call("POST", "/v1/conversations/c/messages", bob, text("still here")).ok(t, 201, nil)
	for i := 0; i < 50; i++ {
		w.call("GET", "/v1/users/alice", w.acme.ServerKey, nil).ok(t, 200, nil)
	}
}

func TestAppsServerKeysAndCostlyActionsHaveLimits(t *testing.T) {
	w := limitedWorld(t, ratelimit.Config{
		User: ratelimit.PerSecond(1000), App: ratelimit.Limit{Rate: 0.01, Burst: 30},
		Server:        ratelimit.Limit{Rate: 0.01, Burst: 40},
		Conversations: ratelimit.PerMinute(3), Participants: ratelimit.PerMinute(4),
	})
	// The server key: 40, the users and tokens made below included.
	alice, bob := w.createUser(w.acme, "alice"), w.createUser(w.acme, "bob")
	for _, id := range []string{"u1", "u2", "u3", "u4", "u5", "u6"} {
		w.call("POST", "/v1/users", w.acme.ServerKey, map[string]any{"id": id}).ok(t, 201, nil)
	}
	n, r := untilLimited(t, 100, func(int) result { return w.call("GET", "/v1/users/alice", w.acme.ServerKey, nil) })
	if n != 30 {
		t.Errorf("%d more server-key requests accepted; want 30", n)
	}
	wantRateLimited(t, r)
	// Another app's server key is not held back.
	w.call("GET", "/v1/users", w.globex.ServerKey, nil).ok(t, 200, nil)

	// Conversations: 3 a minute for alice.
	n, r = untilLimited(t, 10, func(i int) result {
		return w.call("POST", "/v1/conversations", alice, map[string]any{"id": fmt.Sprint("c", i), "name": "C"})
	})
	if n != 3 {
		t.Errorf("alice created %d conversations; want 3", n)
	}
	wantRateLimited(t, r)
	w.call("POST", "/v1/conversations", bob, map[string]any{"id": "bobs", "name": "B"}).ok(t, 201, nil)

	// Participants: 4 a minute.
	n, r = untilLimited(t, 6, func(i int) result {
		return w.call("POST", "/v1/conversations/c0/participants", alice, map[string]any{"userId": fmt.Sprint("u", i+1)})
	})
	if n != 4 {
		t.Errorf("alice added %d participants; want 4", n)
	}
	wantRateLimited(t, r)

	// The app: 30 for all its users; 3+1+4 taken so far (a refused
	// request takes nothing).
	n, r = untilLimited(t, 100, func(i int) result {
		cred := alice
		if i%2 == 1 {
			cred = bob
		}
		return w.call("GET", "/v1/me", cred, nil)
	})
	if n != 22 {
		t.Errorf("%d more user requests accepted in the app; want 22", n)
	}
	wantRateLimited(t, r)
}
