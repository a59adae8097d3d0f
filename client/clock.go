package client

import "time"

// Clock tells the time and runs timers. The client uses it for every timer
// of its own (reconnection backoff, token refresh, background timeout,
// keepalive), so that tests can drive them with a fake clock. Network
// timeouts (dial, write, command answers) always use the real time.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has elapsed, unless
	// the returned timer is stopped first.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a timer started by Clock.AfterFunc.
type Timer interface {
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
}

// SystemClock is the real clock (time.Now and time.AfterFunc), the default.
type SystemClock struct{}

func (SystemClock) Now() time.Time { return time.Now() }

func (SystemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
