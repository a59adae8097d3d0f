package ws_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/realtime"
	"github.com/tidings/tidings/token"
	"github.com/tidings/tidings/ws"
)

// End-to-end scenarios of realtime delivery through the whole server and
// real sockets: live-only updates, membership changes, token expiry,
// several accounts and devices, the connection's limits and timeouts,
// retention, and the polling transport.

// fastTicks makes the node's timers (token expiry, auth timeout, typing
// expiry) run every 50ms instead of every second.
func fastTicks(n *realtime.Node) { n.TypingTimeout = 250 * time.Millisecond }

// tokenFor mints a token of user valid for ttl from now.
func (s *stack) tokenFor(app, user string, ttl time.Duration, now time.Time) string {
	s.t.Helper()
	a, err := s.apps.FindAppByID(context.Background(), app)
	if err != nil {
		s.t.Fatal(err)
	}
	tok, _, err := token.Mint(a, user, ttl, now)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// lastRef is the ref of the newest event.
func (s *stack) lastRef() string {
	s.t.Helper()
	seq, err := s.log.LastEventSeq(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	return protocol.FormatRef(seq)
}

// metric reads one of the node's metrics.
func (s *stack) metric(name string) float64 {
	s.t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.node.Collectors()...)
	mfs, err := reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		m := mf.GetMetric()[0]
		if g := m.GetGauge(); g != nil {
			return g.GetValue()
		}
		return m.GetCounter().GetValue()
	}
	s.t.Fatalf("no metric %s", name)
	return 0
}

// waitFor waits until cond holds, failing after a while.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sendArgs(conv, text string) protocol.SendArgs {
	parts, _ := json.Marshal([]tidings.Part{{Type: "text/plain", Data: text}})
	return protocol.SendArgs{ConversationID: conv, Parts: parts}
}

func decodePayload[T any](t testing.TB, u update) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(u.ev.Payload, &v); err != nil {
		t.Fatalf("payload of %s: %v", u.ev.Name, err)
	}
	return v
}

func named(us []update, name string) []update {
	var out []update
	for _, u := range us {
		if u.ev.Name == name {
			out = append(out, u)
		}
	}
	return out
}

func texts(us []update) []string {
	var out []string
	for _, u := range named(us, tidings.EventMessageSent) {
		out = append(out, u.text())
	}
	return out
}

// textsUntil reads updates until the message text last arrives and
// returns the texts of the messages received, last included.
func textsUntil(c *client, last string) []string {
	c.t.Helper()
	var out []string
	for {
		u := c.nextNamed(tidings.EventMessageSent)
		out = append(out, u.text())
		if u.text() == last {
			return out
		}
	}
}

func wantError(t testing.TB, f protocol.Frame, code string) {
	t.Helper()
	if f.Error == nil || f.Error.Code != code {
		t.Fatalf("want a %s error, got %+v (error %+v)", code, f, f.Error)
	}
}

func wantOK(t testing.TB, f protocol.Frame) {
	t.Helper()
	if f.Error != nil {
		t.Fatalf("%s: %s", f.Error.Code, f.Error.Message)
	}
}

// --- Typing and presence ---------------------------------------------------

func TestTypingReachesOthersAndEndsOnStopSendOrLeaving(t *testing.T) {
	// No expiry during the test: every typingOff comes from what the typer did.
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) { n.TypingTimeout = time.Hour })
	s.mkUsers("a", "alice", "bob", "eve")
	conv := s.conv("a", "alice", "bob")
	alice, bob, eve := dial(t, s), dial(t, s), dial(t, s)
	alice.auth("", s.token("a", "alice"), protocol.AuthArgs{})
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{})
	eve.auth("", s.token("a", "eve"), protocol.AuthArgs{})
	start := func() {
		t.Helper()
		wantOK(t, alice.command("", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: conv}))
	}

	start()
	u := bob.nextNamed(protocol.EventTyping)
	p := decodePayload[protocol.TypingPayload](t, u)
	if p.ConversationID != conv || p.ProfileID != "alice" || u.ev.ConversationID != conv || u.ev.Actor == nil || u.ev.Actor.ID != "alice" {
		t.Fatalf("typing update %+v, payload %+v", u.ev, p)
	}
	if u.Ref != "" || !u.Silent || u.Account != "" { // "": the default account
		t.Fatalf("typing is live-only and silent: %+v", u.Frame)
	}
	// The typer is not told about themselves: it would have come before the answer.
	if got := named(alice.pending(), protocol.EventTyping); len(got) > 0 {
		t.Fatalf("the typer got their own typing indicator: %+v", got[0].Frame)
	}

	wantOK(t, alice.command("", protocol.CmdTypingStop, protocol.TypingArgs{ConversationID: conv}))
	off := bob.nextNamed(protocol.EventTypingOff)
	if p := decodePayload[protocol.TypingPayload](t, off); p.ProfileID != "alice" || p.ConversationID != conv || off.Ref != "" {
		t.Fatalf("typingOff %+v, payload %+v", off.Frame, p)
	}

	// Sending a message ends typing: bob gets the message and typingOff
	// (in no promised order).
	start()
	bob.nextNamed(protocol.EventTyping)
	wantOK(t, alice.command("", protocol.CmdSend, sendArgs(conv, "done typing")))
	before, off := bob.until(protocol.EventTypingOff)
	if p := decodePayload[protocol.TypingPayload](t, off); p.ProfileID != "alice" || off.ev.Actor == nil || off.ev.Actor.ID != "alice" {
		t.Fatalf("typingOff %+v, payload %+v", off.ev, p)
	}
	if got := texts(before); len(got) == 0 {
		got = []string{bob.nextNamed(tidings.EventMessageSent).text()}
		if !slices.Equal(got, []string{"done typing"}) {
			t.Fatalf("bob got messages %v, want the one sent", got)
		}
	} else if !slices.Equal(got, []string{"done typing"}) {
		t.Fatalf("bob got messages %v, want the one sent", got)
	}

	// Someone outside the conversation cannot type in it.
	wantError(t, eve.command("", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: conv}), tidings.ENotFound)

	// The typer going away ends their typing.
	start()
	bob.nextNamed(protocol.EventTyping)
	alice.hangUp()
	bob.nextNamed(protocol.EventTypingOff)
}

func TestTypingExpiresWithoutRefresh(t *testing.T) {
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) { n.TypingTimeout = 300 * time.Millisecond })
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	alice, bob := dial(t, s), dial(t, s)
	alice.auth("", s.token("a", "alice"), protocol.AuthArgs{})
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{})

	wantOK(t, alice.command("", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: conv}))
	bob.nextNamed(protocol.EventTyping)
	// Alice neither stops nor sends: the indicator ends by itself.
	off := bob.nextNamed(protocol.EventTypingOff)
	if p := decodePayload[protocol.TypingPayload](t, off); p.ProfileID != "alice" || p.ConversationID != conv {
		t.Fatalf("typingOff payload %+v", p)
	}
	// It really ended: typing again shows it again.
	wantOK(t, alice.command("", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: conv}))
	bob.nextNamed(protocol.EventTyping)
}

// nextPresence skips updates until a presence update about who.
func nextPresence(t testing.TB, c *client, who string) protocol.PresencePayload {
	t.Helper()
	for {
		u := c.nextNamed(protocol.EventPresence)
		p := decodePayload[protocol.PresencePayload](t, u)
		if p.ProfileID == who {
			if u.Ref != "" || !u.Silent {
				t.Fatalf("presence is live-only and silent: %+v", u.Frame)
			}
			return p
		}
	}
}

func TestPresenceReachesPeersOnly(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob", "carol", "eve")
	conv := s.conv("a", "alice", "bob")
	elsewhere := s.conv("a", "carol", "eve")
	bob, eve := dial(t, s), dial(t, s)
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{})
	eve.auth("", s.token("a", "eve"), protocol.AuthArgs{})

	alice := dial(t, s)
	alice.auth("", s.token("a", "alice"), protocol.AuthArgs{Device: "phone"})
	if p := nextPresence(t, bob, "alice"); p.Status != "online" {
		t.Fatalf("bob saw alice %q, want online", p.Status)
	}
	// Eve shares no conversation with alice: she is not told.
	s.send("a", "carol", elsewhere, "barrier")
	before, _ := eve.until(tidings.EventMessageSent)
	if got := named(before, protocol.EventPresence); len(got) > 0 {
		t.Fatalf("eve, who shares no conversation with alice, got %s", got[0].ev.Payload)
	}

	// A second device of alice changes nothing for her peers, nor does
	// closing it while the first is still connected.
	laptop := dial(t, s)
	laptop.auth("", s.token("a", "alice"), protocol.AuthArgs{Device: "laptop"})
	laptop.hangUp()
	waitFor(t, "the laptop's session to end", func() bool { return s.metric("tidings_realtime_sessions") == 3 })
	s.send("a", "alice", conv, "barrier")
	before, _ = bob.until(tidings.EventMessageSent)
	if got := named(before, protocol.EventPresence); len(got) > 0 {
		t.Fatalf("alice's second device changed her presence: %s", got[0].ev.Payload)
	}

	alice.hangUp()
	if p := nextPresence(t, bob, "alice"); p.Status != "offline" {
		t.Fatalf("bob saw alice %q, want offline", p.Status)
	}
}

// A client opening a conversation learns who is online and typing in it
// now; updates keep it current from then on.
func TestPresenceGetTellsWhoIsOnlineAndTyping(t *testing.T) {
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) { n.TypingTimeout = time.Hour })
	s.mkUsers("a", "alice", "bob", "carol", "eve")
	conv := s.conv("a", "alice", "bob", "carol")
	alice, bob, eve := dial(t, s), dial(t, s), dial(t, s)
	alice.auth("", s.token("a", "alice"), protocol.AuthArgs{})
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{})
	eve.auth("", s.token("a", "eve"), protocol.AuthArgs{})
	wantOK(t, bob.command("", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: conv}))

	get := func(c *client) protocol.PresenceResult {
		t.Helper()
		ans := c.command("", protocol.CmdPresenceGet, protocol.PresenceArgs{ConversationID: conv})
		wantOK(t, ans)
		var r protocol.PresenceResult
		if err := json.Unmarshal(ans.Result, &r); err != nil {
			t.Fatalf("presence %s: %v", ans.Result, err)
		}
		return r
	}
	// Carol is offline; eve is online but not a participant.
	r := get(alice)
	if !slices.Equal(r.Online, []string{"alice", "bob"}) || !slices.Equal(r.Typing, []string{"bob"}) {
		t.Fatalf("presence %+v, want alice and bob online, bob typing", r)
	}
	bob.hangUp()
	waitFor(t, "bob to go offline", func() bool {
		r := get(alice)
		return slices.Equal(r.Online, []string{"alice"}) && len(r.Typing) == 0
	})
	// Someone outside the conversation learns nothing about it.
	wantError(t, eve.command("", protocol.CmdPresenceGet, protocol.PresenceArgs{ConversationID: conv}), tidings.ENotFound)
}

// --- Membership changes on open connections --------------------------------

func TestRemovedParticipantStopsReceivingAtOnce(t *testing.T) {
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) { n.TypingTimeout = time.Hour })
	s.mkUsers("a", "alice", "bob", "carol")
	conv := s.conv("a", "alice", "bob")
	other := s.conv("a", "alice", "bob") // still shared after the removal
	bob, carol, alice := dial(t, s), dial(t, s), dial(t, s)
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{})
	carol.auth("", s.token("a", "carol"), protocol.AuthArgs{})
	alice.auth("", s.token("a", "alice"), protocol.AuthArgs{})
	s.send("a", "alice", conv, "before")
	if u := bob.nextNamed(tidings.EventMessageSent); u.text() != "before" {
		t.Fatalf("bob got %q", u.text())
	}

	if err := s.convs.RemoveParticipant(s.as("a", "alice"), conv, "bob"); err != nil {
		t.Fatal(err)
	}
	// Bob is told he was removed...
	u := bob.nextNamed(tidings.EventParticipantRemoved)
	if u.ev.UserID != "bob" || u.ev.ConversationID != conv || u.Ref == "" {
		t.Fatalf("removal update %+v", u.Frame)
	}
	// ...and gets nothing more of that conversation: no message, no typing.
	s.send("a", "alice", conv, "after the removal")
	wantOK(t, alice.command("", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: conv}))
	s.send("a", "alice", other, "barrier")
	before, m := bob.until(tidings.EventMessageSent)
	if m.text() != "barrier" {
		t.Fatalf("after his removal bob got %q", m.text())
	}
	for _, u := range before {
		if u.ev.ConversationID == conv {
			t.Fatalf("after his removal bob got %s of the conversation", u.ev.Name)
		}
	}
	// Nor can he act in it.
	wantError(t, bob.command("", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: conv}), tidings.ENotFound)
	if f := bob.command("", protocol.CmdSend, sendArgs(conv, "let me in")); f.Error == nil {
		t.Fatal("a removed participant could send into the conversation")
	}

	// Carol, added while connected, receives from that moment on.
	if _, err := s.convs.AddParticipant(s.as("a", "alice"), conv, tidings.NewParticipant{UserID: "carol"}); err != nil {
		t.Fatal(err)
	}
	if u := carol.nextNamed(tidings.EventParticipantAdded); u.ev.UserID != "carol" || u.ev.ConversationID != conv || u.Silent {
		t.Fatalf("carol's addition %+v", u.Frame)
	}
	s.send("a", "alice", conv, "welcome carol")
	if got := textsUntil(carol, "welcome carol"); !slices.Equal(got, []string{"welcome carol"}) {
		t.Fatalf("carol got %v", got)
	}
	wantOK(t, carol.command("", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: conv}))
	if u := alice.nextNamed(protocol.EventTyping); decodePayload[protocol.TypingPayload](t, u).ProfileID != "carol" {
		t.Fatalf("alice got typing of %s", u.ev.Payload)
	}
}

// TestParticipantEventsTellJoinLeaveAddRemove: participantAdded and
// participantRemoved say why, so that a client tells "Bob joined" from
// "Alice added Bob" and "Bob left" from "Alice removed Bob" without
// comparing the actor with the user.
func TestParticipantEventsTellJoinLeaveAddRemove(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob", "carol", "dave")
	alice := dial(t, s)
	alice.auth("", s.token("a", "alice"), protocol.AuthArgs{})
	conv, err := s.convs.CreateConversation(s.as("a", "alice"), tidings.NewConversation{IsPublic: true,
		Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.convs.Join(s.as("a", "carol"), conv.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.convs.AddParticipant(s.as("a", "alice"), conv.ID, tidings.NewParticipant{UserID: "dave"}); err != nil {
		t.Fatal(err)
	}
	if err := s.convs.Leave(s.as("a", "carol"), conv.ID); err != nil {
		t.Fatal(err)
	}
	// Removing oneself is leaving.
	if err := s.convs.RemoveParticipant(s.as("a", "dave"), conv.ID, "dave"); err != nil {
		t.Fatal(err)
	}
	if err := s.convs.RemoveParticipant(s.as("a", "alice"), conv.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"participantAdded alice by alice: added", // the creator, at creation
		"participantAdded bob by alice: added",
		"participantAdded carol by carol: joined",
		"participantAdded dave by alice: added",
		"participantRemoved carol by carol: left",
		"participantRemoved dave by dave: left",
		"participantRemoved bob by alice: removed",
	}
	var got []string
	for len(got) < len(want) {
		u := alice.next()
		if u.ev.Name != tidings.EventParticipantAdded && u.ev.Name != tidings.EventParticipantRemoved {
			continue
		}
		p := decodePayload[tidings.ParticipantPayload](t, u)
		got = append(got, fmt.Sprintf("%s %s by %s: %s", strings.TrimPrefix(u.ev.Name, "conversation."), p.ProfileID, u.ev.Actor.ID, p.Reason))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("alice got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// --- Tokens and accounts ---------------------------------------------------

func TestExpiredTokenEndsItsAccountAtOnce(t *testing.T) {
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) { fastTicks(n) })
	s.mkUsers("a", "alice", "bob", "carol")
	convB := s.conv("a", "alice", "bob")
	convC := s.conv("a", "alice", "carol")
	// Every short token has the same expiry (exp has a one-second
	// precision), 1.5 to 2.5 seconds from now: time enough to
	// authenticate with it.
	now := time.Now().Add(500 * time.Millisecond)
	short := func(user string) string { return s.tokenFor("a", user, 2*time.Second, now) }

	// A connection with only that account.
	solo := dial(t, s)
	solo.auth("", short("bob"), protocol.AuthArgs{})
	// A connection with a second account, whose token stays valid.
	both := dial(t, s)
	both.auth("personal", short("bob"), protocol.AuthArgs{})
	both.auth("business", s.token("a", "carol"), protocol.AuthArgs{})
	// A connection whose token is refreshed in time.
	refreshed := dial(t, s)
	first := refreshed.auth("", short("bob"), protocol.AuthArgs{})
	second := refreshed.auth("", s.token("a", "bob"), protocol.AuthArgs{})
	if second.ExpiresAt <= first.ExpiresAt || second.UserID != "bob" {
		t.Fatalf("refresh answered %+v after %+v", second, first)
	}
	// Refreshing with another user's token is refused.
	wantError(t, refreshed.command("", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "carol")}), tidings.EConflict)

	u := solo.nextNamed(protocol.EventAccountEnds)
	if p := decodePayload[map[string]string](t, u); p["account"] != "default" || p["reason"] != "token_expired" || u.Ref != "" {
		t.Fatalf("account.closed %+v, payload %v", u.Frame, p)
	}
	if code := solo.waitClosed(); code != protocol.CloseTokenExpired {
		t.Fatalf("closed with %d, want %d", code, protocol.CloseTokenExpired)
	}

	u = both.nextNamed(protocol.EventAccountEnds)
	if u.Account != "personal" {
		t.Fatalf("account.closed for account %q, want personal", u.Account)
	}
	// The expired account gets nothing more; the other one goes on.
	s.send("a", "alice", convB, "for bob")
	s.send("a", "alice", convC, "for carol")
	before, m := both.until(tidings.EventMessageSent)
	if m.Account != "business" || m.text() != "for carol" {
		t.Fatalf("got %q on account %q, want carol's message on business", m.text(), m.Account)
	}
	for _, u := range before {
		if u.Account == "personal" {
			t.Fatalf("the expired account got %s", u.ev.Name)
		}
	}
	wantError(t, both.command("personal", protocol.CmdSend, sendArgs(convB, "x")), tidings.EUnauthenticated)

	// The refreshed account outlived its first token.
	if got := textsUntil(refreshed, "for bob"); !slices.Equal(got, []string{"for bob"}) {
		t.Fatalf("the refreshed account got %v", got)
	}
	wantOK(t, refreshed.command("", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: convB}))
}

// A token that expires sooner than the one it replaces, or than the
// connection's other account, still ends its account when it expires:
// the node checks a connection when its first token is due, not only
// every second.
func TestSoonerTokenEndsItsAccountWhenItExpires(t *testing.T) {
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) { fastTicks(n) })
	s.mkUsers("a", "bob", "carol")
	now := time.Now().Add(500 * time.Millisecond)
	short := func(user string) string { return s.tokenFor("a", user, 2*time.Second, now) }

	// Refreshed with a token that expires sooner than the first.
	refreshed := dial(t, s)
	refreshed.auth("", s.token("a", "bob"), protocol.AuthArgs{})
	refreshed.auth("", short("bob"), protocol.AuthArgs{})
	// A long-lived account first, then one whose token expires soon.
	second := dial(t, s)
	second.auth("business", s.token("a", "carol"), protocol.AuthArgs{})
	second.auth("personal", short("bob"), protocol.AuthArgs{})

	if code := refreshed.waitClosed(); code != protocol.CloseTokenExpired {
		t.Fatalf("the refreshed connection closed with %d, want %d", code, protocol.CloseTokenExpired)
	}
	if u := second.nextNamed(protocol.EventAccountEnds); u.Account != "personal" {
		t.Fatalf("account.closed for account %q, want personal", u.Account)
	}
	wantOK(t, second.command("business", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: s.conv("a", "carol", "bob")}))
}

func TestTwoAccountsOnOneConnection(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob", "carol")
	convB := s.conv("a", "alice", "bob")
	convC := s.conv("a", "alice", "carol")
	c := dial(t, s)
	if r := c.auth("personal", s.token("a", "bob"), protocol.AuthArgs{Device: "d"}); r.Account != "personal" || r.UserID != "bob" {
		t.Fatalf("auth personal: %+v", r)
	}
	if r := c.auth("business", s.token("a", "carol"), protocol.AuthArgs{Device: "d"}); r.Account != "business" || r.UserID != "carol" {
		t.Fatalf("auth business: %+v", r)
	}

	s.send("a", "alice", convB, "for bob")
	s.send("a", "alice", convC, "for carol")
	got := map[string]update{}
	for len(got) < 2 {
		u := c.nextNamed(tidings.EventMessageSent)
		got[u.Account] = u
	}
	if got["personal"].text() != "for bob" || got["business"].text() != "for carol" {
		t.Fatalf("personal got %q, business %q", got["personal"].text(), got["business"].text())
	}

	// A command acts as its account's user.
	wantOK(t, c.command("business", protocol.CmdSend, sendArgs(convC, "from carol")))
	echo := c.nextNamed(tidings.EventMessageSent)
	if m := decodePayload[tidings.MessagePayload](t, echo); echo.Account != "business" || !echo.Silent || m.Message == nil || m.Sender.ID != "carol" {
		t.Fatalf("echo %s", echo.raw)
	}
	wantError(t, c.command("personal", protocol.CmdSend, sendArgs(convC, "bob is not in it")), tidings.ENotFound)
	wantError(t, c.command("other", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: convB}), tidings.EUnauthenticated)

	// A reply acknowledges for its own account only.
	c.reply("personal", got["personal"].Ref)
	c.hangUp()

	c = dial(t, s)
	c.auth("personal", s.token("a", "bob"), protocol.AuthArgs{Device: "d"})
	c.auth("business", s.token("a", "carol"), protocol.AuthArgs{Device: "d"})
	s.send("a", "alice", convB, "new for bob")
	var personal, business []string
	for !slices.Contains(personal, "new for bob") || len(business) < 2 {
		u := c.nextNamed(tidings.EventMessageSent)
		switch u.Account {
		case "personal":
			personal = append(personal, u.text())
		case "business":
			business = append(business, u.text())
		default:
			t.Fatalf("update for account %q", u.Account)
		}
	}
	if !slices.Equal(personal, []string{"new for bob"}) || !slices.Equal(business, []string{"for carol", "from carol"}) {
		t.Fatalf("after reconnecting personal got %v (want only the new message), business %v (want both unacknowledged)", personal, business)
	}

	// Logging one account out leaves the other; the last one closes the
	// connection normally.
	wantOK(t, c.command("personal", protocol.CmdLogout, nil))
	s.send("a", "alice", convB, "bob logged out")
	s.send("a", "alice", convC, "carol still here")
	before, m := c.until(tidings.EventMessageSent)
	if m.Account != "business" || m.text() != "carol still here" || len(named(before, tidings.EventMessageSent)) > 0 {
		t.Fatalf("after logging personal out, got %q on %q", m.text(), m.Account)
	}
	wantOK(t, c.command("business", protocol.CmdLogout, nil))
	if code := c.waitClosed(); code != protocol.CloseNormal {
		t.Fatalf("closed with %d after the last logout, want %d", code, protocol.CloseNormal)
	}
}

// A connection closed while its frames wait for the end of a batch of
// events (held back to be written together) writes them before the close.
func TestCloseWritesWhatIsHeldForABatch(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "bob")
	c := dial(t, s)
	c.auth("", s.token("a", "bob"), protocol.AuthArgs{})
	// The node is delivering a batch: writers wait for its end.
	s.ws.BeginBatch()
	t.Cleanup(s.ws.EndBatch)
	// The answer to logout is held; the close that follows must not
	// overtake it.
	wantOK(t, c.command("", protocol.CmdLogout, nil))
	if code := c.waitClosed(); code != protocol.CloseNormal {
		t.Fatalf("closed with %d after the logout, want %d", code, protocol.CloseNormal)
	}
}

// A device that comes back gets what it missed in as few writes as the
// queue allows: a batch of the replay goes out in one WebSocket message
// (frames separated by newlines), sharing at most one with the answer.
func TestReplayIsWrittenInBatches(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	first := dial(t, s)
	first.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "phone"})
	first.hangUp()
	waitFor(t, "bob to go away", func() bool { return s.metric("tidings_realtime_sessions") == 0 })
	const missed = 20
	for i := range missed {
		s.send("a", "alice", conv, fmt.Sprint("missed ", i))
	}

	bob := rawAuth(t, s, "bob", "phone")
	bob.SetReadDeadline(time.Now().Add(10 * time.Second))
	var texts []string
	messages := 0 // WebSocket messages that carried updates
	for len(texts) < missed {
		op, p, err := bob.readFrame()
		if err != nil {
			t.Fatalf("after %d updates: %v", len(texts), err)
		}
		if op != 1 {
			continue
		}
		carried := false
		for _, line := range bytes.Split(p, []byte("\n")) {
			var f protocol.Frame
			if err := json.Unmarshal(line, &f); err != nil {
				t.Fatalf("a line of a message is not a frame: %v: %s", err, line)
			}
			if f.Type != protocol.TypeUpdate {
				continue
			}
			carried = true
			var ev tidings.Event
			json.Unmarshal(f.Event, &ev)
			if ev.Name == tidings.EventMessageSent {
				var m tidings.MessagePayload
				json.Unmarshal(ev.Payload, &m)
				texts = append(texts, m.Parts[0].Data)
			}
		}
		if carried {
			messages++
		}
	}
	for i, got := range texts {
		if want := fmt.Sprint("missed ", i); got != want {
			t.Fatalf("update %d is %q, want %q", i, got, want)
		}
	}
	if messages > 2 {
		t.Errorf("%d missed updates came in %d WebSocket messages, want at most 2", missed, messages)
	}
}

func TestEveryDeviceGetsEveryUpdateAndAcknowledgesForItself(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	phone, laptop := dial(t, s), dial(t, s)
	phone.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "phone"})
	laptop.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "laptop"})
	for i := range 3 {
		s.send("a", "alice", conv, fmt.Sprint(i))
	}
	refs := func(c *client) []string {
		var rs []string
		for len(rs) < 3 {
			rs = append(rs, c.nextNamed(tidings.EventMessageSent).Ref)
		}
		return rs
	}
	onPhone, onLaptop := refs(phone), refs(laptop)
	if !slices.Equal(onPhone, onLaptop) {
		t.Fatalf("the phone got refs %v, the laptop %v", onPhone, onLaptop)
	}
	phone.reply("", onPhone[2])
	phone.hangUp()
	laptop.hangUp()

	phone, laptop = dial(t, s), dial(t, s)
	phone.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "phone"})
	laptop.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "laptop"})
	s.send("a", "alice", conv, "after")
	if got := textsUntil(phone, "after"); !slices.Equal(got, []string{"after"}) {
		t.Fatalf("the phone acknowledged everything but got %v", got)
	}
	if got := textsUntil(laptop, "after"); !slices.Equal(got, []string{"0", "1", "2", "after"}) {
		t.Fatalf("the laptop acknowledged nothing but got %v", got)
	}
}

// --- Connection limits and timeouts ----------------------------------------

func TestConnectionWithoutAccountIsClosedAfterAuthTimeout(t *testing.T) {
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) {
		fastTicks(n)
		n.AuthTimeout = time.Second
	})
	s.mkUsers("a", "bob")
	idle := dial(t, s)
	// Before auth, commands are refused rather than run, and a bad token is
	// answered without closing.
	wantError(t, idle.command("", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: "c"}), tidings.EUnauthenticated)
	wantError(t, idle.command("", protocol.CmdAuth, protocol.AuthArgs{Token: "not-a-token"}), tidings.EUnauthenticated)
	good := dial(t, s)
	good.auth("", s.token("a", "bob"), protocol.AuthArgs{})

	// A token in the URL authenticates nothing: only auth does.
	tok := s.token("a", "bob")
	inURL, err := tryDialURL(t, s.wsURL()+"?token="+tok+"&access_token="+tok, nethttp.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, inURL.command("", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: "c"}), tidings.EUnauthenticated)

	for _, c := range []*client{idle, inURL} {
		if code := c.waitClosed(); code != protocol.CloseAuthTimeout {
			t.Fatalf("closed with %d, want %d", code, protocol.CloseAuthTimeout)
		}
	}
	wantOK(t, good.command("", protocol.CmdPing, nil))
}

// An auth sent in time but answered after the auth timeout (a slow
// store, a reconnect storm) is not cut by it: the client gets its answer
// and its account, instead of 4001 and a reconnect that adds to the load.
// One that fails past the timeout closes the connection then, after its
// answer.
func TestSlowAuthIsNotCutByTheAuthTimeout(t *testing.T) {
	var delay atomic.Int64 // of each read of an app, in nanoseconds
	s := startStackWith(t, func(s *stack) {
		s.node.AuthTimeout = time.Second
		s.node.Apps = slowApps{AppService: s.apps, delay: &delay}
	})
	s.mkUsers("a", "bob")
	delay.Store(int64(2500 * time.Millisecond)) // past the timeout and a tick

	slow := dial(t, s)
	start := time.Now()
	wantOK(t, slow.command("", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "bob")}))
	if waited := time.Since(start); waited < 2*time.Second {
		t.Fatalf("the auth was answered in %v: the store's delay did not apply", waited)
	}
	delay.Store(0)
	time.Sleep(1500 * time.Millisecond) // more ticks of the node's
	wantOK(t, slow.command("", protocol.CmdPing, nil))

	delay.Store(int64(2500 * time.Millisecond))
	failing := dial(t, s)
	wantError(t, failing.command("", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "nobody")}), tidings.EUnauthenticated)
	if code := failing.waitClosed(); code != protocol.CloseAuthTimeout {
		t.Fatalf("a failed auth past the timeout: closed with %d, want %d", code, protocol.CloseAuthTimeout)
	}
}

// Replays read the log a few at a time (Node.ReplayReads), whatever the
// number of devices resuming at once, so that an auth never queues for
// the store behind all of them; every replay still completes, in order.
func TestReplaysReadTheLogAFewAtATime(t *testing.T) {
	log := &countingLog{delay: 20 * time.Millisecond}
	s := startStackWith(t, func(s *stack) {
		s.node.ReplayReads = 2
		log.EventLog = s.node.Log
		s.node.Log = log
	})
	const devices, backlog = 8, 20
	users := []string{"alice"}
	for i := range devices {
		users = append(users, fmt.Sprint("u", i))
	}
	s.mkUsers("a", users...)
	conv := s.conv("a", "alice", users[1:]...)
	for _, u := range users[1:] {
		c := dial(t, s)
		c.auth("", s.token("a", u), protocol.AuthArgs{Device: "d"})
		c.hangUp()
	}
	for i := range backlog {
		s.send("a", "alice", conv, fmt.Sprint(i))
	}
	var cs []*client
	for _, u := range users[1:] {
		c := dial(t, s)
		c.auth("", s.token("a", u), protocol.AuthArgs{Device: "d"})
		cs = append(cs, c)
	}
	want := make([]string, backlog)
	for i := range want {
		want[i] = fmt.Sprint(i)
	}
	for i, c := range cs {
		if got := textsUntil(c, fmt.Sprint(backlog-1)); !slices.Equal(got, want) {
			t.Fatalf("device %d replayed %v", i, got)
		}
	}
	if most := log.most.Load(); most > 2 || most == 0 {
		t.Errorf("%d replays read the log at once, want 1 or 2", most)
	}
}

// countingLog is an EventLog whose reads of more than one event take
// delay, and which counts how many run at once (most).
type countingLog struct {
	tidings.EventLog
	delay     time.Duration
	now, most atomic.Int64
}

func (l *countingLog) UserEvents(ctx context.Context, app, user string, after int64, limit int) ([]*tidings.Event, error) {
	if limit > 1 {
		n := l.now.Add(1)
		defer l.now.Add(-1)
		for m := l.most.Load(); n > m && !l.most.CompareAndSwap(m, n); m = l.most.Load() {
		}
		time.Sleep(l.delay)
	}
	return l.EventLog.UserEvents(ctx, app, user, after, limit)
}

// slowApps is an AppService whose reads of an app take delay.
type slowApps struct {
	tidings.AppService
	delay *atomic.Int64
}

func (a slowApps) FindAppByID(ctx context.Context, id string) (*tidings.App, error) {
	time.Sleep(time.Duration(a.delay.Load()))
	return a.AppService.FindAppByID(ctx, id)
}

func TestMalformedFramesCloseTheConnection(t *testing.T) {
	s := startStack(t, func(_ *realtime.Node, h *ws.Handler) { h.MaxFrameBytes = 4096 })
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	cases := []struct {
		name   string
		opcode gws.Opcode
		frame  string
		code   uint16
	}{
		{"not JSON", gws.OpcodeText, `{"type":"command",`, protocol.CloseBadFrame},
		{"unknown type", gws.OpcodeText, `{"type":"hello"}`, protocol.CloseBadFrame},
		{"command without id", gws.OpcodeText, `{"type":"command","command":"ping"}`, protocol.CloseBadFrame},
		{"reply without a ref", gws.OpcodeText, `{"type":"reply","ref":"x"}`, protocol.CloseBadFrame},
		{"binary", gws.OpcodeBinary, `{"type":"command","id":"1","command":"ping"}`, protocol.CloseBadFrame},
		{"too big", gws.OpcodeText, `{"type":"command","id":"1","command":"ping","data":{"pad":"` + strings.Repeat("x", 5000) + `"}}`, protocol.CloseTooBig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, s)
			c.auth("", s.token("a", "bob"), protocol.AuthArgs{})
			c.conn.WriteMessage(tc.opcode, []byte(tc.frame))
			if code := c.waitClosed(); code != tc.code {
				t.Fatalf("closed with %d, want %d", code, tc.code)
			}
		})
	}
	// A frame within the limit is fine.
	c := dial(t, s)
	c.auth("", s.token("a", "bob"), protocol.AuthArgs{})
	wantOK(t, c.command("", protocol.CmdSend, sendArgs(conv, strings.Repeat("y", 3000))))
}

func TestDeadConnectionIsClosedLiveOneIsKept(t *testing.T) {
	s := startStack(t, func(_ *realtime.Node, h *ws.Handler) {
		h.PingInterval = 200 * time.Millisecond
		h.PongTimeout = time.Second
	})
	s.mkUsers("a", "bob")
	dead, alive := dial(t, s), dial(t, s)
	dead.noPong.Store(true)
	dead.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "dead"})
	alive.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "alive"})

	if code := dead.waitClosed(); code != protocol.ClosePingTimeout {
		t.Fatalf("closed with %d, want %d", code, protocol.ClosePingTimeout)
	}
	if dead.pings.Load() == 0 {
		t.Fatal("the dead connection was closed without being pinged")
	}
	// The live one, silent too but answering pings, stays connected.
	waitFor(t, "a ping to the live connection", func() bool { return alive.pings.Load() > 0 })
	wantOK(t, alive.command("", protocol.CmdPing, nil))
}

// A connection quiet for longer than the write timeout is pinged, not cut:
// the ping is not written past the deadline of the last frame sent.
func TestQuietConnectionOutlivesTheWriteTimeout(t *testing.T) {
	s := startStack(t, func(_ *realtime.Node, h *ws.Handler) {
		h.PingInterval = 300 * time.Millisecond
		h.PongTimeout = time.Second
		h.WriteTimeout = 100 * time.Millisecond
	})
	s.mkUsers("a", "bob")
	c := dial(t, s)
	c.auth("", s.token("a", "bob"), protocol.AuthArgs{})
	waitFor(t, "three pings", func() bool { return c.pings.Load() >= 3 })
	select {
	case <-c.closed:
		t.Fatalf("the connection was closed (%d)", c.code)
	default:
	}
	wantOK(t, c.command("", protocol.CmdPing, nil))
}

func TestCommandRateLimit(t *testing.T) {
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) {
		n.CommandRate = 1
		n.CommandBurst = 4
	})
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	alice, bob := dial(t, s), dial(t, s)
	alice.auth("", s.token("a", "alice"), protocol.AuthArgs{})
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{})

	var sent []string
	limited := 0
	for i := range 12 {
		text := fmt.Sprint(i)
		f := alice.command("", protocol.CmdSend, sendArgs(conv, text))
		switch {
		case f.Error == nil:
			sent = append(sent, text)
		case f.Error.Code == tidings.ERateLimited:
			limited++
		default:
			t.Fatalf("send %d: %s: %s", i, f.Error.Code, f.Error.Message)
		}
	}
	if limited == 0 || len(sent) == 0 {
		t.Fatalf("%d sent, %d rate limited: want both", len(sent), limited)
	}
	// What was refused was not done: bob gets exactly the messages answered ok.
	s.send("a", "alice", conv, "end")
	if got := textsUntil(bob, "end"); !slices.Equal(got, append(sent, "end")) {
		t.Fatalf("bob got %v, want %v", got, append(sent, "end"))
	}
	// The connection stays open, and commands run again once the rate allows.
	waitFor(t, "the rate limit to let a command through", func() bool {
		f := alice.command("", protocol.CmdPing, nil)
		if f.Error != nil && f.Error.Code != tidings.ERateLimited {
			t.Fatalf("ping: %+v", f.Error)
		}
		if f.Error == nil {
			return true
		}
		time.Sleep(100 * time.Millisecond)
		return false
	})
}

func TestTooManyConnectionsForOneUser(t *testing.T) {
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) { n.MaxConnsPerUser = 2 })
	s.mkUsers("a", "alice", "bob", "carol")
	conv := s.conv("a", "alice", "carol")
	b1, b2 := dial(t, s), dial(t, s)
	b1.auth("", s.token("a", "bob"), protocol.AuthArgs{})
	b2.auth("", s.token("a", "bob"), protocol.AuthArgs{})

	b3 := dial(t, s)
	wantError(t, b3.command("", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "bob")}), tidings.ERateLimited)
	if code := b3.waitClosed(); code != protocol.CloseTooManyConns {
		t.Fatalf("closed with %d, want %d", code, protocol.CloseTooManyConns)
	}

	// A connection with another account is refused the account, not closed.
	c := dial(t, s)
	c.auth("work", s.token("a", "carol"), protocol.AuthArgs{})
	wantError(t, c.command("home", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "bob")}), tidings.ERateLimited)
	s.send("a", "alice", conv, "still here")
	if u := c.nextNamed(tidings.EventMessageSent); u.Account != "work" || u.text() != "still here" {
		t.Fatalf("got %q for %q", u.text(), u.Account)
	}

	// Once one of bob's connections ends, he may connect again.
	b1.hangUp()
	waitFor(t, "bob to be allowed a connection again", func() bool {
		f := c.command("home", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "bob")})
		if f.Error != nil && f.Error.Code != tidings.ERateLimited {
			t.Fatalf("auth: %+v", f.Error)
		}
		return f.Error == nil
	})
}

// --- Slow consumers --------------------------------------------------------

// rawConn is a WebSocket client written by hand, to behave as no library
// would let it: stop reading.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

// handshake opens a TCP connection to the realtime endpoint and asks for
// a WebSocket upgrade. It returns the response's status, and the
// connection when upgraded.
func handshake(t testing.TB, s *stack, header nethttp.Header, readBuffer int) (*rawConn, int) {
	t.Helper()
	addr := strings.TrimPrefix(s.srv.URL(), "http://")
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if readBuffer > 0 {
		if err := nc.(*net.TCPConn).SetReadBuffer(readBuffer); err != nil {
			t.Fatal(err)
		}
	}
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	req, _ := nethttp.NewRequest("GET", "http://"+addr+"/v1/realtime", nil)
	for name, vs := range header {
		req.Header[name] = vs
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", key)
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := req.Write(nc); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := nethttp.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Time{})
	if resp.StatusCode != nethttp.StatusSwitchingProtocols {
		resp.Body.Close()
		nc.Close()
		return nil, resp.StatusCode
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Fatalf("Sec-WebSocket-Accept %q", got)
	}
	return &rawConn{Conn: nc, br: br}, resp.StatusCode
}

// writeText sends a masked text frame, as a client must.
func (c *rawConn) writeText(payload []byte) error {
	_, err := c.Write(maskedFrame(0x1, payload))
	return err
}

// maskedFrame is a final frame of opcode op, masked, as a client sends it.
func maskedFrame(op byte, payload []byte) []byte {
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	rand.Read(mask[:])
	b = append(b, mask[:]...)
	for i, x := range payload {
		b = append(b, x^mask[i%4])
	}
	return b
}

// readFrame reads one (unmasked, unfragmented) frame from the server.
// rawAuth opens a raw connection as user of app a and sends auth for
// device (command id "1"), without reading the answer.
func rawAuth(t testing.TB, s *stack, user, device string) *rawConn {
	t.Helper()
	return rawAuthWith(t, s, nil, user, device)
}

// rawAuthWith is rawAuth with the handshake's header.
func rawAuthWith(t testing.TB, s *stack, header nethttp.Header, user, device string) *rawConn {
	t.Helper()
	c, status := handshake(t, s, header, 4096)
	if c == nil {
		t.Fatalf("handshake: %d", status)
	}
	auth, _ := json.Marshal(protocol.Frame{Type: protocol.TypeCommand, ID: "1", Command: protocol.CmdAuth,
		Data: json.RawMessage(fmt.Sprintf(`{"token":%q,"device":%q}`, s.token("a", user), device))})
	if err := c.writeText(auth); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *rawConn) readFrame() (opcode byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(c.br, payload)
	return h[0] & 0x0f, payload, err
}

func TestSlowConsumerIsClosedOthersKeepReceiving(t *testing.T) {
	// One writer for every connection: bob's full socket must not hold up
	// carol's writes.
	s := startStack(t, func(_ *realtime.Node, h *ws.Handler) { h.WriteQueue, h.Writers = 8, 1 })
	s.mkUsers("a", "alice", "bob", "carol")
	conv := s.conv("a", "alice", "bob", "carol")
	carol := dial(t, s)
	carol.auth("", s.token("a", "carol"), protocol.AuthArgs{})

	// Bob authenticates, then never reads again.
	bob := rawAuth(t, s, "bob", "slow")
	bob.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		op, p, err := bob.readFrame()
		if err != nil {
			t.Fatal(err)
		}
		var f protocol.Frame
		if op == 1 && json.Unmarshal(p, &f) == nil && f.Type == protocol.TypeAnswer {
			if f.Error != nil {
				t.Fatalf("auth: %+v", f.Error)
			}
			break
		}
	}

	// Large messages until the server gives up on bob; carol reads each.
	big := strings.Repeat("x", 48<<10)
	n := 0
	for ; s.metric("tidings_realtime_slow_consumers_total") == 0; n++ {
		if n == 2000 {
			t.Fatal("the server kept a connection that does not read")
		}
		s.send("a", "alice", conv, fmt.Sprint(n, " ", big))
		if got := carol.nextNamed(tidings.EventMessageSent).text(); !strings.HasPrefix(got, fmt.Sprint(n, " ")) {
			t.Fatalf("carol got message %.10q, want %d", got, n)
		}
	}
	// Carol goes on receiving, in order.
	for i := n; i < n+3; i++ {
		s.send("a", "alice", conv, fmt.Sprint(i, " ", big))
		if got := carol.nextNamed(tidings.EventMessageSent).text(); !strings.HasPrefix(got, fmt.Sprint(i, " ")) {
			t.Fatalf("carol got message %.10q, want %d", got, i)
		}
	}
	n += 3

	// The server ended bob's connection: only carol's is left...
	waitFor(t, "the slow connection to end", func() bool { return s.metric("tidings_realtime_connections") == 1 })
	// ...and closes its socket: the write under way, which bob does not
	// read, fails at the write timeout (10 s), and the socket closes, with
	// updates still unsent that a close frame 4009 cannot overtake. Data
	// sent to a closed socket resets the connection: ping until it does.
	ping, _ := json.Marshal(protocol.Frame{Type: protocol.TypeCommand, ID: "2", Command: protocol.CmdPing})
	deadline := time.Now().Add(25 * time.Second)
	buf := make([]byte, 64<<10)
	for open := true; open; {
		if time.Now().After(deadline) {
			t.Fatal("the slow connection is still open")
		}
		if err := bob.writeText(ping); err != nil {
			break
		}
		bob.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		for {
			_, err := bob.br.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			} else if err != nil {
				open = false
				break
			}
		}
	}

	// Bob reconnects and resumes: he gets every message, in order, though
	// the backlog is far longer than the write queue.
	again := dial(t, s)
	again.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "slow"})
	for i := 0; i < n; {
		var u update
		select {
		case u = <-again.updates:
		case <-again.closed:
			t.Fatalf("closed with %d while replaying message %d", again.code, i)
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d was not replayed", i)
		}
		if u.ev.Name != tidings.EventMessageSent {
			continue
		}
		if got := u.text(); !strings.HasPrefix(got, fmt.Sprint(i, " ")) {
			t.Fatalf("after reconnecting bob got message %.10q, want %d", got, i)
		}
		i++
	}
}

// --- Origins and shutdown --------------------------------------------------

func TestOriginAllowList(t *testing.T) {
	upgrade := func(s *stack, origin string) int {
		t.Helper()
		h := nethttp.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c, status := handshake(t, s, h, 0)
		if c != nil {
			c.Close()
		}
		return status
	}
	t.Run("same host by default", func(t *testing.T) {
		s := startStack(t, nil)
		for origin, want := range map[string]int{
			"":                              101, // not a browser
			s.srv.URL():                     101,
			"https://evil.example":          403,
			"http://127.0.0.1:1":            403,
			"http://127.0.0.1.evil.example": 403,
		} {
			if got := upgrade(s, origin); got != want {
				t.Errorf("origin %q: status %d, want %d", origin, got, want)
			}
		}
		// A browser-like client from another origin cannot connect.
		if _, err := tryDial(t, s, nethttp.Header{"Origin": {"https://evil.example"}}); err == nil {
			t.Fatal("connected from a foreign origin")
		}
	})
	t.Run("allow list", func(t *testing.T) {
		s := startStack(t, func(_ *realtime.Node, h *ws.Handler) { h.AllowedOrigins = []string{"https://app.example"} })
		s.mkUsers("a", "bob")
		for origin, want := range map[string]int{
			"":                                 101,
			"https://app.example":              101,
			"HTTPS://APP.EXAMPLE":              101,
			"https://evil.example":             403,
			"http://app.example":               403,
			"https://app.example.evil.example": 403,
			"null":                             403,
			s.srv.URL():                        101, // the server's own pages, always
		} {
			if got := upgrade(s, origin); got != want {
				t.Errorf("origin %q: status %d, want %d", origin, got, want)
			}
		}
		c, err := tryDial(t, s, nethttp.Header{"Origin": {"https://app.example"}})
		if err != nil {
			t.Fatal(err)
		}
		c.auth("", s.token("a", "bob"), protocol.AuthArgs{})
	})
}

func TestShutdownClosesWithGoingAwayAndKeepsCursors(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	bob, anon := dial(t, s), dial(t, s)
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "d"})
	s.send("a", "alice", conv, "hi")
	u := bob.nextNamed(tidings.EventMessageSent)
	bob.reply("", u.Ref)
	wantOK(t, bob.command("", protocol.CmdPing, nil))

	s.node.Close()
	for _, c := range []*client{bob, anon} {
		if code := c.waitClosed(); code != protocol.CloseGoingAway {
			t.Fatalf("closed with %d, want %d", code, protocol.CloseGoingAway)
		}
	}
	// What bob acknowledged is stored: he resumes after it.
	if seq, err := s.log.Cursor(context.Background(), "a", "bob", "d"); err != nil || protocol.FormatRef(seq) != u.Ref {
		t.Fatalf("stored cursor %d (%v), want %s", seq, err, u.Ref)
	}
}

// --- Retention and resuming ------------------------------------------------

func TestResyncRequiredWhenUpdatesAreNoLongerKept(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	bob := dial(t, s)
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "d"})
	for i := range 3 {
		s.send("a", "alice", conv, fmt.Sprint(i))
	}
	first := bob.nextNamed(tidings.EventMessageSent)
	bob.reply("", first.Ref)
	bob.hangUp()
	s.send("a", "alice", conv, "3")
	s.send("a", "alice", conv, "4")
	if _, err := s.log.Prune(context.Background(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	latest := s.lastRef()

	bob = dial(t, s)
	tok := s.token("a", "bob")
	// The device's cursor is older than what is kept...
	f := bob.command("", protocol.CmdAuth, protocol.AuthArgs{Token: tok, Device: "d"})
	wantError(t, f, tidings.EResyncRequired)
	if f.Error.Ref != latest {
		t.Fatalf("resync_required with ref %q, want the newest %s", f.Error.Ref, latest)
	}
	// ...and so is a cursor the client kept itself.
	f = bob.command("", protocol.CmdAuth, protocol.AuthArgs{Token: tok, Device: "d", ResumeAfter: first.Ref})
	wantError(t, f, tidings.EResyncRequired)
	if f.Error.Ref != latest {
		t.Fatalf("resync_required with ref %q, want the newest %s", f.Error.Ref, latest)
	}
	// Resuming from the ref given works, on the same connection, and
	// updates are live from there.
	r := bob.auth("", tok, protocol.AuthArgs{Device: "d", ResumeAfter: f.Error.Ref})
	if r.ResumedAfter != latest {
		t.Fatalf("resumed after %s, want %s", r.ResumedAfter, latest)
	}
	s.send("a", "alice", conv, "after the resync")
	if before, m := bob.until(tidings.EventMessageSent); m.text() != "after the resync" || len(before) > 0 {
		t.Fatalf("after resyncing bob got %q after %d other updates", m.text(), len(before))
	}

	// Polling says the same, from the device's cursor or from `after`:
	// 410 resync_required with the newest ref.
	for _, q := range []string{"device=d", "device=d&after=" + first.Ref} {
		status, e := s.pollError(tok, q)
		if status != nethttp.StatusGone || e.Code != tidings.EResyncRequired || e.Ref != s.lastRef() {
			t.Fatalf("poll %s: status %d, error %+v, want 410 resync_required with ref %s", q, status, e, s.lastRef())
		}
	}
}

func TestResumeAfter(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	bob := dial(t, s)
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "d"})
	bob.hangUp()
	var refs []string
	for i := range 3 {
		s.send("a", "alice", conv, fmt.Sprint(i))
		refs = append(refs, s.lastRef())
	}

	// "latest" skips what the device missed.
	bob = dial(t, s)
	if r := bob.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "d", ResumeAfter: "latest"}); r.ResumedAfter != refs[2] {
		t.Fatalf("resumed after %s, want the newest %s", r.ResumedAfter, refs[2])
	}
	s.send("a", "alice", conv, "live")
	if got := textsUntil(bob, "live"); !slices.Equal(got, []string{"live"}) {
		t.Fatalf("resuming after latest bob got %v", got)
	}

	// A ref the client kept resumes after it.
	other := dial(t, s)
	if r := other.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "d", ResumeAfter: refs[0]}); r.ResumedAfter != refs[0] {
		t.Fatalf("resumed after %s, want %s", r.ResumedAfter, refs[0])
	}
	if got := textsUntil(other, "live"); !slices.Equal(got, []string{"1", "2", "live"}) {
		t.Fatalf("resuming after the first message bob got %v", got)
	}

	// Something that is not a ref is refused.
	for _, ref := range []string{"abc", "-1"} {
		c := dial(t, s)
		wantError(t, c.command("", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "bob"), ResumeAfter: ref}), tidings.EInvalid)
	}
	// A ref newer than any this server gave (the client kept it from data
	// since wiped) asks for a resync, with the newest ref to resume after.
	c := dial(t, s)
	ans := c.command("", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "bob"), ResumeAfter: "999999"})
	wantError(t, ans, tidings.EResyncRequired)
	if ans.Error.Ref == "" || ans.Error.Ref == "999999" {
		t.Fatalf("resync_required carries ref %q, want the newest ref", ans.Error.Ref)
	}
}

// --- Polling -----------------------------------------------------------------

var pollClient = &nethttp.Client{Timeout: 90 * time.Second}

// pollE polls as tok with the query; it does not fail the test, so that it
// can run in another goroutine.
func (s *stack) pollE(tok, query string) ([]update, string, error) {
	req, _ := nethttp.NewRequest("GET", s.srv.URL()+"/v1/realtime/poll?"+query, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := pollClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != nethttp.StatusOK {
		return nil, "", fmt.Errorf("poll: status %d: %s", resp.StatusCode, body)
	}
	var res struct {
		Updates []json.RawMessage `json:"updates"`
		LastRef string            `json:"lastRef"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, "", fmt.Errorf("poll: %v: %s", err, body)
	}
	if res.Updates == nil {
		return nil, "", fmt.Errorf("poll: no updates array: %s", body)
	}
	var us []update
	for _, raw := range res.Updates {
		var u update
		if err := json.Unmarshal(raw, &u.Frame); err != nil {
			return nil, "", err
		}
		if err := json.Unmarshal(u.Event, &u.ev); err != nil {
			return nil, "", err
		}
		if u.Type != protocol.TypeUpdate {
			return nil, "", fmt.Errorf("poll returned a %s frame", u.Type)
		}
		us = append(us, u)
	}
	return us, res.LastRef, nil
}

func (s *stack) poll(tok, query string) ([]update, string) {
	s.t.Helper()
	us, last, err := s.pollE(tok, query)
	if err != nil {
		s.t.Fatal(err)
	}
	return us, last
}

// pollError polls and returns the status and error of a failed poll.
func (s *stack) pollError(tok, query string) (int, protocol.Error) {
	s.t.Helper()
	req, _ := nethttp.NewRequest("GET", s.srv.URL()+"/v1/realtime/poll?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := pollClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Error protocol.Error }
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error
}

// postReply acknowledges ref for a device and returns the status.
func (s *stack) postReply(tok, device, ref string) int {
	s.t.Helper()
	body, _ := json.Marshal(map[string]string{"ref": ref, "device": device})
	req, _ := nethttp.NewRequest("POST", s.srv.URL()+"/v1/realtime/replies", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := pollClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func refsOf(us []update) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.Ref+" "+u.ev.ID)
	}
	return out
}

func TestPollingSeesWhatTheSocketSees(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob", "carol")
	conv := s.conv("a", "alice", "bob", "carol")
	tok := s.token("a", "bob")
	// A new device starts from now.
	if us, last := s.poll(tok, "device=web"); len(us) != 0 || last != s.lastRef() {
		t.Fatalf("first poll: %d updates, lastRef %q, want none and the newest ref %s", len(us), last, s.lastRef())
	}
	carol := dial(t, s)
	carol.auth("", s.token("a", "carol"), protocol.AuthArgs{})
	for i := range 5 {
		s.send("a", "alice", conv, fmt.Sprint(i))
	}
	var sock []update
	for len(named(sock, tidings.EventMessageSent)) < 5 {
		if u := carol.next(); u.Ref != "" {
			sock = append(sock, u)
		}
	}
	polled, last := s.poll(tok, "device=web")
	if !slices.Equal(refsOf(polled), refsOf(sock)) {
		t.Fatalf("polling got %v, the socket %v", refsOf(polled), refsOf(sock))
	}
	if !slices.Equal(texts(polled), []string{"0", "1", "2", "3", "4"}) {
		t.Fatalf("polled %v", texts(polled))
	}
	if last != polled[len(polled)-1].Ref || polled[0].Account != "" || polled[0].Silent {
		t.Fatalf("lastRef %q, first %+v", last, polled[0].Frame)
	}
	// Polling needs the user's token, in the header, not the URL.
	if _, _, err := s.pollE("", "device=web&access_token="+tok+"&token="+tok); err == nil || !strings.Contains(err.Error(), "status 401") {
		t.Fatalf("poll without a token in the header: %v", err)
	}
}

// A client without a WebSocket types and asks who is online through the
// REST API, as socket clients do with typing.start and presence.get.
func TestTypingAndPresenceWithoutAWebSocket(t *testing.T) {
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) { n.TypingTimeout = time.Hour })
	s.mkUsers("a", "alice", "bob", "eve")
	conv := s.conv("a", "alice", "bob")
	bob := dial(t, s)
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{})
	rest := func(method, path, tok, body string) (int, []byte) {
		t.Helper()
		req, _ := nethttp.NewRequest(method, s.srv.URL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := nethttp.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	alice, eve := s.token("a", "alice"), s.token("a", "eve")

	if code, b := rest("POST", "/v1/conversations/"+conv+"/typing", alice, `{"typing":true}`); code != 204 {
		t.Fatalf("typing on: %d %s", code, b)
	}
	u := bob.nextNamed(protocol.EventTyping)
	if p := decodePayload[protocol.TypingPayload](t, u); p.ProfileID != "alice" || u.ev.Actor == nil || u.ev.Actor.ID != "alice" {
		t.Fatalf("typing update %+v, payload %+v", u.ev, p)
	}
	code, b := rest("GET", "/v1/conversations/"+conv+"/presence", alice, "")
	var got protocol.PresenceResult
	if err := json.Unmarshal(b, &got); code != 200 || err != nil ||
		!slices.Equal(got.Online, []string{"bob"}) || !slices.Equal(got.Typing, []string{"alice"}) {
		t.Fatalf("presence: %d %s, want bob online (alice only polls) and alice typing", code, b)
	}
	if code, b := rest("POST", "/v1/conversations/"+conv+"/typing", alice, `{"typing":false}`); code != 204 {
		t.Fatalf("typing off: %d %s", code, b)
	}
	bob.nextNamed(protocol.EventTypingOff)

	// Only participants; and the body must say which way.
	if code, _ := rest("POST", "/v1/conversations/"+conv+"/typing", eve, `{"typing":true}`); code != 404 {
		t.Fatalf("typing in someone else's conversation: %d, want 404", code)
	}
	if code, _ := rest("GET", "/v1/conversations/"+conv+"/presence", eve, ""); code != 404 {
		t.Fatalf("presence of someone else's conversation: %d, want 404", code)
	}
	if code, _ := rest("POST", "/v1/conversations/"+conv+"/typing", alice, `{}`); code != 400 {
		t.Fatalf("typing without a value: %d, want 400", code)
	}
}

func TestPollWaitsForTheNextUpdate(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	tok := s.token("a", "bob")
	s.poll(tok, "device=web")
	type result struct {
		us   []update
		last string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		us, last, err := s.pollE(tok, "device=web&wait=30")
		done <- result{us, last, err}
	}()
	waitFor(t, "the poll to wait", func() bool { return s.metric("tidings_realtime_sessions") == 1 })
	s.send("a", "alice", conv, "wake up")
	ref := s.lastRef()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if got := texts(r.us); !slices.Equal(got, []string{"wake up"}) || r.last != ref {
			t.Fatalf("the poll returned %v, lastRef %q (want %s)", got, r.last, ref)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the poll did not return when a message came")
	}
}

func TestPollRepliesMoveTheCursor(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	tok := s.token("a", "bob")
	s.poll(tok, "device=web")
	for i := range 3 {
		s.send("a", "alice", conv, fmt.Sprint(i))
	}
	us, last := s.poll(tok, "device=web")
	if len(us) != 3 {
		t.Fatalf("polled %v", texts(us))
	}
	// Without a reply, polling again returns the same.
	if again, _ := s.poll(tok, "device=web"); !slices.Equal(refsOf(again), refsOf(us)) {
		t.Fatalf("polling again without a reply got %v, want %v", refsOf(again), refsOf(us))
	}
	if st := s.postReply(tok, "web", us[0].Ref); st != nethttp.StatusNoContent {
		t.Fatalf("reply: status %d", st)
	}
	if got, _ := s.poll(tok, "device=web"); !slices.Equal(texts(got), []string{"1", "2"}) {
		t.Fatalf("after replying to the first, polled %v", texts(got))
	}
	if st := s.postReply(tok, "web", last); st != nethttp.StatusNoContent {
		t.Fatalf("reply: status %d", st)
	}
	if got, now := s.poll(tok, "device=web"); len(got) != 0 || now != last {
		t.Fatalf("after replying to the last, polled %v (lastRef %q, want %s)", texts(got), now, last)
	}
	// The cursor is the device's: another device still has everything.
	s.poll(tok, "device=other") // starts from now
	s.send("a", "alice", conv, "3")
	if got, _ := s.poll(tok, "device=web"); !slices.Equal(texts(got), []string{"3"}) {
		t.Fatalf("web polled %v", texts(got))
	}
	if got, _ := s.poll(tok, "device=other"); !slices.Equal(texts(got), []string{"3"}) {
		t.Fatalf("other polled %v", texts(got))
	}
	// A reply must name a ref this server sent.
	for _, ref := range []string{"", "abc", "999999"} {
		if st := s.postReply(tok, "web", ref); st != nethttp.StatusBadRequest {
			t.Fatalf("reply %q: status %d, want 400", ref, st)
		}
	}
}

func TestPollLimit(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	tok := s.token("a", "bob")
	s.poll(tok, "device=web")
	for i := range 5 {
		s.send("a", "alice", conv, fmt.Sprint(i))
	}
	var got []string
	after := ""
	for range 3 {
		us, last := s.poll(tok, "device=web&limit=2&after="+after)
		if len(us) == 0 || len(us) > 2 {
			t.Fatalf("limit 2 returned %d updates", len(us))
		}
		if last != us[len(us)-1].Ref {
			t.Fatalf("lastRef %q is not the last update's ref %q", last, us[len(us)-1].Ref)
		}
		got = append(got, texts(us)...)
		after = last
	}
	if !slices.Equal(got, []string{"0", "1", "2", "3", "4"}) {
		t.Fatalf("three polls of 2 got %v", got)
	}
	if us, last := s.poll(tok, "device=web&after="+after); len(us) != 0 || last != after {
		t.Fatalf("past the end: %v, lastRef %q, want %s", texts(us), last, after)
	}
	// Without a reply the device's cursor did not move.
	if us, _ := s.poll(tok, "device=web&limit=10"); !slices.Equal(texts(us), []string{"0", "1", "2", "3", "4"}) {
		t.Fatalf("polled %v", texts(us))
	}
}
