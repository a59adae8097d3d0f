package main

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

// A web app served from its own origin uses the SDK against the server
// once its origin is allowed (--allowed-origins): REST calls, the realtime
// connection and updates. A page of an origin not allowed cannot call it.
func TestSDKFromAnotherOrigin(t *testing.T) {
	b := newBrowser(t)
	appPage := func() *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte("<!doctype html><title>Someone's web app</title>"))
		}))
		t.Cleanup(s.Close)
		return s
	}
	app, other := appPage(), appPage()
	url, stop := startServe(t, t.TempDir(), "--dev", "--allowed-origins", app.URL)
	t.Cleanup(func() { stop() })
	alice, bob := mintDevToken(t, url, "alice"), mintDevToken(t, url, "bob")

	script := `(async () => {
		const { Client } = await import(` + js(url+"/sdk/tidings.js") + `);
		const out = {};
		const c = new Client(` + js(url) + `, { token: ` + js(alice) + `, device: 'cors' });
		try {
			out.me = (await c.me()).id;
			const got = new Promise(resolve => c.addEventListener(ev => {
				if (ev.name === 'conversationMessage.sent') resolve(ev.payload.parts[0].data);
			}));
			await c.createConversation({ id: 'cors', name: 'Across origins', participants: [{ userId: 'bob' }] });
			await new Promise((resolve, reject) => {
				const end = setTimeout(() => reject(new Error('not connected in 20s')), 20000);
				const check = () => c.status === 'connected' ? (clearTimeout(end), resolve()) : setTimeout(check, 20);
				check();
			});
			const bob = new Client(` + js(url) + `, { token: ` + js(bob) + `, device: 'cors', mode: 'manual' });
			await bob.sendMessage('cors', { clientId: 'x1', parts: [{ type: 'text/plain', data: 'hello across origins' }] });
			bob.close();
			out.received = await got;
			out.transport = c.transport;
		} catch (e) {
			out.error = e.code || String(e);
		}
		c.close();
		return out;
	})()`
	var got map[string]any
	b.newProfile("app").open(app.URL+"/").eval(script, &got)
	want := map[string]any{"me": "alice", "received": "hello across origins", "transport": "websocket"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("from the allowed origin: %v, want %v", got, want)
	}

	var refused map[string]any
	b.newProfile("other").open(other.URL+"/").eval(`(async () => {
		const { Client } = await import(`+js(url+"/sdk/tidings.js")+`);
		const c = new Client(`+js(url)+`, { token: `+js(alice)+`, mode: 'manual' });
		try { await c.me(); return { me: 'answered' }; } catch (e) { return { error: e.code || String(e) }; } finally { c.close(); }
	})()`, &refused)
	if refused["me"] != nil || refused["error"] == nil {
		t.Fatalf("a page of an origin not allowed called the API: %v", refused)
	}

	// The server's own page is not in the list, and needs not be: its
	// WebSocket opens (a refused one would fall back to polling).
	var own map[string]any
	b.newProfile("own").open(url+"/").eval(`(async () => {
		const { Client } = await import('/sdk/tidings.js');
		const c = new Client(location.origin, { token: `+js(alice)+`, device: 'own', backoff: { initial: 100, max: 500 } });
		for (const end = Date.now() + 30000; c.status !== 'connected'; await new Promise(r => setTimeout(r, 20))) {
			if (Date.now() > end) return { error: 'not connected in 30s: ' + c.status };
		}
		const out = { transport: c.transport };
		c.close();
		return out;
	})()`, &own)
	if want := (map[string]any{"transport": "websocket"}); !reflect.DeepEqual(own, want) {
		t.Fatalf("the server's own page with --allowed-origins %s: %v, want %v", app.URL, own, want)
	}
}
