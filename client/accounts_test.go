package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
	"github.com/tidings/tidings/protocol"
)

// textsOf returns the texts of the messages sent in conv that account
// received, and fails if another account got one of them.
func textsOf(t *testing.T, r *recorder, account, conv string) []string {
	t.Helper()
	var out []string
	for _, e := range r.all() {
		if m, ok := e.(*client.MessageSent); ok && m.ConversationID == conv {
			if m.Account != account {
				t.Fatalf("a message of %s came for account %q, want %q", conv, m.Account, account)
			}
			out = append(out, m.Message.Parts[0].Data)
		}
	}
	return out
}

func waitAccount(t *testing.T, a *client.Account) {
	t.Helper()
	if err := a.WaitConnected(ctxT(t)); err != nil {
		t.Fatalf("account %s not connected: %v", a.Name(), err)
	}
}

// Alice's personal account and Bob's work account on one connection: each
// gets its own updates, tagged with its name, and acts as its own user.
func TestTwoAccountsOnOneConnection(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob", "carol")
	personal := s.conv(t, "carol", "alice")
	work := s.conv(t, "carol", "bob")

	rec := newRecorder()
	var statuses statusLog
	c := newClient(t, s.URL(), client.WithToken(s.token(t, "alice", time.Hour)), client.WithDevice("laptop"),
		client.WithEventListener(rec.listen), client.WithStatusListener(statuses.listen))
	waitConnected(t, c)
	ctx := ctxT(t)
	w, err := c.AddAccount(ctx, "work", client.WithToken(s.token(t, "bob", time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	waitAccount(t, w)
	if w.Name() != "work" || w.UserID() != "bob" || w.Device() != "laptop" || w.TokenExpiry().IsZero() {
		t.Fatalf("account %q of %q on %q, expiry %v", w.Name(), w.UserID(), w.Device(), w.TokenExpiry())
	}
	names := func() (out []string) {
		for _, a := range c.Accounts() {
			out = append(out, a.Name())
		}
		return out
	}
	if got := names(); !slices.Equal(got, []string{"default", "work"}) || c.Account("work") != w {
		t.Fatalf("accounts %v", got)
	}
	if _, err := c.AddAccount(ctx, "work", client.WithToken(s.token(t, "carol", time.Hour))); !errors.Is(err, client.ErrAlreadyLoggedIn) {
		t.Fatalf("a second account named work: %v", err)
	}
	if _, err := c.AddAccount(ctx, "other", client.WithToken(s.token(t, "carol", time.Hour)), client.WithMode(client.ManualMode)); err == nil {
		t.Fatal("AddAccount took WithMode")
	}
	if _, err := c.AddAccount(ctx, "other", client.WithToken(s.token(t, "carol", time.Minute, time.Now().Add(-time.Hour)))); client.ErrorCode(err) != tidings.EUnauthenticated {
		t.Fatalf("AddAccount with an expired token: %v", err)
	}
	if _, err := c.AddAccount(ctx, "bad name!", client.WithToken(s.token(t, "carol", time.Hour))); err == nil {
		t.Fatal("AddAccount took a bad name")
	}
	if got := names(); !slices.Equal(got, []string{"default", "work"}) {
		t.Fatalf("accounts after failed additions %v", got)
	}

	s.send(t, "carol", personal, "for alice")
	s.send(t, "carol", work, "for bob")
	rec.waitUntil(t, "both messages", func([]client.Event) bool {
		return len(rec.texts(personal)) == 1 && len(rec.texts(work)) == 1
	})
	textsOf(t, rec, "default", personal)
	textsOf(t, rec, "work", work)

	// Each account acts as its user, over the socket and the REST API.
	if m, err := w.Socket().SendMessage(ctx, work, tidings.NewMessage{ClientID: "b1", Parts: textMessage("from bob").Parts}); err != nil || m.Sender.ID != "bob" {
		t.Fatalf("bob's socket send: %v, %+v", err, m)
	}
	if m, err := c.Socket().SendMessage(ctx, personal, tidings.NewMessage{ClientID: "a1", Parts: textMessage("from alice").Parts}); err != nil || m.Sender.ID != "alice" {
		t.Fatalf("alice's socket send: %v, %+v", err, m)
	}
	if m, err := w.SendMessage(ctx, work, textMessage("bob again")); err != nil || m.Sender.ID != "bob" {
		t.Fatalf("bob's REST send: %v, %+v", err, m)
	}
	if _, err := w.Socket().SendMessage(ctx, personal, textMessage("bob is not in it")); client.ErrorCode(err) != tidings.ENotFound {
		t.Fatalf("bob sending to alice's conversation: %v", err)
	}
	if me, err := w.Me(ctx); err != nil || me.ID != "bob" {
		t.Fatalf("bob's Me: %v, %+v", err, me)
	}
	if err := w.Socket().StartTyping(ctx, work); err != nil {
		t.Fatal(err)
	}
	if online, _, err := w.Socket().Presence(ctx, work); err != nil || !slices.Contains(online, "bob") {
		t.Fatalf("presence in bob's conversation: %v, %v", err, online)
	}
	rec.waitUntil(t, "the echoes", func([]client.Event) bool {
		return len(rec.texts(personal)) == 2 && len(rec.texts(work)) == 3
	})
	if got := textsOf(t, rec, "work", work); !slices.Equal(got, []string{"for bob", "from bob", "bob again"}) {
		t.Fatalf("bob's account got %v", got)
	}
	if got := textsOf(t, rec, "default", personal); !slices.Equal(got, []string{"for alice", "from alice"}) {
		t.Fatalf("alice's account got %v", got)
	}
	s.send(t, "carol", work, "read this, bob")
	rec.waitTexts(t, work, 4)
	if st, err := w.Socket().MarkRead(ctx, work, 0); err != nil || st.UserID != "bob" || st.ReadSeq != 4 {
		t.Fatalf("bob's read mark: %v, %+v", err, st)
	}
	read := waitEvent[*client.MessageRead](t, rec, func(e *client.MessageRead) bool { return e.ProfileID == "bob" })
	if read.Account != "work" {
		t.Fatalf("bob's read mark came for account %q", read.Account)
	}
	if statuses.count(client.StatusConnected) != 1 {
		t.Fatalf("adding an account reconnected: %v", statuses.all())
	}
}

// Cuts of the network in the middle of both accounts' streams: after each,
// both accounts are authenticated again and resume from their own refs,
// with nothing lost and nothing twice; and the server's cursors, moved by
// the coalesced acknowledgements, are each account's own.
func TestAccountsResumeFromTheirOwnCursors(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob", "carol")
	personal := s.conv(t, "carol", "alice")
	work := s.conv(t, "carol", "bob")
	p := newProxy(t, s.Addr())

	rec := newRecorder()
	var statuses statusLog
	c := newClient(t, p.URL(), client.WithToken(s.token(t, "alice", time.Hour)), client.WithDevice("phone"), fastBackoff,
		client.WithEventListener(rec.listen), client.WithStatusListener(statuses.listen))
	w, err := c.AddAccount(ctxT(t), "work", client.WithToken(s.token(t, "bob", time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	waitAccount(t, w)
	waitAccount(t, c.Account(client.DefaultAccount))

	carol := newClient(t, s.URL(), client.WithToken(s.token(t, "carol", time.Hour)), client.WithMode(client.ManualMode))
	const n, cuts = 120, 4
	done1 := sender(t, carol, personal, n)
	done2 := sender(t, carol, work, n)
	for i := 1; i <= cuts; i++ {
		rec.waitTexts(t, work, i*n/(cuts+1))
		waitFor(t, fmt.Sprintf("connection %d", i), func() bool { return statuses.count(client.StatusConnected) >= i })
		p.Cut()
	}
	rec.waitUntil(t, "every message", func([]client.Event) bool {
		return len(rec.texts(personal)) >= n && len(rec.texts(work)) >= n
	})
	done1()
	done2()
	checkSequence(t, textsOf(t, rec, "default", personal), n)
	checkSequence(t, textsOf(t, rec, "work", work), n)
	// The last cut may come once every message is in: wait for the
	// connection that follows it, on which Close sends the
	// acknowledgements waiting (closed while offline, a client has none
	// to send them on).
	waitFor(t, "the connection after the last cut", func() bool { return statuses.count(client.StatusConnected) > cuts })
	waitAccount(t, w)
	waitAccount(t, c.Account(client.DefaultAccount))
	if statuses.count(client.StatusReconnecting) < cuts {
		t.Errorf("status changes %v", statuses.all())
	}
	waitFor(t, "the last refs", func() bool {
		return c.LastRef() != "" && w.LastRef() != "" && c.LastRef() != w.LastRef()
	})
	c.Close()

	// A new client, on the same devices: the server resumes each account
	// after what it processed.
	rec2 := newRecorder()
	c2 := newClient(t, s.URL(), client.WithToken(s.token(t, "alice", time.Hour)), client.WithDevice("phone"),
		client.WithEventListener(rec2.listen))
	w2, err := c2.AddAccount(ctxT(t), "work", client.WithToken(s.token(t, "bob", time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	waitAccount(t, w2)
	waitAccount(t, c2.Account(client.DefaultAccount))
	s.send(t, "carol", personal, "new for alice")
	s.send(t, "carol", work, "new for bob")
	rec2.waitUntil(t, "the new messages", func([]client.Event) bool {
		return len(rec2.texts(personal)) >= 1 && len(rec2.texts(work)) >= 1
	})
	if a, b := textsOf(t, rec2, "default", personal), textsOf(t, rec2, "work", work); !slices.Equal(a, []string{"new for alice"}) ||
		!slices.Equal(b, []string{"new for bob"}) {
		t.Fatalf("after a restart alice got %v, bob %v: want only the new messages", a, b)
	}
}

// Logging one account out leaves the other connected and receiving;
// logging the last one out ends the connection for good: the server's
// close (1000) is not taken for a network failure.
func TestLogoutOfOneAccountLeavesTheOther(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob", "carol")
	personal := s.conv(t, "carol", "alice")
	work := s.conv(t, "carol", "bob")

	rec := newRecorder()
	var statuses statusLog
	c := newClient(t, s.URL(), client.WithToken(s.token(t, "alice", time.Hour)), fastBackoff,
		client.WithEventListener(rec.listen), client.WithStatusListener(statuses.listen))
	ctx := ctxT(t)
	w, err := c.AddAccount(ctx, "work", client.WithToken(s.token(t, "bob", time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	waitAccount(t, w)
	waitAccount(t, c.Account(client.DefaultAccount))

	// Alice (the default account) leaves; Bob stays.
	if err := c.Logout(); err != nil {
		t.Fatal(err)
	}
	if c.UserID() != "" || c.Account(client.DefaultAccount) != nil || len(c.Accounts()) != 1 || c.Status() != client.StatusConnected {
		t.Fatalf("after alice's logout: user %q, %d accounts, %s", c.UserID(), len(c.Accounts()), c.Status())
	}
	if _, err := c.Me(ctx); !errors.Is(err, client.ErrNotLoggedIn) {
		t.Fatalf("the default account's REST after its logout: %v", err)
	}
	if err := c.Socket().StartTyping(ctx, personal); !errors.Is(err, client.ErrNotLoggedIn) {
		t.Fatalf("the default account's socket after its logout: %v", err)
	}
	s.send(t, "carol", personal, "alice is gone")
	s.send(t, "carol", work, "bob is here")
	rec.waitTexts(t, work, 1)
	if got := rec.texts(personal); len(got) > 0 {
		t.Fatalf("a logged-out account got %v", got)
	}
	if m, err := w.Socket().SendMessage(ctx, work, textMessage("still here")); err != nil || m.Sender.ID != "bob" {
		t.Fatalf("bob's send after alice's logout: %v", err)
	}
	if statuses.count(client.StatusConnected) != 1 {
		t.Fatalf("a logout reconnected: %v", statuses.all())
	}

	// Bob, the last account, leaves: the server closes the connection.
	if err := w.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Status() != client.StatusDisconnected || len(c.Accounts()) != 0 {
		t.Fatalf("after the last logout: %s, %d accounts", c.Status(), len(c.Accounts()))
	}
	if err := w.WaitConnected(ctx); !errors.Is(err, client.ErrNotLoggedIn) {
		t.Fatalf("WaitConnected of a logged-out account: %v", err)
	}
	if _, err := w.Me(ctx); !errors.Is(err, client.ErrNotLoggedIn) {
		t.Fatalf("REST of a logged-out account: %v", err)
	}
	if err := w.Logout(ctx); err != nil {
		t.Fatalf("a second logout: %v", err)
	}
	// A ping on a new connection of the server shows that the client did
	// not come back: a reconnection would have been seen by now.
	if err := c.WaitConnected(ctx); !errors.Is(err, client.ErrNotLoggedIn) {
		t.Fatalf("WaitConnected after the last logout: %v", err)
	}
	for _, ch := range statuses.all()[1:] {
		if ch.Status == client.StatusReconnecting || ch.Status == client.StatusConnecting {
			t.Fatalf("the client reconnected after the last logout: %v", statuses.all())
		}
	}

	// Logging in again starts afresh.
	if _, err := c.Login(ctx, s.token(t, "alice", time.Hour)); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, c)
}

// Acknowledgements are coalesced: one reply per account every 250ms (the
// client's clock) or every 64 updates; the last one is sent before
// Disconnect closes the connection.
func TestAcknowledgementsAreCoalesced(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t, func(fc *fakeConn, _ int, a protocol.AuthArgs) {
		fc.ok("0")
		var frames [][]byte
		for ref := int64(1); ref <= 200; ref++ {
			frames = append(frames, messageFrame(ref, fmt.Sprintf("m%03d", ref-1)))
		}
		fc.send(frames[:100]...)
		fc.send(frames[100:]...)
	})
	clock := newFakeClock()
	c := newClient(t, s.srv.URL, client.WithToken(fakeToken("alice")), client.WithMode(client.ManualMode), client.WithClock(clock))
	rec := newRecorder()
	c.AddEventListener(rec.listen)
	if err := c.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	checkSequence(t, rec.waitTexts(t, "conv", 200), 200)
	refs := func() (out []string) {
		for _, f := range s.replyFrames() {
			out = append(out, f.Ref)
		}
		return out
	}
	s.waitFor("three replies", func(_ []protocol.AuthArgs, replies []string) bool { return len(replies) >= 3 })
	waitFor(t, "the last update processed", func() bool { return c.LastRef() == "200" })
	if got := refs(); !slices.Equal(got, []string{"64", "128", "192"}) {
		t.Fatalf("200 updates were acknowledged with replies %v, want one every 64", got)
	}
	// The rest, 250ms later.
	clock.Advance(250 * time.Millisecond)
	s.waitFor("the reply to 200", func(_ []protocol.AuthArgs, replies []string) bool { return slices.Contains(replies, "200") })

	// Updates that trickle in, one a message (the queue empties after
	// each): one reply for them all, 250ms after the first.
	s.mu.Lock()
	fc := &fakeConn{s: s, ws: s.conns[0]}
	s.mu.Unlock()
	for ref := int64(201); ref <= 240; ref++ {
		fc.send(messageFrame(ref, fmt.Sprintf("m%03d", ref-1)))
		waitFor(t, "the update processed", func() bool { return c.LastRef() == fmt.Sprint(ref) })
	}
	if got := refs(); len(got) != 4 {
		t.Fatalf("replies %v before 250ms passed", got)
	}
	clock.Advance(250 * time.Millisecond)
	s.waitFor("the reply to 240", func(_ []protocol.AuthArgs, replies []string) bool { return slices.Contains(replies, "240") })

	// A few more, then Disconnect at once: their reply goes first.
	fc.send(messageFrame(241, "m240"), messageFrame(242, "m241"))
	waitFor(t, "the last update processed", func() bool { return c.LastRef() == "242" })
	if err := c.Disconnect(); err != nil {
		t.Fatal(err)
	}
	s.waitFor("the reply to 242", func(_ []protocol.AuthArgs, replies []string) bool { return slices.Contains(replies, "242") })
	if got := refs(); !slices.Equal(got, []string{"64", "128", "192", "200", "240", "242"}) {
		t.Fatalf("replies %v", got)
	}
	for _, f := range s.replyFrames() {
		if f.Account != "" {
			t.Errorf("a reply of the default account names %q", f.Account)
		}
	}
}

// Two accounts on the fake server, each with its cursor store: replies
// name their account; after the server drops the connection both are
// authenticated again, in order, each resuming after its own last ref;
// account.closed for one account re-authenticates that one on the same
// connection and leaves the other alone, and so does its giving up when
// its token is refused.
func TestAccountsOnTheFakeServer(t *testing.T) {
	t.Parallel()
	var refuseWork atomic.Bool
	s := newFakeServer(t, func(fc *fakeConn, n int, a protocol.AuthArgs) {
		after, _ := protocol.ParseRef(a.ResumeAfter)
		switch {
		case fc.account == "work" && refuseWork.Load():
			fc.fail(tidings.EUnauthenticated, "")
			return
		}
		switch fc.account {
		case "":
			fc.okAs("alice", a.Device, fmt.Sprint(after))
			if after < 2 {
				fc.send(messageFrame(1, "m000"), messageFrame(2, "m001"))
			}
		case "work":
			fc.okAs("bob", a.Device, fmt.Sprint(after))
			if after < 7 {
				fc.send(forAccount("work", messageFrame(5, "m000")), forAccount("work", messageFrame(7, "m001")))
			}
		}
	})
	// Each account has its cursor store; bob's says he processed ref 5.
	aliceStore := &memCursor{}
	bobStore := &memCursor{cur: client.Cursor{AppID: testApp, UserID: "bob", Device: "desk", Ref: "5"}}
	rec := newRecorder()
	var statuses statusLog
	c := newClient(t, s.srv.URL, client.WithToken(fakeToken("alice")), client.WithCursorStore(aliceStore), fastBackoff,
		client.WithEventListener(rec.listen), client.WithStatusListener(statuses.listen))
	w, err := c.AddAccount(ctxT(t), "work", client.WithToken(fakeToken("bob")), client.WithDevice("desk"), client.WithCursorStore(bobStore))
	if err != nil {
		t.Fatal(err)
	}
	waitAccount(t, w)
	waitAccount(t, c.Account(client.DefaultAccount))
	rec.waitUntil(t, "three messages", func(evs []client.Event) bool { return len(evs) >= 3 })
	waitFor(t, "the last refs", func() bool { return c.LastRef() == "2" && w.LastRef() == "7" })

	// The server drops the connection: both accounts come back, each
	// resuming after its own last ref.
	s.mu.Lock()
	s.conns[0].WriteClose(protocol.CloseGoingAway, nil)
	s.mu.Unlock()
	s.waitFor("two more auths", func(auths []protocol.AuthArgs, _ []string) bool { return len(auths) >= 4 })
	// (Timed out once in CI under load, 2026-12-04: the first "connected"
	// came before the listener, added after New; it is an option now.)
	defer func() {
		if t.Failed() {
			t.Logf("status changes: %v", statuses.all())
		}
	}()
	waitFor(t, "the reconnection", func() bool { return statuses.count(client.StatusConnected) == 2 })
	s.mu.Lock()
	var auths []string
	for _, f := range s.frames {
		if f.Command == protocol.CmdAuth {
			var a protocol.AuthArgs
			json.Unmarshal(f.Data, &a)
			auths = append(auths, fmt.Sprintf("%s/%s/%s", f.Account, a.Device, a.ResumeAfter))
		}
	}
	conns := len(s.conns)
	s.mu.Unlock()
	// The first connection authenticated alice, then bob when added; the
	// second one both, in the order they were added.
	if want := []string{"/default/", "work/desk/5", "/default/2", "work/desk/7"}; !slices.Equal(auths, want) || conns != 2 {
		t.Fatalf("auths (account/device/resumeAfter) %v on %d connections, want %v on 2", auths, conns, want)
	}
	// Nothing came twice.
	var mine, bobs []string
	for _, e := range rec.all() {
		if m, ok := e.(*client.MessageSent); ok {
			if m.Account == "work" {
				bobs = append(bobs, m.Ref)
			} else {
				mine = append(mine, m.Ref)
			}
		}
	}
	if !slices.Equal(mine, []string{"1", "2"}) || !slices.Equal(bobs, []string{"7"}) {
		t.Fatalf("alice's account got refs %v, bob's %v", mine, bobs)
	}
	// Replies name their account.
	s.waitFor("the replies", func(_ []protocol.AuthArgs, replies []string) bool {
		return slices.Contains(replies, "2") && slices.Contains(replies, "7")
	})
	for _, f := range s.replyFrames() {
		if (f.Ref == "2" && f.Account != "") || (f.Ref == "7" && f.Account != "work") {
			t.Fatalf("reply to %s for account %q", f.Ref, f.Account)
		}
	}
	if aliceStore.ref() != "2" || bobStore.ref() != "7" {
		t.Fatalf("cursor stores: alice's at %q, bob's at %q", aliceStore.ref(), bobStore.ref())
	}

	// The server ends bob's account: the client authenticates it again on
	// the same connection, and alice's account goes on.
	s.mu.Lock()
	fc := &fakeConn{s: s, ws: s.conns[1]}
	s.mu.Unlock()
	closed := forAccount("work", eventFrame(0, protocol.EventAccountEnds, protocol.AccountClosedPayload{Account: "work", Reason: "token_expired"}))
	fc.send(closed)
	ac := waitEvent[*client.AccountClosed](t, rec, nil)
	if ac.Account != "work" || ac.Info().Account != "work" || ac.Reason != "token_expired" {
		t.Fatalf("account.closed %+v", ac)
	}
	s.waitFor("bob's new auth", func(auths []protocol.AuthArgs, _ []string) bool { return len(auths) >= 5 })
	waitAccount(t, w)
	fc.send(messageFrame(3, "m002"))
	waitFor(t, "alice's next message", func() bool { return c.LastRef() == "3" })
	s.mu.Lock()
	conns = len(s.conns)
	s.mu.Unlock()
	if conns != 2 || statuses.count(client.StatusConnected) != 2 {
		t.Fatalf("account.closed of one account reconnected: %d connections, %v", conns, statuses.all())
	}

	// Its token is refused now: bob's account gives up, alice's goes on.
	refuseWork.Store(true)
	fc.send(closed)
	waitFor(t, "bob's account to end", func() bool { return !w.Connected() })
	if err := w.WaitConnected(ctxT(t)); !errors.Is(err, client.ErrNotConnected) || client.ErrorCode(err) != tidings.EUnauthenticated {
		t.Fatalf("bob's WaitConnected after his token was refused: %v", err)
	}
	if err := w.Socket().StartTyping(ctxT(t), "conv"); !errors.Is(err, client.ErrNotConnected) {
		t.Fatalf("bob's socket command: %v", err)
	}
	fc.send(messageFrame(4, "m003"))
	waitFor(t, "alice's next message", func() bool { return c.LastRef() == "4" })
	if c.Status() != client.StatusConnected || statuses.count(client.StatusConnected) != 2 {
		t.Fatalf("bob's account giving up touched the connection: %s, %v", c.Status(), statuses.all())
	}
}

// Each account's token is refreshed on its own, on the open connection:
// Bob's short-lived work token is replaced before it expires, while
// Alice's stays; neither reconnects.
func TestAccountTokensAreRefreshedOnTheirOwn(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob", "carol")
	work := s.conv(t, "carol", "bob")
	clock := newFakeClock()
	var mu sync.Mutex
	var minted []time.Time
	provider := func(ctx context.Context) (string, error) {
		now := clock.Now()
		mu.Lock()
		minted = append(minted, now.Add(10*time.Minute).Truncate(time.Second))
		mu.Unlock()
		return s.token(t, "bob", 10*time.Minute, now), nil
	}
	calls := func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(minted)
	}
	rec := newRecorder()
	var statuses statusLog
	c := newClient(t, s.URL(), client.WithToken(s.token(t, "alice", time.Hour, clock.Now())), client.WithClock(clock),
		client.WithRefreshMargin(time.Minute), fastBackoff,
		client.WithEventListener(rec.listen), client.WithStatusListener(statuses.listen))
	w, err := c.AddAccount(ctxT(t), "work", client.WithTokenProvider(provider))
	if err != nil {
		t.Fatal(err)
	}
	waitAccount(t, w)
	waitConnected(t, c)
	aliceExp := c.TokenExpiry()
	if first := calls(); len(first) != 1 || !w.TokenExpiry().Equal(first[0]) {
		t.Fatalf("provider calls %v, bob's token expiry %v", first, w.TokenExpiry())
	}

	clock.Advance(9*time.Minute + 30*time.Second)
	waitFor(t, "bob's token refresh", func() bool {
		cs := calls()
		return len(cs) == 2 && w.TokenExpiry().Equal(cs[1])
	})
	if !c.TokenExpiry().Equal(aliceExp) {
		t.Fatalf("alice's token expiry moved from %v to %v", aliceExp, c.TokenExpiry())
	}
	// Past the first token's expiry, bob's account still receives.
	s.offset.Store(int64(11 * time.Minute))
	s.send(t, "carol", work, "m000")
	rec.waitTexts(t, work, 1)
	if statuses.count(client.StatusConnected) != 1 || !w.Connected() {
		t.Fatalf("the refresh reconnected: %v", statuses.all())
	}
}
