package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// claims are the claims of an access token the client reads, without
// verifying the token (only the server can): when it expires, and whose it is.
type claims struct {
	Exp float64 `json:"exp"`
	Iat float64 `json:"iat"`
	Sub string  `json:"sub"`
	App string  `json:"app"`
}

// parseClaims decodes the payload of a JWT. It does not verify anything.
func parseClaims(tok string) (claims, bool) {
	var c claims
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return c, false
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return c, false
	}
	return c, json.Unmarshal(b, &c) == nil
}

func unixTime(f float64) time.Time {
	if f <= 0 {
		return time.Time{}
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9))
}

// errTokenRejected says that the provider gave again a token the server
// rejected: retrying cannot help.
var errTokenRejected = errors.New("client: the token provider returned a token the server rejected")

// tokenSource caches the token of a provider and asks for a new one when
// the cached one nears its expiry or was rejected. Provider calls are
// serialized: concurrent callers wait for the same new token.
type tokenSource struct {
	provider TokenProvider
	static   bool
	clock    Clock
	margin   time.Duration

	sem      chan struct{} // held while reading or refreshing the token
	tok      string
	exp      time.Time // zero when the token has no readable exp
	obtained time.Time
	rejected string
	rejErr   error // why the server rejected it
}

func newTokenSource(p TokenProvider, static bool, clock Clock, margin time.Duration) *tokenSource {
	return &tokenSource{provider: p, static: static, clock: clock, margin: margin, sem: make(chan struct{}, 1)}
}

func (ts *tokenSource) lock(ctx context.Context) error {
	select {
	case ts.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (ts *tokenSource) unlock() { <-ts.sem }

// refreshTime is when a token obtained at obtained and expiring at exp
// should be replaced: margin before its expiry, but not before half its
// lifetime (zero when its expiry is unknown).
func refreshTime(obtained, exp time.Time, margin time.Duration) time.Time {
	if exp.IsZero() {
		return time.Time{}
	}
	at := exp.Add(-margin)
	if half := obtained.Add(exp.Sub(obtained) / 2); at.Before(half) {
		at = half
	}
	return at
}

func (ts *tokenSource) refreshAtLocked() time.Time {
	return refreshTime(ts.obtained, ts.exp, ts.margin)
}

// refreshAt returns when tok, a token of this source, should be replaced
// (zero: never).
func (ts *tokenSource) refreshAt(tok string) time.Time {
	ts.sem <- struct{}{}
	defer ts.unlock()
	switch {
	case ts.static:
		return time.Time{}
	case tok == ts.tok:
		return ts.refreshAtLocked()
	}
	c, ok := parseClaims(tok)
	if !ok {
		return time.Time{}
	}
	exp, obtained := unixTime(c.Exp), unixTime(c.Iat)
	if now := ts.clock.Now(); obtained.IsZero() || obtained.After(now) {
		obtained = now
	}
	return refreshTime(obtained, exp, ts.margin)
}

// get returns a token fit for use: the cached one, or a new one from the
// provider if there is none, or it nears its expiry, or it was rejected.
func (ts *tokenSource) get(ctx context.Context) (string, time.Time, error) {
	if err := ts.lock(ctx); err != nil {
		return "", time.Time{}, err
	}
	defer ts.unlock()
	now := ts.clock.Now()
	fresh := ts.tok != "" && ts.tok != ts.rejected
	if fresh && !ts.static {
		if at := ts.refreshAtLocked(); !at.IsZero() && !now.Before(at) {
			fresh = false
		}
	}
	if fresh {
		return ts.tok, ts.exp, nil
	}
	tok, err := ts.provider(ctx)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("client: token provider: %w", err)
	}
	if tok == "" {
		return "", time.Time{}, errors.New("client: token provider returned an empty token")
	}
	if tok == ts.rejected {
		return "", time.Time{}, fmt.Errorf("%w: %w", errTokenRejected, ts.rejErr)
	}
	if tok != ts.tok {
		ts.tok, ts.obtained, ts.exp = tok, now, time.Time{}
		if c, ok := parseClaims(tok); ok {
			ts.exp = unixTime(c.Exp)
			if iat := unixTime(c.Iat); !iat.IsZero() && iat.Before(now) {
				ts.obtained = iat
			}
		}
	}
	return ts.tok, ts.exp, nil
}

// reject records that the server refused tok: the next get asks the
// provider for another one.
func (ts *tokenSource) reject(tok string, why error) {
	ts.sem <- struct{}{}
	defer ts.unlock()
	ts.rejected, ts.rejErr = tok, why
}
