package ws_test

import (
	"fmt"
	nethttp "net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// Promises of docs/protocol.md, each checked against the real server.

// "Updates that were sent but not acknowledged ... are sent again the next
// time the device resumes": also for a device whose first auth asked for
// "latest", and whose cursor therefore never came from a reply.
func TestNewDeviceStartingAtLatestGetsUnacknowledgedUpdatesAgain(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	s.send("a", "alice", conv, "history")

	bob := dial(t, s)
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "fresh", ResumeAfter: "latest"})
	for i := range 3 {
		s.send("a", "alice", conv, fmt.Sprint(i))
	}
	if got := textsUntil(bob, "2"); !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Fatalf("live, bob got %v", got)
	}
	bob.hangUp() // no reply sent

	bob = dial(t, s)
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "fresh"})
	if got := textsUntil(bob, "2"); !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Fatalf("resuming from the device's cursor bob got %v, want the three unacknowledged", got)
	}

	// The same through polling: a poll after=latest records where the
	// device starts, and the next poll from the cursor returns what was
	// not acknowledged.
	tok := s.token("a", "bob")
	us, last := s.poll(tok, "device=pollfresh&after=latest")
	if len(us) != 0 || last != s.lastRef() {
		t.Fatalf("a poll after latest returned %d updates and lastRef %q, want none and the newest ref %s", len(us), last, s.lastRef())
	}
	s.send("a", "alice", conv, "polled")
	us, _ = s.poll(tok, "device=pollfresh&after="+last)
	if got := texts(us); !slices.Equal(got, []string{"polled"}) {
		t.Fatalf("poll after %s: %v", last, got)
	}
	us, _ = s.poll(tok, "device=pollfresh")
	if got := texts(us); !slices.Equal(got, []string{"polled"}) {
		t.Fatalf("poll from the cursor of a device that started at latest: %v, want the unacknowledged message", got)
	}
}

// An expired token is refused at once on every transport: the REST API,
// polling and replies answer 401, the socket's auth unauthenticated. No
// grace period after exp.
func TestExpiredTokenIsRefusedOnEveryTransport(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "bob")
	// Expired two seconds ago, well within the 30 s leeway there was.
	expired := s.tokenFor("a", "bob", 3*time.Second, time.Now().Add(-5*time.Second))
	fresh := s.token("a", "bob")

	rest := func(method, path, tok, body string) int {
		t.Helper()
		req, _ := nethttp.NewRequest(method, s.srv.URL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := pollClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/me", ""},
		{"GET", "/v1/conversations", ""},
		{"GET", "/v1/realtime/poll?device=d", ""},
		{"POST", "/v1/realtime/replies", `{"ref":"1","device":"d"}`},
	} {
		if got := rest(c.method, c.path, fresh, c.body); got >= 400 {
			t.Fatalf("%s %s with a fresh token: %d", c.method, c.path, got)
		}
		if got := rest(c.method, c.path, expired, c.body); got != nethttp.StatusUnauthorized {
			t.Errorf("%s %s with an expired token: %d, want 401", c.method, c.path, got)
		}
	}
	c := dial(t, s)
	wantError(t, c.command("", protocol.CmdAuth, protocol.AuthArgs{Token: expired}), tidings.EUnauthenticated)

	// A token verified (and cached) while valid is refused once it expires.
	short := s.tokenFor("a", "bob", 2*time.Second, time.Now())
	if got := rest("GET", "/v1/me", short, ""); got != nethttp.StatusOK {
		t.Fatalf("GET /v1/me with a valid token: %d", got)
	}
	waitFor(t, "the token to expire", func() bool { return rest("GET", "/v1/me", short, "") == nethttp.StatusUnauthorized })
	if got := rest("GET", "/v1/realtime/poll?device=d", short, ""); got != nethttp.StatusUnauthorized {
		t.Errorf("poll with a token expired a moment ago: %d, want 401", got)
	}
}
