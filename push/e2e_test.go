package push_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
	tidingshttp "github.com/tidings/tidings/http"
	"github.com/tidings/tidings/push"
	"github.com/tidings/tidings/push/pushtest"
	"github.com/tidings/tidings/realtime"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/token"
	"github.com/tidings/tidings/ws"
)

// publishers hands the store's events to each publisher in turn, as
// "tidings serve" does.
type publishers []tidings.EventPublisher

func (ps publishers) Publish(events ...*tidings.Event) {
	for _, p := range ps {
		p.Publish(events...)
	}
}

// stack is the server as "tidings serve" wires it: SQLite, the realtime
// node with its WebSocket transport, the REST API, and the push
// dispatcher fed beside the node and asking it who is online.
type stack struct {
	url  string
	app  *tidings.App
	node *realtime.Node
	disp *push.Dispatcher
	web  *pushtest.WebPushService
}

func startStack(t *testing.T, window time.Duration) *stack {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	s := &stack{web: pushtest.NewWebPushService(t)}
	db := sqlite.NewDB(filepath.Join(t.TempDir(), "tidings.db"))
	db.Logger, db.Synchronous = logger, "NORMAL"
	pushes := sqlite.NewPushService(db)
	s.node = realtime.NewNode()
	s.disp = &push.Dispatcher{Store: pushes, Presence: s.node, Window: window, Logger: logger,
		Providers: map[string]push.Provider{tidings.PushWebPush: &push.WebPush{Client: s.web.Server.Client()}}}
	db.Publisher = publishers{s.node, s.disp}
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	apps := sqlite.NewAppService(db)
	app, err := apps.CreateApp(context.Background(), "a", "")
	if err != nil {
		t.Fatal(err)
	}
	s.app = app
	users, convs, msgs := sqlite.NewUserService(db), sqlite.NewConversationService(db), sqlite.NewMessageService(db, 0)
	s.node.Apps, s.node.Users, s.node.Messages, s.node.Log, s.node.Logger = apps, users, msgs, sqlite.NewEventLog(db), logger
	if err := s.node.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.node.Close() })
	if err := s.disp.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.disp.Close() })
	wsh := &ws.Handler{Node: s.node, Logger: logger}
	t.Cleanup(wsh.Close)
	srv := tidingshttp.NewServer()
	srv.Addr, srv.Logger = "127.0.0.1:0", logger
	srv.Apps, srv.Users, srv.Conversations, srv.Messages, srv.Push = apps, users, convs, msgs, pushes
	srv.Realtime, srv.Poller = wsh, s.node
	if err := srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	s.url = srv.URL()
	for _, u := range []string{"alice", "bob"} {
		if _, err := users.CreateUser(tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: "a", Server: true}),
			&tidings.User{ID: u, DisplayName: map[string]string{"alice": "Alice", "bob": "Bob"}[u]}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// client returns an SDK client of the user, in manual mode (not
// connected until Connect).
func (s *stack) client(t *testing.T, user string) *client.Client {
	t.Helper()
	tok, _, err := token.Mint(s.app, user, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(s.url, client.WithToken(tok), client.WithDevice(user+"-laptop"), client.WithMode(client.ManualMode),
		client.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (s *stack) waitOnline(t *testing.T, user string, online bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.node.Online("a", user) != online {
		if time.Now().After(deadline) {
			t.Fatalf("%s online: %v after 30 s, want %v", user, !online, online)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *stack) waitMessages(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for s.disp.Stats().Messages < n {
		if time.Now().After(deadline) {
			t.Fatalf("the dispatcher saw %d messages after 30 s, want %d", s.disp.Stats().Messages, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func text(s string) tidings.NewMessage {
	return tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: s}}}
}

// TestPushEndToEnd: bob registers a Web Push subscription through the Go
// SDK; alice's messages reach it, encrypted for it and signed with the
// app's VAPID key, when bob has no connection, and not while he has one,
// nor in a conversation he muted; a burst is coalesced.
func TestPushEndToEnd(t *testing.T) {
	s := startStack(t, 2*time.Second)
	ctx := context.Background()
	alice, bob := s.client(t, "alice"), s.client(t, "bob")
	key, err := bob.VAPIDPublicKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.web.SetVAPIDKey(key)
	target, err := bob.RegisterPushTarget(ctx, s.web.Subscribe("bob-laptop"))
	if err != nil || target.Kind != tidings.PushWebPush || target.UserID != "bob" {
		t.Fatalf("register: %+v, %v", target, err)
	}
	if list, err := bob.ListPushTargets(ctx); err != nil || len(list) != 1 || list[0].ID != target.ID {
		t.Fatalf("list: %+v, %v", list, err)
	}
	for _, id := range []string{"lunch", "gossip"} {
		if _, err := alice.CreateConversation(ctx, tidings.NewConversation{ID: id, Participants: []tidings.NewParticipant{{UserID: "bob"}}}); err != nil {
			t.Fatal(err)
		}
	}

	// Offline: a push with the text and the badge.
	m, err := alice.SendMessage(ctx, "lunch", text("lunch at noon?"))
	if err != nil {
		t.Fatal(err)
	}
	got := s.web.Box.WaitFor(t, 1)
	if p := got[0].Payload; p["title"] != "Alice" || p["body"] != "lunch at noon?" || p["badge"] != 1.0 ||
		p["conversationId"] != "lunch" || p["messageId"] != m.ID || p["count"] != 1.0 {
		t.Fatalf("push %+v", got[0])
	}

	// Online (a WebSocket connection): none.
	if err := bob.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	s.waitOnline(t, "bob", true)
	if _, err := alice.SendMessage(ctx, "lunch", text("are you there?")); err != nil {
		t.Fatal(err)
	}
	s.waitMessages(t, 2)

	// Muted: none.
	if err := bob.MuteConversation(ctx, "gossip", true); err != nil {
		t.Fatal(err)
	}
	if st, err := bob.PushSettings(ctx); err != nil || len(st.MutedConversations) != 1 || !st.Enabled {
		t.Fatalf("settings %+v, %v", st, err)
	}
	if err := bob.Disconnect(); err != nil {
		t.Fatal(err)
	}
	s.waitOnline(t, "bob", false)
	if _, err := alice.SendMessage(ctx, "gossip", text("did you hear?")); err != nil {
		t.Fatal(err)
	}
	s.waitMessages(t, 3)

	// A burst of five: fewer pushes, the last with the newest message and
	// every unread message in its badge (the two of lunch not read, the
	// one of gossip, five more).
	var last *tidings.Message
	for i := range 5 {
		if last, err = alice.SendMessage(ctx, "lunch", text("burst "+string(rune('1'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for total < 5 {
		got = s.web.Box.WaitFor(t, len(got)+1)
		p := got[len(got)-1].Payload
		if p["conversationId"] != "lunch" {
			t.Fatalf("push %+v: a muted conversation, or a message sent while online", p)
		}
		total += int(p["count"].(float64))
	}
	pushes := got[1:]
	if len(pushes) >= 5 || total != 5 {
		t.Fatalf("%d pushes for a burst of 5: %+v", len(pushes), pushes)
	}
	if p := pushes[len(pushes)-1].Payload; p["messageId"] != last.ID || p["badge"] != 8.0 {
		t.Fatalf("last push %+v", p)
	}

	if st, err := bob.SetPushEnabled(ctx, false); err != nil || st.Enabled {
		t.Fatalf("pushes off: %+v, %v", st, err)
	}

	// Unregistered: none at all.
	if err := bob.DeletePushTarget(ctx, target.ID); err != nil {
		t.Fatal(err)
	}
	if list, err := bob.ListPushTargets(ctx); err != nil || len(list) != 0 {
		t.Fatalf("list after delete: %+v, %v", list, err)
	}
}
