package main

import (
	"reflect"
	"testing"
)

// The browser SDK speaks tidings.v2 by default, and its listeners get the
// same events as with tidings.v1: four clients (alice and bob, each on a
// tidings.v2 device and on a tidings.v1 device) see the same updates, in
// the same order, field for field. The tidings.v2 client that sends a
// message with a clientId gets no update of it from the server (its answer
// carries the ref): the SDK makes that update in its place, and it is
// acknowledged like any other.
func TestSDKSpeaksV2(t *testing.T) {
	pg := sdkPage(t)
	var got map[string]any
	pg.eval(sdkScript(`
		// Keys sorted, so that two events compare by their fields.
		const canon = v => Array.isArray(v) ? v.map(canon)
			: v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map(k => [k, canon(v[k])])) : v;
		const open = async (token, device, protocol) => {
			const c = new Client(location.origin, { mode: 'manual', token, device, ...(protocol ? { protocol } : {}) });
			const log = [];
			// Typing and presence are live-only: when each connection gets
			// them depends on when it connected.
			c.addEventListener(ev => { if (!/Typing|^presence/.test(ev.name)) log.push(JSON.stringify(canon(ev))); });
			await c.connect();
			return { c, log };
		};
		const alice = await open(ALICE, 'v2-alice');
		const aliceV1 = await open(ALICE, 'v1-alice', 'tidings.v1');
		const bob = await open(BOB, 'v2-bob');
		const bobV1 = await open(BOB, 'v1-bob', 'tidings.v1');
		const out = { protocols: [alice.c.protocol, aliceV1.c.protocol, bob.c.protocol, bobV1.c.protocol] };

		const conv = await alice.c.createConversation({ name: 'v2', participants: [{ userId: 'bob' }] });
		const m1 = await alice.c.socket.sendMessage(conv.id, { clientId: 'v2-one',
			parts: [{ type: 'text/plain', data: 'hello' }], metadata: { k: 1 }, alert: 'Alice: hello' });
		const stored = await alice.c.getMessage(conv.id, m1.id);
		out.sendResultIsTheMessage = JSON.stringify(canon(m1)) === JSON.stringify(canon(stored)) || [m1, stored];
		const again = await alice.c.socket.sendMessage(conv.id, { clientId: 'v2-one', parts: [{ type: 'text/plain', data: 'hello' }] });
		out.duplicate = [again.id === m1.id, again.seq === m1.seq];
		const m2 = await alice.c.socket.sendMessage(conv.id, { parts: [{ type: 'application/json', name: 'x.json', data: '{"a":1}' }] });
		await bob.c.socket.sendMessage(conv.id, { clientId: 'v2-bob', parts: [{ type: 'text/plain', data: 'hi' }] });
		await alice.c.editMessage(conv.id, m1.id, { parts: [{ type: 'text/plain', data: 'hello!' }] });
		await alice.c.deleteMessage(conv.id, m2.id);
		await bob.c.socket.markRead(conv.id, m1.seq);
		await alice.c.updateUser('alice', { displayName: 'Alice A', avatarUrl: 'https://example.com/a.png' });
		await alice.c.updateConversation(conv.id, { name: 'v2 renamed' });
		await alice.c.socket.sendMessage(conv.id, { clientId: 'v2-last', parts: [{ type: 'text/plain', data: 'last' }] });
		const all = [alice, aliceV1, bob, bobV1];
		await until('the last message everywhere', () => all.every(x => x.log.some(e => e.includes('"data":"last"'))));
		await until('every update processed', () => all.every(x => x.c.lastRef === all[0].c.lastRef));

		out.counts = all.map(x => x.log.length);
		out.aliceSame = JSON.stringify(alice.log) === JSON.stringify(aliceV1.log) || [alice.log, aliceV1.log];
		out.bobSame = JSON.stringify(bob.log) === JSON.stringify(bobV1.log) || [bob.log, bobV1.log];
		// The update alice's tidings.v2 client made from its answer.
		const own = JSON.parse(alice.log.find(e => e.includes('"clientId":"v2-one"')));
		out.own = [own.name, own.id === m1.id, own.silent, own.actor.id, own.payload.parts[0].data, own.payload.metadata.k, own.payload.alert];
		for (const x of all) x.c.close();

		// Its ref was acknowledged: the same device resumes after the last
		// update, and gets only what comes next.
		const resumed = await open(ALICE, 'v2-alice');
		const next = await open(BOB, 'v2-bob');
		await next.c.sendMessage(conv.id, { parts: [{ type: 'text/plain', data: 'next' }] });
		await until('the next message', () => resumed.log.some(e => e.includes('"data":"next"')));
		out.afterResume = resumed.log.map(e => JSON.parse(e).payload.parts?.[0]?.data);
		resumed.c.close();
		next.c.close();
		return out;
	`), &got)
	want := map[string]any{
		"protocols":              []any{"tidings.v2", "tidings.v1", "tidings.v2", "tidings.v1"},
		"sendResultIsTheMessage": true,
		"duplicate":              []any{true, true},
		"counts":                 got["counts"],
		"aliceSame":              true,
		"bobSame":                true,
		"own":                    []any{"conversationMessage.sent", true, true, "alice", "hello", float64(1), "Alice: hello"},
		"afterResume":            []any{"next"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	// conversation.create, bob added, four messages (one sent again, not
	// stored again), the edit, the deletion, the read, the profile and the
	// conversation updates: 11 updates each.
	if c, _ := got["counts"].([]any); len(c) != 4 || c[0] != c[1] || c[2] != c[3] || c[0].(float64) != 11 {
		t.Errorf("updates per client: %v", got["counts"])
	}
}
