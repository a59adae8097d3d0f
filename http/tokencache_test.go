package http

import (
	"fmt"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

func TestTokenCacheNeverOutlivesTheTokenNorItsTTL(t *testing.T) {
	var c tokenCache
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	alice := tidings.Caller{AppID: "a", UserID: "alice"}

	c.put("short", alice, now, now.Add(10*time.Second), now)
	c.put("long", alice, now, now.Add(24*time.Hour), now)
	c.put("expired", alice, now, now.Add(-time.Second), now)
	if got, _, ok := c.get("short", now.Add(9*time.Second)); !ok || got != alice {
		t.Fatalf("a token before its expiry: %+v, %v", got, ok)
	}
	if _, _, ok := c.get("short", now.Add(10*time.Second)); ok {
		t.Fatal("a token was served from the cache at its expiry")
	}
	if _, _, ok := c.get("long", now.Add(tokenCacheTTL)); ok {
		t.Fatal("a token was served from the cache past the cache's TTL")
	}
	if _, _, ok := c.get("expired", now); ok {
		t.Fatal("an expired token was cached")
	}
	if _, _, ok := c.get("unknown", now); ok {
		t.Fatal("an unknown token was found")
	}

	// Full: expired entries go first, then everything, never past the bound.
	for i := range tokenCacheMax + 10 {
		c.put(fmt.Sprint("t", i), alice, now, now.Add(time.Hour), now)
	}
	if n := len(c.m); n > tokenCacheMax {
		t.Fatalf("the cache holds %d tokens, more than %d", n, tokenCacheMax)
	}
	if _, _, ok := c.get(fmt.Sprint("t", tokenCacheMax+9), now); !ok {
		t.Fatal("the newest token is not cached")
	}
}
