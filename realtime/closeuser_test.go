package realtime

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
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
