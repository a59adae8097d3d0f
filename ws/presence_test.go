package ws_test

import (
	"context"
	"encoding/json"
	"io"
	nethttp "net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/realtime"
	"github.com/tidings/tidings/ws"
)

// subscribe runs presence.subscribe and returns its answer.
func subscribe(t testing.TB, c *client, ids ...string) protocol.PresenceSubscribeResult {
	t.Helper()
	ans := c.command("", protocol.CmdPresenceSubscribe, protocol.PresenceSubscribeArgs{UserIDs: ids})
	wantOK(t, ans)
	var r protocol.PresenceSubscribeResult
	if err := json.Unmarshal(ans.Result, &r); err != nil {
		t.Fatalf("presence.subscribe answered %s: %v", ans.Result, err)
	}
	return r
}

// statusOf finds a user in a presence.subscribe answer.
func statusOf(t testing.TB, r protocol.PresenceSubscribeResult, user string) protocol.UserPresence {
	t.Helper()
	for _, p := range r.Users {
		if p.UserID == user {
			return p
		}
	}
	t.Fatalf("%s is not in the answer %+v", user, r)
	return protocol.UserPresence{}
}

// presenceUntil returns the presence updates c receives before the one
// about who (a barrier), and that one.
func presenceUntil(t testing.TB, c *client, who string) (before []protocol.PresencePayload, it protocol.PresencePayload) {
	t.Helper()
	for {
		u := c.nextNamed(protocol.EventPresence)
		p := decodePayload[protocol.PresencePayload](t, u)
		if p.ProfileID == who {
			return before, p
		}
		before = append(before, p)
	}
}

// online connects a user and returns the connection once it is live:
// those who see their presence were told before auth answered.
func online(t testing.TB, s *stack, app, user string) *client {
	t.Helper()
	c := dial(t, s)
	c.auth("", s.token(app, user), protocol.AuthArgs{})
	return c
}

// rest calls the REST API with a bearer token.
func (s *stack) rest(method, path, tok, body string) (int, []byte) {
	s.t.Helper()
	req, _ := nethttp.NewRequest(method, s.srv.URL()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := nethttp.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// userAs reads a profile with a user's token.
func (s *stack) userAs(t testing.TB, tok, id string) tidings.User {
	t.Helper()
	code, b := s.rest("GET", "/v1/users/"+id, tok, "")
	var u tidings.User
	if err := json.Unmarshal(b, &u); code != 200 || err != nil {
		t.Fatalf("GET /v1/users/%s: %d %s", id, code, b)
	}
	return u
}

func TestPresenceSubscriptionFollowsUsersWhoShareNoConversation(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob", "carol", "dave")
	bob := online(t, s, "a", "bob")

	r := subscribe(t, bob, "alice", "carol", "dave", "alice")
	if len(r.Users) != 3 || len(r.Unknown) != 0 {
		t.Fatalf("subscribe answered %+v, want alice, carol and dave, each once", r)
	}
	if p := statusOf(t, r, "alice"); p.Status != protocol.PresenceOffline || p.LastSeenAt != "" {
		t.Fatalf("alice, never connected: %+v, want offline, never seen", p)
	}

	alice := online(t, s, "a", "alice")
	if _, p := presenceUntil(t, bob, "alice"); p.Status != protocol.PresenceOnline {
		t.Fatalf("bob saw alice %+v, want online", p)
	}
	// Already online when subscribing: the answer says so.
	if p := statusOf(t, subscribe(t, bob, "alice"), "alice"); p.Status != protocol.PresenceOnline {
		t.Fatalf("subscribing again to alice online: %+v", p)
	}

	alice.hangUp()
	_, off := presenceUntil(t, bob, "alice")
	seen, err := time.Parse(time.RFC3339Nano, off.LastSeenAt)
	if off.Status != protocol.PresenceOffline || err != nil || time.Since(seen) > time.Minute {
		t.Fatalf("bob saw alice %+v, want offline with the time", off)
	}

	// Not carol once unsubscribed: the next presence bob gets is dave's.
	wantOK(t, bob.command("", protocol.CmdPresenceUnsubscribe, protocol.PresenceSubscribeArgs{UserIDs: []string{"carol", "nobody"}}))
	online(t, s, "a", "carol")
	online(t, s, "a", "dave")
	if before, _ := presenceUntil(t, bob, "dave"); len(before) > 0 {
		t.Fatalf("bob, unsubscribed from carol, got %+v", before)
	}
	wantError(t, bob.command("", protocol.CmdPresenceUnsubscribe, protocol.PresenceSubscribeArgs{}), tidings.EInvalid)
}

func TestPresenceComesOnceToASubscriberWhoSharesAConversation(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob", "dave")
	s.conv("a", "alice", "bob")
	s.conv("a", "bob", "alice") // two conversations in common, too
	bob := online(t, s, "a", "bob")
	subscribe(t, bob, "alice", "dave")

	alice := online(t, s, "a", "alice")
	dave := online(t, s, "a", "dave") // the barrier
	before, _ := presenceUntil(t, bob, "dave")
	if len(before) != 1 || before[0].ProfileID != "alice" || before[0].Status != protocol.PresenceOnline {
		t.Fatalf("bob got %+v before dave's presence, want alice online once", before)
	}
	alice.hangUp()
	if _, p := presenceUntil(t, bob, "alice"); p.Status != protocol.PresenceOffline {
		t.Fatalf("bob saw alice %+v, want offline", p)
	}
	// Nothing more about alice came: the next presence is dave's.
	dave.hangUp()
	if before, _ := presenceUntil(t, bob, "dave"); len(before) > 0 {
		t.Fatalf("bob got alice's presence twice: %+v", before)
	}
}

func TestPresenceSubscriptionsAreCappedAndStayInTheirApp(t *testing.T) {
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) { n.MaxPresenceSubscriptions = 2 })
	s.mkUsers("a", "alice", "bob", "carol", "dave")
	s.mkUsers("b", "zed")
	bob := online(t, s, "a", "bob")

	// A user of another app is unknown, as one of no app: not subscribed.
	r := subscribe(t, bob, "zed", "alice")
	if len(r.Users) != 1 || r.Users[0].UserID != "alice" || !slices.Equal(r.Unknown, []string{"zed"}) {
		t.Fatalf("subscribe answered %+v, want alice, and the others unknown", r)
	}
	subscribe(t, bob, "carol", "alice") // two now: at the cap
	ans := bob.command("", protocol.CmdPresenceSubscribe, protocol.PresenceSubscribeArgs{UserIDs: []string{"dave"}})
	wantError(t, ans, tidings.EInvalid)
	if !strings.Contains(ans.Error.Message, "at most 2") {
		t.Fatalf("over the cap: %q, want the limit named", ans.Error.Message)
	}
	wantError(t, bob.command("", protocol.CmdPresenceSubscribe, protocol.PresenceSubscribeArgs{UserIDs: []string{"a1", "a2", "a3"}}), tidings.EInvalid)
	wantError(t, bob.command("", protocol.CmdPresenceSubscribe, protocol.PresenceSubscribeArgs{}), tidings.EInvalid)
	// Unknown users do not count.
	if r := subscribe(t, bob, "nobody", "Not an id!"); len(r.Users) != 0 || !slices.Equal(r.Unknown, []string{"nobody", "Not an id!"}) {
		t.Fatalf("subscribe answered %+v, want both unknown", r)
	}
	wantOK(t, bob.command("", protocol.CmdPresenceUnsubscribe, protocol.PresenceSubscribeArgs{UserIDs: []string{"carol"}}))
	subscribe(t, bob, "dave")

	// Zed, of the other app, comes online: bob is not told (dave is the
	// barrier); the refused command subscribed nobody.
	online(t, s, "b", "zed")
	online(t, s, "a", "carol")
	online(t, s, "a", "dave")
	if before, _ := presenceUntil(t, bob, "dave"); len(before) > 0 {
		t.Fatalf("bob got %+v", before)
	}

	// Subscriptions are the connection's: a new one has none.
	bob2 := online(t, s, "a", "bob")
	subscribe(t, bob2, "alice", "carol")
	bob.hangUp()
	subscribe(t, online(t, s, "a", "bob"), "alice", "carol")
}

func TestLastSeenIsKeptWhenTheLastConnectionCloses(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob")
	bob := online(t, s, "a", "bob")
	bobTok, aliceTok := s.token("a", "bob"), s.token("a", "alice")

	phone := online(t, s, "a", "alice")
	laptop := online(t, s, "a", "alice")
	laptop.hangUp()
	waitFor(t, "the laptop's session to end", func() bool { return s.metric("tidings_realtime_sessions") == 2 })
	if p := statusOf(t, subscribe(t, bob, "alice"), "alice"); p.Status != protocol.PresenceOnline || p.LastSeenAt != "" {
		t.Fatalf("alice with one of two connections closed: %+v, want online, never seen", p)
	}

	phone.hangUp()
	_, off := presenceUntil(t, bob, "alice")
	if off.LastSeenAt == "" {
		t.Fatalf("offline without the time: %+v", off)
	}
	// Answered at once (not stored yet, maybe), then stored.
	if p := statusOf(t, subscribe(t, bob, "alice"), "alice"); p.Status != protocol.PresenceOffline || p.LastSeenAt != off.LastSeenAt {
		t.Fatalf("alice after her last connection closed: %+v, want offline, last seen %s", p, off.LastSeenAt)
	}
	want, _ := time.Parse(time.RFC3339Nano, off.LastSeenAt)
	waitFor(t, "last seen to be stored", func() bool {
		u := s.userAs(t, bobTok, "alice")
		return u.LastSeenAt != nil && u.LastSeenAt.Equal(want)
	})
	if u := s.userAs(t, aliceTok, "alice"); u.LastSeenAt == nil || !u.LastSeenAt.Equal(want) {
		t.Fatalf("alice's own profile: %+v", u)
	}
	code, b := s.rest("GET", "/v1/me", aliceTok, "")
	if code != 200 || !strings.Contains(string(b), `"lastSeenAt":"`) {
		t.Fatalf("GET /v1/me: %d %s", code, b)
	}

	// A new connection and its end move it on.
	online(t, s, "a", "alice").hangUp()
	if _, on := presenceUntil(t, bob, "alice"); on.Status != protocol.PresenceOnline {
		t.Fatalf("bob saw alice %+v, want online", on)
	}
	_, off2 := presenceUntil(t, bob, "alice")
	if seen2, err := time.Parse(time.RFC3339Nano, off2.LastSeenAt); err != nil || seen2.Before(want) {
		t.Fatalf("last seen went from %s to %q", off.LastSeenAt, off2.LastSeenAt)
	}
}

func TestLastSeenIsStoredOnShutdown(t *testing.T) {
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) { n.CursorFlushInterval = time.Hour })
	s.mkUsers("a", "alice")
	online(t, s, "a", "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before := time.Now()
	if err := s.node.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	u, err := s.users.FindUserByID(s.server("a"), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if u.LastSeenAt == nil || u.LastSeenAt.Before(before.Add(-time.Second)) {
		t.Fatalf("after a clean shutdown alice's last seen is %v, want the shutdown's time", u.LastSeenAt)
	}
}

func TestHiddenPresenceIsSeenOnlyByTheUserThemself(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob", "dave")
	conv := s.conv("a", "alice", "bob")
	aliceTok, bobTok := s.token("a", "alice"), s.token("a", "bob")
	// Seen once, so that she has a last seen to hide.
	online(t, s, "a", "alice").hangUp()
	waitFor(t, "last seen to be stored", func() bool { return s.userAs(t, aliceTok, "alice").LastSeenAt != nil })

	// Her own switch, through the profile route.
	if code, b := s.rest("PATCH", "/v1/users/alice", aliceTok, `{"presenceHidden":true}`); code != 200 || !strings.Contains(string(b), `"presenceHidden":true`) {
		t.Fatalf("PATCH presenceHidden: %d %s", code, b)
	}
	if u := s.userAs(t, bobTok, "alice"); !u.PresenceHidden || u.LastSeenAt != nil {
		t.Fatalf("bob reads alice's profile %+v, want hidden without last seen", u)
	}
	if u := s.userAs(t, aliceTok, "alice"); u.LastSeenAt == nil {
		t.Fatalf("alice reads her own profile %+v, want her last seen", u)
	}

	bob := online(t, s, "a", "bob")
	subscribe(t, bob, "alice", "dave")
	alice := online(t, s, "a", "alice")
	dave := online(t, s, "a", "dave")
	if before, _ := presenceUntil(t, bob, "dave"); len(before) > 0 {
		t.Fatalf("bob, subscribed and co-participant, saw hidden alice: %+v", before)
	}
	if p := statusOf(t, subscribe(t, bob, "alice"), "alice"); p.Status != protocol.PresenceOffline || p.LastSeenAt != "" {
		t.Fatalf("bob's answer about hidden alice: %+v, want offline, never seen", p)
	}
	get := func(c *client) []string {
		ans := c.command("", protocol.CmdPresenceGet, protocol.PresenceArgs{ConversationID: conv})
		wantOK(t, ans)
		var r protocol.PresenceResult
		json.Unmarshal(ans.Result, &r)
		return r.Online
	}
	if got := get(bob); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("presence.get for bob: %v, want only bob", got)
	}
	if got := get(alice); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Fatalf("presence.get for alice: %v, want alice and bob", got)
	}
	// She still sees herself.
	if p := statusOf(t, subscribe(t, alice, "alice"), "alice"); p.Status != protocol.PresenceOnline || p.LastSeenAt == "" {
		t.Fatalf("alice's answer about herself: %+v, want online with her last seen", p)
	}

	// Shown again while online: bob sees her come online, and go offline
	// when she hides again.
	if code, b := s.rest("PATCH", "/v1/users/alice", aliceTok, `{"presenceHidden":false}`); code != 200 {
		t.Fatalf("PATCH: %d %s", code, b)
	}
	if _, p := presenceUntil(t, bob, "alice"); p.Status != protocol.PresenceOnline {
		t.Fatalf("alice shown again: bob saw %+v", p)
	}
	if code, b := s.rest("PATCH", "/v1/users/alice", aliceTok, `{"presenceHidden":true}`); code != 200 {
		t.Fatalf("PATCH: %d %s", code, b)
	}
	if _, p := presenceUntil(t, bob, "alice"); p.Status != protocol.PresenceOffline || p.LastSeenAt != "" {
		t.Fatalf("alice hidden again: bob saw %+v, want offline, never seen", p)
	}
	// Her going offline is not told either, but to herself.
	alice.hangUp()
	dave.hangUp()
	if before, _ := presenceUntil(t, bob, "dave"); len(before) > 0 {
		t.Fatalf("bob saw hidden alice: %+v", before)
	}

	// The app decides whether users may change it.
	ctx := s.server("a")
	fields := []string{tidings.FieldDisplayName}
	if _, err := s.apps.UpdateApp(ctx, "a", tidings.AppUpdate{UserEditableFields: &fields}); err != nil {
		t.Fatal(err)
	}
	if code, _ := s.rest("PATCH", "/v1/users/alice", aliceTok, `{"presenceHidden":false}`); code != 403 {
		t.Fatalf("presenceHidden not editable in the app: %d, want 403", code)
	}
}
