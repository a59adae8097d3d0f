package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
)

// The browser SDK (/sdk/tidings.js) in a real browser, against "tidings
// serve --dev": each test runs a script in a page of the server's origin.

// mintDevToken signs user in by name and returns their access token.
func mintDevToken(t *testing.T, url, user string) string {
	t.Helper()
	resp, err := http.Post(url+"/v1/dev/token", "application/json", strings.NewReader(`{"userId":"`+user+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/dev/token for %s: %d %v", user, resp.StatusCode, err)
	}
	return body.Token
}

// sdkPage opens a page of the server for scripts that import the SDK,
// with alice's and bob's tokens as the globals ALICE and BOB.
func sdkPage(t *testing.T) *page {
	t.Helper()
	b := newBrowser(t)
	url, stop := startServe(t, t.TempDir(), "--dev")
	t.Cleanup(func() { stop() })
	pg := b.newProfile("sdk").open(url + "/")
	pg.eval(`window.ALICE = `+js(mintDevToken(t, url, "alice"))+`; window.BOB = `+js(mintDevToken(t, url, "bob"))+`; true`, new(bool))
	return pg
}

// sdkScript wraps the body of an async function that uses the SDK's
// exports (Client, Status…) and code(f), which runs f and returns "ok" or
// the code of the error it throws.
func sdkScript(body string) string {
	return `(async () => {
		const { Client, Status } = await import('/sdk/tidings.js');
		const code = async f => { try { await f(); return 'ok'; } catch (e) { return e.code || String(e); } };
		const until = async (what, f) => {
			for (const end = Date.now() + 30000; !f(); await new Promise(r => setTimeout(r, 20))) {
				if (Date.now() > end) throw new Error('waited 30s for ' + what);
			}
		};
		` + body + `
	})()`
}

func TestSDKManualMode(t *testing.T) {
	pg := sdkPage(t)
	var got map[string]any
	pg.eval(sdkScript(`
		const out = {};
		const anon = new Client(location.origin, { mode: 'manual', device: 'sdk-manual' });
		out.connectLoggedOut = await code(() => anon.connect());
		anon.close();

		const c = new Client(location.origin, { mode: 'manual', token: BOB, device: 'sdk-manual' });
		const statuses = [];
		c.addStatusListener(s => statuses.push(s.status));
		out.pingDisconnected = await code(() => c.ping());
		out.connect = await code(() => c.connect());
		out.status = c.status;
		out.transport = c.transport;
		out.connectAgain = await code(() => c.connect());
		out.ping = await code(() => c.ping());
		c.disconnect();
		out.afterDisconnect = c.status;
		out.pingAfterDisconnect = await code(() => c.ping());
		out.statuses = statuses;
		c.close();
		out.closed = c.status;
		out.afterClose = await code(() => c.connect());

		const auto = new Client(location.origin, { token: BOB, device: 'sdk-auto' });
		out.autoConnect = await code(() => auto.connect());
		out.autoDisconnect = await code(() => auto.disconnect());
		await auto.waitConnected();
		out.autoStatus = auto.status;
		auto.close();

		const bad = new Client(location.origin, { mode: 'manual', token: 'not.a-token.at-all', device: 'sdk-bad' });
		out.badToken = await code(() => bad.connect());
		out.badStatus = bad.status;
		bad.close();
		return out;
	`), &got)
	want := map[string]any{
		"connectLoggedOut":    "not_logged_in",
		"pingDisconnected":    "not_connected",
		"connect":             "ok",
		"status":              "connected",
		"transport":           "websocket",
		"connectAgain":        "already_connected",
		"ping":                "ok",
		"afterDisconnect":     "disconnected",
		"pingAfterDisconnect": "not_connected",
		"statuses":            []any{"connecting", "connected", "disconnected", "closed"},
		"closed":              "closed",
		"afterClose":          "closed",
		"autoConnect":         "auto_mode",
		"autoDisconnect":      "auto_mode",
		"autoStatus":          "connected",
		"badToken":            "unauthenticated",
		"badStatus":           "disconnected",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("manual mode:\n got %v\nwant %v", got, want)
	}
}

// Every transport delivers the same updates, in order, to several
// listeners; a listener removed gets nothing more.
func TestSDKTransports(t *testing.T) {
	pg := sdkPage(t)
	for _, transport := range []string{"websocket", "polling", "no-websocket"} {
		t.Run(transport, func(t *testing.T) {
			var got map[string]any
			pg.eval(sdkScript(`
				const transport = `+js(transport)+`;
				const alice = new Client(location.origin, { mode: 'manual', token: ALICE });
				const conv = await alice.createConversation({ name: transport, participants: [{ userId: 'bob' }] });
				// Without WebSocket in the browser, the client polls by itself.
				const saved = window.WebSocket;
				if (transport === 'no-websocket') window.WebSocket = undefined;
				const bob = new Client(location.origin, {
					token: BOB, device: 'sdk-' + transport, pollWait: 5000,
					transport: transport === 'polling' ? 'polling' : 'auto',
					upgradeInterval: 300,
				});
				window.WebSocket = saved;
				const first = [], second = [], sent = [], eventIds = [];
				bob.addEventListener(ev => {
					if (ev.name !== 'conversationMessage.sent') return;
					first.push(ev.payload.parts[0].data);
					// What the wire leaves out is filled in: the event's id (its
					// message's), the message's conversation, time sent and parts'
					// type, the actor (the sender), the seq and app.
					const p = ev.payload;
					eventIds.push(ev.id);
					sent.push([/^[0-9a-v]{26}$/.test(ev.id) && ev.id === p.id, p.conversationId === conv.id, p.sentAt === ev.time && !!ev.time,
						p.parts[0].type, ev.actor.id, ev.actor.displayName === p.sender.displayName, ev.seq === Number(ev.ref), ev.app !== '', ev.action]);
				});
				const removeSecond = bob.addEventListener(async ev => {
					if (ev.name !== 'conversationMessage.sent') return;
					await new Promise(r => setTimeout(r, 5)); // a listener may be async
					second.push(ev.payload.parts[0].data);
					if (second.length === 2) removeSecond();
				});
				await bob.waitConnected();
				const out = { transport: bob.transport };
				const ids = [];
				for (const text of ['one', 'two', 'three']) {
					ids.push((await alice.sendMessage(conv.id, { parts: [{ type: 'text/plain', data: text }], clientId: transport + text })).id);
				}
				await until('three messages', () => first.length >= 3);
				out.first = first.slice();
				out.sent = sent[0];
				out.ids = JSON.stringify(eventIds.slice(0, 3)) === JSON.stringify(ids); // each event's id is its message's
				out.second = second;
				out.lastRefIsNumber = /^[0-9]+$/.test(bob.lastRef);
				if (transport === 'no-websocket') {
					// WebSockets work again: the client leaves polling by itself,
					// and what comes next arrives once, over the socket.
					await until('a WebSocket again', () => bob.transport === 'websocket');
					await alice.sendMessage(conv.id, { parts: [{ type: 'text/plain', data: 'four' }], clientId: transport + 'four' });
					await until('the fourth message', () => first.length >= 4);
					out.afterUpgrade = first.slice(3);
				}
				// Typing goes over the socket, or through the REST API without one.
				await (bob.transport === 'websocket' ? bob.socket.startTyping(conv.id) : bob.setTyping(conv.id, true));
				out.typing = (await bob.getPresence(conv.id)).typing;
				bob.close();
				alice.close();
				return out;
			`), &got)
			wantTransport := "websocket"
			if transport != "websocket" {
				wantTransport = "polling"
			}
			want := map[string]any{
				"transport":       wantTransport,
				"first":           []any{"one", "two", "three"},
				"second":          []any{"one", "two"},
				"lastRefIsNumber": true,
				"typing":          []any{"bob"},
				"sent":            []any{true, true, true, "text/plain", "alice", true, true, true, "new"},
				"ids":             true,
			}
			if transport == "no-websocket" {
				want["afterUpgrade"] = []any{"four"}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %v\nwant %v", got, want)
			}
		})
	}
}

// An update is acknowledged only once the listeners have processed it: a
// client closed while its listener still works gets it again next time.
func TestSDKRepliesAfterProcessing(t *testing.T) {
	pg := sdkPage(t)
	var got map[string]any
	pg.eval(sdkScript(`
		const alice = new Client(location.origin, { mode: 'manual', token: ALICE });
		const conv = await alice.createConversation({ name: 'acks', participants: [{ userId: 'bob' }] });
		const texts = ev => ev.name === 'conversationMessage.sent' ? [ev.payload.parts[0].data] : [];

		// The first client gets the message, and never finishes with it.
		const seen1 = [];
		const c1 = new Client(location.origin, { token: BOB, device: 'sdk-ack' });
		c1.addEventListener(ev => { seen1.push(...texts(ev)); return new Promise(() => {}); });
		await c1.waitConnected();
		await alice.sendMessage(conv.id, { parts: [{ type: 'text/plain', data: 'first' }] });
		await until('c1 to get the message', () => seen1.length === 1);
		c1.close();

		// The next client of the same device gets it again, and processes it.
		const seen2 = [];
		const c2 = new Client(location.origin, { token: BOB, device: 'sdk-ack' });
		c2.addEventListener(ev => { seen2.push(...texts(ev)); });
		await until('c2 to get the message again', () => seen2.length === 1);
		const ref = c2.lastRef;

		// Now the server's cursor of the device moves past it.
		const poll = () => fetch('/v1/realtime/poll?device=sdk-ack&wait=0', { headers: { Authorization: 'Bearer ' + BOB } }).then(r => r.json());
		let cursor = '';
		for (const end = Date.now() + 20000; Date.now() < end; await new Promise(r => setTimeout(r, 100))) {
			const res = await poll();
			cursor = res.lastRef;
			if (res.updates.length === 0 && cursor === ref) break;
		}
		c2.close();
		alice.close();
		return { seen1, seen2, acknowledged: cursor === ref };
	`), &got)
	want := map[string]any{"seen1": []any{"first"}, "seen2": []any{"first"}, "acknowledged": true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

// A client with a token provider refreshes its token on the open
// connection before it expires: the connection never drops.
func TestSDKRefreshesTokens(t *testing.T) {
	b := newBrowser(t)
	url, stop := startServe(t, t.TempDir(), "--dev", "--token-ttl", "3s")
	t.Cleanup(func() { stop() })
	pg := b.newProfile("sdk").open(url + "/")
	var got map[string]any
	pg.eval(sdkScript(`
		const mint = async user => (await fetch('/v1/dev/token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ userId: user }) }).then(r => r.json())).token;
		let minted = 0;
		const statuses = [];
		const bob = new Client(location.origin, { device: 'sdk-refresh', tokenProvider: () => { minted++; return mint('bob'); } });
		bob.addStatusListener(s => statuses.push(s.status));
		const texts = [];
		bob.addEventListener(ev => { if (ev.name === 'conversationMessage.sent') texts.push(ev.payload.parts[0].data); });
		await bob.waitConnected();
		const firstExpiry = bob.tokenExpiry.getTime();
		// Three tokens later, the first one has expired.
		await until('three tokens', () => minted >= 3 && bob.tokenExpiry.getTime() > firstExpiry + 1000);
		const alice = new Client(location.origin, { mode: 'manual', tokenProvider: () => mint('alice') });
		const conv = await alice.createConversation({ name: 'refresh', participants: [{ userId: 'bob' }] });
		await alice.sendMessage(conv.id, { parts: [{ type: 'text/plain', data: 'still there?' }] });
		await until('the message', () => texts.length === 1);
		bob.close();
		alice.close();
		return { statuses, texts };
	`), &got)
	want := map[string]any{"statuses": []any{"connected", "closed"}, "texts": []any{"still there?"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

// What upgradeGate does with WebSocket upgrades.
const (
	letThrough int32 = iota
	refuse           // answer 403, as a proxy that forbids upgrades
	hang             // never answer, as a proxy that holds them
)

// upgradeGate is a reverse proxy in front of a server that passes every
// request, and WebSocket upgrades to /v1/realtime as mode says.
type upgradeGate struct {
	URL      string
	mode     atomic.Int32
	upgrades atomic.Int32 // upgrade requests seen
}

func newUpgradeGate(t *testing.T, server string) *upgradeGate {
	t.Helper()
	target, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	g := &upgradeGate{}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0) // polls cut short when the client leaves polling
	stop := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/realtime" && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			g.upgrades.Add(1)
			switch g.mode.Load() {
			case refuse:
				http.Error(w, "WebSockets are not allowed through this proxy", http.StatusForbidden)
				return
			case hang:
				select {
				case <-r.Context().Done():
				case <-stop:
				}
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(stop) }) // before s.Close, which waits for the held requests
	g.URL = s.URL
	return g
}

// A client behind a proxy that blocks WebSocket upgrades (refusing them,
// or never answering) falls back to long polling, and gets its updates;
// once the proxy lets upgrades through, it moves back to a WebSocket.
func TestSDKFallsBackToPollingWhenUpgradesAreBlocked(t *testing.T) {
	b := newBrowser(t)
	server, stop := startServe(t, t.TempDir(), "--dev")
	t.Cleanup(func() { stop() })
	alice, bob := mintDevToken(t, server, "alice"), mintDevToken(t, server, "bob")
	gate := newUpgradeGate(t, server)
	pg := b.newProfile("sdk").open(gate.URL + "/")
	pg.eval(`window.ALICE = `+js(alice)+`; window.BOB = `+js(bob)+`; true`, new(bool))

	for _, mode := range []int32{refuse, hang} {
		name := map[int32]string{refuse: "refused", hang: "unanswered"}[mode]
		step(t, "WebSocket upgrades "+name)
		{
			gate.mode.Store(mode)
			before := gate.upgrades.Load()
			var got map[string]any
			pg.eval(sdkScript(`
				const alice = new Client(location.origin, { mode: 'manual', token: ALICE });
				const conv = await alice.createConversation({ name: `+js(name)+`, participants: [{ userId: 'bob' }] });
				const bob = new Client(location.origin, {
					token: BOB, device: 'sdk-gate-' + `+js(name)+`, pollWait: 2000, dialTimeout: 5000,
					backoff: { initial: 100, max: 500 }, upgradeInterval: 500,
				});
				const texts = [];
				bob.addEventListener(ev => { if (ev.name === 'conversationMessage.sent') texts.push(ev.payload.parts[0].data); });
				await until('bob connected', () => bob.status === Status.Connected);
				await alice.sendMessage(conv.id, { parts: [{ type: 'text/plain', data: 'polled' }], clientId: 'polled-' + conv.id });
				await until('the polled message', () => texts.length >= 1);
				Object.assign(window, { alice, bob, conv, texts });
				return { transport: bob.transport, texts };
			`), &got)
			if want := (map[string]any{"transport": "polling", "texts": []any{"polled"}}); !reflect.DeepEqual(got, want) {
				t.Fatalf("behind the proxy, upgrades %s: %v, want %v", name, got, want)
			}
			if n := gate.upgrades.Load() - before; n < 2 {
				t.Errorf("%d WebSocket attempts before polling, want at least 2", n)
			}

			// The proxy lets WebSockets through again: the client goes back
			// to one, and what comes next arrives once, over it.
			gate.mode.Store(letThrough)
			pg.eval(sdkScript(`
				await until('a WebSocket again', () => bob.transport === 'websocket');
				await alice.sendMessage(conv.id, { parts: [{ type: 'text/plain', data: 'over the socket' }], clientId: 'socket-' + conv.id });
				await until('the second message', () => texts.length >= 2);
				await bob.socket.presence(conv.id); // a socket command works
				await new Promise(r => setTimeout(r, 300)); // no duplicate comes after
				bob.close();
				alice.close();
				return { transport: 'websocket', texts };
			`), &got)
			if want := (map[string]any{"transport": "websocket", "texts": []any{"polled", "over the socket"}}); !reflect.DeepEqual(got, want) {
				t.Fatalf("after the proxy let WebSockets through (they were %s): %v, want %v", name, got, want)
			}
		}
	}
}
