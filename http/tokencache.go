package http

import (
	"sync"
	"time"

	"github.com/tidings/tidings"
)

// tokenCache remembers the user access tokens verified recently: a user's
// app sends the same token with every request, and verifying it costs two
// parses, a signature check and a read (the app's signing secret). An
// entry is kept for at most tokenCacheTTL and never past the token's
// expiry. The user's existence is still checked on every request, and
// server keys are not cached: rotating one must end it at once.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]cachedCaller
}

type cachedCaller struct {
	caller tidings.Caller
	issued time.Time // the token's iat, checked against its user's revocations
	until  time.Time
}

const (
	// tokenCacheTTL bounds how long a change that makes a token invalid
	// before its expiry could go unnoticed: the end of the overlap of a
	// rotated signing secret. (A user's deactivation and revoked tokens
	// are checked on every request, from the user read each time.)
	tokenCacheTTL = time.Minute
	// tokenCacheMax bounds the memory it takes: about 400 bytes a token.
	tokenCacheMax = 20_000
)

func (c *tokenCache) get(tok string, now time.Time) (tidings.Caller, time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[tok]
	if !ok || !now.Before(e.until) {
		return tidings.Caller{}, time.Time{}, false
	}
	return e.caller, e.issued, true
}

func (c *tokenCache) put(tok string, caller tidings.Caller, issued, expires, now time.Time) {
	until := now.Add(tokenCacheTTL)
	if expires.Before(until) {
		until = expires
	}
	if !now.Before(until) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]cachedCaller)
	}
	if len(c.m) >= tokenCacheMax {
		for k, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= tokenCacheMax {
			clear(c.m) // many live tokens: start again rather than grow
		}
	}
	c.m[tok] = cachedCaller{caller, issued, until}
}
