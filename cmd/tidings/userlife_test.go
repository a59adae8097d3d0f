package main

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings/client"
	"github.com/tidings/tidings/protocol"
)

// serverCall makes a request to the API of w with the app's server key and
// returns the status and body.
func (w *world) serverCall(t *testing.T, method, path string) (int, string) {
	t.Helper()
	return w.call(t, method, path, w.key)
}

func (w *world) call(t *testing.T, method, path, cred string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, w.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// closeWatch follows an SDK client's connection: the close codes the
// server ended it with, and the account.closed updates.
type closeWatch struct {
	mu        sync.Mutex
	connected int
	codes     []int
	reasons   []string
}

func watchCloses(opts ...client.Option) (*closeWatch, []client.Option) {
	cw := &closeWatch{}
	return cw, append(opts,
		client.WithStatusListener(func(sc client.StatusChange) {
			cw.mu.Lock()
			defer cw.mu.Unlock()
			var ce *client.CloseError
			if sc.Status == client.StatusConnected {
				cw.connected++
			} else if errors.As(sc.Err, &ce) {
				cw.codes = append(cw.codes, ce.Code)
			}
		}),
		client.WithEventListener(func(ev client.Event) {
			if ac, ok := ev.(*client.AccountClosed); ok {
				cw.mu.Lock()
				cw.reasons = append(cw.reasons, ac.Reason)
				cw.mu.Unlock()
			}
		}))
}

// waitFor waits until cond holds of cw.
func (cw *closeWatch) waitFor(t *testing.T, what string, cond func(*closeWatch) bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		cw.mu.Lock()
		ok := cond(cw)
		codes, reasons := cw.codes, cw.reasons
		cw.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (close codes %v, account.closed reasons %v)", what, wait, codes, reasons)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func closedWith(code int, reason string) func(*closeWatch) bool {
	return func(cw *closeWatch) bool {
		return len(cw.codes) > 0 && cw.codes[len(cw.codes)-1] == code &&
			len(cw.reasons) > 0 && cw.reasons[len(cw.reasons)-1] == reason
	}
}

// TestUserAccessEndsAtOnce: when the app revokes a user's tokens,
// deactivates or deletes them, the user's open realtime connection gets
// account.closed and is closed at once with the documented code, and
// their token is refused from then on; a reactivated user connects again.
func TestUserAccessEndsAtOnce(t *testing.T) {
	w := newWorld(t)
	connected := func(n int) func(*closeWatch) bool {
		return func(cw *closeWatch) bool { return cw.connected >= n }
	}

	// Revocation: alice's connection closes with 4012, her token is
	// refused; a token minted after works.
	aliceWatch, opts := watchCloses(client.WithMode(client.AutoMode))
	w.client(t, "alice", opts...)
	aliceWatch.waitFor(t, "alice connects", connected(1))
	if status, body := w.serverCall(t, "DELETE", "/v1/users/alice/tokens"); status != 200 || !strings.Contains(body, "tokensNotBefore") {
		t.Fatalf("revoke alice's tokens: %d %s", status, body)
	}
	aliceWatch.waitFor(t, "alice's connection closes", closedWith(protocol.CloseTokensRevoked, protocol.ReasonTokensRevoked))
	if status, body := w.call(t, "GET", "/v1/me", w.tokens["alice"]); status != 401 || !strings.Contains(body, "revoked") {
		t.Errorf("alice's revoked token: %d %s", status, body)
	}
	status, body := w.serverCall(t, "POST", "/v1/users/alice/tokens")
	tok := between(body, `"token":"`, `"`)
	if status != 201 || tok == "" {
		t.Fatalf("a new token for alice: %d %s", status, body)
	}
	if status, body := w.call(t, "GET", "/v1/me", tok); status != 200 {
		t.Errorf("alice's token minted after the revocation: %d %s", status, body)
	}

	// Deactivation: bob's connection closes with 4011, his token is
	// refused, and he connects again once reactivated.
	bobWatch, opts := watchCloses(client.WithMode(client.AutoMode), client.WithBackoff(client.Backoff{Initial: 50 * time.Millisecond, Max: 300 * time.Millisecond, Multiplier: 2}))
	w.client(t, "bob", opts...)
	bobWatch.waitFor(t, "bob connects", connected(1))
	if status, body := w.serverCall(t, "POST", "/v1/users/bob/deactivate"); status != 200 || !strings.Contains(body, "deactivatedAt") {
		t.Fatalf("deactivate bob: %d %s", status, body)
	}
	bobWatch.waitFor(t, "bob's connection closes", closedWith(protocol.CloseUserDeactivated, protocol.ReasonUserDeactivated))
	if status, body := w.call(t, "GET", "/v1/me", w.tokens["bob"]); status != 401 || !strings.Contains(body, "deactivated") {
		t.Errorf("deactivated bob's token: %d %s", status, body)
	}
	if status, _ := w.serverCall(t, "POST", "/v1/users/bob/tokens"); status != 409 {
		t.Errorf("a token for deactivated bob: %d, want 409", status)
	}
	if status, body := w.serverCall(t, "POST", "/v1/users/bob/reactivate"); status != 200 || strings.Contains(body, "deactivatedAt") {
		t.Fatalf("reactivate bob: %d %s", status, body)
	}
	// Once reactivated, bob connects again. (His first client may have
	// given up meanwhile: it tried to reconnect while he was deactivated,
	// and its token was refused, as it should be; an app connects its
	// user again after a reactivation.)
	bobWatch, opts = watchCloses(client.WithMode(client.AutoMode))
	w.client(t, "bob", opts...)
	bobWatch.waitFor(t, "bob connects again", connected(1))

	// Deletion: bob's connection closes with 4013, and he is gone.
	if status, body := w.serverCall(t, "DELETE", "/v1/users/bob"); status != 400 {
		t.Errorf("delete bob without saying what of his messages: %d %s", status, body)
	}
	if status, body := w.serverCall(t, "DELETE", "/v1/users/bob?messages=anonymize"); status != 204 {
		t.Fatalf("delete bob: %d %s", status, body)
	}
	bobWatch.waitFor(t, "bob's connection closes", closedWith(protocol.CloseUserDeleted, protocol.ReasonUserDeleted))
	if status, _ := w.serverCall(t, "GET", "/v1/users/bob"); status != 404 {
		t.Errorf("deleted bob: %d, want 404", status)
	}
	if status, _ := w.call(t, "GET", "/v1/me", w.tokens["bob"]); status != 401 {
		t.Errorf("deleted bob's token: %d, want 401", status)
	}
}

// between returns what follows start in s up to end.
func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, end)
	return v
}
