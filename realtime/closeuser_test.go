package realtime

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/token"
)

// accountClosed returns the reasons of the account.closed updates w got.
func (w *wire) accountClosed() []string {
	var out []string
	for _, f := range w.snapshot() {
		if f.Type != protocol.TypeUpdate {
			continue
		}
		var ev protocol.Event
		var p protocol.AccountClosedPayload
		if jsonUnmarshal(f.Event, &ev) == nil && ev.Name == protocol.EventAccountEnds && jsonUnmarshal(ev.Payload, &p) == nil {
			out = append(out, p.Reason)
		}
	}
	return out
}

func (w *wire) closeCode() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

// TestCloseUserReachesEveryNode: CloseUser on one node of a cluster ends
// the user's sessions on every node at once (account.closed, then the
// close code of the reason), and nobody else's.
func TestCloseUserReachesEveryNode(t *testing.T) {
	cl := newCluster(t)
	a, b := cl.node("A"), cl.node("B")
	bobA := cl.online(a, "bob", "phone", "")
	bobB := cl.online(b, "bob", "laptop", "")
	carol := cl.online(b, "carol", "", "")
	if err := a.CloseUser(context.Background(), "a", "bob", protocol.ReasonUserDeactivated); err != nil {
		t.Fatal(err)
	}
	for name, cn := range map[string]*conn{"bob on A": bobA, "bob on B": bobB} {
		waitUntil(t, name+" closed", func() bool { return cn.w.closeCode() == protocol.CloseUserDeactivated })
		if got := cn.w.accountClosed(); !slices.Equal(got, []string{protocol.ReasonUserDeactivated}) {
			t.Errorf("%s got account.closed %v", name, got)
		}
	}
	if carol.w.closeCode() != 0 || len(carol.w.accountClosed()) != 0 {
		t.Errorf("carol's connection: closed %d, account.closed %v", carol.w.closeCode(), carol.w.accountClosed())
	}
	// Bob's messages still reach carol; none reach bob's ended sessions.
	cl.send("alice", "after")
	carol.waitTexts("after")
	if got := bobB.w.texts(t); len(got) != 0 {
		t.Errorf("bob's closed session received %v", got)
	}
}

// TestCloseUserOneAccountOfSeveral: on a connection with two accounts,
// closing one user ends their account only.
func TestCloseUserOneAccountOfSeveral(t *testing.T) {
	cl := newCluster(t)
	a := cl.node("A")
	cn := cl.online(a, "bob", "", "")
	tok := cl.mint("carol")
	ans := cn.commandAs("work", protocol.CmdAuth, protocol.AuthArgs{Token: tok})
	if ans.Error != nil {
		t.Fatal(ans.Error.Message)
	}
	if err := a.CloseUser(context.Background(), "a", "carol", protocol.ReasonTokensRevoked); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "carol's account closed", func() bool { return len(cn.w.accountClosed()) == 1 })
	if cn.w.closeCode() != 0 {
		t.Errorf("the connection closed (%d) though bob's account stays", cn.w.closeCode())
	}
	cl.send("alice", "still here")
	waitUntil(t, "bob gets the message", func() bool { return len(cn.w.texts(t)) >= 1 })
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func (cl *cluster) mint(user string) string {
	cl.t.Helper()
	tok, _, err := token.Mint(cl.app, user, time.Hour, time.Now())
	if err != nil {
		cl.t.Fatal(err)
	}
	return tok
}

// commandAs sends a command of account and waits for its answer.
func (cn *conn) commandAs(account, name string, args any) protocol.Frame {
	cn.t.Helper()
	cn.ids++
	id := strconv.Itoa(cn.ids)
	data, _ := json.Marshal(args)
	f, _ := json.Marshal(protocol.Frame{Type: protocol.TypeCommand, ID: id, Account: account, Command: name, Data: data})
	cn.c.Handle(f)
	return cn.w.answer(cn.t, id)
}

// The account.closed update of CloseUser is lost on its way to node B:
// B reads the users of its sessions again (AccessCheck) and ends those
// the app no longer allows all the same: a deactivated user's sessions,
// and those whose token was revoked; nobody else's.
func TestAccessCheckEndsWhatCloseUserLost(t *testing.T) {
	cl := newCluster(t)
	check := func(n *Node) { n.AccessCheck = 50 * time.Millisecond }
	a, b := cl.node("A", check), cl.node("B", check)
	bob := cl.online(b, "bob", "", "")
	alice := cl.online(b, "alice", "", "")
	carol := cl.online(b, "carol", "", "")
	cl.subOf(b).lose.Store(true)
	server := tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: "a", Server: true})
	if _, err := cl.users.DeactivateUser(server, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := a.CloseUser(context.Background(), "a", "bob", protocol.ReasonUserDeactivated); err != nil {
		t.Fatal(err)
	}
	// Revoked by a command that opened the store: nobody calls CloseUser.
	if _, err := cl.users.RevokeTokens(server, "alice"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		who    string
		cn     *conn
		code   int
		reason string
	}{{"bob", bob, protocol.CloseUserDeactivated, protocol.ReasonUserDeactivated},
		{"alice", alice, protocol.CloseTokensRevoked, protocol.ReasonTokensRevoked}} {
		waitUntil(t, c.who+" closed on B", func() bool { return c.cn.w.closeCode() == c.code })
		if got := c.cn.w.accountClosed(); !slices.Equal(got, []string{c.reason}) {
			t.Errorf("%s got account.closed %v", c.who, got)
		}
	}
	if carol.w.closeCode() != 0 || len(carol.w.accountClosed()) != 0 {
		t.Errorf("carol's connection: closed %d, account.closed %v", carol.w.closeCode(), carol.w.accountClosed())
	}
}

// The user is deactivated while the broker is down, so that CloseUser's
// update reaches no node: once the broker is back and ranges chain
// again, every node reads the users of its sessions again, and ends the
// user's sessions (the periodic check is an hour away).
func TestAccessCheckAfterTheBrokerIsBack(t *testing.T) {
	cl := newCluster(t)
	configure := func(n *Node) { n.AccessCheck, n.TailHeartbeat = time.Hour, 20*time.Millisecond }
	a, b := cl.node("A", configure), cl.node("B", configure)
	bobA := cl.online(a, "bob", "phone", "")
	bobB := cl.online(b, "bob", "laptop", "")
	carol := cl.online(b, "carol", "", "")
	cl.broker.setDown(true)
	server := tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: "a", Server: true})
	if _, err := cl.users.DeactivateUser(server, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := a.CloseUser(context.Background(), "a", "bob", protocol.ReasonUserDeactivated); err == nil {
		t.Fatal("CloseUser with the broker down succeeded")
	}
	cl.broker.setDown(false)
	for name, cn := range map[string]*conn{"bob on A": bobA, "bob on B": bobB} {
		waitUntil(t, name+" closed", func() bool { return cn.w.closeCode() == protocol.CloseUserDeactivated })
	}
	if carol.w.closeCode() != 0 {
		t.Errorf("carol's connection closed: %d", carol.w.closeCode())
	}
}

// countingUsers is a node's Users that counts the reads of each user and
// of the access log.
type countingUsers struct {
	*sqlite.UserService
	mu       sync.Mutex
	reads    map[string]int // by user id
	logReads int
	// incomplete has the log say that it no longer holds what was
	// logged since any point, and return nothing.
	incomplete bool
}

func (c *countingUsers) count(ids ...string) {
	c.mu.Lock()
	for _, id := range ids {
		c.reads[id]++
	}
	c.mu.Unlock()
}

func (c *countingUsers) FindUserByID(ctx context.Context, id string) (*tidings.User, error) {
	c.count(id)
	return c.UserService.FindUserByID(ctx, id)
}

func (c *countingUsers) FindUsersByIDs(ctx context.Context, ids []string) ([]*tidings.User, error) {
	c.count(ids...)
	return c.UserService.FindUsersByIDs(ctx, ids)
}

func (c *countingUsers) AccessChangesSince(ctx context.Context, after int64, limit int) ([]tidings.UserRef, int64, bool, error) {
	c.mu.Lock()
	c.logReads++
	incomplete := c.incomplete
	c.mu.Unlock()
	if incomplete {
		return nil, after, false, nil
	}
	return c.UserService.AccessChangesSince(ctx, after, limit)
}

func (c *countingUsers) snapshot() (map[string]int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.reads), c.logReads
}

// With a store that logs the users whose access changed, the access
// check reads no user while nothing changed; and when another process
// (a `tidings users` command, which opens the database itself) deactivates
// a user, revokes another's tokens and deletes a third, the node, which
// nobody told, still closes their connections within about AccessCheck,
// reading again the users changed only (all the app's users for a
// deletion, which the log keeps no trace of).
func TestAccessCheckReadsOnlyWhatChanged(t *testing.T) {
	cl := newCluster(t)
	server := tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: "a", Server: true})
	if _, err := cl.users.CreateUser(server, &tidings.User{ID: "dave"}); err != nil {
		t.Fatal(err)
	}
	users := &countingUsers{UserService: cl.users, reads: map[string]int{}}
	a := cl.node("A", func(n *Node) { n.AccessCheck, n.Users = 20*time.Millisecond, users })
	// The node's first check, as it opens, takes the log's head: the
	// later ones read the log.
	waitUntil(t, "the first check", func() bool { _, n := users.snapshot(); return n >= 1 })
	conns := map[string]*conn{}
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		conns[u] = cl.online(a, u, "", "")
	}
	// No check reads a user while nothing changed: not even once, since
	// the node had no session when it took the log's head.
	_, k := users.snapshot()
	waitUntil(t, "three checks after the connections", func() bool { _, n := users.snapshot(); return n >= k+3 })
	before, _ := users.snapshot()
	if len(before) != 0 {
		t.Fatalf("checks with nothing changed read users: %v", before)
	}

	// Another process writes the database.
	other := sqlite.NewDB(cl.path)
	other.Beside = true // an operator command's
	other.Logger = slog.New(slog.DiscardHandler)
	if err := other.Open(); err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	cli := sqlite.NewUserService(other)
	if _, err := cli.DeactivateUser(server, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.RevokeTokens(server, "alice"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		who    string
		code   int
		reason string
	}{{"bob", protocol.CloseUserDeactivated, protocol.ReasonUserDeactivated},
		{"alice", protocol.CloseTokensRevoked, protocol.ReasonTokensRevoked}} {
		cn := conns[c.who]
		waitUntil(t, c.who+" closed", func() bool { return cn.w.closeCode() == c.code })
		if got := cn.w.accountClosed(); !slices.Equal(got, []string{c.reason}) {
			t.Errorf("%s got account.closed %v", c.who, got)
		}
	}
	after, _ := users.snapshot()
	for _, u := range []string{"carol", "dave"} {
		if after[u] != before[u] {
			t.Errorf("%s, unchanged, was read again: %d reads, %d before", u, after[u], before[u])
		}
	}
	for _, u := range []string{"alice", "bob"} {
		if after[u] <= before[u] {
			t.Errorf("%s was not read again (%d reads)", u, after[u])
		}
	}

	// A deletion leaves no trace of the user in the log: the node reads
	// its users of the app again, and closes the deleted user's
	// connection.
	if err := cli.DeleteUser(server, "carol", tidings.AnonymizeMessages); err != nil {
		t.Fatal(err)
	}
	carol, dave := conns["carol"], conns["dave"]
	waitUntil(t, "carol closed", func() bool { return carol.w.closeCode() == protocol.CloseUserDeleted })
	if got := carol.w.accountClosed(); !slices.Equal(got, []string{protocol.ReasonUserDeleted}) {
		t.Errorf("carol got account.closed %v", got)
	}
	if dave.w.closeCode() != 0 || len(dave.w.accountClosed()) != 0 {
		t.Errorf("dave's connection: closed %d, account.closed %v", dave.w.closeCode(), dave.w.accountClosed())
	}
}

// When the log no longer holds what was logged since the last check (its
// oldest entries went, or the database was made again), the node reads
// every user of its sessions again: a user deactivated meanwhile is
// closed all the same.
func TestAccessCheckReadsEveryoneWhenTheLogCannotTell(t *testing.T) {
	cl := newCluster(t)
	users := &countingUsers{UserService: cl.users, reads: map[string]int{}}
	a := cl.node("A", func(n *Node) { n.AccessCheck, n.Users = 20*time.Millisecond, users })
	bob, carol := cl.online(a, "bob", "", ""), cl.online(a, "carol", "", "")
	_, k := users.snapshot()
	waitUntil(t, "a check after the connections", func() bool { _, n := users.snapshot(); return n >= k+2 })
	users.mu.Lock()
	users.incomplete = true
	users.mu.Unlock()
	server := tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: "a", Server: true})
	if _, err := cl.users.DeactivateUser(server, "bob"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "bob closed", func() bool { return bob.w.closeCode() == protocol.CloseUserDeactivated })
	if carol.w.closeCode() != 0 {
		t.Errorf("carol's connection closed: %d", carol.w.closeCode())
	}
}
