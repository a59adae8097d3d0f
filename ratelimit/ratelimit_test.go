package ratelimit_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/ratelimit"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newLimiter(cfg ratelimit.Config) (*ratelimit.Limiter, *clock) {
	c := &clock{t: time.Unix(1e9, 0)}
	l := ratelimit.New(cfg)
	l.SetClock(c.now)
	return l, c
}

// allowed counts how many times in a row f succeeds, up to n.
func allowed(n int, f func() error) (int, error) {
	for i := 0; i < n; i++ {
		if err := f(); err != nil {
			return i, err
		}
	}
	return n, nil
}

func TestUserBucket(t *testing.T) {
	l, c := newLimiter(ratelimit.Config{User: ratelimit.PerSecond(5)})
	n, err := allowed(100, func() error { return l.AllowUser("a", "alice", ratelimit.Request) })
	if n != 10 {
		t.Fatalf("a burst of %d, want 10", n)
	}
	var re *ratelimit.Error
	if !errors.As(err, &re) || tidings.ErrorCode(err) != tidings.ERateLimited || re.RetryAfterSeconds() != 1 {
		t.Fatalf("error %v (%T)", err, err)
	}
	// Others are not held back.
	if err := l.AllowUser("a", "bob", ratelimit.Request); err != nil {
		t.Fatal(err)
	}
	if err := l.AllowUser("b", "alice", ratelimit.Request); err != nil {
		t.Fatal(err)
	}
	c.advance(400 * time.Millisecond) // 2 tokens
	if n, _ := allowed(100, func() error { return l.AllowUser("a", "alice", ratelimit.Request) }); n != 2 {
		t.Fatalf("after 400ms: %d, want 2", n)
	}
	c.advance(time.Hour) // full again, and swept
	if n, _ := allowed(100, func() error { return l.AllowUser("a", "alice", ratelimit.Request) }); n != 10 {
		t.Fatalf("after an hour: %d, want 10", n)
	}
}

func TestAppBucketAndActions(t *testing.T) {
	l, c := newLimiter(ratelimit.Config{
		User: ratelimit.PerSecond(100), App: ratelimit.Limit{Rate: 1, Burst: 20},
		Conversations: ratelimit.PerMinute(3), Participants: ratelimit.PerMinute(5),
	})
	n, err := allowed(10, func() error { return l.AllowUser("a", "alice", ratelimit.CreateConversation) })
	if n != 3 || !strings.Contains(err.Error(), "conversations") {
		t.Fatalf("created %d conversations (%v), want 3", n, err)
	}
	var re *ratelimit.Error
	if errors.As(err, &re); re.RetryAfterSeconds() != 20 {
		t.Errorf("retry after %d s, want 20", re.RetryAfterSeconds())
	}
	// A refused action takes nothing from the other budgets.
	n, _ = allowed(10, func() error { return l.AllowUser("a", "alice", ratelimit.AddParticipant) })
	if n != 5 {
		t.Fatalf("added %d participants, want 5", n)
	}
	// 8 requests taken from the app's 20 so far.
	n, err = allowed(100, func() error { return l.AllowUser("a", "bob", ratelimit.Request) })
	if n != 12 || !strings.Contains(err.Error(), "app") {
		t.Fatalf("bob: %d (%v), want the 12 left to the app", n, err)
	}
	c.advance(20 * time.Second)
	if err := l.AllowUser("a", "alice", ratelimit.CreateConversation); err != nil {
		t.Fatal(err)
	}
	// A nil limiter and unlimited server keys.
	var none *ratelimit.Limiter
	if err := none.AllowUser("a", "x", ratelimit.Request); err != nil {
		t.Fatal(err)
	}
	if n, _ := allowed(1000, func() error { return l.AllowServer("a") }); n != 1000 {
		t.Fatalf("server: %d", n)
	}
	l2, _ := newLimiter(ratelimit.Config{Server: ratelimit.PerSecond(10)})
	if n, _ := allowed(1000, func() error { return l2.AllowServer("a") }); n != 20 {
		t.Fatalf("limited server: %d, want 20", n)
	}
}
