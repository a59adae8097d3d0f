package client_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings/client"
	"github.com/tidings/tidings/protocol"
)

// presenceOf returns the presence updates about user received so far.
func presenceOf(evs []client.Event, user string) []*client.PresenceUpdate {
	var out []*client.PresenceUpdate
	for _, e := range evs {
		if p, ok := e.(*client.PresenceUpdate); ok && p.ProfileID == user {
			out = append(out, p)
		}
	}
	return out
}

func TestPresenceSubscriptionsAreMadeAgainAfterAReconnection(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob", "carol") // alice and bob share no conversation
	barrier := s.conv(t, "carol", "alice")
	p := newProxy(t, s.Addr())
	rec, statuses := newRecorder(), &statusLog{}
	c := newClient(t, p.URL(), client.WithToken(s.token(t, "alice", time.Hour)), fastBackoff,
		client.WithEventListener(rec.listen), client.WithStatusListener(statuses.listen))
	waitConnected(t, c)
	ctx := ctxT(t)

	res, err := c.Socket().SubscribePresence(ctx, "bob", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Users) != 1 || res.Users[0].UserID != "bob" || res.Users[0].Status != "offline" || !slices.Equal(res.Unknown, []string{"nobody"}) {
		t.Fatalf("SubscribePresence = %+v, want bob offline and nobody unknown", res)
	}
	if got := c.PresenceSubscriptions(); !slices.Equal(got, []string{"bob"}) {
		t.Fatalf("PresenceSubscriptions = %v, want only bob (nobody is unknown)", got)
	}

	bob := newClient(t, s.URL(), client.WithToken(s.token(t, "bob", time.Hour)))
	waitConnected(t, bob)
	rec.waitUntil(t, "bob online", func(evs []client.Event) bool {
		ps := presenceOf(evs, "bob")
		return len(ps) == 1 && ps[0].Online
	})

	// The connection drops; the new one subscribes again, tells bob's
	// status then, and follows him.
	p.Cut()
	waitFor(t, "a second connection", func() bool { return statuses.count(client.StatusConnected) >= 2 })
	rec.waitUntil(t, "bob's status after the reconnection", func(evs []client.Event) bool {
		ps := presenceOf(evs, "bob")
		return len(ps) == 2 && ps[1].Online && ps[1].Actor == nil
	})
	bob.Close()
	rec.waitUntil(t, "bob offline", func(evs []client.Event) bool {
		ps := presenceOf(evs, "bob")
		return len(ps) == 3 && !ps[2].Online
	})

	// Unsubscribed, he is forgotten: no update when he comes back.
	if err := c.Socket().UnsubscribePresence(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if got := c.PresenceSubscriptions(); len(got) != 0 {
		t.Fatalf("PresenceSubscriptions = %v after unsubscribing", got)
	}
	p.Cut()
	waitFor(t, "a third connection", func() bool { return statuses.count(client.StatusConnected) >= 3 })
	bob = newClient(t, s.URL(), client.WithToken(s.token(t, "bob", time.Hour)))
	waitConnected(t, bob)
	// What bob's coming online would have sent comes before the message.
	s.send(t, "carol", barrier, "after bob")
	rec.waitTexts(t, barrier, 1)
	if got := presenceOf(rec.all(), "bob"); len(got) != 3 {
		t.Fatalf("%d presence updates about bob after unsubscribing, want none new", len(got)-3)
	}
}

// presenceFor returns the presence updates about user that account
// received so far.
func presenceFor(evs []client.Event, account, user string) []*client.PresenceUpdate {
	var out []*client.PresenceUpdate
	for _, p := range presenceOf(evs, user) {
		if p.Account == account {
			out = append(out, p)
		}
	}
	return out
}

// Two accounts on one connection follow users of their own: each gets
// the updates of its own subscriptions only, and after a reconnection
// each one's are made again, with their status then.
func TestTwoAccountsKeepTheirOwnPresenceSubscriptionsAcrossAReconnection(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob", "carol", "dave") // no conversation shared
	p := newProxy(t, s.Addr())
	rec, statuses := newRecorder(), &statusLog{}
	c := newClient(t, p.URL(), client.WithToken(s.token(t, "alice", time.Hour)), fastBackoff,
		client.WithEventListener(rec.listen), client.WithStatusListener(statuses.listen))
	waitConnected(t, c)
	ctx := ctxT(t)
	w, err := c.AddAccount(ctx, "work", client.WithToken(s.token(t, "bob", time.Hour)))
	if err != nil {
		t.Fatal(err)
	}

	if _, err := c.Socket().SubscribePresence(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	res, err := w.Socket().SubscribePresence(ctx, "dave")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Users) != 1 || res.Users[0].UserID != "dave" || res.Users[0].Status != "offline" {
		t.Fatalf("work's SubscribePresence = %+v, want dave offline", res)
	}
	if got, got2 := c.PresenceSubscriptions(), w.PresenceSubscriptions(); !slices.Equal(got, []string{"carol"}) || !slices.Equal(got2, []string{"dave"}) {
		t.Fatalf("PresenceSubscriptions: default %v, work %v; want carol, dave", got, got2)
	}
	if got := c.Account(client.DefaultAccount).PresenceSubscriptions(); !slices.Equal(got, []string{"carol"}) {
		t.Fatalf("the default Account's PresenceSubscriptions = %v", got)
	}

	// Each account hears only about the user it follows.
	others := func(evs []client.Event) bool {
		return len(presenceFor(evs, "work", "carol")) > 0 || len(presenceFor(evs, client.DefaultAccount, "dave")) > 0
	}
	online := func(who, account string, n int) func([]client.Event) bool {
		return func(evs []client.Event) bool {
			ps := presenceFor(evs, account, who)
			return len(ps) == n && ps[n-1].Online
		}
	}
	carol := newClient(t, s.URL(), client.WithToken(s.token(t, "carol", time.Hour)))
	dave := newClient(t, s.URL(), client.WithToken(s.token(t, "dave", time.Hour)))
	waitConnected(t, carol)
	waitConnected(t, dave)
	rec.waitUntil(t, "carol online for default", online("carol", client.DefaultAccount, 1))
	rec.waitUntil(t, "dave online for work", online("dave", "work", 1))

	// The connection drops: the new one subscribes each account's users
	// again, for that account, and tells their status then.
	p.Cut()
	waitFor(t, "a second connection", func() bool { return statuses.count(client.StatusConnected) >= 2 })
	evs := rec.waitUntil(t, "carol and dave's status after the reconnection", func(evs []client.Event) bool {
		return online("carol", client.DefaultAccount, 2)(evs) && online("dave", "work", 2)(evs)
	})
	if a, b := presenceFor(evs, client.DefaultAccount, "carol")[1], presenceFor(evs, "work", "dave")[1]; a.Actor != nil || b.Actor != nil {
		t.Fatalf("the status after the reconnection has an actor: %+v, %+v", a, b)
	}
	if got, got2 := c.PresenceSubscriptions(), w.PresenceSubscriptions(); !slices.Equal(got, []string{"carol"}) || !slices.Equal(got2, []string{"dave"}) {
		t.Fatalf("PresenceSubscriptions after the reconnection: default %v, work %v", got, got2)
	}

	// The server follows them again, each for its account.
	carol.Close()
	rec.waitUntil(t, "carol offline for default", func(evs []client.Event) bool {
		ps := presenceFor(evs, client.DefaultAccount, "carol")
		return len(ps) == 3 && !ps[2].Online
	})
	dave.Close()
	evs = rec.waitUntil(t, "dave offline for work", func(evs []client.Event) bool {
		ps := presenceFor(evs, "work", "dave")
		return len(ps) == 3 && !ps[2].Online
	})
	if others(evs) {
		t.Fatal("an account heard about a user it does not follow")
	}

	// Unsubscribing one account leaves the other's alone.
	if err := w.Socket().UnsubscribePresence(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	if got, got2 := c.PresenceSubscriptions(), w.PresenceSubscriptions(); !slices.Equal(got, []string{"carol"}) || len(got2) != 0 {
		t.Fatalf("PresenceSubscriptions after work unsubscribed: default %v, work %v", got, got2)
	}
}

// When the server ends one account (account.closed) and the client
// authenticates it again on the same connection, that account's
// subscriptions are made again, right after its auth; the other
// account's are left alone.
func TestPresenceSubscriptionsAreMadeAgainAfterAnAccountIsClosed(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t, func(fc *fakeConn, n int, a protocol.AuthArgs) {
		if fc.account == "work" {
			fc.okAs("bob", a.Device, "")
		} else {
			fc.okAs("alice", a.Device, "")
		}
	})
	c := newClient(t, s.srv.URL, client.WithToken(fakeToken("alice")), fastBackoff)
	ctx := ctxT(t)
	waitConnected(t, c)
	w, err := c.AddAccount(ctx, "work", client.WithToken(fakeToken("bob")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Socket().SubscribePresence(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Socket().SubscribePresence(ctx, "dave"); err != nil {
		t.Fatal(err)
	}
	// presence returns the auths and presence.subscribe commands sent, as
	// "account command userIds".
	presence := func() []string {
		s.mu.Lock()
		defer s.mu.Unlock()
		var out []string
		for _, f := range s.frames {
			switch f.Command {
			case protocol.CmdAuth:
				out = append(out, f.Account+" auth")
			case protocol.CmdPresenceSubscribe:
				var a protocol.PresenceSubscribeArgs
				json.Unmarshal(f.Data, &a)
				out = append(out, f.Account+" subscribe "+strings.Join(a.UserIDs, ","))
			}
		}
		return out
	}
	if got, want := presence(), []string{" auth", "work auth", " subscribe carol", "work subscribe dave"}; !slices.Equal(got, want) {
		t.Fatalf("commands %q, want %q", got, want)
	}

	s.mu.Lock()
	fc := &fakeConn{s: s, ws: s.conns[0]}
	s.mu.Unlock()
	fc.send(forAccount("work", eventFrame(0, protocol.EventAccountEnds, protocol.AccountClosedPayload{Account: "work", Reason: "token_expired"})))
	waitFor(t, "work's subscriptions made again", func() bool { return len(presence()) >= 6 })
	waitAccount(t, w)
	if got, want := presence(), []string{" auth", "work auth", " subscribe carol", "work subscribe dave", "work auth", "work subscribe dave"}; !slices.Equal(got, want) {
		t.Fatalf("commands %q, want %q", got, want)
	}
	if got := w.PresenceSubscriptions(); !slices.Equal(got, []string{"dave"}) {
		t.Fatalf("work's PresenceSubscriptions = %v", got)
	}
}
