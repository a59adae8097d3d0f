package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// api calls the REST API of the server: with the app's server key to
// create users and mint their tokens, with users' tokens for the rest.
type api struct {
	base string // http://host:port
	key  string
	hc   *http.Client
}

func newAPI(base, key string, d *dialer, conns int) *api {
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConns: conns, MaxIdleConnsPerHost: conns,
		IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	return &api{base: base, key: key, hc: &http.Client{Transport: tr, Timeout: 90 * time.Second}}
}

// apiError is an error answer of the API.
type apiError struct {
	Status     int
	Code       string
	Msg        string
	RetryAfter time.Duration // from the Retry-After header of a 429
}

func (e *apiError) Error() string { return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Msg) }

func errorCode(err error) string {
	if e, ok := err.(*apiError); ok {
		return e.Code
	}
	return ""
}

// do sends a request with credential cred and decodes the answer into out
// (when not nil).
func (a *api) do(ctx context.Context, method, path, cred string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+cred)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		json.Unmarshal(b, &e)
		secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return &apiError{Status: resp.StatusCode, Code: e.Error.Code, Msg: e.Error.Message, RetryAfter: time.Duration(secs) * time.Second}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// setup is do for the setup of a scenario: a request refused as rate
// limited is tried again after the Retry-After the server gives (for up to
// a minute), so that a scenario runs, more slowly, against a server with
// its default limits.
func (a *api) setup(ctx context.Context, method, path, cred string, body, out any) error {
	deadline := time.Now().Add(time.Minute)
	for {
		err := a.do(ctx, method, path, cred, body, out)
		var e *apiError
		if !errors.As(err, &e) || e.Status != http.StatusTooManyRequests || time.Now().After(deadline) {
			return err
		}
		if err := sleep(ctx, max(e.RetryAfter, 100*time.Millisecond)); err != nil {
			return err
		}
	}
}

// user creates a user, or finds it created, and mints an access token.
func (a *api) user(ctx context.Context, id string) (string, error) {
	err := a.setup(ctx, "POST", "/v1/users", a.key, map[string]string{"id": id, "displayName": id}, nil)
	if err != nil && errorCode(err) != "conflict" {
		return "", fmt.Errorf("create user %s: %w", id, err)
	}
	var tok struct{ Token string }
	if err := a.setup(ctx, "POST", "/v1/users/"+url.PathEscape(id)+"/tokens", a.key, nil, &tok); err != nil {
		return "", fmt.Errorf("mint a token for %s: %w", id, err)
	}
	return tok.Token, nil
}

// conversation creates a public conversation owned by the holder of
// owner, with up to 999 of the members given at creation; the others join
// it. Every member is then in it.
func (a *api) conversation(ctx context.Context, owner, id string, members []string, tokens []string, workers int) error {
	first := members[:min(len(members), 999)]
	ps := make([]map[string]string, len(first))
	for i, m := range first {
		ps[i] = map[string]string{"userId": m}
	}
	err := a.setup(ctx, "POST", "/v1/conversations", owner,
		map[string]any{"id": id, "name": id, "isPublic": true, "participants": ps}, nil)
	if err != nil {
		return fmt.Errorf("create conversation %s: %w", id, err)
	}
	rest := tokens[len(first):]
	return parallel(ctx, len(rest), workers, func(i int) error {
		if err := a.setup(ctx, "POST", "/v1/conversations/"+url.PathEscape(id)+"/join", rest[i], nil, nil); err != nil {
			return fmt.Errorf("join conversation %s: %w", id, err)
		}
		return nil
	})
}

// parallel calls f(0)…f(n-1) on workers goroutines and returns the first
// error; it stops calling f after an error or when ctx ends.
func parallel(ctx context.Context, n, workers int, f func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(max(workers, 1), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && err != context.Canceled {
		return err
	}
	return ctx.Err()
}
