package realtime

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/token"
)

// countingLog is the store's EventLog, counting the reads of users'
// streams, and running hook (once) when a session reads its
// conversations.
type countingLog struct {
	*sqlite.EventLog
	streams atomic.Int64
	both    atomic.Int64 // UserConversationsAndPresence calls
	hook    func()
	once    sync.Once
}

func (l *countingLog) UserEvents(ctx context.Context, app, user string, after int64, limit int) ([]*tidings.Event, error) {
	l.streams.Add(1)
	return l.EventLog.UserEvents(ctx, app, user, after, limit)
}

func (l *countingLog) UserConversations(ctx context.Context, app, user string) ([]tidings.Membership, error) {
	ms, err := l.EventLog.UserConversations(ctx, app, user)
	l.registering()
	return ms, err
}

func (l *countingLog) UserConversationsAndPresence(ctx context.Context, app, user string) ([]tidings.Membership, *tidings.UserPresence, error) {
	ms, p, err := l.EventLog.UserConversationsAndPresence(ctx, app, user)
	l.both.Add(1)
	l.registering()
	return ms, p, err
}

func (l *countingLog) registering() {
	if l.hook != nil {
		l.once.Do(l.hook)
	}
}

// singleNode is one node alone, as `tidings serve` runs it on SQLite: the
// store publishes to it. The cluster's app "a", users and conversation
// "c" (alice, bob, carol) are set up through it.
func singleNode(t *testing.T) (*cluster, *Node, *countingLog) {
	t.Helper()
	n := NewNode()
	n.Logger = slog.New(slog.DiscardHandler)
	db := sqlite.NewDB(filepath.Join(t.TempDir(), "tidings.db"))
	db.Logger = n.Logger
	db.Synchronous = "NORMAL"
	db.Publisher = n
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := &countingLog{EventLog: sqlite.NewEventLog(db)}
	cl := &cluster{t: t, db: db, apps: sqlite.NewAppService(db), users: sqlite.NewUserService(db),
		convs: sqlite.NewConversationService(db), messages: sqlite.NewMessageService(db, 0), log: log.EventLog}
	n.Apps, n.Users, n.Messages, n.Log = cl.apps, cl.users, cl.messages, log
	n.LastSeen = cl.users // as tidings serve sets it
	if err := n.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	cl.seed()
	return cl, n, log
}

// dispatched waits until the node dispatched every event of the log.
func dispatched(t *testing.T, cl *cluster, n *Node) {
	t.Helper()
	latest, err := cl.log.LastEventSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the node to dispatch the log's events", func() bool { return n.pos.Load() >= latest })
}

// A client that resumes from the newest ref (a new device, "latest", or a
// cursor that is up to date) turns live without reading its stream from
// the log, and gets what is sent from then on, each once and in order;
// one whose cursor is behind gets what it missed from the log.
func TestConnectAtTheNewestRefReadsNoStreamAndMissesNothing(t *testing.T) {
	cl, n, log := singleNode(t)
	cl.send("bob", "before")
	dispatched(t, cl, n)

	alice := cl.online(n, "alice", "laptop", "latest")
	if got := log.streams.Load(); got != 0 {
		t.Fatalf("a connect at the newest ref read the user's stream %d times, want 0", got)
	}
	if log.both.Load() != 1 {
		t.Fatalf("registering read the conversations and the presence setting together %d times, want 1", log.both.Load())
	}
	cl.send("bob", "one")
	cl.send("bob", "two")
	alice.waitTexts("one", "two")

	// The same device again, from its cursor (up to date once it replied):
	// nothing to replay, nothing read.
	refs := alice.w.updates()
	alice.reply(refs[len(refs)-1].ref)
	alice.c.Gone()
	again := cl.online(n, "alice", "laptop", "")
	if got := log.streams.Load(); got != 0 {
		t.Fatalf("a connect from an up-to-date cursor read the user's stream %d times, want 0", got)
	}
	cl.send("bob", "three")
	again.waitTexts("three")

	// Behind: what was sent while it was away comes from the log, in one
	// read (fewer events than a batch: the read saw the end of the stream).
	again.reply(again.w.updates()[len(again.w.updates())-1].ref)
	again.c.Gone()
	cl.send("bob", "while away")
	dispatched(t, cl, n)
	back := cl.online(n, "alice", "laptop", "")
	back.waitTexts("while away")
	if got := log.streams.Load(); got != 1 {
		t.Fatalf("a connect from a cursor behind the newest ref read the user's stream %d times, want 1", got)
	}
	cl.send("bob", "live again")
	back.waitTexts("while away", "live again")
}

// An event dispatched while a session registers, after the newest ref was
// read and before the session was indexed by its conversations, reaches
// it nonetheless: the connect then reads its stream.
func TestConnectReplaysWhatWasDispatchedWhileItRegistered(t *testing.T) {
	cl, n, log := singleNode(t)
	log.hook = func() {
		// The session is indexed by its user, not yet by conversation c:
		// this message is dispatched to c's sessions without it.
		cl.send("bob", "meanwhile")
		dispatched(t, cl, n)
	}
	alice := cl.online(n, "alice", "laptop", "latest")
	cl.send("bob", "after")
	alice.waitTexts("meanwhile", "after")
	if log.streams.Load() == 0 {
		t.Fatal("the connect did not read the user's stream, though an event was dispatched while it registered")
	}
}

// What ends a token's access takes effect on the next auth on this node,
// with no cache in between: a signing secret rotated without overlap, a
// user's tokens revoked, a user deactivated; and a token never reaches
// another app's users, nor verifies with another app's secret.
// The same whether the app and the user are read together
// (ConnectReader) or one after the other.
func TestAuthSeesSecretRotationAndRevocationAtOnce(t *testing.T) {
	t.Run("together", func(t *testing.T) { authSeesChangesAtOnce(t, false) })
	t.Run("apart", func(t *testing.T) { authSeesChangesAtOnce(t, true) })
}

func authSeesChangesAtOnce(t *testing.T, apart bool) {
	cl, n, _ := singleNode(t)
	if _, ok := n.Apps.(ConnectReader); !ok {
		t.Fatal("the SQLite store reads no app and user together")
	}
	if apart {
		n.Apps = struct{ tidings.AppService }{cl.apps} // FindAppByID, then FindUserByID
	}
	ctx := context.Background()
	mint := func(app *tidings.App, user string) string {
		tok, _, err := token.Mint(app, user, time.Hour, time.Now().Add(-time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	auth := func(tok string) *protocol.Error {
		w := &wire{}
		cn := &conn{t: t, c: n.Connect(w), w: w}
		defer cn.c.Gone()
		return cn.command(protocol.CmdAuth, protocol.AuthArgs{Token: tok, Device: "d", ResumeAfter: "latest"}).Error
	}
	wantRefused := func(what, tok string) {
		t.Helper()
		if e := auth(tok); e == nil || e.Code != tidings.EUnauthenticated {
			t.Fatalf("%s: auth answered %+v, want %s", what, e, tidings.EUnauthenticated)
		}
	}
	old := mint(cl.app, "alice")
	if e := auth(old); e != nil {
		t.Fatalf("auth with a good token: %+v", e)
	}
	rotated, err := cl.apps.RotateSigningSecret(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	wantRefused("a token signed with the secret rotated out, without overlap", old)
	if e := auth(mint(rotated, "alice")); e != nil {
		t.Fatalf("auth with the new secret: %+v", e)
	}

	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "a", Server: true})
	bobs := mint(rotated, "bob")
	if _, err := cl.users.RevokeTokens(server, "bob"); err != nil {
		t.Fatal(err)
	}
	wantRefused("a token of a user whose tokens were revoked since", bobs)
	carols := mint(rotated, "carol")
	if _, err := cl.users.DeactivateUser(server, "carol"); err != nil {
		t.Fatal(err)
	}
	wantRefused("a token of a deactivated user", carols)

	// Another app, with a user of its own.
	other, err := cl.apps.CreateApp(ctx, "b", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.users.CreateUser(tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "b", Server: true}),
		&tidings.User{ID: "zed"}); err != nil {
		t.Fatal(err)
	}
	wantRefused("app a's token for a user of app b only", mint(rotated, "zed"))
	forged := *rotated
	forged.ID = "b" // names app b, signed with a's secret
	wantRefused("a token naming app b signed with app a's secret", mint(&forged, "zed"))
	if e := auth(mint(other, "zed")); e != nil {
		t.Fatalf("auth of app b's user with app b's token: %+v", e)
	}
}

// A frame handed over with HandleWarm, as the WebSocket transport hands
// every frame, is handled on one of the node's warm workers: an auth
// there succeeds with no second hand-off, a panic while handling one is
// answered and leaves the worker serving the next connects, and once the
// node shuts down HandleWarm still handles what comes (on a goroutine of
// its own) and returns.
func TestHandleWarmAuthenticatesAndSurvivesAPanic(t *testing.T) {
	cl, n, log := singleNode(t)
	log.hook = func() { panic("test: the store failed") }
	auth := func(user string) (*Client, *wire, protocol.Frame) {
		t.Helper()
		tok, _, err := token.Mint(cl.app, user, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(protocol.AuthArgs{Token: tok, Device: "d", ResumeAfter: "latest"})
		f, _ := json.Marshal(protocol.Frame{Type: protocol.TypeCommand, ID: "1", Command: protocol.CmdAuth, Data: data})
		w := &wire{}
		c := n.Connect(w)
		c.HandleWarm(f) // returns once handled: the answer is written
		return c, w, w.answer(t, "1")
	}
	if _, _, ans := auth("alice"); ans.Error == nil || ans.Error.Code != tidings.EInternal {
		t.Fatalf("an auth that panicked was answered %+v, want %s", ans.Error, tidings.EInternal)
	}
	if n.warmWorkers.Load() == 0 {
		t.Fatal("HandleWarm ran no warm worker")
	}
	bobC, bobW, ans := auth("bob")
	if ans.Error != nil {
		t.Fatalf("auth after a panic: %s: %s", ans.Error.Code, ans.Error.Message)
	}
	bob := &conn{t: t, c: bobC, w: bobW, ids: 1}
	cl.send("alice", "hello")
	bob.waitTexts("hello")

	if err := n.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	bobC.HandleWarm([]byte(`{"type":"command","id":"2","command":"ping"}`)) // returns: nothing waits for a worker
}
