package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Several accounts on one connection, from the browser SDK
// (client.addAccount): each account gets its own updates, tagged with
// its name, resumes from its own ref, and logs out alone.

// metric reads one gauge or counter (without labels) from the server's /metrics.
func metric(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q", name, v)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// waitMetrics waits until the server holds conns realtime connections with
// sessions accounts authenticated on them.
func waitMetrics(t *testing.T, url string, conns, sessions float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, s := metric(t, url, "tidings_realtime_connections"), metric(t, url, "tidings_realtime_sessions")
		if c == conns && s == sessions {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server holds %v connections with %v accounts, want %v with %v", c, s, conns, sessions)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// restJSON sends a JSON request to the API with a user's token, failing the
// test unless it succeeds, and decodes the answer into out (unless nil).
func restJSON(t *testing.T, url, token, method, path, body string, out any) {
	t.Helper()
	req, err := http.NewRequest(method, url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d", method, path, resp.StatusCode)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
}

// accountsFixture is a server, alice's token to send with, and a page
// whose globals BOB and CAROL are the tokens of the two accounts.
type accountsFixture struct {
	t                 *testing.T
	dir, url          string
	stop              func() (int, string)
	alice, bob, carol string
	pg                *page
}

func newAccountsFixture(t *testing.T) *accountsFixture {
	t.Helper()
	b := newBrowser(t)
	f := &accountsFixture{t: t, dir: t.TempDir()}
	// No user rate: alice sends bursts of 200 messages at full speed, and
	// the limit (50/s, bursts of 100) is not what these tests are about.
	f.url, f.stop = startServe(t, f.dir, "--dev", "--user-rate", "0")
	t.Cleanup(func() { f.stop() })
	f.alice, f.bob, f.carol = mintDevToken(t, f.url, "alice"), mintDevToken(t, f.url, "bob"), mintDevToken(t, f.url, "carol")
	f.pg = b.newProfile("accounts").open(f.url + "/")
	f.pg.eval(`window.BOB = `+js(f.bob)+`; window.CAROL = `+js(f.carol)+`; true`, new(bool))
	return f
}

// conversation makes alice's conversation with user and returns its id.
func (f *accountsFixture) conversation(name, user string) string {
	var c struct{ ID string }
	restJSON(f.t, f.url, f.alice, "POST", "/v1/conversations", `{"name":`+js(name)+`,"participants":[{"userId":`+js(user)+`}]}`, &c)
	return c.ID
}

// send makes alice send text to the conversation.
func (f *accountsFixture) send(conv, text string) {
	restJSON(f.t, f.url, f.alice, "POST", "/v1/conversations/"+conv+"/messages",
		`{"parts":[{"type":"text/plain","data":`+js(text)+`}]}`, nil)
}

// The page's got: the messages its listener received, by account, and
// what its account listener (work's) received.
const accountsListeners = `
	window.got = { default: [], work: [], workOnly: [] };
	const text = ev => ev.name === 'conversationMessage.sent' ? [ev.payload.parts[0].data] : [];
	client.addEventListener(ev => { (got[ev.account] ||= []).push(...text(ev)); });
`

func (f *accountsFixture) got() map[string][]string {
	var got map[string][]string
	f.pg.eval(`got`, &got)
	return got
}

// waitGot waits until the page's listener received what want says, by account.
func (f *accountsFixture) waitGot(want map[string][]string) {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := f.got()
		done := true
		for k, v := range want {
			if len(got[k]) < len(v) {
				done = false
			}
		}
		if done {
			for k, v := range want {
				if !reflect.DeepEqual(got[k], v) {
					f.t.Fatalf("the account %s got %q, want %q", k, got[k], v)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("waited 30s for %v; got %v", want, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSDKAccountsOnOneConnection(t *testing.T) {
	f := newAccountsFixture(t)
	pg := f.pg
	toBob, toCarol := f.conversation("bob's", "bob"), f.conversation("carol's", "carol")

	step(t, "two accounts on one connection")
	{
		var got map[string]any
		pg.eval(sdkScript(`
			const client = new Client(location.origin, { token: BOB, device: 'web', backoff: { initial: 100, max: 1000 } });
			window.client = client;
			`+accountsListeners+`
			window.statuses = [];
			client.addStatusListener(s => statuses.push(s.status));
			await client.waitConnected();
			const work = await client.addAccount('work', { token: CAROL });
			window.work = work;
			work.addEventListener(ev => { got.workOnly.push(...text(ev)); });
			const out = {};
			out.accounts = client.accounts.map(a => a.name + ':' + a.userId);
			out.connected = work.connected;
			out.again = await code(() => client.addAccount('work', { token: CAROL }));
			out.badName = await code(() => client.addAccount('no spaces', { token: CAROL }));
			out.badToken = await code(() => client.addAccount('bad', { token: 'not.a-token.at-all' }));
			out.after = client.accounts.map(a => a.name);
			// Each account acts for its own user.
			out.me = [(await client.me()).id, (await work.me()).id];
			return out;
		`), &got)
		want := map[string]any{
			"accounts": []any{"default:bob", "work:carol"}, "connected": true,
			"again": "already_logged_in", "badName": "TypeError: tidings: account name \"no spaces\" is not valid: use 1 to 64 letters, digits, _ and -",
			"badToken": "unauthenticated", "after": []any{"default", "work"},
			"me": []any{"bob", "carol"},
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v\nwant %v", got, want)
		}
		waitMetrics(t, f.url, 1, 2)
	}

	step(t, "each account gets its own updates, tagged with its name")
	{
		f.send(toBob, "bob 1")
		f.send(toCarol, "carol 1")
		f.waitGot(map[string][]string{"default": {"bob 1"}, "work": {"carol 1"}, "workOnly": {"carol 1"}})
		// The account's socket commands and REST calls are its user's.
		var got map[string]any
		pg.eval(sdkScript(`
			const m = await work.socket.sendMessage(`+js(toCarol)+`, { parts: [{ type: 'text/plain', data: 'carol says hi' }], clientId: 'c-hi' });
			// Sent again (the same clientId): the message sent first.
			const again = await work.socket.sendMessage(`+js(toCarol)+`, { parts: [{ type: 'text/plain', data: 'carol says hi again' }], clientId: 'c-hi' });
			await work.socket.markRead(`+js(toCarol)+`, m.seq);
			await work.socket.startTyping(`+js(toCarol)+`);
			const p = await work.getPresence(`+js(toCarol)+`);
			await until('carol\'s echo', () => got.work.length === 2);
			const conv = await work.getConversation(`+js(toCarol)+`);
			const forBob = await code(() => client.getConversation(`+js(toCarol)+`));
			// The answer holds what the server added; the SDK gives the whole message.
			const whole = msg => [msg.id === m.id, msg.conversationId === `+js(toCarol)+`, msg.seq, msg.sender.displayName !== undefined,
				msg.clientId, msg.parts[0].data, !!msg.sentAt, 'duplicate' in msg];
			return { sender: m.sender.id, sent: whole(m), again: whole(again), online: p.online, typing: p.typing, readSeq: conv.readSeq, forBob };
		`), &got)
		sent := []any{true, true, float64(2), true, "c-hi", "carol says hi", true, false}
		want := map[string]any{"sender": "carol", "sent": sent, "again": sent, "online": []any{"carol"}, "typing": []any{"carol"}, "readSeq": float64(2), "forBob": "not_found"}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v\nwant %v", got, want)
		}
	}

	step(t, "the server restarts: both accounts resume, nothing lost, nothing twice")
	{
		addr := strings.TrimPrefix(f.url, "http://")
		if code, logs := f.stop(); code != exitOK {
			t.Fatalf("serve exited with %d:\n%s", code, logs)
		}
		pg.waitFor("the page to see the server gone", `client.status !== 'connected'`, "client.status")
		_, f.stop = startServe(t, f.dir, "--dev", "--addr", addr)
		// Sent while the page reconnects: replayed or live, once each.
		f.send(toBob, "bob 2")
		f.send(toCarol, "carol 2")
		pg.waitFor("the page connected again", `client.status === 'connected' && work.connected`, "[client.status, work.connected]")
		f.send(toBob, "bob 3")
		f.send(toCarol, "carol 3")
		f.waitGot(map[string][]string{
			"default": {"bob 1", "bob 2", "bob 3"},
			"work":    {"carol 1", "carol says hi", "carol 2", "carol 3"},
		})
		waitMetrics(t, f.url, 1, 2)
	}

	step(t, "logging out one account leaves the other receiving")
	{
		var got map[string]any
		pg.eval(sdkScript(`
			work.logout();
			return { accounts: client.accounts.map(a => a.name), connected: work.connected, status: client.status, me: await code(() => work.me()) };
		`), &got)
		want := map[string]any{"accounts": []any{"default"}, "connected": false, "status": "connected", "me": "not_logged_in"}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v\nwant %v", got, want)
		}
		waitMetrics(t, f.url, 1, 1)
		f.send(toCarol, "carol 4")
		f.send(toBob, "bob 4")
		f.waitGot(map[string][]string{"default": {"bob 1", "bob 2", "bob 3", "bob 4"}})
		if got := f.got()["work"]; len(got) != 4 {
			t.Errorf("the logged out account got %q", got)
		}
	}

	step(t, "logging out the last account is a clean end")
	{
		var got map[string]any
		pg.eval(sdkScript(`
			statuses.length = 0;
			client.logout();
			await new Promise(r => setTimeout(r, 300)); // no reconnection comes
			return { statuses, status: client.status, accounts: client.accounts.length, wait: await code(() => client.waitConnected()) };
		`), &got)
		want := map[string]any{"statuses": []any{"disconnected"}, "status": "disconnected", "accounts": float64(0), "wait": "not_logged_in"}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v\nwant %v", got, want)
		}
		waitMetrics(t, f.url, 0, 0)
	}

	step(t, "a client of other accounts only")
	{
		var got map[string]any
		pg.eval(sdkScript(`
			const again = await client.addAccount('work', { token: CAROL }); // no connection: checked by the REST API
			await client.waitConnected();
			await until('work back', () => again.connected);
			return { accounts: client.accounts.map(a => a.name), userId: client.userId, me: await code(() => client.me()), work: (await again.me()).id };
		`), &got)
		want := map[string]any{"accounts": []any{"work"}, "userId": "", "me": "not_logged_in", "work": "carol"}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %v\nwant %v", got, want)
		}
		waitMetrics(t, f.url, 1, 1)
		f.send(toCarol, "carol 5")
		// Back on the device's cursor, which the logout stored: what came
		// meanwhile, and nothing processed before.
		f.waitGot(map[string][]string{"work": {"carol 1", "carol says hi", "carol 2", "carol 3", "carol 4", "carol 5"}})
		pg.eval(`client.close(); true`, new(bool))
	}

	// One connection carried both: one auth per account on each
	// connection (two at least: one before the restart, one after; a
	// loaded machine may add a reconnection), and work's third, on the
	// connection of the last step.
	var auths = map[string]int{}
	for _, fr := range pg.sentFrames() {
		var c struct{ Type, Command, Account string }
		if json.Unmarshal([]byte(fr), &c) == nil && c.Command == "auth" {
			auths[cmp(c.Account, "default")]++
		}
	}
	if auths["default"] < 2 || auths["work"] != auths["default"]+1 {
		t.Errorf("auth commands by account: %v, want as many for default and work on their connections (2 or more), and work's third", auths)
	}
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Replies are coalesced per account: a burst of updates costs a few reply
// frames, not one per update, each acknowledging only what the listeners
// processed; logout replies at once, before the logout itself.
func TestSDKCoalescesReplies(t *testing.T) {
	f := newAccountsFixture(t)
	pg := f.pg
	toBob, toCarol := f.conversation("bob's", "bob"), f.conversation("carol's", "carol")
	// Both accounts join, then the connection closes while alice sends a
	// burst to each: it comes at once when the connection opens again.
	pg.eval(sdkScript(`
		const client = new Client(location.origin, { mode: 'manual', token: BOB, device: 'web' });
		window.client = client;
		`+accountsListeners+`
		window.first = {}; window.last = {};
		client.addEventListener(async ev => {
			first[ev.account] ||= Date.now();
			await new Promise(r => setTimeout(r, 2)); // some work
			last[ev.account] = Date.now();
		});
		await client.connect();
		window.work = await client.addAccount('work', { token: CAROL });
		client.disconnect();
		return true;
	`), new(bool))
	waitMetrics(t, f.url, 0, 0)
	const n = 100
	var want = map[string][]string{}
	for i := range n {
		b, c := fmt.Sprintf("bob %d", i), fmt.Sprintf("carol %d", i)
		f.send(toBob, b)
		f.send(toCarol, c)
		want["default"] = append(want["default"], b)
		want["work"] = append(want["work"], c)
	}
	pg.eval(`client.connect().then(() => true)`, new(bool))
	f.waitGot(want)

	var st struct {
		LastRef map[string]string
		Took    map[string]float64
	}
	pg.eval(`({ lastRef: { default: client.lastRef, work: work.lastRef }, took: { default: last.default - first.default, work: last.work - first.work } })`, &st)
	// Wait until the last reply of each account went out (at most ackDelay after the last update).
	lastReply := func() map[string]string {
		last := map[string]string{}
		for _, fr := range pg.sentFrames() {
			var r struct{ Type, Ref, Account string }
			if json.Unmarshal([]byte(fr), &r) == nil && r.Type == "reply" {
				last[cmp(r.Account, "default")] = r.Ref
			}
		}
		return last
	}
	// Updates may still come after the messages (the marks that follow
	// them): read the refs processed again until the replies catch up.
	lastRef := func() map[string]string {
		var refs map[string]string
		pg.eval(`({ default: client.lastRef, work: work.lastRef })`, &refs)
		return refs
	}
	for deadline := time.Now().Add(10 * time.Second); !reflect.DeepEqual(lastReply(), st.LastRef); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("last replies %v, want the last refs processed %v", lastReply(), st.LastRef)
		}
		st.LastRef = lastRef()
	}
	replies := map[string]int{}
	for _, fr := range pg.sentFrames() {
		var r struct{ Type, Ref, Account string }
		if json.Unmarshal([]byte(fr), &r) == nil && r.Type == "reply" {
			replies[cmp(r.Account, "default")]++
		}
	}
	for _, acc := range []string{"default", "work"} {
		// At most one every 250 ms, one more each 64 updates, and the last.
		most := int(st.Took[acc]/250) + n/64 + 2
		t.Logf("%s: %d updates in %.0f ms, %d replies (at most %d)", acc, n, st.Took[acc], replies[acc], most)
		if replies[acc] < 1 || replies[acc] > most {
			t.Errorf("%s: %d reply frames for %d updates in %.0f ms, want 1 to %d", acc, replies[acc], n, st.Took[acc], most)
		}
	}
	// The server's cursor of each device is where the listeners stand: a
	// poll from it finds nothing after it, and resumes where they are.
	// Updates that came after the loop above (more marks) are processed
	// and replied to meanwhile: until then the poll returns them, and its
	// lastRef is theirs, not the cursor's.
	for acc, tok := range map[string]string{"default": f.bob, "work": f.carol} {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			var res struct {
				Updates []json.RawMessage
				LastRef string
			}
			restJSON(t, f.url, tok, "GET", "/v1/realtime/poll?device=web&wait=0", "", &res)
			at := lastRef()[acc]
			if len(res.Updates) == 0 && res.LastRef == at {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: a poll from the server's cursor returns %d updates and lastRef %s; want none, at the listeners' %s", acc, len(res.Updates), res.LastRef, at)
				break
			}
		}
	}

	step(t, "logout replies at once, before the logout")
	{
		f.send(toCarol, "carol last")
		want["work"] = append(want["work"], "carol last")
		f.waitGot(want)
		var ref string
		pg.eval(`(() => { const ref = work.lastRef; work.logout(); return ref; })()`, &ref)
		var seq []string
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			seq = seq[:0]
			for _, fr := range pg.sentFrames() {
				var r struct{ Type, Ref, Account, Command string }
				if json.Unmarshal([]byte(fr), &r) == nil && r.Account == "work" && (r.Type == "reply" || r.Command == "logout") {
					seq = append(seq, r.Type+" "+r.Ref+r.Command)
				}
			}
			if len(seq) > 0 && seq[len(seq)-1] == "command logout" || time.Now().After(deadline) {
				break
			}
		}
		if len(seq) < 2 || seq[len(seq)-2] != "reply "+ref || seq[len(seq)-1] != "command logout" {
			t.Errorf("work's last frames %q, want a reply of %s, then the logout", seq, ref)
		}
	}
}

// On the polling transport, each account polls and replies with its own
// token: the same accounts, tagged the same way.
func TestSDKAccountsOnPolling(t *testing.T) {
	f := newAccountsFixture(t)
	pg := f.pg
	toBob, toCarol := f.conversation("bob's", "bob"), f.conversation("carol's", "carol")
	pg.eval(sdkScript(`
		const client = new Client(location.origin, { token: BOB, device: 'web', transport: 'polling', pollWait: 5000 });
		window.client = client;
		`+accountsListeners+`
		await client.waitConnected();
		window.work = await client.addAccount('work', { token: CAROL });
		return client.transport === 'polling' && work.connected;
	`), new(bool))
	f.send(toBob, "bob 1")
	f.send(toCarol, "carol 1")
	f.waitGot(map[string][]string{"default": {"bob 1"}, "work": {"carol 1"}})
	// Each device's cursor follows its own account.
	for acc, tok := range map[string]string{"default": f.bob, "work": f.carol} {
		var want string
		pg.eval(map[string]string{"default": "client.lastRef", "work": "work.lastRef"}[acc], &want)
		deadline := time.Now().Add(10 * time.Second)
		for {
			var res struct{ LastRef string }
			restJSON(t, f.url, tok, "GET", "/v1/realtime/poll?device=web&wait=0", "", &res)
			if res.LastRef == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the server's cursor is %s, want %s", acc, res.LastRef, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	pg.eval(`work.logout(); client.accounts.length`, new(float64))
	f.send(toCarol, "carol 2")
	f.send(toBob, "bob 2")
	f.waitGot(map[string][]string{"default": {"bob 1", "bob 2"}})
	if got := f.got()["work"]; len(got) != 1 {
		t.Errorf("the logged out account got %q", got)
	}
	pg.eval(`client.close(); true`, new(bool))
}

// The server ends an account whose token expires (account.closed): the
// update names it, the account stays off (its fixed token cannot be
// renewed), and the other account, whose tokens are renewed, keeps the
// connection and its updates.
func TestSDKAccountClosedLeavesTheOthers(t *testing.T) {
	b := newBrowser(t)
	url, stop := startServe(t, t.TempDir(), "--dev", "--token-ttl", "3s")
	t.Cleanup(func() { stop() })
	f := &accountsFixture{t: t, url: url}
	f.pg = b.newProfile("accounts").open(url + "/")
	mintDevToken(t, url, "bob")             // makes the user
	f.alice = mintDevToken(t, url, "alice") // tokens live 3 s
	toBob := f.conversation("bob's", "bob")
	f.pg.eval(`window.CAROL = `+js(mintDevToken(t, url, "carol"))+`; true`, new(bool))
	var got map[string]any
	f.pg.eval(sdkScript(`
		const mint = async user => (await fetch('/v1/dev/token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ userId: user }) }).then(r => r.json())).token;
		const client = new Client(location.origin, { device: 'web', tokenProvider: () => mint('bob') });
		window.client = client;
		`+accountsListeners+`
		window.ended = [];
		client.addEventListener(ev => { if (ev.name === 'account.closed') ended.push(ev.account + ':' + ev.payload.reason); });
		await client.waitConnected();
		const work = await client.addAccount('work', { token: CAROL });
		window.work = work;
		await until('work closed by the server', () => ended.length > 0 && work.error);
		return { closed: ended, error: work.error.code, connected: work.connected, status: client.status };
	`), &got)
	want := map[string]any{"closed": []any{"work:token_expired"}, "error": "unauthenticated", "connected": false, "status": "connected"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	waitMetrics(t, url, 1, 1)
	f.alice = mintDevToken(t, url, "alice")
	f.send(toBob, "still there?")
	f.waitGot(map[string][]string{"default": {"still there?"}})
	f.pg.eval(`client.close(); true`, new(bool))
}
