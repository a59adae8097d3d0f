//go:build unix

package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
	tnats "github.com/tidings/tidings/nats"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/push/pushtest"
)

// The tests of this file run tidings serve as separate processes: the
// test binary itself, run as the tidings command (see TestMain), so that
// a node can be killed with SIGKILL like a real one. A node's logs are
// shown when its test fails, or always with TIDINGS_TEST_NODE_LOGS=1.

// clusterWait is how long the cluster tests wait for a condition: the
// machine running them may be loaded.
const clusterWait = 30 * time.Second

// needService skips t (or fails it when TIDINGS_REQUIRE_SERVICES=1) with
// msg.
func needService(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("TIDINGS_REQUIRE_SERVICES") == "1" {
		t.Fatalf("%s (TIDINGS_REQUIRE_SERVICES=1)", msg)
	}
	t.Skip(msg)
}

// testPostgres is the PostgreSQL server of the cluster tests.
func testPostgres() string {
	if s := os.Getenv("TIDINGS_TEST_POSTGRES"); s != "" {
		return s
	}
	return "postgres://postgres@127.0.0.1:5432/test"
}

// freshDatabase creates a database of its own on the test server and
// returns its URL; it is dropped when t ends (after the nodes, which are
// stopped by cleanups registered later). It skips t when the server cannot
// be reached.
func freshDatabase(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, testPostgres())
	if err != nil {
		needService(t, fmt.Sprintf("PostgreSQL is not reachable at %s (set TIDINGS_TEST_POSTGRES to another server): %v", redactURL(testPostgres()), err))
	}
	defer admin.Close(context.Background())
	name := fmt.Sprintf("tidings_cluster_%d_%d", os.Getpid(), time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, testPostgres())
		if err != nil {
			t.Logf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(testPostgres())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// needNATS skips t unless the NATS server at urls answers.
func needNATS(t *testing.T, urls string) {
	t.Helper()
	for _, s := range splitList(urls) {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
		if err != nil {
			needService(t, fmt.Sprintf("NATS is not reachable at %s (set TIDINGS_TEST_NATS to another server): %v", redactURL(s), err))
		}
		c.Close()
	}
}

// natsServer is the path of the nats-server binary tests start their own
// NATS servers with.
const natsServer = "/usr/sbin/nats-server"

// testNATSServer is a NATS server (with JetStream) of a test's own, on a
// free port of the loopback interface, with its store in a temporary
// directory: the test's subjects and buckets are its own, and the test
// may stop and restart it.
type testNATSServer struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	logs *syncBuffer
}

// startNATS starts a NATS server of t's own; it is stopped when t ends.
// It skips t when there is no nats-server binary.
func startNATS(t *testing.T) *testNATSServer {
	t.Helper()
	if _, err := os.Stat(natsServer); err != nil {
		needService(t, fmt.Sprintf("no NATS server binary at %s: %v", natsServer, err))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &testNATSServer{t: t, port: port, dir: t.TempDir()}
	s.start()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("logs of the NATS server:\n%s", s.logs)
		}
	})
	return s
}

// url returns the server's URL.
func (s *testNATSServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// start starts the server (again) and waits until it takes connections.
func (s *testNATSServer) start() {
	s.t.Helper()
	s.logs, s.done = new(syncBuffer), make(chan struct{})
	s.cmd = exec.Command(natsServer, "-a", "127.0.0.1", "-p", fmt.Sprint(s.port), "-js", "-sd", s.dir)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	go func() {
		s.cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(clusterWait)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second)
		if err == nil {
			c.Close()
			// JetStream is ready once the server says so.
			for !strings.Contains(s.logs.String(), "Server is ready") && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			return
		}
		select {
		case <-s.done:
			s.t.Fatalf("nats-server exited: %v\n%s", s.cmd.ProcessState, s.logs)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nats-server does not take connections after %s:\n%s", clusterWait, s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop stops the server, if it runs.
func (s *testNATSServer) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(clusterWait):
		s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.done
	}
}

// testNode is a tidings serve process.
type testNode struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	url  string // http://127.0.0.1:port
	logs *syncBuffer
	done chan struct{} // closed when the process has exited
}

var listeningLine = regexp.MustCompile(`msg="tidings is listening" url=(\S+)`)

// startNode runs "tidings serve" with args (and --addr 127.0.0.1:0) as a
// process of its own, and returns once it listens. The node is stopped
// (SIGTERM) when t ends, if it still runs.
func startNode(t *testing.T, name string, env []string, args ...string) *testNode {
	t.Helper()
	n := &testNode{t: t, name: name, logs: new(syncBuffer), done: make(chan struct{})}
	n.cmd = exec.Command(os.Args[0], append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	n.cmd.Env = append(append(os.Environ(), asCLI+"=1"), env...)
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		n.cmd.Wait()
		close(n.done)
	}()
	t.Cleanup(func() {
		n.stop()
		if t.Failed() || os.Getenv("TIDINGS_TEST_NODE_LOGS") == "1" {
			t.Logf("logs of node %s:\n%s", n.name, n.logs)
		}
	})
	deadline := time.After(clusterWait)
	for {
		if m := listeningLine.FindStringSubmatch(n.logs.String()); m != nil {
			n.url = m[1]
			return n
		}
		select {
		case <-n.done:
			t.Fatalf("node %s exited before listening (%v); logs:\n%s", name, n.cmd.ProcessState, n.logs)
		case <-deadline:
			t.Fatalf("node %s did not listen within %s; logs:\n%s", name, clusterWait, n.logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// kill kills the node with SIGKILL, as a crash would, and waits for it to
// be gone.
func (n *testNode) kill() {
	n.t.Helper()
	n.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-n.done:
	case <-time.After(clusterWait):
		n.t.Fatalf("node %s still runs %s after SIGKILL", n.name, clusterWait)
	}
}

// stop stops the node with SIGTERM, as an operator would, killing it if it
// does not stop in time.
func (n *testNode) stop() {
	select {
	case <-n.done:
		return
	default:
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(clusterWait):
		n.t.Errorf("node %s did not stop within %s of SIGTERM; killed", n.name, clusterWait)
		n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.done
	}
}

// testCluster is a store, a broker, nodes serving them, and an app.
type testCluster struct {
	t      *testing.T
	store  string
	broker string
	prefix string          // the cluster's --broker-prefix
	nats   *testNATSServer // nil when the test uses a shared server
	nodes  []*testNode
	app    string
	key    string // the app's server key
	env    []string
}

// startCluster starts n nodes on a fresh PostgreSQL database and the test
// NATS server, with extra flags for each, and creates an app.
func startCluster(t *testing.T, n int, extra ...string) *testCluster {
	t.Helper()
	return startClusterEnv(t, n, nil, extra...)
}

// startClusterEnv is startCluster with env added to the nodes'
// environment.
func startClusterEnv(t *testing.T, n int, env []string, extra ...string) *testCluster {
	t.Helper()
	if !postgresBuilt || !natsBuilt {
		t.Skip("this build cannot open a PostgreSQL store or a NATS broker yet (packages postgres and nats, issue #11)")
	}
	store := freshDatabase(t)
	// A NATS server of the test's own, so that its subjects and buckets
	// meet no other test's (tests of other packages may use the shared
	// one at the same time); TIDINGS_TEST_NATS names a shared one instead.
	var nats *testNATSServer
	broker := os.Getenv("TIDINGS_TEST_NATS")
	if broker == "" {
		nats = startNATS(t)
		broker = nats.url()
	}
	needNATS(t, broker)
	// Subjects and buckets of the test's own, too (which matters on a
	// shared server).
	prefix := fmt.Sprintf("t%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	c := &testCluster{t: t, store: store, broker: broker, prefix: prefix, nats: nats, app: "shop", env: env}
	if nats == nil {
		// Once the nodes have stopped (cleanups run last first): leave
		// nothing on the shared server.
		t.Cleanup(func() {
			conn, err := tnats.Connect(broker, tnats.Options{Prefix: prefix})
			if err != nil {
				t.Logf("delete the test's buckets: %v", err)
				return
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
			defer cancel()
			if err := conn.DeleteBuckets(ctx); err != nil {
				t.Logf("delete the test's buckets: %v", err)
			}
		})
	}
	// The app, created by the admin command before any node starts (which
	// also creates the schema).
	created := parseApp(t, mustRun(t, nil, "apps", "create", "--store", store, "--data", t.TempDir(), c.app).stdout)
	c.key = created["server key"]
	for i := range n {
		c.startNode(fmt.Sprintf("n%d", i+1), extra...)
	}
	return c
}

// startNode starts one more node of the cluster.
func (c *testCluster) startNode(name string, extra ...string) *testNode {
	c.t.Helper()
	args := append([]string{"--store", c.store, "--broker", c.broker, "--broker-prefix", c.prefix, "--data", c.t.TempDir(),
		"--log-level", "debug", "--user-rate", "0", "--conversation-rate", "0", "--participant-rate", "0"}, extra...)
	n := startNode(c.t, name, c.env, args...)
	c.nodes = append(c.nodes, n)
	return n
}

// user creates the user id (through node 1) and returns an access token.
func (c *testCluster) user(id string) string {
	c.t.Helper()
	base := c.nodes[0].url
	callAPI(c.t, base, c.key, "POST", "/v1/users", map[string]string{"id": id}, nil, http.StatusCreated)
	var tok struct{ Token string }
	callAPI(c.t, base, c.key, "POST", "/v1/users/"+id+"/tokens", nil, &tok, http.StatusCreated)
	return tok.Token
}

// inbox keeps the events a client receives.
type inbox struct {
	mu     sync.Mutex
	events []client.Event
	wake   chan struct{}
}

func newInbox() *inbox { return &inbox{wake: make(chan struct{}, 1)} }

func (r *inbox) listen(e client.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// snapshot returns the events received so far.
func (r *inbox) snapshot() []client.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]client.Event(nil), r.events...)
}

// waitFor waits until cond holds for the events received, failing t after
// clusterWait with what.
func (r *inbox) waitFor(t *testing.T, what string, cond func([]client.Event) bool) []client.Event {
	t.Helper()
	deadline := time.After(clusterWait)
	for {
		evs := r.snapshot()
		if cond(evs) {
			return evs
		}
		select {
		case <-r.wake:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("waited %s for %s; got %d events: %s", clusterWait, what, len(evs), describeEvents(evs))
			return nil
		}
	}
}

// messages returns the messages sent in conversation conv among evs, in
// the order received.
func messages(evs []client.Event, conv string) []*tidings.Message {
	var out []*tidings.Message
	for _, e := range evs {
		if m, ok := e.(*client.MessageSent); ok && m.ConversationID == conv {
			out = append(out, m.Message)
		}
	}
	return out
}

// texts returns the text of each message.
func texts(ms []*tidings.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		if len(m.Parts) > 0 {
			out[i] = m.Parts[0].Data
		}
	}
	return out
}

func describeEvents(evs []client.Event) string {
	var b strings.Builder
	for _, e := range evs {
		i := e.Info()
		fmt.Fprintf(&b, "\n  %s ref=%s conv=%s", i.Name, i.Ref, i.ConversationID)
		if m, ok := e.(*client.MessageSent); ok {
			fmt.Fprintf(&b, " seq=%d text=%q", m.Message.Seq, texts([]*tidings.Message{m.Message})[0])
		}
	}
	return b.String()
}

// connect connects a client of the node at base with token, recording
// its events; device and cursor are optional (empty: the defaults). The
// client is closed when t ends.
func connect(t *testing.T, base, token, device, cursorFile string) (*client.Client, *inbox) {
	t.Helper()
	rec := newInbox()
	opts := []client.Option{client.WithToken(token), client.WithEventListener(rec.listen),
		client.WithBackoff(client.Backoff{Initial: 100 * time.Millisecond, Max: time.Second})}
	if device != "" {
		opts = append(opts, client.WithDevice(device))
	}
	if cursorFile != "" {
		opts = append(opts, client.WithCursorStore(client.NewFileCursor(cursorFile)))
	}
	cl, err := client.New(base, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	if err := cl.WaitConnected(ctx); err != nil {
		t.Fatalf("connect to %s: %v", base, err)
	}
	return cl, rec
}

func textMessage(text string) tidings.NewMessage {
	return tidings.NewMessage{ClientID: text, Parts: []tidings.Part{{Type: "text/plain", Data: text}}}
}

// clusterUsers starts a cluster of three nodes, creates alice, bob and
// carol, the conversation "room" of the three (created by alice), and
// connects alice to node 1, bob to node 2 and carol to node 3.
func clusterUsers(t *testing.T) (c *testCluster, clients []*client.Client, inboxes []*inbox, tokens []string) {
	t.Helper()
	c = startCluster(t, 3)
	for _, id := range []string{"alice", "bob", "carol"} {
		tokens = append(tokens, c.user(id))
	}
	callAPI(t, c.nodes[0].url, tokens[0], "POST", "/v1/conversations", tidings.NewConversation{ID: "room",
		Participants: []tidings.NewParticipant{{UserID: "bob"}, {UserID: "carol"}}}, nil, http.StatusCreated)
	for i, tok := range tokens {
		cl, in := connect(t, c.nodes[i].url, tok, "", "")
		clients, inboxes = append(clients, cl), append(inboxes, in)
	}
	return c, clients, inboxes, tokens
}

// hasTexts returns a condition for waitFor: as many messages of conv as
// want have come (checkTexts then checks which, in what order).
func hasTexts(conv string, want []string) func([]client.Event) bool {
	return func(evs []client.Event) bool {
		got := texts(messages(evs, conv))
		return len(got) >= len(want)
	}
}

// checkTexts checks that the messages of conv among evs are want, in that
// order, once each.
func checkTexts(t *testing.T, who string, evs []client.Event, conv string, want []string) {
	t.Helper()
	got := texts(messages(evs, conv))
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s received %q in %s, want %q", who, got, conv, want)
	}
}

// Messages sent through node 1 reach the participants connected to nodes
// 2 and 3, in order.
func TestClusterCrossNodeDelivery(t *testing.T) {
	_, clients, inboxes, _ := clusterUsers(t)
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	var want []string
	for i := range 10 {
		text := fmt.Sprintf("m%d", i)
		want = append(want, text)
		if _, err := clients[0].Socket().SendMessage(ctx, "room", textMessage(text)); err != nil {
			t.Fatalf("send %s through node 1: %v", text, err)
		}
	}
	for i, who := range []string{"alice (node 1)", "bob (node 2)", "carol (node 3)"} {
		evs := inboxes[i].waitFor(t, who+" to receive the 10 messages", hasTexts("room", want))
		checkTexts(t, who, evs, "room", want)
	}
}

// Senders on every node write into one conversation at once: every
// receiver gets the same messages in the same order, numbered without gap,
// each once.
func TestClusterConcurrentSenders(t *testing.T) {
	_, clients, inboxes, _ := clusterUsers(t)
	const perSender = 8
	var wg sync.WaitGroup
	errs := make(chan error, len(clients))
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
			defer cancel()
			for j := range perSender {
				if _, err := cl.Socket().SendMessage(ctx, "room", textMessage(fmt.Sprintf("s%d-%d", i, j))); err != nil {
					errs <- fmt.Errorf("sender %d, message %d: %v", i, j, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := perSender * len(clients)
	var orders [][]string
	for i, who := range []string{"alice (node 1)", "bob (node 2)", "carol (node 3)"} {
		evs := inboxes[i].waitFor(t, fmt.Sprintf("%s to receive %d messages", who, total), func(evs []client.Event) bool {
			return len(messages(evs, "room")) >= total
		})
		ms := messages(evs, "room")
		if len(ms) != total {
			t.Errorf("%s received %d messages, want %d (duplicates?): %s", who, len(ms), total, describeEvents(evs))
		}
		for j, m := range ms {
			if m.Seq != int64(j+1) {
				t.Errorf("%s: message %d of the stream has seq %d, want %d (a gap or a reordering)", who, j, m.Seq, j+1)
				break
			}
		}
		// Each sender's own messages in the order sent.
		next := make([]int, len(clients))
		for _, text := range texts(ms) {
			var s, k int
			fmt.Sscanf(text, "s%d-%d", &s, &k)
			if k != next[s] {
				t.Errorf("%s got %s after message %d of sender %d", who, text, next[s]-1, s)
			}
			next[s] = k + 1
		}
		orders = append(orders, texts(ms))
	}
	for i := 1; i < len(orders); i++ {
		if strings.Join(orders[i], ",") != strings.Join(orders[0], ",") {
			t.Errorf("receiver %d got another order than receiver 0:\n%q\n%q", i, orders[i], orders[0])
		}
	}
}

// tailerLine is what a node logs when it takes the tailer's lease.
const tailerLine = "this node tails the log"

// tailer waits until a node of the cluster logs that it tails the log,
// among the nodes not in except, and returns its index.
func (c *testCluster) tailer(except ...int) int {
	c.t.Helper()
	deadline := time.Now().Add(clusterWait)
	for time.Now().Before(deadline) {
		for i, n := range c.nodes {
			if !slices.Contains(except, i) && strings.Contains(n.logs.String(), tailerLine) {
				return i
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("no node logged %q within %s", tailerLine, clusterWait)
	return -1
}

// The node that tails the log is killed with a client on it: another node
// takes the tailer's lease, the client reconnects to another node and
// resumes from the cursor it acknowledged, and nothing is lost or
// doubled.
func TestClusterNodeKilled(t *testing.T) {
	c, clients, _, tokens := clusterUsers(t)
	for _, cl := range clients {
		cl.Close() // this test places its clients itself
	}
	dead := c.tailer()
	sender, other := (dead+1)%3, (dead+2)%3
	t.Logf("node %s tails the log: killing it; alice sends through %s, bob moves to %s", c.nodes[dead].name, c.nodes[sender].name, c.nodes[other].name)
	alice, _ := connect(t, c.nodes[sender].url, tokens[0], "", "")
	// Bob on the tailer's node, with a device and a cursor kept in a file,
	// as an application would keep it.
	cursor := t.TempDir() + "/bob.cursor"
	bob, bobIn := connect(t, c.nodes[dead].url, tokens[1], "phone", cursor)
	_, carolIn := connect(t, c.nodes[other].url, tokens[2], "", "")
	want := numbered("m", 0, 10)
	sendAll(t, alice, "room", want[:5])
	bobIn.waitFor(t, "bob to receive m0 to m4", hasTexts("room", want[:5]))

	c.nodes[dead].kill()
	sendAll(t, alice, "room", want[5:])
	// Bob's application reconnects, as a load balancer would send it, to
	// another node, with the same device and cursor.
	bob.Close()
	_, bobIn2 := connect(t, c.nodes[other].url, tokens[1], "phone", cursor)
	evs := bobIn2.waitFor(t, "bob, reconnected to another node, to receive m5 to m9", func(evs []client.Event) bool {
		got := texts(messages(evs, "room"))
		return len(got) > 0 && got[len(got)-1] == "m9"
	})
	// The new connection starts after what the first one processed: the
	// two together got every message, once.
	all := append(texts(messages(bobIn.snapshot(), "room")), texts(messages(evs, "room"))...)
	if strings.Join(all, ",") != strings.Join(want, ",") {
		t.Errorf("bob received %q over both connections, want %q", all, want)
	}
	evs = carolIn.waitFor(t, "carol to receive the 10 messages", hasTexts("room", want))
	checkTexts(t, "carol", evs, "room", want)
	if next := c.tailer(dead); next == dead {
		t.Errorf("no other node took the tailer's lease")
	}
}

// A participant removed through node 1 gets the removal on node 2 and
// nothing of the conversation after it.
func TestClusterParticipantRemoved(t *testing.T) {
	c, clients, inboxes, tokens := clusterUsers(t)
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	// A second conversation of alice and bob, to know when bob has got
	// everything sent before.
	callAPI(t, c.nodes[0].url, tokens[0], "POST", "/v1/conversations", tidings.NewConversation{ID: "pair",
		Participants: []tidings.NewParticipant{{UserID: "bob"}}}, nil, http.StatusCreated)
	if _, err := clients[0].Socket().SendMessage(ctx, "room", textMessage("before")); err != nil {
		t.Fatal(err)
	}
	inboxes[1].waitFor(t, "bob to receive the message before the removal", hasTexts("room", []string{"before"}))

	callAPI(t, c.nodes[0].url, tokens[0], "DELETE", "/v1/conversations/room/participants/bob", nil, nil, http.StatusNoContent)
	inboxes[1].waitFor(t, "bob (node 2) to be told of his removal", func(evs []client.Event) bool {
		for _, e := range evs {
			if r, ok := e.(*client.ParticipantRemoved); ok && r.ConversationID == "room" && r.ProfileID == "bob" {
				return true
			}
		}
		return false
	})
	if _, err := clients[0].Socket().SendMessage(ctx, "room", textMessage("after")); err != nil {
		t.Fatal(err)
	}
	if _, err := clients[0].Socket().SendMessage(ctx, "pair", textMessage("marker")); err != nil {
		t.Fatal(err)
	}
	inboxes[2].waitFor(t, "carol to receive the message after the removal", hasTexts("room", []string{"before", "after"}))
	// Bob gets the marker, sent after "after": had "after" reached him, it
	// would have come first.
	evs := inboxes[1].waitFor(t, "bob to receive the marker in the other conversation", hasTexts("pair", []string{"marker"}))
	checkTexts(t, "bob (node 2)", evs, "room", []string{"before"})
	// Nor can he read it through another node.
	if code := getWithKey(t, c.nodes[2].url+"/v1/conversations/room/messages", tokens[1]); code != http.StatusForbidden && code != http.StatusNotFound {
		t.Errorf("bob, removed, lists the messages through node 3: %d, want 403 or 404", code)
	}
}

// Typing indicators go from a node to the participants on the others,
// and presence counts the sessions of the whole cluster.
func TestClusterTyping(t *testing.T) {
	_, clients, inboxes, _ := clusterUsers(t)
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	// Bob, on node 2, sees alice (node 1) and carol (node 3) online.
	deadline := time.Now().Add(clusterWait)
	for {
		online, _, err := clients[1].Socket().Presence(ctx, "room")
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(online)
		if slices.Equal(online, []string{"alice", "bob", "carol"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob (node 2) sees %q online in room, want alice, bob and carol", online)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := clients[0].Socket().StartTyping(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	for i, who := range []string{"bob (node 2)", "carol (node 3)"} {
		inboxes[i+1].waitFor(t, who+" to see alice typing", func(evs []client.Event) bool {
			for _, e := range evs {
				if ty, ok := e.(*client.ParticipantTyping); ok && ty.ConversationID == "room" && ty.ProfileID == "alice" {
					return true
				}
			}
			return false
		})
	}
	if err := clients[0].Socket().StopTyping(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	inboxes[1].waitFor(t, "bob (node 2) to see alice stop typing", func(evs []client.Event) bool {
		for _, e := range evs {
			if ty, ok := e.(*client.ParticipantTypingOff); ok && ty.ConversationID == "room" && ty.ProfileID == "alice" {
				return true
			}
		}
		return false
	})
}

// sendAll sends the texts into conv through cl in order, sending each
// again (same client id: never twice) while the server answers with an
// error, as an application does.
func sendAll(t *testing.T, cl *client.Client, conv string, texts []string) {
	t.Helper()
	for _, text := range texts {
		deadline := time.Now().Add(clusterWait)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := cl.Socket().SendMessage(ctx, conv, textMessage(text))
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("send %s: still failing after %s: %v", text, clusterWait, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func numbered(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

// NATS restarts: messages sent while it is down still reach the other
// nodes (which read the log themselves), and nothing is lost, doubled or
// reordered across the restart.
func TestClusterNATSRestart(t *testing.T) {
	if os.Getenv("TIDINGS_TEST_NATS") != "" {
		t.Skip("TIDINGS_TEST_NATS names a shared NATS server, which this test must not restart")
	}
	c, clients, inboxes, _ := clusterUsers(t)
	receivers := []string{"bob (node 2)", "carol (node 3)"}
	sendAll(t, clients[0], "room", numbered("m", 0, 3))
	for i, who := range receivers {
		inboxes[i+1].waitFor(t, who+" to receive m0 to m2", hasTexts("room", numbered("m", 0, 3)))
	}

	c.nats.stop()
	sendAll(t, clients[0], "room", numbered("m", 3, 6))
	for i, who := range receivers {
		inboxes[i+1].waitFor(t, who+" to receive m3 to m5 while NATS is down", hasTexts("room", numbered("m", 0, 6)))
	}

	c.nats.start()
	sendAll(t, clients[0], "room", numbered("m", 6, 9))
	for i, who := range receivers {
		evs := inboxes[i+1].waitFor(t, who+" to receive m6 to m8 after NATS is back", hasTexts("room", numbered("m", 0, 9)))
		checkTexts(t, who, evs, "room", numbered("m", 0, 9))
	}
}

// The nodes' PostgreSQL connections are killed (pg_terminate_backend)
// while messages are sent: senders retry, and receivers on other nodes
// get every message once, in order.
func TestClusterPostgresConnectionsKilled(t *testing.T) {
	c, clients, inboxes, _ := clusterUsers(t)
	u, err := url.Parse(c.store)
	if err != nil {
		t.Fatal(err)
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	kill := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
		defer cancel()
		admin, err := pgx.Connect(ctx, testPostgres())
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close(ctx)
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid()`, dbName).Scan(&n); err != nil {
			t.Fatal(err)
		}
		t.Logf("terminated %d connections of the nodes", n)
	}
	want := numbered("m", 0, 12)
	sendAll(t, clients[0], "room", want[:4])
	kill()
	sendAll(t, clients[0], "room", want[4:8])
	kill()
	sendAll(t, clients[0], "room", want[8:])
	for i, who := range []string{"alice (node 1)", "bob (node 2)", "carol (node 3)"} {
		evs := inboxes[i].waitFor(t, who+" to receive the 12 messages", hasTexts("room", want))
		checkTexts(t, who, evs, "room", want)
	}
}

// One node on PostgreSQL, without a broker: the store publishes to the
// node, as SQLite does; the admin commands work on the same store.
func TestServeOnPostgres(t *testing.T) {
	if !postgresBuilt {
		t.Skip("this build cannot open a PostgreSQL store yet (package postgres, issue #11)")
	}
	store := freshDatabase(t)
	dir := filepath.Join(t.TempDir(), "data") // made by serve
	url, stopServe := startServe(t, dir, "--store", store)
	stop := sync.OnceValues(stopServe)
	defer stop()
	// The first start created the app default, and kept its key as on
	// SQLite.
	key := parseApp(t, mustRun(t, nil, "apps", "show", "--store", store, "--data", dir, "default").stdout)["server key"]
	if !strings.HasPrefix(key, "tsk_") {
		t.Fatalf("apps show default on a fresh PostgreSQL store printed the key %q", key)
	}
	list := mustRun(t, map[string]string{"TIDINGS_STORE": store}, "apps", "list", "--data", t.TempDir()).stdout
	if !strings.Contains(list, "default ") {
		t.Errorf("apps list with TIDINGS_STORE:\n%s", list)
	}
	callAPI(t, url, key, "POST", "/v1/users", map[string]string{"id": "alice"}, nil, http.StatusCreated)
	callAPI(t, url, key, "POST", "/v1/users", map[string]string{"id": "bob"}, nil, http.StatusCreated)
	// Webhooks work on PostgreSQL, through the API and the commands.
	callAPI(t, url, key, "POST", "/v1/webhooks", map[string]string{"url": "https://hooks.example.com/tidings"}, nil, http.StatusCreated)
	if list := mustRun(t, nil, "webhooks", "list", "--store", store, "--data", dir).stdout; !strings.Contains(list, "https://hooks.example.com/tidings") {
		t.Errorf("webhooks list on PostgreSQL:\n%s", list)
	}
	alice := strings.TrimSpace(mustRun(t, nil, "token", "--store", store, "--data", dir, "--user", "alice").stdout)
	bob := strings.TrimSpace(mustRun(t, nil, "token", "--store", store, "--data", dir, "--user", "bob").stdout)
	callAPI(t, url, alice, "POST", "/v1/conversations", tidings.NewConversation{ID: "pair",
		Participants: []tidings.NewParticipant{{UserID: "bob"}}}, nil, http.StatusCreated)
	// Push notifications too.
	callAPI(t, url, alice, "GET", "/v1/push/targets", nil, nil, http.StatusOK)
	cl, _ := connect(t, url, alice, "", "")
	_, in := connect(t, url, bob, "", "")
	sendAll(t, cl, "pair", numbered("m", 0, 5))
	evs := in.waitFor(t, "bob to receive the 5 messages", hasTexts("pair", numbered("m", 0, 5)))
	checkTexts(t, "bob", evs, "pair", numbered("m", 0, 5))
	code, logs := stop()
	if code != exitOK {
		t.Errorf("serve exited with %d; logs:\n%s", code, logs)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the data directory: %v, %v; want it made private", fi, err)
	}
	if want := "`tidings apps show --data " + dir + " --store " + shellQuote(redactURL(store)) + " default` prints its server key"; !strings.Contains(logs, want) {
		t.Errorf("serve did not log %q; logs:\n%s", want, logs)
	}
	if !strings.Contains(logs, "store="+redactURL(store)) {
		t.Errorf("serve did not log the store it uses; logs:\n%s", logs)
	}
}

// A broker that cannot be reached stops serve at start, saying which (its
// password left out).
func TestServeBrokerUnreachable(t *testing.T) {
	if !postgresBuilt || !natsBuilt {
		t.Skip("this build cannot open a PostgreSQL store or a NATS broker yet")
	}
	store := freshDatabase(t)
	r := runCLI(t, nil, "serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--store", store,
		"--broker", "nats://tidings:s3cret@127.0.0.1:1")
	if r.code != exitFailure || !strings.Contains(r.stderr, "connect to the broker nats://tidings:xxxxx@127.0.0.1:1") {
		t.Errorf("serve with an unreachable broker: exit code %d, stderr:\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "s3cret") {
		t.Errorf("serve printed the broker's password:\n%s", r.stderr)
	}
}

// --max-conns-per-user counts a user's connections on every node.
func TestClusterConnectionLimit(t *testing.T) {
	c := startCluster(t, 3, "--max-conns-per-user", "2")
	tok := c.user("alice")
	connect(t, c.nodes[0].url, tok, "phone", "")
	connect(t, c.nodes[1].url, tok, "laptop", "")
	third, err := client.New(c.nodes[2].url, client.WithToken(tok), client.WithDevice("tablet"), client.WithMode(client.ManualMode))
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	err = third.Connect(ctx)
	if client.ErrorCode(err) != tidings.ERateLimited {
		t.Errorf("a third connection of alice, on node 3, with two on nodes 1 and 2: %v; want rate_limited", err)
	}
}

// Webhooks in a cluster: one node (the holder of the webhooks lease)
// delivers each message sent through any node, once, in the
// conversation's order.
func TestClusterWebhooks(t *testing.T) {
	c, clients, _, _ := clusterUsers(t)
	r := newHookReceiver(t)
	var ep struct{ ID, Secret string }
	callAPI(t, c.nodes[1].url, c.key, "POST", "/v1/webhooks",
		map[string]any{"url": r.srv.URL + "/hooks", "events": []string{"conversationMessage.sent"}}, &ep, http.StatusCreated)
	r.secret.Store(ep.Secret)
	// Messages sent through the three nodes in turn.
	var want []string
	for i := range 9 {
		text := fmt.Sprintf("w%d", i)
		want = append(want, text)
		sendAll(t, clients[i%3], "room", []string{text})
	}
	deadline := time.Now().Add(clusterWait)
	for len(r.received()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := r.received(); !slices.Equal(got, want) {
		t.Errorf("the webhook receiver got %q, want %q", got, want)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.duplicates != 0 {
		t.Errorf("the webhook receiver got %d duplicates of %d deliveries; want none without a failure", r.duplicates, r.deliveries)
	}
}

// pushLine is what a node logs when it takes the push lease.
const pushLine = "this node sends the push notifications"

// pusher waits until a node of the cluster, among those not in except,
// logs that it sends the pushes, and returns its index.
func (c *testCluster) pusher(except ...int) int {
	c.t.Helper()
	deadline := time.Now().Add(clusterWait)
	for time.Now().Before(deadline) {
		for i, n := range c.nodes {
			if !slices.Contains(except, i) && strings.Contains(n.logs.String(), pushLine) {
				return i
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("no node logged %q within %s", pushLine, clusterWait)
	return -1
}

// Push notifications in a cluster: one node (the holder of the push
// lease) sends them, for messages sent through any node, to users online
// on no node; when it is killed, another takes over.
func TestClusterPush(t *testing.T) {
	wp := pushtest.NewWebPushService(t)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: wp.Server.Certificate().Raw})
	const window = 3 * time.Second
	c := startClusterEnv(t, 3, []string{testWebPushCA + "=" + string(ca)}, "--push-window", window.String())
	alice, bob := c.user("alice"), c.user("bob")
	callAPI(t, c.nodes[0].url, alice, "POST", "/v1/conversations", tidings.NewConversation{ID: "room",
		Participants: []tidings.NewParticipant{{UserID: "bob"}}}, nil, http.StatusCreated)
	var vapid struct{ PublicKey string }
	callAPI(t, c.nodes[2].url, bob, "GET", "/v1/push/vapid-public-key", nil, &vapid, http.StatusOK)
	wp.SetVAPIDKey(vapid.PublicKey)
	callAPI(t, c.nodes[1].url, bob, "POST", "/v1/push/targets", wp.Subscribe("bob-laptop"), nil, http.StatusCreated)
	send := func(node int, text string) {
		t.Helper()
		callAPI(t, c.nodes[node].url, alice, "POST", "/v1/conversations/room/messages", textMessage(text), nil, http.StatusCreated)
	}
	// notifications sums the pushes made by the nodes still running.
	notifications := func() float64 {
		t.Helper()
		var sum float64
		for _, n := range c.nodes {
			select {
			case <-n.done:
			default:
				sum += metric(t, n.url, "tidings_push_notifications_total")
			}
		}
		return sum
	}
	first := c.pusher()
	t.Logf("node %s sends the pushes", c.nodes[first].name)

	// A burst through the three nodes, bob offline everywhere: one push,
	// of the three messages.
	for i, text := range []string{"b1", "b2", "b3"} {
		send(i, text)
	}
	got := wp.Box.WaitFor(t, 1)
	if p := got[0].Payload; got[0].Target != "bob-laptop" || p["count"] != 3.0 || p["body"] != "3 new messages" || p["senderId"] != "alice" {
		t.Errorf("the burst's push: %+v; want one to bob-laptop of 3 messages", got[0])
	}

	// Bob connected to node 2 (node 3 if node 2 pushes: the node that
	// pushes must learn it from the other nodes): a message sent through
	// node 1 makes no push, though its window ends.
	bobNode := 1
	if first == 1 {
		bobNode = 2
	}
	bobClient, _ := connect(t, c.nodes[bobNode].url, bob, "", "")
	looked := metric(t, c.nodes[first].url, "tidings_push_messages_total")
	send(0, "while-online")
	deadline := time.Now().Add(clusterWait)
	for metric(t, c.nodes[first].url, "tidings_push_messages_total") < looked+1 {
		if time.Now().After(deadline) {
			t.Fatalf("the pushing node did not look at the message sent while bob is online")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Absence: let the window, had one opened, end (twice over).
	for end := time.Now().Add(2 * window); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if n := len(wp.Box.All()); n != 1 {
			t.Fatalf("bob, connected to node %s, got a push: %+v", c.nodes[bobNode].name, wp.Box.All()[1:])
		}
	}
	if n := notifications(); n != 1 {
		t.Errorf("the nodes made %v pushes, want 1", n)
	}

	// Bob offline again, everywhere.
	bobClient.Close()
	deadline = time.Now().Add(clusterWait)
	for {
		var pr struct{ Online []string }
		callAPI(t, c.nodes[2].url, alice, "GET", "/v1/conversations/room/presence", nil, &pr, http.StatusOK)
		if !slices.Contains(pr.Online, "bob") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob is still online %s after closing his connection", clusterWait)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The pushing node killed: another takes the lease over and pushes
	// the next message, sent through a third node.
	c.nodes[first].kill()
	next := c.pusher(first)
	t.Logf("node %s killed; node %s sends the pushes", c.nodes[first].name, c.nodes[next].name)
	via := 3 - first - next
	send(via, "after-the-kill")
	got = wp.Box.WaitFor(t, 2)
	if p := got[1].Payload; got[1].Target != "bob-laptop" || p["count"] != 1.0 || p["body"] != "after-the-kill" {
		t.Errorf("the push after the kill: %+v; want one to bob-laptop of that message", got[1])
	}
	if n := len(wp.Box.All()); n != 2 {
		t.Errorf("%d pushes, want 2: %+v", n, wp.Box.All())
	}
}

// A node is killed (SIGKILL) with a user's only connection on it: once
// its presence lease lapses, a friend connected to another node is told
// that the user went offline, and presence.get no longer lists them.
func TestClusterNodeDeathPresence(t *testing.T) {
	c := startCluster(t, 3, "--presence-lease", "2s")
	alice, carol := c.user("alice"), c.user("carol")
	callAPI(t, c.nodes[0].url, alice, "POST", "/v1/conversations", tidings.NewConversation{ID: "room",
		Participants: []tidings.NewParticipant{{UserID: "carol"}}}, nil, http.StatusCreated)
	aliceCl, aliceIn := connect(t, c.nodes[0].url, alice, "", "")
	connect(t, c.nodes[2].url, carol, "", "")
	carolIs := func(online bool) func([]client.Event) bool {
		return func(evs []client.Event) bool {
			for _, e := range evs {
				if p, ok := e.(*client.PresenceUpdate); ok && p.ProfileID == "carol" && p.Online == online {
					return true
				}
			}
			return false
		}
	}
	aliceIn.waitFor(t, "alice (node 1) to see carol (node 3) online", carolIs(true))
	c.nodes[2].kill()
	aliceIn.waitFor(t, "alice (node 1) to see carol go offline with node 3", carolIs(false))
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	online, _, err := aliceCl.Socket().Presence(ctx, "room")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(online, "carol") {
		t.Errorf("presence.get through node 1 lists %q online after carol's node died", online)
	}
	offline := 0
	for _, e := range aliceIn.snapshot() {
		if p, ok := e.(*client.PresenceUpdate); ok && p.ProfileID == "carol" && !p.Online {
			offline++
		}
	}
	if offline != 1 {
		t.Errorf("alice was told %d times that carol went offline, want once", offline)
	}
}

// A user deactivated by the users command, which opens the store and
// tells no node: each node reads the users of its connections again
// (--access-check) and closes the user's, on every node, with 4011;
// another user's connection stays.
func TestClusterAccessCheck(t *testing.T) {
	c := startCluster(t, 3, "--access-check", "1s")
	alice, bob := c.user("alice"), c.user("bob")
	var watches []*closeWatch
	for _, i := range []int{1, 2} {
		cw, opts := watchCloses(client.WithToken(bob), client.WithDevice(fmt.Sprintf("d%d", i)))
		cl, err := client.New(c.nodes[i].url, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
		err = cl.WaitConnected(ctx)
		cancel()
		if err != nil {
			t.Fatalf("bob connects to %s: %v", c.nodes[i].name, err)
		}
		watches = append(watches, cw)
	}
	aliceWatch, opts := watchCloses(client.WithToken(alice))
	aliceCl, err := client.New(c.nodes[1].url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer aliceCl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	if err := aliceCl.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	mustRun(t, nil, "users", "deactivate", "--store", c.store, "--data", t.TempDir(), "--app", c.app, "bob")
	for i, cw := range watches {
		cw.waitFor(t, fmt.Sprintf("bob's connection to %s closed", c.nodes[i+1].name), func(cw *closeWatch) bool {
			return slices.Contains(cw.codes, protocol.CloseUserDeactivated) && slices.Contains(cw.reasons, protocol.ReasonUserDeactivated)
		})
	}
	aliceWatch.mu.Lock()
	defer aliceWatch.mu.Unlock()
	if len(aliceWatch.codes) != 0 || len(aliceWatch.reasons) != 0 {
		t.Errorf("alice's connection was closed too: %v, %v", aliceWatch.codes, aliceWatch.reasons)
	}
}
