package push_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/push"
	"github.com/tidings/tidings/push/pushtest"
	"github.com/tidings/tidings/sqlite"
)

// presence is a push.Presence the test sets.
type presence struct {
	mu     sync.Mutex
	online map[string]bool
}

func (p *presence) Online(_, user string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.online[user]
}

func (p *presence) set(user string, on bool) {
	p.mu.Lock()
	p.online[user] = on
	p.mu.Unlock()
}

// world is a SQLite store whose events go to a dispatcher that pushes to
// local Web Push, APNs and FCM services; the app "a" has users alice,
// bob and carol, and alice's conversation "c" with bob and carol.
type world struct {
	db       *sqlite.DB
	push     *sqlite.PushService
	convs    *sqlite.ConversationService
	messages *sqlite.MessageService
	disp     *push.Dispatcher
	fan      *fanout // the store's publisher: disp, unless a test says
	presence *presence
	web      *pushtest.WebPushService
	apns     *apnsService
	fcm      *fcmService
}

func newWorld(t testing.TB, window time.Duration) *world {
	t.Helper()
	w := &world{presence: &presence{online: map[string]bool{}},
		web: pushtest.NewWebPushService(t), apns: newAPNsService(t), fcm: newFCMService(t)}
	w.db = sqlite.NewDB(filepath.Join(t.TempDir(), "tidings.db"))
	w.db.Logger = slog.New(slog.DiscardHandler)
	w.push = sqlite.NewPushService(w.db)
	key, err := push.LoadAPNsKey(w.apns.p8)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := push.LoadServiceAccount(w.fcm.creds)
	if err != nil {
		t.Fatal(err)
	}
	sa.Client = w.fcm.srv.Client()
	w.disp = &push.Dispatcher{Store: w.push, Presence: w.presence, Window: window, Logger: slog.New(slog.DiscardHandler),
		Providers: map[string]push.Provider{
			tidings.PushWebPush: &push.WebPush{Client: w.web.Server.Client()},
			tidings.PushAPNs: &push.APNs{TeamID: w.apns.teamID, KeyID: w.apns.keyID, Key: key, Topic: w.apns.topic,
				BaseURL: w.apns.srv.URL, Client: w.apns.srv.Client()},
			tidings.PushFCM: &push.FCM{ProjectID: sa.ProjectID, Tokens: sa, BaseURL: w.fcm.srv.URL, Client: w.fcm.srv.Client()},
		}}
	w.fan = &fanout{to: []tidings.EventPublisher{w.disp}}
	w.db.Publisher = w.fan
	if err := w.db.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.db.Close() })
	if err := w.disp.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.disp.Close() })
	ctx := context.Background()
	if _, err := sqlite.NewAppService(w.db).CreateApp(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	users := sqlite.NewUserService(w.db)
	for _, u := range []string{"alice", "bob", "carol"} {
		if _, err := users.CreateUser(as(""), &tidings.User{ID: u, DisplayName: map[string]string{"alice": "Alice", "bob": "Bob", "carol": "Carol"}[u]}); err != nil {
			t.Fatal(err)
		}
	}
	w.convs = sqlite.NewConversationService(w.db)
	w.messages = sqlite.NewMessageService(w.db, 0)
	if _, err := w.convs.CreateConversation(as("alice"), tidings.NewConversation{ID: "c",
		Participants: []tidings.NewParticipant{{UserID: "bob"}, {UserID: "carol"}}}); err != nil {
		t.Fatal(err)
	}
	pub, err := w.push.VAPIDPublicKey(as("alice"))
	if err != nil {
		t.Fatal(err)
	}
	w.web.SetVAPIDKey(pub)
	return w
}

// as is the context of a user of app "a" ("": its server).
func as(user string) context.Context {
	return tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: "a", UserID: user, Server: user == ""})
}

func (w *world) register(t testing.TB, user string, nt tidings.NewPushTarget) *tidings.PushTarget {
	t.Helper()
	pt, err := w.push.RegisterPushTarget(as(user), nt)
	if err != nil {
		t.Fatal(err)
	}
	return pt
}

func (w *world) send(t testing.TB, from, conv, text, alert string) *tidings.Message {
	t.Helper()
	m, _, err := w.messages.SendMessage(as(from), conv, tidings.NewMessage{Alert: alert, Parts: []tidings.Part{{Type: "text/plain", Data: text}}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// waitStats waits until the dispatcher's counters satisfy ok.
func (w *world) waitStats(t *testing.T, what string, ok func(push.Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok(w.disp.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: stats %+v", what, w.disp.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPushGoesToEveryKindOfTargetOfAnOfflineParticipant(t *testing.T) {
	w := newWorld(t, 50*time.Millisecond)
	w.register(t, "bob", w.web.Subscribe("bob-laptop"))
	w.register(t, "bob", tidings.NewPushTarget{Kind: tidings.PushAPNs, Token: "bob-iphone"})
	w.register(t, "bob", tidings.NewPushTarget{Kind: tidings.PushFCM, Token: "bob-pixel"})
	w.register(t, "alice", w.web.Subscribe("alice-laptop"))
	m := w.send(t, "alice", "c", "lunch at noon?", "")

	web := w.web.Box.WaitFor(t, 1)
	p := web[0].Payload
	if web[0].Target != "bob-laptop" || p["title"] != "Alice" || p["body"] != "lunch at noon?" || p["badge"] != 1.0 ||
		p["conversationId"] != "c" || p["messageId"] != m.ID || p["seq"] != float64(m.Seq) || p["count"] != 1.0 || p["appId"] != "a" {
		t.Fatalf("web push %+v", web[0])
	}
	ap := w.apns.box.WaitFor(t, 1)[0]
	aps := ap.Payload["aps"].(map[string]any)
	alert := aps["alert"].(map[string]any)
	if ap.Target != "bob-iphone" || alert["title"] != "Alice" || alert["body"] != "lunch at noon?" || aps["badge"] != 1.0 ||
		aps["thread-id"] != "c" || ap.Payload["conversationId"] != "c" || ap.Payload["messageId"] != m.ID {
		t.Fatalf("APNs push %+v", ap)
	}
	fc := w.fcm.box.WaitFor(t, 1)[0]
	n := fc.Payload["notification"].(map[string]any)
	data := fc.Payload["data"].(map[string]any)
	if fc.Target != "bob-pixel" || n["title"] != "Alice" || n["body"] != "lunch at noon?" || data["conversationId"] != "c" ||
		data["messageId"] != m.ID || data["badge"] != "1" {
		t.Fatalf("FCM push %+v", fc)
	}

	// A second message in another conversation: the badge counts both;
	// the message's own alert is the text; the sender, alice, got none.
	if _, err := w.convs.CreateConversation(as("bob"), tidings.NewConversation{ID: "d",
		Participants: []tidings.NewParticipant{{UserID: "alice"}}}); err != nil {
		t.Fatal(err)
	}
	w.send(t, "alice", "d", "secret", "You have a new message")
	web = w.web.Box.WaitFor(t, 2)
	if p := web[1].Payload; web[1].Target != "bob-laptop" || p["body"] != "You have a new message" || p["badge"] != 2.0 || p["conversationId"] != "d" {
		t.Fatalf("second web push %+v", web[1])
	}
	// Bob answers: alice gets hers.
	w.send(t, "bob", "d", "ok", "")
	web = w.web.Box.WaitFor(t, 3)
	if p := web[2].Payload; web[2].Target != "alice-laptop" || p["title"] != "Bob" || p["body"] != "ok" {
		t.Fatalf("push to alice %+v", web[2])
	}
	if s := w.disp.Stats(); s.Failed != 0 || s.Removed != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestExpiredTargetsAreRemoved(t *testing.T) {
	w := newWorld(t, 50*time.Millisecond)
	w.register(t, "bob", w.web.Subscribe("gone-laptop"))
	w.register(t, "bob", tidings.NewPushTarget{Kind: tidings.PushAPNs, Token: "gone-iphone"})
	w.register(t, "bob", tidings.NewPushTarget{Kind: tidings.PushAPNs, Token: "bad-ipad"})
	w.register(t, "bob", tidings.NewPushTarget{Kind: tidings.PushFCM, Token: "gone-pixel"})
	kept := w.register(t, "bob", w.web.Subscribe("bob-desktop"))
	w.send(t, "alice", "c", "hello", "")
	w.web.Box.WaitFor(t, 1)
	w.waitStats(t, "the gone targets removed", func(s push.Stats) bool { return s.Removed == 4 })
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := w.push.ListPushTargets(as("bob"))
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 1 && list[0].ID == kept.ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's targets: %+v", list)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNoPushWhenOnlineMutedOffOrRead(t *testing.T) {
	w := newWorld(t, 50*time.Millisecond)
	w.register(t, "bob", w.web.Subscribe("bob-laptop"))

	// Online: none. Offline again, the next message is pushed alone.
	w.presence.set("bob", true)
	w.send(t, "alice", "c", "one", "")
	w.waitStats(t, "the first message", func(s push.Stats) bool { return s.Messages == 1 })
	w.presence.set("bob", false)
	m := w.send(t, "alice", "c", "two", "")
	got := w.web.Box.WaitFor(t, 1)
	if p := got[0].Payload; p["messageId"] != m.ID || p["count"] != 1.0 || p["badge"] != 2.0 {
		t.Fatalf("push %+v, want the second message alone", got[0])
	}

	// Muted: none; unmuted: pushed.
	if err := w.push.MuteConversation(as("bob"), "c", true); err != nil {
		t.Fatal(err)
	}
	w.send(t, "alice", "c", "three", "")
	w.waitStats(t, "the muted message", func(s push.Stats) bool { return s.Messages == 3 })
	if err := w.push.MuteConversation(as("bob"), "c", false); err != nil {
		t.Fatal(err)
	}
	// Pushes off: none.
	off, on := false, true
	if _, err := w.push.UpdatePushSettings(as("bob"), tidings.PushSettingsUpdate{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	w.send(t, "alice", "c", "four", "")
	w.waitStats(t, "the message with pushes off", func(s push.Stats) bool { return s.Messages == 4 })
	if _, err := w.push.UpdatePushSettings(as("bob"), tidings.PushSettingsUpdate{Enabled: &on}); err != nil {
		t.Fatal(err)
	}
	m = w.send(t, "alice", "c", "five", "")
	got = w.web.Box.WaitFor(t, 2)
	if p := got[1].Payload; p["messageId"] != m.ID || p["count"] != 1.0 || p["badge"] != 5.0 {
		t.Fatalf("push %+v, want the fifth message alone", got[1])
	}
	if s := w.disp.Stats(); s.Pushes != 2 {
		t.Fatalf("stats %+v, want 2 pushes", s)
	}
}

func TestBurstIsCoalesced(t *testing.T) {
	w := newWorld(t, 3*time.Second)
	w.register(t, "bob", w.web.Subscribe("bob-laptop"))
	var last *tidings.Message
	for i := range 5 {
		last = w.send(t, "alice", "c", "message "+string(rune('1'+i)), "")
	}
	// However slow the machine, five messages sent one after the other
	// make fewer pushes than messages, whose counts add up to five.
	total := 0
	var got []received
	for total < 5 {
		got = w.web.Box.WaitFor(t, len(got)+1)
		total += int(got[len(got)-1].Payload["count"].(float64))
	}
	if len(got) >= 5 || total != 5 {
		t.Fatalf("%d pushes for 5 messages: %+v", len(got), got)
	}
	p := got[len(got)-1].Payload
	if p["messageId"] != last.ID || p["badge"] != 5.0 {
		t.Fatalf("last push %+v", p)
	}
	if len(got) == 1 && p["body"] != "5 new messages" {
		t.Fatalf("body %q", p["body"])
	}
}

func TestAlertTemplates(t *testing.T) {
	cfg := &tidings.PushConfig{AlertTemplate: "{sender} said {text}", BurstTemplate: "{count} from {sender}"}
	m := &tidings.Message{Sender: tidings.Profile{DisplayName: "Alice"}, Parts: []tidings.Part{{Type: "application/x-e2ee", Data: "zzz"}, {Type: "image/png", Name: "cat.png", FileID: "f"}}}
	if got := push.Alert(cfg, m, 1); got != "Alice said cat.png" {
		t.Fatalf("alert %q", got)
	}
	if got := push.Alert(cfg, m, 3); got != "3 from Alice" {
		t.Fatalf("burst %q", got)
	}
	m.Alert = "New photo"
	if got := push.Alert(cfg, m, 1); got != "New photo" {
		t.Fatalf("own alert %q", got)
	}
}

func TestWebPushRefusesPrivateAddresses(t *testing.T) {
	w := newWorld(t, time.Millisecond)
	sub := w.web.Subscribe("bob-laptop")
	target := w.register(t, "bob", sub)
	cfg, err := w.push.AppPushConfig(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	// The default client: the local service, on 127.0.0.1, is refused.
	err = (&push.WebPush{}).Send(context.Background(), cfg, target, &push.Notification{Body: "hi"})
	if err == nil || !strings.Contains(err.Error(), "not a public address") {
		t.Fatalf("sent to 127.0.0.1: %v", err)
	}
	if got := w.web.Box.All(); len(got) != 0 {
		t.Fatalf("pushes %+v", got)
	}
}

// The SQLite store tells the dispatcher which apps have push targets, so
// that the messages of an app without any cost no query: a target
// registered still gets the very next message, and one removed, none.
func TestTargetRegisteredGetsTheNextMessage(t *testing.T) {
	w := newWorld(t, 50*time.Millisecond)
	var _ push.TargetIndex = w.push
	if w.push.HasPushTargets("a") {
		t.Fatal("app a has push targets before any was registered")
	}
	w.send(t, "alice", "c", "nobody has a target", "")
	// Looked at as it was published, before the send returned: an app
	// without push targets does not wake the dispatcher's goroutine.
	if s := w.disp.Stats(); s.Messages != 1 || s.Pushes != 0 {
		t.Fatalf("after a message of an app without push targets: %+v, want it looked at, no push", s)
	}

	pt := w.register(t, "bob", w.web.Subscribe("bob-laptop"))
	w.send(t, "alice", "c", "now bob has one", "")
	if web := w.web.Box.WaitFor(t, 1); web[0].Target != "bob-laptop" || web[0].Payload["body"] != "now bob has one" {
		t.Fatalf("web push %+v", web[0])
	}

	if err := w.push.DeletePushTarget(as("bob"), pt.ID); err != nil {
		t.Fatal(err)
	}
	if w.push.HasPushTargets("a") {
		t.Fatal("app a has push targets after its last one was deleted")
	}
	w.send(t, "alice", "c", "bob has none again", "")
	w.waitStats(t, "the third message", func(s push.Stats) bool { return s.Messages == 3 })
	if s := w.disp.Stats(); s.Pushes != 1 {
		t.Fatalf("pushes after the target was deleted: %+v", s)
	}
}
