// Package ratelimit holds the request limits of users and apps: token
// buckets shared by every transport, so that a user has one budget whether
// they call the REST API, send realtime commands, or both.
package ratelimit

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/tidings/tidings"
)

// Limit is a token bucket: Rate tokens a second, up to Burst. A Rate of 0
// (or less) means no limit.
type Limit struct {
	Rate  float64
	Burst float64
}

// PerMinute returns the limit of n a minute, in bursts of up to n.
func PerMinute(n float64) Limit { return Limit{Rate: n / 60, Burst: n} }

// PerSecond returns the limit of n a second, in bursts of up to twice that.
func PerSecond(n float64) Limit { return Limit{Rate: n, Burst: 2 * n} }

func (l Limit) unlimited() bool { return l.Rate <= 0 }

// Config gives the limits.
type Config struct {
	// User limits the requests and realtime commands of one user.
	User Limit
	// App limits the requests and realtime commands of all the users of
	// one app together.
	App Limit
	// Server limits the requests made with one app's server key.
	Server Limit
	// Conversations limits the conversations one user creates, and
	// Participants the participants one user adds, on top of User.
	Conversations Limit
	Participants  Limit
}

// Action is what a user does, as far as limits go.
type Action int

const (
	Request            Action = iota // any request or command
	CreateConversation               // creating a conversation
	AddParticipant                   // adding a participant to a conversation
)

// Error is the error of a request beyond a limit: its code is
// tidings.ERateLimited, and RetryAfter says when to try again.
type Error struct {
	Err        *tidings.Error
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// RetryAfterSeconds returns RetryAfter in whole seconds, rounded up, at
// least 1 (for a Retry-After header).
func (e *Error) RetryAfterSeconds() int {
	return max(1, int(math.Ceil(e.RetryAfter.Seconds())))
}

// Limiter applies a Config. It is safe for concurrent use; the zero value
// is not usable: use New. A nil *Limiter limits nothing.
type Limiter struct {
	cfg Config
	now func() time.Time

	mu        sync.Mutex
	buckets   map[bucketKey]*bucket
	lastSweep time.Time
}

type bucketKey struct {
	kind      byte // 'u' user, 'a' app, 's' server, 'c' creations, 'p' participants
	app, user string
}

type bucket struct {
	tokens  float64
	updated time.Time
}

// New returns a Limiter applying cfg.
func New(cfg Config) *Limiter {
	return &Limiter{cfg: cfg, now: time.Now, buckets: make(map[bucketKey]*bucket)}
}

// SetClock replaces the clock (for tests).
func (l *Limiter) SetClock(now func() time.Time) { l.now = now }

// Config returns the limits applied.
func (l *Limiter) Config() Config { return l.cfg }

// AllowUser takes what the action costs from the budgets of the user (and
// of their app), or returns an *Error if one of them is spent, taking
// nothing.
func (l *Limiter) AllowUser(app, user string, a Action) error {
	if l == nil {
		return nil
	}
	type need struct {
		key bucketKey
		lim Limit
		msg string
	}
	needs := []need{
		{bucketKey{'u', app, user}, l.cfg.User, "too many requests from this user: at most %s"},
		{bucketKey{'a', app, ""}, l.cfg.App, "too many requests in this app: at most %s, for all its users together"},
	}
	switch a {
	case CreateConversation:
		needs = append(needs, need{bucketKey{'c', app, user}, l.cfg.Conversations, "too many conversations created by this user: at most %s"})
	case AddParticipant:
		needs = append(needs, need{bucketKey{'p', app, user}, l.cfg.Participants, "too many participants added by this user: at most %s"})
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	var wait time.Duration
	var msg string
	var lim Limit
	for _, n := range needs {
		if n.lim.unlimited() {
			continue
		}
		if w := l.refill(n.key, n.lim, now).waitFor(n.lim); w > wait {
			wait, msg, lim = w, n.msg, n.lim
		}
	}
	if wait > 0 {
		return newError(msg, lim, wait)
	}
	for _, n := range needs {
		if !n.lim.unlimited() {
			l.buckets[n.key].tokens--
		}
	}
	return nil
}

// AllowServer takes a request from the budget of the app's server key.
func (l *Limiter) AllowServer(app string) error {
	if l == nil || l.cfg.Server.unlimited() {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	b := l.refill(bucketKey{'s', app, ""}, l.cfg.Server, now)
	if w := b.waitFor(l.cfg.Server); w > 0 {
		return newError("too many requests with this app's server key: at most %s", l.cfg.Server, w)
	}
	b.tokens--
	return nil
}

func newError(format string, lim Limit, wait time.Duration) *Error {
	e := &Error{RetryAfter: wait}
	e.Err = tidings.Errorf(tidings.ERateLimited, format+"; retry in %d s", describe(lim), e.RetryAfterSeconds())
	return e
}

// describe says a limit in words: "50 a second (bursts of 100)".
func describe(l Limit) string {
	if l.Rate >= 1 {
		return fmt.Sprintf("%g a second (bursts of %g)", l.Rate, max(1, math.Floor(l.Burst)))
	}
	return fmt.Sprintf("%g a minute (bursts of %g)", math.Round(l.Rate*60*100)/100, max(1, math.Floor(l.Burst)))
}

// refill returns the bucket of key, refilled up to now. l.mu is held.
func (l *Limiter) refill(key bucketKey, lim Limit, now time.Time) *bucket {
	burst := max(1, lim.Burst)
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: burst, updated: now}
		l.buckets[key] = b
		return b
	}
	if now.After(b.updated) {
		b.tokens = min(burst, b.tokens+now.Sub(b.updated).Seconds()*lim.Rate)
		b.updated = now
	}
	return b
}

// waitFor returns how long until the bucket holds a whole token.
func (b *bucket) waitFor(lim Limit) time.Duration {
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / lim.Rate * float64(time.Second))
}

// sweepEvery is how often buckets that have refilled are forgotten.
const sweepEvery = time.Minute

// sweep forgets, once a minute, the buckets of those idle long enough to
// be full again: they would start full anyway. l.mu is held.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < sweepEvery {
		return
	}
	l.lastSweep = now
	for k, b := range l.buckets {
		lim := l.limitOf(k.kind)
		if lim.unlimited() || b.tokens+now.Sub(b.updated).Seconds()*lim.Rate >= max(1, lim.Burst) {
			delete(l.buckets, k)
		}
	}
}

func (l *Limiter) limitOf(kind byte) Limit {
	switch kind {
	case 'u':
		return l.cfg.User
	case 'a':
		return l.cfg.App
	case 's':
		return l.cfg.Server
	case 'c':
		return l.cfg.Conversations
	case 'p':
		return l.cfg.Participants
	}
	return Limit{}
}
