package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/token"
)

// Cluster mode, tested with two nodes over one SQLite database (every
// committed event is final) and in-memory stand-ins for the broker, the
// leases and the presence store: what a NATS cluster provides, and what
// it may lose.

// memBroker is a tidings.Broker in memory. It hands everything to every
// subscriber, the publisher's too, and can lose ranges: the next ones of
// one subscriber (dropRanges), or everything while it is down.
type memBroker struct {
	mu        sync.Mutex
	subs      []*memSub
	down      bool
	maxEvents int // the most events a range may carry (0: any number)
}

type memSub struct {
	b      *memBroker
	mu     sync.Mutex // calls to h are sequential
	h      tidings.BrokerHandler
	drop   atomic.Int32 // ranges to lose
	lose   atomic.Bool  // lose every live update
	every  atomic.Int32 // lose one range in every so many (0: none)
	seen   int          // ranges offered; guarded by mu
	closed atomic.Bool
}

func (b *memBroker) Subscribe(ctx context.Context, h tidings.BrokerHandler) (tidings.Subscription, error) {
	s := &memSub{b: b, h: h}
	b.mu.Lock()
	b.subs = append(b.subs, s)
	b.mu.Unlock()
	return s, nil
}

func (s *memSub) Close() error { s.closed.Store(true); return nil }

// each calls f for each open subscriber; false when the broker is down.
func (b *memBroker) each(f func(*memSub)) bool {
	b.mu.Lock()
	if b.down {
		b.mu.Unlock()
		return false
	}
	subs := slices.Clone(b.subs)
	b.mu.Unlock()
	for _, s := range subs {
		if s.closed.Load() {
			continue
		}
		s.mu.Lock()
		f(s)
		s.mu.Unlock()
	}
	return true
}

func (b *memBroker) PublishRange(ctx context.Context, r tidings.EventRange) error {
	b.mu.Lock()
	limit := b.maxEvents
	b.mu.Unlock()
	if limit > 0 && len(r.Events) > limit {
		return tidings.Errorf(tidings.ETooLarge, "too many events")
	}
	if !b.each(func(s *memSub) {
		s.seen++
		if s.drop.Load() > 0 {
			s.drop.Add(-1)
			return
		}
		if e := int(s.every.Load()); e > 0 && s.seen%e == 0 {
			return
		}
		s.h.Range(r)
	}) {
		return tidings.Errorf(tidings.EUnavailable, "the broker is down")
	}
	return nil
}

func (b *memBroker) PublishLive(ctx context.Context, u tidings.LiveUpdate) error {
	if !b.each(func(s *memSub) {
		if !s.lose.Load() {
			s.h.Live(u)
		}
	}) {
		return tidings.Errorf(tidings.EUnavailable, "the broker is down")
	}
	return nil
}

// setDown cuts the broker off, or brings it back; either way the
// subscribers are told they may have lost messages, as a NATS client is
// on a disconnect and a reconnect.
func (b *memBroker) setDown(down bool) {
	b.mu.Lock()
	b.down = false
	b.mu.Unlock()
	b.each(func(s *memSub) { s.h.Lost() })
	b.mu.Lock()
	b.down = down
	b.mu.Unlock()
}

// memLeases is tidings.Leases in memory.
type memLeases struct {
	mu     sync.Mutex
	holder map[string]string
	until  map[string]time.Time
}

func (l *memLeases) Hold(ctx context.Context, name, node string, ttl time.Duration) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder == nil {
		l.holder, l.until = make(map[string]string), make(map[string]time.Time)
	}
	if h := l.holder[name]; h != "" && h != node && time.Now().Before(l.until[name]) {
		return false, nil
	}
	l.holder[name], l.until[name] = node, time.Now().Add(ttl)
	return true, nil
}

func (l *memLeases) Release(ctx context.Context, name, node string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder[name] == node {
		delete(l.holder, name)
	}
	return nil
}

func (l *memLeases) holderOf(name string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Now().After(l.until[name]) {
		return ""
	}
	return l.holder[name]
}

// memPresence is tidings.PresenceStore in memory. A node's lease lapses
// only once the test has it die (die: it stops renewing), so that a
// loaded machine never makes a living node's lease lapse.
type memPresence struct {
	mu       sync.Mutex
	sessions map[userKey]map[string]int // by node
	renewed  atomic.Int32
	expiries atomic.Int32             // calls of Expired
	renewals map[string]time.Time     // a node's last renewal
	leases   map[string]time.Duration // and its lease
	dead     map[string]bool          // nodes that renew no more
	// lapsed are the sessions Expired removed, by node: the node writes
	// them again when it renews again (as nats.Presence does).
	lapsed map[string]map[userKey]int
}

// die has node stop renewing its lease, as if it died.
func (p *memPresence) die(node string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead == nil {
		p.dead = make(map[string]bool)
	}
	p.dead[node] = true
}

// lapsedLocked says whether node's lease lapsed.
func (p *memPresence) lapsedLocked(node string) bool {
	return p.dead[node] && time.Now().After(p.renewals[node].Add(p.leases[node]))
}

func (p *memPresence) count(k userKey) int {
	total := 0
	for node, c := range p.sessions[k] {
		if !p.lapsedLocked(node) {
			total += c
		}
	}
	return total
}

func (p *memPresence) Connect(ctx context.Context, app, user, node string, limit int) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := userKey{app, user}
	if p.sessions == nil {
		p.sessions = make(map[userKey]map[string]int)
	}
	total := p.count(k)
	if limit > 0 && total >= limit {
		return false, tidings.Errorf(tidings.ERateLimited, "too many sessions")
	}
	if p.sessions[k] == nil {
		p.sessions[k] = make(map[string]int)
	}
	p.sessions[k][node]++
	return total == 0, nil
}

func (p *memPresence) Disconnect(ctx context.Context, app, user, node string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := userKey{app, user}
	if p.sessions[k][node] > 0 {
		p.sessions[k][node]--
	}
	return p.count(k) == 0, nil
}

func (p *memPresence) Online(ctx context.Context, app string, users []string) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, u := range users {
		if p.count(userKey{app, u}) > 0 {
			out = append(out, u)
		}
	}
	return out, nil
}

// revive has a node that died renew its lease again: it comes back.
func (p *memPresence) revive(node string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.dead, node)
}

func (p *memPresence) Renew(ctx context.Context, node string, lease time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dead[node] {
		return tidings.Errorf(tidings.EUnavailable, "cut off from the presence store")
	}
	if p.renewals == nil {
		p.renewals, p.leases = make(map[string]time.Time), make(map[string]time.Duration)
	}
	for k, c := range p.lapsed[node] {
		if p.sessions[k] == nil {
			p.sessions[k] = make(map[string]int)
		}
		p.sessions[k][node] += c
	}
	delete(p.lapsed, node)
	p.renewals[node], p.leases[node] = time.Now(), lease
	p.renewed.Add(1)
	return nil
}

func (p *memPresence) Expired(ctx context.Context) ([]tidings.PresenceChange, error) {
	p.expiries.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []tidings.PresenceChange
	for k, nodes := range p.sessions {
		var seen time.Time
		for node, c := range nodes {
			if c > 0 && p.lapsedLocked(node) {
				if p.lapsed == nil {
					p.lapsed = make(map[string]map[userKey]int)
				}
				if p.lapsed[node] == nil {
					p.lapsed[node] = make(map[userKey]int)
				}
				p.lapsed[node][k] = c
				delete(nodes, node)
				seen = p.renewals[node]
			}
		}
		if !seen.IsZero() && p.count(k) == 0 {
			out = append(out, tidings.PresenceChange{AppID: k.app, UserID: k.user, LastSeen: seen})
		}
	}
	return out, nil
}

// cluster is one SQLite database, an app "a" with users alice, bob and
// carol in conversation "c", and what the nodes share.
type cluster struct {
	t        *testing.T
	db       *sqlite.DB
	path     string // the database's
	app      *tidings.App
	apps     *sqlite.AppService
	users    *sqlite.UserService
	convs    *sqlite.ConversationService
	messages *sqlite.MessageService
	log      *sqlite.EventLog
	broker   *memBroker
	leases   *memLeases
	presence *memPresence
}

// seed creates app "a", its users alice, bob and carol, and their
// conversation "c" (alice's).
func (cl *cluster) seed() {
	t := cl.t
	t.Helper()
	ctx := context.Background()
	var err error
	if cl.app, err = cl.apps.CreateApp(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "a", Server: true})
	for _, id := range []string{"alice", "bob", "carol"} {
		if _, err := cl.users.CreateUser(server, &tidings.User{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.convs.CreateConversation(as("alice"), tidings.NewConversation{
		ID: "c", Participants: []tidings.NewParticipant{{UserID: "bob"}, {UserID: "carol"}}}); err != nil {
		t.Fatal(err)
	}
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tidings.db")
	db := sqlite.NewDB(path)
	db.Logger = slog.New(slog.DiscardHandler)
	db.Synchronous = "NORMAL"
	// No publisher: in a cluster the nodes take the events from the tail.
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cl := &cluster{t: t, db: db, path: path, apps: sqlite.NewAppService(db), users: sqlite.NewUserService(db),
		convs: sqlite.NewConversationService(db), messages: sqlite.NewMessageService(db, 0), log: sqlite.NewEventLog(db),
		broker: &memBroker{}, leases: &memLeases{}, presence: &memPresence{}}
	cl.seed()
	return cl
}

func as(user string) context.Context {
	return tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: "a", UserID: user})
}

// node opens a node of the cluster.
func (cl *cluster) node(id string, configure ...func(*Node)) *Node {
	cl.t.Helper()
	n := NewNode()
	n.Apps, n.Users, n.Messages, n.Log = cl.apps, cl.users, cl.messages, cl.log
	n.Logger = slog.New(slog.DiscardHandler)
	n.Broker, n.Tail, n.Leases, n.PresenceStore, n.NodeID = cl.broker, sqlite.NewTail(cl.db), cl.leases, cl.presence, id
	n.Conversations = cl.convs
	n.TailerTTL = 400 * time.Millisecond
	n.TailHeartbeat = time.Hour // a lost range is read when the next comes (unless a test says)
	n.PresenceLease = 300 * time.Millisecond
	n.CursorFlushInterval = 50 * time.Millisecond
	for _, f := range configure {
		f(n)
	}
	if err := n.Open(); err != nil {
		cl.t.Fatal(err)
	}
	cl.t.Cleanup(func() { n.Close() })
	return n
}

// send sends a message to c as user, through the store (any node's API).
func (cl *cluster) send(user, text string) *tidings.Message {
	cl.t.Helper()
	m, _, err := cl.messages.SendMessage(as(user), "c", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: text}}})
	if err != nil {
		cl.t.Fatal(err)
	}
	return m
}

// wire is a Transport that keeps the frames written to it.
type wire struct {
	mu     sync.Mutex
	frames []protocol.Frame
	closed int
}

func (w *wire) Write(f []byte) bool {
	var fr protocol.Frame
	if err := json.Unmarshal(f, &fr); err != nil {
		panic(fmt.Sprintf("a frame is not JSON: %s", f))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.frames = append(w.frames, fr)
	return true
}

func (w *wire) Close(code int, _ string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = code
}

func (w *wire) snapshot() []protocol.Frame {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.frames)
}

// update is an update frame, decoded.
type update struct {
	ref  int64
	name string
	id   string
	text string // a message's first part
	prof string // typing and presence: whose
	stat string // presence: online or offline
}

func (w *wire) updates() []update {
	var out []update
	for _, f := range w.snapshot() {
		if f.Type != protocol.TypeUpdate {
			continue
		}
		var ev struct {
			ID      string `json:"id"`
			Name    string `json:"name"`
			Payload struct {
				Parts []struct {
					Data string `json:"data"`
				} `json:"parts"`
				ProfileID string `json:"profileId"`
				Status    string `json:"status"`
			} `json:"payload"`
		}
		if err := json.Unmarshal(f.Event, &ev); err != nil {
			panic(err)
		}
		u := update{name: ev.Name, id: ev.ID, prof: ev.Payload.ProfileID, stat: ev.Payload.Status}
		if f.Ref != "" {
			u.ref, _ = strconv.ParseInt(f.Ref, 10, 64)
		}
		if len(ev.Payload.Parts) > 0 {
			u.text = ev.Payload.Parts[0].Data
		}
		out = append(out, u)
	}
	return out
}

// texts returns the messages the wire received, in order, and checks that
// its durable updates came in increasing ref order, each once.
func (w *wire) texts(t *testing.T) []string {
	t.Helper()
	var out []string
	var last int64
	for _, u := range w.updates() {
		if u.ref == 0 {
			continue
		}
		if u.ref <= last {
			t.Fatalf("update %d (%s) came after %d", u.ref, u.name, last)
		}
		last = u.ref
		if u.name == tidings.EventMessageSent {
			out = append(out, u.text)
		}
	}
	return out
}

// answer returns the answer to command id, once written.
func (w *wire) answer(t *testing.T, id string) protocol.Frame {
	t.Helper()
	var fr protocol.Frame
	waitUntil(t, "the answer to "+id, func() bool {
		for _, f := range w.snapshot() {
			if f.Type == protocol.TypeAnswer && f.ID == id {
				fr = f
				return true
			}
		}
		return false
	})
	return fr
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// conn is a client of a node with one account.
type conn struct {
	t   *testing.T
	c   *Client
	w   *wire
	ids int
}

// connect authenticates user on node, resuming after resume ("" for the
// device's cursor), and returns the connection and the auth answer.
func (cl *cluster) connect(node *Node, user, device, resume string) (*conn, protocol.Frame) {
	cl.t.Helper()
	tok, _, err := token.Mint(cl.app, user, time.Hour, time.Now())
	if err != nil {
		cl.t.Fatal(err)
	}
	w := &wire{}
	cn := &conn{t: cl.t, c: node.Connect(w), w: w}
	ans := cn.command(protocol.CmdAuth, protocol.AuthArgs{Token: tok, Device: device, ResumeAfter: resume})
	return cn, ans
}

// online connects user and fails the test unless the auth succeeds.
func (cl *cluster) online(node *Node, user, device, resume string) *conn {
	cl.t.Helper()
	cn, ans := cl.connect(node, user, device, resume)
	if ans.Error != nil {
		cl.t.Fatalf("auth of %s: %s: %s", user, ans.Error.Code, ans.Error.Message)
	}
	return cn
}

func (cn *conn) command(name string, args any) protocol.Frame {
	cn.t.Helper()
	cn.ids++
	id := strconv.Itoa(cn.ids)
	data, _ := json.Marshal(args)
	f, _ := json.Marshal(protocol.Frame{Type: protocol.TypeCommand, ID: id, Command: name, Data: data})
	cn.c.Handle(f)
	return cn.w.answer(cn.t, id)
}

func (cn *conn) reply(ref int64) {
	cn.c.Handle([]byte(`{"type":"reply","ref":"` + strconv.FormatInt(ref, 10) + `"}`))
}

// waitTexts waits until the connection received the messages want, in
// that order, and nothing else.
func (cn *conn) waitTexts(want ...string) {
	cn.t.Helper()
	waitUntil(cn.t, fmt.Sprintf("messages %v", want), func() bool { return len(cn.w.texts(cn.t)) >= len(want) })
	if got := cn.w.texts(cn.t); !slices.Equal(got, want) {
		cn.t.Fatalf("received %v, want %v", got, want)
	}
}

// A session on node B receives, in order and each once, what was sent on
// node A, and so do the sessions on A.
func TestClusterDeliversAcrossNodesInOrder(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.node("A"), cl.node("B")
	alice := cl.online(a, "alice", "", "")
	bob := cl.online(b, "bob", "", "")
	var want []string
	for i := range 30 {
		text := fmt.Sprintf("m%d", i)
		want = append(want, text)
		ans := alice.command(protocol.CmdSend, protocol.SendArgs{ConversationID: "c",
			Parts: json.RawMessage(`[{"type":"text/plain","data":"` + text + `"}]`)})
		if ans.Error != nil {
			t.Fatal(ans.Error.Message)
		}
	}
	bob.waitTexts(want...)
	alice.waitTexts(want...)
}

// A device resumes on node B from the ref it acknowledged on node A: from
// its stored cursor, or from the ref it asks for.
func TestClusterResumesOnAnotherNode(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.node("A"), cl.node("B")
	bob := cl.online(a, "bob", "phone", "")
	cl.send("alice", "m1")
	cl.send("alice", "m2")
	bob.waitTexts("m1", "m2")
	var ref int64
	for _, u := range bob.w.updates() {
		if u.text == "m1" {
			ref = u.ref
		}
	}
	bob.reply(ref)
	bob.command(protocol.CmdLogout, struct{}{}) // stores the cursor
	cl.send("alice", "m3")

	again := cl.online(b, "bob", "phone", "")
	again.waitTexts("m2", "m3")
	explicit := cl.online(b, "bob", "laptop", strconv.FormatInt(ref, 10))
	explicit.waitTexts("m2", "m3")
	cl.send("alice", "m4")
	again.waitTexts("m2", "m3", "m4")
	explicit.waitTexts("m2", "m3", "m4")
}

// A range the broker loses for node B is read from the log when the next
// one comes: B's sessions get everything in order.
func TestClusterFillsALostRangeFromTheLog(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.node("A"), cl.node("B")
	_ = a
	bob := cl.online(b, "bob", "", "")
	cl.send("alice", "m1")
	bob.waitTexts("m1")
	for _, s := range cl.broker.subs {
		if s.h.(clusterHandler).n == b {
			s.drop.Store(1)
		}
	}
	cl.send("alice", "m2")
	waitUntil(t, "the range of m2 to be lost", func() bool {
		for _, s := range cl.broker.subs {
			if s.h.(clusterHandler).n == b && s.drop.Load() == 0 {
				return true
			}
		}
		return false
	})
	if got := bob.w.texts(t); !slices.Equal(got, []string{"m1"}) {
		t.Fatalf("received %v before the next range", got)
	}
	cl.send("alice", "m3")
	bob.waitTexts("m1", "m2", "m3")
}

// When the broker is cut off, the nodes read the log themselves; when it
// is back and ranges chain again, they deliver from it again.
func TestClusterReadsTheLogWhileTheBrokerIsDown(t *testing.T) {
	cl := newCluster(t)
	_, b := cl.node("A"), cl.node("B")
	bob := cl.online(b, "bob", "", "")
	cl.send("alice", "m1")
	bob.waitTexts("m1")

	cl.broker.setDown(true)
	waitUntil(t, "node B to read the log", b.cluster.polling.Load)
	cl.send("alice", "m2")
	cl.send("alice", "m3")
	bob.waitTexts("m1", "m2", "m3")

	cl.broker.setDown(false)
	want := []string{"m1", "m2", "m3"}
	for i := 4; b.cluster.polling.Load(); i++ {
		if i > 1000 {
			t.Fatal("node B still reads the log itself after 1000 messages with the broker back")
		}
		text := fmt.Sprintf("m%d", i)
		cl.send("alice", text)
		want = append(want, text)
		bob.waitTexts(want...)
	}
	cl.send("alice", "last")
	bob.waitTexts(append(want, "last")...)
}

// A replay on a node whose delivery is behind the log sends nothing
// above the node's position: the rest comes live once the node has it,
// in order, each once.
func TestClusterReplayWaitsForTheNodesPosition(t *testing.T) {
	cl := newCluster(t)
	_, b := cl.node("A"), cl.node("B")
	carol := cl.online(b, "carol", "", "")
	bob := cl.online(b, "bob", "", "")
	cl.send("alice", "m1")
	carol.waitTexts("m1")
	bob.waitTexts("m1")
	// The ref of m1: a live-only update (presence) may have come after it.
	var m1 int64
	for _, u := range bob.w.updates() {
		if u.text == "m1" {
			m1 = u.ref
		}
	}
	bob.reply(m1)
	bob.command(protocol.CmdLogout, struct{}{})

	// B hears nothing more for a while, without being told.
	for _, s := range cl.broker.subs {
		if s.h.(clusterHandler).n == b {
			s.drop.Store(1 << 20)
		}
	}
	cl.send("alice", "m2")
	cl.send("alice", "m3")
	bob = cl.online(b, "bob", "", "")
	time.Sleep(50 * time.Millisecond) // what would go wrong would go wrong now
	if got := bob.w.texts(t); len(got) != 0 {
		t.Fatalf("the replay sent %v above the node's position", got)
	}
	for _, s := range cl.broker.subs {
		s.drop.Store(0)
	}
	cl.send("alice", "m4")
	bob.waitTexts("m2", "m3", "m4")
	carol.waitTexts("m1", "m2", "m3", "m4")
}

// When the node that tails the log shuts down, another takes the lease
// and delivery goes on.
func TestClusterTailerLeaseHandover(t *testing.T) {
	cl := newCluster(t)
	a := cl.node("A")
	waitUntil(t, "node A to tail the log", func() bool { return cl.leases.holderOf(tailerLease) == "A" })
	b := cl.node("B")
	bob := cl.online(b, "bob", "", "")
	cl.send("alice", "m1")
	bob.waitTexts("m1")
	if h := cl.leases.holderOf(tailerLease); h != "A" {
		t.Fatalf("the tailer is %q, want A", h)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	cl.send("alice", "m2")
	waitUntil(t, "node B to tail the log", func() bool { return cl.leases.holderOf(tailerLease) == "B" })
	cl.send("alice", "m3")
	bob.waitTexts("m1", "m2", "m3")
}

// Typing and presence go from one node to the sessions of the other; the
// limit of connections per user holds in the whole cluster.
func TestClusterTypingAndPresenceAcrossNodes(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.node("A", func(n *Node) { n.MaxConnsPerUser = 1 }), cl.node("B", func(n *Node) { n.MaxConnsPerUser = 1 })
	bob := cl.online(b, "bob", "", "")
	waitUntil(t, "the presence store to be renewed", func() bool { return cl.presence.renewed.Load() > 0 })

	alice := cl.online(a, "alice", "", "")
	has := func(cn *conn, name, who, status string) func() bool {
		return func() bool {
			return slices.ContainsFunc(cn.w.updates(), func(u update) bool {
				return u.name == name && u.prof == who && u.stat == status
			})
		}
	}
	waitUntil(t, "bob on B to see alice online", has(bob, protocol.EventPresence, "alice", protocol.PresenceOnline))

	ans := bob.command(protocol.CmdPresenceSubscribe, protocol.PresenceSubscribeArgs{UserIDs: []string{"alice", "carol"}})
	var sub protocol.PresenceSubscribeResult
	if ans.Error != nil || json.Unmarshal(ans.Result, &sub) != nil {
		t.Fatalf("presence.subscribe: %+v", ans.Error)
	}
	for _, u := range sub.Users {
		want := protocol.PresenceOffline
		if u.UserID == "alice" {
			want = protocol.PresenceOnline
		}
		if u.Status != want {
			t.Fatalf("presence.subscribe on B says %s is %s, want %s", u.UserID, u.Status, want)
		}
	}

	if ans := alice.command(protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: "c"}); ans.Error != nil {
		t.Fatal(ans.Error.Message)
	}
	waitUntil(t, "bob on B to see alice typing", has(bob, protocol.EventTyping, "alice", ""))
	// Who is online and typing, asked on B: alice, on A, too.
	ans = bob.command(protocol.CmdPresenceGet, protocol.PresenceArgs{ConversationID: "c"})
	var pres protocol.PresenceResult
	if ans.Error != nil || json.Unmarshal(ans.Result, &pres) != nil {
		t.Fatalf("presence.get: %+v", ans.Error)
	}
	if !slices.Equal(pres.Online, []string{"alice", "bob"}) || !slices.Equal(pres.Typing, []string{"alice"}) {
		t.Fatalf("presence.get on B: online %v, typing %v; want alice and bob, alice", pres.Online, pres.Typing)
	}
	if ans := alice.command(protocol.CmdTypingStop, protocol.TypingArgs{ConversationID: "c"}); ans.Error != nil {
		t.Fatal(ans.Error.Message)
	}
	waitUntil(t, "bob on B to see alice stop typing", has(bob, protocol.EventTypingOff, "alice", ""))
	for _, u := range alice.w.updates() {
		if u.name == protocol.EventTyping {
			t.Fatal("alice was told of her own typing")
		}
	}

	// One connection per user, in the whole cluster.
	_, ans = cl.connect(b, "alice", "", "")
	if ans.Error == nil || ans.Error.Code != tidings.ERateLimited {
		t.Fatalf("a second connection of alice on B was answered %+v, want %s", ans.Error, tidings.ERateLimited)
	}

	alice.command(protocol.CmdLogout, struct{}{})
	waitUntil(t, "bob on B to see alice offline", has(bob, protocol.EventPresence, "alice", protocol.PresenceOffline))
	count := 0
	for _, u := range bob.w.updates() {
		if u.name == protocol.EventPresence && u.prof == "alice" {
			count++
		}
	}
	if count != 2 {
		t.Fatalf("bob got %d presence updates of alice, want 2 (online, offline)", count)
	}
	// Her only connection has ended: she may connect again, anywhere.
	cl.online(b, "alice", "", "")
}

// A participant removed through node A stops receiving the conversation
// on node B, from the removal on.
func TestClusterRemovedParticipantStopsReceiving(t *testing.T) {
	cl := newCluster(t)
	_, b := cl.node("A"), cl.node("B")
	bob := cl.online(b, "bob", "", "")
	carol := cl.online(b, "carol", "", "")
	cl.send("alice", "m1")
	if err := cl.convs.RemoveParticipant(as("alice"), "c", "bob"); err != nil {
		t.Fatal(err)
	}
	cl.send("alice", "m2")
	carol.waitTexts("m1", "m2")
	bob.waitTexts("m1")
	names := func() []string {
		var out []string
		for _, u := range bob.w.updates() {
			out = append(out, u.name)
		}
		return out
	}
	waitUntil(t, "bob to be told he was removed", func() bool {
		return slices.Contains(names(), tidings.EventParticipantRemoved)
	})
	if got := bob.w.texts(t); !slices.Equal(got, []string{"m1"}) {
		t.Fatalf("bob received %v after his removal", got)
	}
	// And a session that starts on B after a removal, before B delivered
	// it (its conversations, read from the store, no longer have it),
	// gets what came before the removal, the removal, and nothing after.
	if _, err := cl.convs.AddParticipant(as("alice"), "c", tidings.NewParticipant{UserID: "bob"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "bob to be added again", func() bool {
		return slices.ContainsFunc(bob.w.updates(), func(u update) bool { return u.name == tidings.EventParticipantAdded })
	})
	for _, s := range cl.broker.subs {
		if s.h.(clusterHandler).n == b {
			s.drop.Store(1 << 20)
		}
	}
	cl.send("alice", "m3")
	if err := cl.convs.RemoveParticipant(as("alice"), "c", "bob"); err != nil {
		t.Fatal(err)
	}
	cl.send("alice", "m4")
	late := cl.online(b, "bob", "late", "1")
	// Its replay has sent what B delivered, and either waits for more or
	// has turned live.
	waitUntil(t, "the late session to replay what node B delivered", func() bool {
		us := late.w.updates()
		return len(us) > 0 && us[len(us)-1].name == tidings.EventParticipantAdded && us[len(us)-1].prof == "bob"
	})
	s := late.c.session("")
	waitUntil(t, "the late session's replay to wait or end", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.replaying || s.reach > b.position()
	})
	for _, s := range cl.broker.subs {
		s.drop.Store(0)
	}
	cl.send("alice", "m5")
	carol.waitTexts("m1", "m2", "m3", "m4", "m5")
	waitUntil(t, "the late session to be told it was removed again", func() bool {
		removed := 0
		for _, u := range late.w.updates() {
			if u.name == tidings.EventParticipantRemoved {
				removed++
			}
		}
		return removed == 2
	})
	if got := late.w.texts(t); !slices.Equal(got, []string{"m1", "m3"}) {
		t.Fatalf("the late session received %v, want m1 and m3 (its memberships)", got)
	}
}

// A user who hides their presence, or shows it again, is seen offline,
// or online, by the sessions of other nodes too.
func TestClusterPresenceSwitchAcrossNodes(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.node("A"), cl.node("B")
	bob := cl.online(b, "bob", "", "")
	alice := cl.online(a, "alice", "", "")
	statuses := func() []string {
		var out []string
		for _, u := range bob.w.updates() {
			if u.name == protocol.EventPresence && u.prof == "alice" {
				out = append(out, u.stat)
			}
		}
		return out
	}
	waitUntil(t, "bob on B to see alice online", func() bool { return len(statuses()) == 1 })
	for _, hide := range []bool{true, false} {
		want := len(statuses()) + 1
		if _, err := cl.users.UpdateUser(as("alice"), "alice", tidings.UserUpdate{PresenceHidden: &hide}); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, fmt.Sprintf("bob on B to be told of alice's switch (hidden %v)", hide), func() bool { return len(statuses()) == want })
	}
	if got := statuses(); !slices.Equal(got, []string{protocol.PresenceOnline, protocol.PresenceOffline, protocol.PresenceOnline}) {
		t.Fatalf("bob saw alice %v", got)
	}
	for _, u := range alice.w.updates() {
		if u.name == protocol.EventPresence && u.prof == "alice" {
			t.Fatalf("alice was told of her own switch: %+v", u)
		}
	}
}

// subOf returns the broker subscription of node.
func (cl *cluster) subOf(node *Node) *memSub {
	for _, s := range cl.broker.subs {
		if s.h.(clusterHandler).n == node {
			return s
		}
	}
	cl.t.Fatal("the node has no subscription")
	return nil
}

// Senders on both nodes at once, with the broker losing one range in
// three for node B: the sessions of both nodes get every message once, in
// the same order.
func TestClusterOneOrderUnderLoss(t *testing.T) {
	cl := newCluster(t)
	// Heartbeats, so that the loss of the last range is read too.
	heartbeat := func(n *Node) { n.TailHeartbeat = 20 * time.Millisecond }
	a, b := cl.node("A", heartbeat), cl.node("B", heartbeat)
	cl.subOf(b).every.Store(3)
	carol := cl.online(a, "carol", "", "")
	bob := cl.online(b, "bob", "", "")
	senders := []*conn{cl.online(a, "alice", "", ""), cl.online(b, "alice", "", ""), cl.online(a, "bob", "x", ""), cl.online(b, "carol", "x", "")}
	const each = 40
	var wg sync.WaitGroup
	for i, cn := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				text := fmt.Sprintf("s%d-%d", i, j)
				f, _ := json.Marshal(protocol.Frame{Type: protocol.TypeCommand, ID: text, Command: protocol.CmdSend,
					Data: json.RawMessage(`{"conversationId":"c","parts":[{"type":"text/plain","data":"` + text + `"}]}`)})
				cn.c.Handle(f)
			}
		}()
	}
	wg.Wait()
	total := len(senders) * each
	waitUntil(t, "every message on both nodes", func() bool {
		return len(bob.w.texts(t)) >= total && len(carol.w.texts(t)) >= total
	})
	got, other := bob.w.texts(t), carol.w.texts(t)
	if !slices.Equal(got, other) || len(got) != total {
		t.Fatalf("bob on B got %d messages, carol on A %d, not in the same order", len(got), len(other))
	}
	// Each sender's messages in the order it sent them.
	next := make(map[int]int)
	for _, text := range got {
		var i, j int
		fmt.Sscanf(text, "s%d-%d", &i, &j)
		if j != next[i] {
			t.Fatalf("%s came when s%d-%d was next", text, i, next[i])
		}
		next[i]++
	}
}

// leasesNoRelease is a node's Leases when it dies: it never gives the
// lease up, which ends by itself.
type leasesNoRelease struct{ *memLeases }

func (leasesNoRelease) Release(context.Context, string, string) error { return nil }

// When the tailer dies without giving its lease up, another node takes
// over once the lease ends.
func TestClusterTailerLeaseExpires(t *testing.T) {
	cl := newCluster(t)
	a := cl.node("A", func(n *Node) { n.Leases = leasesNoRelease{cl.leases} })
	waitUntil(t, "node A to tail the log", func() bool { return cl.leases.holderOf(tailerLease) == "A" })
	b := cl.node("B")
	bob := cl.online(b, "bob", "", "")
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	cl.send("alice", "m1")
	waitUntil(t, "node B to tail the log", func() bool { return cl.leases.holderOf(tailerLease) == "B" })
	bob.waitTexts("m1")
}

// A range lost in a quiet time is read from the log after the tailer's
// next heartbeat, without waiting for another event.
func TestClusterHeartbeatBringsTheLastLostRange(t *testing.T) {
	cl := newCluster(t)
	heartbeat := func(n *Node) { n.TailHeartbeat = 20 * time.Millisecond }
	_, b := cl.node("A", heartbeat), cl.node("B", heartbeat)
	bob := cl.online(b, "bob", "", "")
	cl.send("alice", "m1")
	bob.waitTexts("m1")
	cl.subOf(b).drop.Store(1)
	cl.send("alice", "m2")
	bob.waitTexts("m1", "m2")
}

// A range too large for the broker is read by every node from the log.
func TestClusterRangeTooLargeForTheBroker(t *testing.T) {
	cl := newCluster(t)
	cl.broker.maxEvents = 2
	heartbeat := func(n *Node) { n.TailHeartbeat = 20 * time.Millisecond }
	_, b := cl.node("A", heartbeat), cl.node("B", heartbeat)
	bob := cl.online(b, "bob", "", "")
	// Created with its participants in one transaction: four events.
	if _, err := cl.convs.CreateConversation(as("alice"), tidings.NewConversation{
		ID: "d", Participants: []tidings.NewParticipant{{UserID: "bob"}, {UserID: "carol"}}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "bob to get the new conversation", func() bool {
		return slices.ContainsFunc(bob.w.updates(), func(u update) bool { return u.name == tidings.EventConversationCreate })
	})
	cl.send("alice", "m1")
	bob.waitTexts("m1")
}

// A user's typing indicator stays on while they have a session on some
// node, and ends with their last one.
func TestClusterTypingEndsWithTheLastSessionInTheCluster(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.node("A"), cl.node("B")
	bob := cl.online(b, "bob", "", "")
	alice := cl.online(a, "alice", "", "")
	other := cl.online(b, "alice", "laptop", "")
	typing := func(name string) int {
		count := 0
		for _, u := range bob.w.updates() {
			if u.name == name && u.prof == "alice" {
				count++
			}
		}
		return count
	}
	alice.command(protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: "c"})
	waitUntil(t, "bob to see alice typing", func() bool { return typing(protocol.EventTyping) == 1 })
	other.command(protocol.CmdLogout, struct{}{})
	// A marker after the logout, through the same broker: had the logout
	// ended the indicator, bob would have been told before it.
	cl.send("carol", "marker")
	bob.waitTexts("marker")
	if n := typing(protocol.EventTypingOff); n != 0 {
		t.Fatal("alice's indicator ended with one of her two sessions")
	}
	alice.command(protocol.CmdLogout, struct{}{})
	waitUntil(t, "bob to see alice stop typing", func() bool { return typing(protocol.EventTypingOff) == 1 })
}

// delivered is a tidings.EventPublisher that keeps the seqs of the
// messages sent it is handed.
type delivered struct {
	mu   sync.Mutex
	seqs []int64
}

func (d *delivered) Publish(events ...*tidings.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ev := range events {
		if ev.Name == tidings.EventMessageSent {
			var m tidings.Message
			if err := json.Unmarshal(ev.Payload, &m); err == nil {
				d.seqs = append(d.seqs, m.Seq)
			}
		}
	}
}

func (d *delivered) get() []int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.seqs)
}

// Node.Delivered is handed every event of the cluster once, in order, on
// every node, whatever node committed it, and those of a lost range too
// (read from the log): the push dispatcher's feed in a cluster.
func TestClusterHandsDeliveredEventsOn(t *testing.T) {
	cl := newCluster(t)
	da, db := &delivered{}, &delivered{}
	a := cl.node("A", func(n *Node) { n.Delivered = da })
	b := cl.node("B", func(n *Node) { n.Delivered = db })
	_ = a
	bob := cl.online(b, "bob", "", "")
	cl.send("alice", "m1")
	bob.waitTexts("m1")
	for _, s := range cl.broker.subs {
		if s.h.(clusterHandler).n == b {
			s.drop.Store(1)
		}
	}
	cl.send("alice", "m2")
	waitUntil(t, "the range of m2 to be lost", func() bool {
		for _, s := range cl.broker.subs {
			if s.h.(clusterHandler).n == b && s.drop.Load() == 0 {
				return true
			}
		}
		return false
	})
	for i := 3; i <= 5; i++ {
		cl.send("alice", fmt.Sprintf("m%d", i))
	}
	want := []int64{1, 2, 3, 4, 5}
	for name, d := range map[string]*delivered{"A": da, "B": db} {
		waitUntil(t, "node "+name+" to hand on the 5 messages", func() bool { return len(d.get()) >= len(want) })
		if got := d.get(); !slices.Equal(got, want) {
			t.Errorf("node %s handed on the messages %v, want %v", name, got, want)
		}
	}
}

// deadLeases are the Leases of a node that holds none once it died (in
// memPresence).
type deadLeases struct {
	*memLeases
	p *memPresence
}

func (l deadLeases) Hold(ctx context.Context, name, node string, ttl time.Duration) (bool, error) {
	l.p.mu.Lock()
	dead := l.p.dead[node]
	l.p.mu.Unlock()
	if dead {
		return false, nil
	}
	return l.memLeases.Hold(ctx, name, node, ttl)
}

// A node dies (it stops renewing its presence lease) with alice's only
// session on it: once its lease lapsed, bob on node B, her peer and
// subscribed to her, is told once that she went offline, as last seen at
// the dead node's last renewal, and the cluster counts her offline.
func TestClusterNodeDeathTellsPresence(t *testing.T) {
	cl := newCluster(t)
	b := cl.node("B")
	waitUntil(t, "node B to tail the log", func() bool { return cl.leases.holderOf(tailerLease) == "B" })
	// Should A take the tailer's lease meanwhile (a loaded machine), it
	// loses it when it dies, as a dead node would.
	a := cl.node("A", func(n *Node) { n.Leases = deadLeases{cl.leases, cl.presence} })
	bob := cl.online(b, "bob", "", "")
	if ans := bob.command(protocol.CmdPresenceSubscribe, protocol.PresenceSubscribeArgs{UserIDs: []string{"alice"}}); ans.Error != nil {
		t.Fatal(ans.Error.Message)
	}
	cl.online(a, "alice", "", "")
	statuses := func() []string {
		var out []string
		for _, u := range bob.w.updates() {
			if u.name == protocol.EventPresence && u.prof == "alice" {
				out = append(out, u.stat)
			}
		}
		return out
	}
	waitUntil(t, "bob to see alice online", func() bool { return len(statuses()) == 1 })
	cl.presence.die("A")
	waitUntil(t, "bob to see alice offline", func() bool { return len(statuses()) == 2 })
	// Later expiries tell nothing more: a marker through the broker after
	// a few of them.
	calls := cl.presence.expiries.Load()
	waitUntil(t, "more expiries on B", func() bool { return cl.presence.expiries.Load() >= calls+3 })
	cl.send("carol", "marker")
	bob.waitTexts("marker")
	if got := statuses(); !slices.Equal(got, []string{protocol.PresenceOnline, protocol.PresenceOffline}) {
		t.Fatalf("bob saw alice %v, want online then offline once", got)
	}
	var lastSeen string
	for _, f := range bob.w.snapshot() {
		var ev protocol.Event
		var p protocol.PresencePayload
		if f.Type == protocol.TypeUpdate && json.Unmarshal(f.Event, &ev) == nil && ev.Name == protocol.EventPresence &&
			json.Unmarshal(ev.Payload, &p) == nil && p.Status == protocol.PresenceOffline {
			lastSeen = p.LastSeenAt
		}
	}
	if lastSeen == "" {
		t.Fatal("the offline update of alice has no lastSeenAt")
	}
	// Counted offline in the cluster: she may hold one connection anew.
	if online, err := cl.presence.Online(context.Background(), "a", []string{"alice"}); err != nil || len(online) != 0 {
		t.Fatalf("online: %v, %v; want alice offline", online, err)
	}
	// Her last seen is stored, for presence.subscribe.
	waitUntil(t, "alice's last seen to be stored", func() bool {
		ps, err := cl.users.UsersPresence(context.Background(), "a", []string{"alice"})
		return err == nil && len(ps) == 1 && !ps[0].LastSeenAt.IsZero()
	})
	// Node A was only cut off, and renews again: her session there
	// counts again, and A tells that she is online.
	cl.presence.revive("A")
	waitUntil(t, "bob to see alice online again", func() bool { return len(statuses()) == 3 })
	if got := statuses(); got[2] != protocol.PresenceOnline {
		t.Fatalf("bob saw alice %v, want online again last", got)
	}
	if online, err := cl.presence.Online(context.Background(), "a", []string{"alice"}); err != nil || len(online) != 1 {
		t.Fatalf("online: %v, %v; want alice online again", online, err)
	}
}
