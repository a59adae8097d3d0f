package main

import (
	"reflect"
	"testing"
)

// The browser SDK follows users' presence, and subscribes again on each
// connection: alice and bob share no conversation.
func TestSDKPresenceSubscriptions(t *testing.T) {
	pg := sdkPage(t)
	var got map[string]any
	pg.eval(sdkScript(`
		const out = {};
		const alice = new Client(location.origin, { mode: 'manual', token: ALICE, device: 'sdk-presence' });
		const seen = [];
		alice.addEventListener(ev => { if (ev.name === 'presence.update' && ev.payload.profileId === 'bob') seen.push(ev.payload.status); });
		out.offline = await code(() => alice.socket.subscribePresence(['bob']));
		out.remembered = alice.presenceSubscriptions();
		await alice.connect(); // subscribes bob, remembered, and tells his status
		await until('bob status after connecting', () => seen.length === 1);
		const res = await alice.socket.subscribePresence(['bob', 'nobody']);
		out.answer = res.users.map(u => u.userId + ' ' + u.status).concat(res.unknown);
		out.afterUnknown = alice.presenceSubscriptions();

		const bob = new Client(location.origin, { token: BOB, device: 'sdk-presence' });
		await bob.waitConnected();
		await until('bob online', () => seen.length === 2);
		// A new connection subscribes again and tells bob's status then.
		alice.disconnect();
		await alice.connect();
		await until('bob status after connecting again', () => seen.length === 3);
		bob.close();
		await until('bob offline', () => seen.length === 4);
		out.seen = seen;
		await alice.socket.unsubscribePresence(['bob']);
		out.unsubscribed = alice.presenceSubscriptions();
		alice.close();
		return out;
	`), &got)
	want := map[string]any{
		"offline":      "not_connected",
		"remembered":   []any{"bob"},
		"answer":       []any{"bob offline", "nobody"},
		"afterUnknown": []any{"bob"},
		"seen":         []any{"offline", "online", "online", "offline"},
		"unsubscribed": []any{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("presence subscriptions:\n got %v\nwant %v", got, want)
	}
}
