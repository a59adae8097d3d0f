package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
	"github.com/tidings/tidings/disk"
	tidingshttp "github.com/tidings/tidings/http"
	"github.com/tidings/tidings/realtime"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/token"
	"github.com/tidings/tidings/ws"
)

// tb is what the helpers need of a testing.TB; examples use panicker.
type tb interface {
	Helper()
	Fatal(args ...any)
}

// panicker is a tb for examples.
type panicker struct{}

func (panicker) Helper()           {}
func (panicker) Fatal(args ...any) { panic(fmt.Sprint(args...)) }

// testApp is the app every test server has.
const testApp = "app"

// testServer is a whole Tidings server on 127.0.0.1 (store, realtime node,
// WebSocket handler, HTTP API with files), which can be stopped and
// started again on the same address and database.
type testServer struct {
	dir    string
	ownDir bool
	offset atomic.Int64 // added to the server's clock, in nanoseconds

	mu    sync.Mutex
	addr  string
	app   *tidings.App
	db    *sqlite.DB
	node  *realtime.Node
	ws    *ws.Handler
	srv   *tidingshttp.Server
	users *sqlite.UserService
	convs *sqlite.ConversationService
	msgs  *sqlite.MessageService
	up    bool
}

// newTestServer starts a server keeping its data in dir.
func newTestServer(dir string) (*testServer, error) {
	s := &testServer{dir: dir, addr: "127.0.0.1:0"}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// startServer starts a server for a test and stops it when the test ends.
func startServer(t testing.TB) *testServer {
	t.Helper()
	s, err := newTestServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// mustServer starts a server in a temporary directory, for examples; Close
// removes the directory.
func mustServer() *testServer {
	dir, err := os.MkdirTemp("", "tidings-client-example")
	if err != nil {
		panic(err)
	}
	s, err := newTestServer(dir)
	if err != nil {
		panic(err)
	}
	s.ownDir = true
	return s
}

func (s *testServer) now() time.Time { return time.Now().Add(time.Duration(s.offset.Load())) }

func (s *testServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	logger := slog.New(slog.DiscardHandler)
	db := sqlite.NewDB(filepath.Join(s.dir, "tidings.db"))
	db.Logger, db.Synchronous = logger, "NORMAL"
	node := realtime.NewNode()
	db.Publisher = node // before Open, as documented
	if err := db.Open(); err != nil {
		return err
	}
	apps := sqlite.NewAppService(db)
	ctx := context.Background()
	app, err := apps.FindAppByID(ctx, testApp)
	if tidings.ErrorCode(err) == tidings.ENotFound {
		app, err = apps.CreateApp(ctx, testApp, "Test")
	}
	if err != nil {
		db.Close()
		return err
	}
	users, convs, msgs := sqlite.NewUserService(db), sqlite.NewConversationService(db), sqlite.NewMessageService(db, 0)
	node.Apps, node.Users, node.Messages, node.Log, node.Logger = apps, users, msgs, sqlite.NewEventLog(db), logger
	node.Now = s.now
	if err := node.Open(); err != nil {
		db.Close()
		return err
	}
	wsh := &ws.Handler{Node: node, Logger: logger}
	srv := tidingshttp.NewServer()
	srv.Addr = s.addr
	srv.Apps, srv.Users, srv.Conversations, srv.Messages = apps, users, convs, msgs
	srv.Files = sqlite.NewFileService(db, disk.NewBlobStore(filepath.Join(s.dir, "files")), 0)
	srv.Realtime, srv.Poller, srv.Logger = wsh, node, logger
	if err := srv.Open(); err != nil {
		node.Close()
		wsh.Close()
		db.Close()
		return err
	}
	s.addr = strings.TrimPrefix(srv.URL(), "http://")
	s.app, s.db, s.node, s.ws, s.srv, s.users, s.convs, s.msgs, s.up = app, db, node, wsh, srv, users, convs, msgs, true
	return nil
}

func (s *testServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.up {
		return
	}
	s.up = false
	s.node.Close()
	s.ws.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	s.db.Close()
}

// Restart stops the server and starts a new one on the same address and
// database.
func (s *testServer) Restart() error {
	s.stop()
	return s.start()
}

// Close stops the server for good.
func (s *testServer) Close() {
	s.stop()
	if s.ownDir {
		os.RemoveAll(s.dir)
	}
}

func (s *testServer) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *testServer) URL() string { return "http://" + s.Addr() }

func (s *testServer) as(user string) context.Context {
	return tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: testApp, UserID: user})
}

// mkUsers creates users, named as their ids.
func (s *testServer) mkUsers(t tb, ids ...string) {
	t.Helper()
	s.mu.Lock()
	users := s.users
	s.mu.Unlock()
	server := tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: testApp, Server: true})
	for _, id := range ids {
		name := strings.ToUpper(id[:1]) + id[1:]
		if _, err := users.CreateUser(server, &tidings.User{ID: id, DisplayName: name}); err != nil {
			t.Fatal(err)
		}
	}
}

// token mints a token of user valid for ttl from now (the server's time
// unless given).
func (s *testServer) token(t tb, user string, ttl time.Duration, now ...time.Time) string {
	t.Helper()
	at := s.now()
	if len(now) > 0 {
		at = now[0]
	}
	s.mu.Lock()
	app := s.app
	s.mu.Unlock()
	tok, _, err := token.Mint(app, user, ttl, at)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// conv creates a conversation of owner with the others as members.
func (s *testServer) conv(t tb, owner string, others ...string) string {
	t.Helper()
	var ps []tidings.NewParticipant
	for _, o := range others {
		ps = append(ps, tidings.NewParticipant{UserID: o})
	}
	s.mu.Lock()
	convs := s.convs
	s.mu.Unlock()
	c, err := convs.CreateConversation(s.as(owner), tidings.NewConversation{Name: "test", Participants: ps})
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// send sends a text message as user, directly through the store.
func (s *testServer) send(t tb, from, conv, text string) *tidings.Message {
	t.Helper()
	s.mu.Lock()
	msgs := s.msgs
	s.mu.Unlock()
	m, _, err := msgs.SendMessage(s.as(from), conv, textMessage(text))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func textMessage(text string) tidings.NewMessage {
	return tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: text}}}
}

// fastBackoff makes reconnections quick in tests.
var fastBackoff = client.WithBackoff(client.Backoff{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond})

// newClient makes a client closed when the test ends.
func newClient(t testing.TB, url string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wait is the bound of every wait of the tests.
const wait = 20 * time.Second

func waitConnected(t testing.TB, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatalf("not connected: %v (status %s)", err, c.Status())
	}
}

// waitFor waits until cond holds, polling.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitStatus(t testing.TB, c *client.Client, want client.Status) {
	t.Helper()
	waitFor(t, "status "+want.String(), func() bool { return c.Status() == want })
}

// recorder collects the events a listener receives.
type recorder struct {
	mu     sync.Mutex
	events []client.Event
	cond   chan struct{}
}

func newRecorder() *recorder { return &recorder{cond: make(chan struct{})} }

func (r *recorder) listen(e client.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	close(r.cond)
	r.cond = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder) all() []client.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// texts returns the texts of the messages sent in conv, in arrival order.
func (r *recorder) texts(conv string) []string {
	var out []string
	for _, e := range r.all() {
		if m, ok := e.(*client.MessageSent); ok && m.ConversationID == conv {
			out = append(out, m.Message.Parts[0].Data)
		}
	}
	return out
}

// waitUntil waits until the events received satisfy cond.
func (r *recorder) waitUntil(t testing.TB, what string, cond func([]client.Event) bool) []client.Event {
	t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		r.mu.Lock()
		evs, ch := slices.Clone(r.events), r.cond
		r.mu.Unlock()
		if cond(evs) {
			return evs
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("timed out waiting for %s; got %d events", what, len(evs))
		}
	}
}

// waitTexts waits until n messages of conv arrived.
func (r *recorder) waitTexts(t testing.TB, conv string, n int) []string {
	t.Helper()
	r.waitUntil(t, fmt.Sprintf("%d messages", n), func([]client.Event) bool { return len(r.texts(conv)) >= n })
	return r.texts(conv)
}

// waitEvent waits for an event of type T matching match.
func waitEvent[T client.Event](t testing.TB, r *recorder, match func(T) bool) T {
	t.Helper()
	var found T
	var zero T
	r.waitUntil(t, fmt.Sprintf("an event %T", zero), func(evs []client.Event) bool {
		for _, e := range evs {
			if v, ok := e.(T); ok && (match == nil || match(v)) {
				found = v
				return true
			}
		}
		return false
	})
	return found
}

// statusLog records the status changes of a client.
type statusLog struct {
	mu      sync.Mutex
	changes []client.StatusChange
}

func (l *statusLog) listen(c client.StatusChange) {
	l.mu.Lock()
	l.changes = append(l.changes, c)
	l.mu.Unlock()
}

func (l *statusLog) count(s client.Status) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.changes {
		if c.Status == s {
			n++
		}
	}
	return n
}

func (l *statusLog) all() []client.StatusChange {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.changes)
}

// proxy is a TCP proxy that can cut every connection going through it.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	cuts   int
	closed bool
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

func (p *proxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

func (p *proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *proxy) handle(down net.Conn) {
	defer p.wg.Done()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		down.Close()
		return
	}
	if !p.track(down, up) {
		down.Close()
		up.Close()
		return
	}
	done := make(chan struct{})
	go func() {
		io.Copy(up, down)
		up.Close()
		down.Close()
		close(done)
	}()
	io.Copy(down, up)
	up.Close()
	down.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, down)
	delete(p.conns, up)
	p.mu.Unlock()
}

// Cut closes every connection going through the proxy, in the middle of
// whatever they carry.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cuts++
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // reset, as a network failure would
		}
		c.Close()
	}
}

func (p *proxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

// fakeClock is a Clock whose time moves only when told to. Advance runs
// the timers that come due, in order, and returns once they have run.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c    *fakeClock
	when time.Time
	f    func()
	done bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) client.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, when: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	return true
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *fakeTimer
		c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool { return t.done })
		for _, t := range c.timers {
			if !t.when.After(c.now) && (next == nil || t.when.Before(next.when)) {
				next = t
			}
		}
		if next != nil {
			next.done = true
		}
		c.mu.Unlock()
		if next == nil {
			return
		}
		next.f()
	}
}

// clientGoroutines returns the stacks of the goroutines running code of
// package client or started by it.
func clientGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "tidings/tidings/client.") {
			out = append(out, g)
		}
	}
	return out
}

// checkNoClientGoroutines fails if goroutines of package client remain
// (after a bounded wait for those ending).
func checkNoClientGoroutines(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		gs := clientGoroutines()
		if len(gs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines of package client leaked:\n\n%s", len(gs), strings.Join(gs, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func asCloseError(err error, target **client.CloseError) bool { return errors.As(err, target) }

// next receives from ch, giving up after a while (examples must not hang).
func next(ch <-chan string) string {
	select {
	case s := <-ch:
		return s
	case <-time.After(wait):
		return "timed out"
	}
}
