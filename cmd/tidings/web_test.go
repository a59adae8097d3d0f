package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// The web chat page in a real browser, against "tidings serve --dev".

// signIn signs the page in by name (development sign-in) and waits until
// its realtime connection is up.
func (pg *page) signIn(user string) {
	pg.t.Helper()
	pg.waitFor("the sign-in form", `!document.getElementById('dev-form').hidden`, "")
	pg.run(
		chromedp.SendKeys(chromedp.CSS("#dev-user"), user),
		chromedp.Click(chromedp.CSS("#dev-form button[type=submit]")),
	)
	pg.waitConnected()
}

// waitConnected waits until the page says it is connected.
func (pg *page) waitConnected() {
	pg.t.Helper()
	pg.waitFor("the page to be connected", `!document.getElementById('app').hidden && document.getElementById('conn').dataset.status === 'connected'`,
		`document.getElementById('conn').textContent`)
}

// openConversation opens the conversation named name in the list.
func (pg *page) openConversation(name string) {
	pg.t.Helper()
	sel := `[...document.querySelectorAll('#conv-list .conv-name')].find(e => e.textContent === ` + js(name) + `)`
	pg.waitFor("conversation "+name+" in the list", sel, `document.getElementById('conv-list').textContent`)
	pg.eval(sel+`.closest('button').click(), true`, new(bool))
	pg.waitFor("conversation "+name+" open", `document.getElementById('chat-title').textContent === `+js(name), "")
}

// send types text in the message box and presses Enter.
func (pg *page) send(text string) {
	pg.t.Helper()
	pg.run(chromedp.SendKeys(chromedp.CSS("#text"), text))
	pg.pressEnter()
}

// pressEnter presses Enter in the message box. (The key events of
// SendKeys would type a newline after the page sent the message.)
func (pg *page) pressEnter() {
	pg.t.Helper()
	pg.eval(`document.getElementById('text').dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }))`, new(bool))
}

// messagesJS lists the texts of the messages of the open conversation
// that the server has acknowledged.
const messagesJS = `[...document.querySelectorAll('#message-list .msg:not(.pending) .body')].map(e => e.textContent)`

// step logs the start of a step of a scenario. (Steps are not subtests:
// the pages fail the test they were opened by.)
func step(t *testing.T, name string) {
	t.Helper()
	t.Logf("--- %s", name)
}

// waitMessages waits until the open conversation shows exactly want.
func (pg *page) waitMessages(want ...string) {
	pg.t.Helper()
	b, _ := json.Marshal(want)
	pg.waitFor("messages "+string(b), `JSON.stringify(`+messagesJS+`) === `+js(string(b)), `JSON.stringify(`+messagesJS+`)`)
}

func TestWebChat(t *testing.T) {
	b := newBrowser(t)
	dir := t.TempDir()
	url, stop := startServe(t, dir, "--dev")
	defer func() { stop() }()

	alice, bob := b.newProfile("alice"), b.newProfile("bob")
	a := alice.open(url + "/")
	a.signIn("alice")
	bp := bob.open(url + "/")
	bp.signIn("bob")

	// Alice starts a conversation with bob; it appears on bob's page live.
	a.run(chromedp.Click(chromedp.CSS("#new-conv")))
	a.run(
		chromedp.SendKeys(chromedp.CSS("#new-conv-name"), "Lunch"),
		chromedp.SendKeys(chromedp.CSS("#new-conv-people"), "bob"),
		chromedp.Click(chromedp.CSS("#new-conv-form button[type=submit]")),
	)
	a.waitFor("the new conversation open", `document.getElementById('chat-title').textContent === 'Lunch'`, "")
	bp.openConversation("Lunch")

	step(t, "both ways, live")
	{
		a.send("Noon at the usual place?")
		bp.waitMessages("Noon at the usual place?")
		// Sent over the open socket, not by the REST API.
		if !slices.ContainsFunc(a.sentFrames(), func(f string) bool {
			return strings.Contains(f, `"command":"message.send"`) && strings.Contains(f, "Noon at the usual place?")
		}) {
			t.Errorf("alice's message did not go over the WebSocket; frames sent: %v", a.sentFrames())
		}
		bp.send("See you there!")
		a.waitMessages("Noon at the usual place?", "See you there!")
		// Bob read alice's message on his open page: her tick says so.
		a.waitFor("alice's message marked read", `document.querySelector('#message-list .msg.mine .ticks')?.dataset.tick === 'read'`,
			`document.querySelector('#message-list .msg.mine .ticks')?.dataset.tick`)
	}

	step(t, "typing indicator")
	{
		bp.run(chromedp.SendKeys(chromedp.CSS("#text"), "On my w"))
		a.waitFor("bob's typing indicator", `document.getElementById('typing').textContent === 'bob is typing…'`, `document.getElementById('typing').textContent`)
		bp.send("ay")
		a.waitFor("the typing indicator to go", `document.getElementById('typing').textContent === ''`, `document.getElementById('typing').textContent`)
		a.waitMessages("Noon at the usual place?", "See you there!", "On my way")
	}

	before := []string{"Noon at the usual place?", "See you there!", "On my way"}
	step(t, "three messages while the page is closed")
	{
		bp.close()
		for _, s := range []string{"one", "two", "three"} {
			a.send(s)
		}
		a.waitMessages(append(before, "one", "two", "three")...)
		bp = bob.open(url + "/")
		bp.waitConnected()
		bp.waitFor("3 unread in the list", `document.querySelector('#conv-list .unread')?.textContent.includes('3')`,
			`document.getElementById('conv-list').textContent`)
		bp.openConversation("Lunch")
		bp.waitMessages(append(before, "one", "two", "three")...)
	}

	step(t, "the server restarts")
	{
		addr := strings.TrimPrefix(url, "http://")
		if code, logs := stop(); code != exitOK {
			t.Fatalf("serve exited with %d:\n%s", code, logs)
		}
		a.waitFor("alice's page to see the server gone", `document.getElementById('conn').dataset.status !== 'connected'`, "")
		// Typed while the server is away: kept, and sent once it is back.
		a.send("sent while offline")
		a.waitFor("the message waiting in the outbox", `document.querySelector('#message-list .msg.pending')`, "")
		_, stop = startServe(t, dir, "--dev", "--addr", addr)
		a.waitConnected()
		bp.waitConnected()
		want := append(before, "one", "two", "three", "sent while offline")
		bp.waitMessages(want...)
		a.waitMessages(want...)
		bp.send("welcome back")
		a.waitMessages(append(want, "welcome back")...)
	}

	// Tokens travel in headers and in the first WebSocket frame, never in a URL.
	for _, pg := range []*page{a, bp} {
		for _, u := range pg.requested() {
			if strings.Contains(u, "eyJ") || strings.Contains(strings.ToLower(u), "token=") {
				t.Errorf("[%s] a URL carries a token: %s", pg.name, u)
			}
		}
		if !slices.ContainsFunc(pg.requested(), func(u string) bool { return strings.HasSuffix(u, "/v1/realtime") }) {
			t.Errorf("[%s] never opened the realtime WebSocket; requests: %v", pg.name, pg.requested())
		}
	}
}

// restPost sends a JSON request to the API with a user's token, failing the
// test unless it succeeds.
func restPost(t *testing.T, url, token, path, body string) {
	t.Helper()
	restDo(t, "POST", url, token, path, body)
}

// restDo sends a request to the API with a user's token, failing the test
// unless it succeeds.
func restDo(t *testing.T, method, url, token, path, body string) {
	t.Helper()
	restJSON(t, url, token, method, path, body, nil)
}

func TestWebChatFeatures(t *testing.T) {
	b := newBrowser(t)
	url, stop := startServe(t, t.TempDir(), "--dev")
	defer stop()
	aliceToken := mintDevToken(t, url, "alice")
	mintDevToken(t, url, "carol") // carol exists, and is added below

	alice, bob := b.newProfile("alice"), b.newProfile("bob")
	bp := bob.open(url + "/")
	bp.signIn("bob")
	restPost(t, url, aliceToken, "/v1/conversations", `{"id":"team","name":"Team","participants":[{"userId":"bob"}]}`)
	var want []string
	for i := 1; i <= 60; i++ {
		text := fmt.Sprintf("message %d", i)
		restPost(t, url, aliceToken, "/v1/conversations/team/messages", `{"parts":[{"type":"text/plain","data":"`+text+`"}]}`)
		want = append(want, text)
	}

	step(t, "history loads when scrolled up")
	{
		bp.waitFor("60 unread", `document.querySelector('#conv-list .unread')?.textContent.includes('60')`, `document.getElementById('conv-list').textContent`)
		bp.openConversation("Team")
		bp.waitMessages(want[10:]...) // the newest page
		bp.eval(`document.getElementById('messages').scrollTop = 0, true`, new(bool))
		bp.waitMessages(want...)
		bp.waitFor("the start of the conversation", `document.getElementById('history-status').textContent.includes('start')`, "")
		bp.waitFor("no unread left", `!document.querySelector('#conv-list .unread')`, `document.getElementById('conv-list').textContent`)
	}

	a := alice.open(url + "/#c=team")
	a.signIn("alice")
	a.waitFor("the conversation open from the URL", `document.getElementById('chat-title').textContent === 'Team'`, "")
	a.waitMessages(want[10:]...)

	step(t, "presence")
	{
		a.close()
		bp.waitFor("alice offline", `document.querySelector('#chat-members .presence')?.title === 'offline'`, `document.getElementById('chat-members').innerHTML`)
		a = alice.open(url + "/#c=team")
		a.waitConnected()
		bp.waitFor("alice online", `document.querySelector('#chat-members .presence')?.title === 'online'`, `document.getElementById('chat-members').innerHTML`)
		a.waitFor("the conversation open", `document.getElementById('chat-title').textContent === 'Team'`, "")
		// Bob came online before alice's page opened: the page asks who is.
		a.waitFor("bob online on a page opened after him", `document.querySelector('#chat-members .presence')?.title === 'online'`, `document.getElementById('chat-members').innerHTML`)
	}

	step(t, "edit and delete")
	{
		a.waitMessages(want[10:]...)
		last := `[...document.querySelectorAll('#message-list .msg.mine')].at(-1)`
		a.eval(last+`.querySelector('.actions button').click(), true`, new(bool)) // Edit
		a.waitFor("the edit box", `document.querySelector('.edit-form textarea')`, "")
		a.eval(`(() => { const i = document.querySelector('.edit-form textarea'); i.value = 'message 60, edited'; i.form.requestSubmit(); return true; })()`, new(bool))
		bp.waitMessages(append(append([]string{}, want[:59]...), "message 60, edited")...)
		bp.waitFor("the edited mark", `[...document.querySelectorAll('#message-list .msg')].at(-1).querySelector('.meta').textContent.includes('edited')`, "")
		a.waitFor("alice's edit box closed", `!document.querySelector('.edit-form')`, "")

		a.eval(last+`.querySelectorAll('.actions button')[1].click(), true`, new(bool)) // Delete
		a.waitFor("the inline confirmation", last+`.querySelector('.actions.confirm button.danger')`, last+`.outerHTML`)
		a.eval(last+`.querySelector('.actions.confirm button.danger').click(), true`, new(bool))
		bp.waitMessages(append(append([]string{}, want[:59]...), "This message was deleted.")...)
	}

	step(t, "files")
	{
		// A 1×1 PNG, chosen in the file picker.
		a.eval(`(() => {
			const png = Uint8Array.from(atob('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='), c => c.charCodeAt(0));
			const dt = new DataTransfer();
			dt.items.add(new File([png], 'dot.png', { type: 'image/png' }));
			const input = document.getElementById('file');
			input.files = dt.files;
			input.dispatchEvent(new Event('change'));
			return true;
		})()`, new(bool))
		bp.waitFor("the image, downloaded with the token", `[...document.querySelectorAll('#message-list .file img')].some(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth === 1)`,
			`document.getElementById('message-list').lastElementChild.innerHTML`)
	}

	step(t, "add people")
	{
		a.run(chromedp.Click(chromedp.CSS("#add-people")))
		a.run(
			chromedp.SendKeys(chromedp.CSS("#add-people-ids"), "carol"),
			chromedp.Click(chromedp.CSS("#add-people-form button[type=submit]")),
		)
		a.waitFor("carol among the members", `document.getElementById('chat-members').textContent.includes('carol')`, `document.getElementById('chat-members').textContent`)
		bp.waitFor("carol among bob's members too", `document.getElementById('chat-members').textContent.includes('carol')`, `document.getElementById('chat-members').textContent`)
		// A user that does not exist is refused, and said so.
		a.run(chromedp.Click(chromedp.CSS("#add-people")))
		a.run(
			chromedp.SendKeys(chromedp.CSS("#add-people-ids"), "nobody"),
			chromedp.Click(chromedp.CSS("#add-people-form button[type=submit]")),
		)
		a.waitFor("an error in the dialog", `document.querySelector('#add-people-dialog .error').textContent !== ''`, "")
	}
}

// atBottomJS says whether the open conversation is scrolled to its end.
const atBottomJS = `(b => b.scrollHeight - b.scrollTop - b.clientHeight <= 1)(document.getElementById('messages'))`

// distanceJS describes how far above its end the conversation is scrolled.
const distanceJS = `(b => 'scrolled ' + (b.scrollHeight - b.scrollTop - b.clientHeight) + 'px above the end (scrollTop ' + b.scrollTop + ', scrollHeight ' + b.scrollHeight + ', clientHeight ' + b.clientHeight + ')')(document.getElementById('messages'))`

// The sign-in page probes development mode without a failed request: no
// error in the browser's console, with --dev or without.
func TestWebSignInLogsNoErrors(t *testing.T) {
	b := newBrowser(t)
	for _, dev := range []bool{true, false} {
		var args []string
		if dev {
			args = append(args, "--dev")
		}
		url, stop := startServe(t, t.TempDir(), args...)
		pg := b.newProfile(fmt.Sprint("dev=", dev)).open(url + "/")
		// The page focuses a field once it knows whether dev sign-in is on.
		want := map[bool]string{true: "dev-user", false: "token"}[dev]
		pg.waitFor("the sign-in form, focused", `document.activeElement?.id === `+js(want)+` && document.getElementById('dev-form').hidden === `+fmt.Sprint(!dev),
			`document.activeElement?.id`)
		if errs := pg.loggedErrors(); len(errs) > 0 {
			t.Errorf("dev=%v: the sign-in page logged errors: %q", dev, errs)
		}
		pg.close()
		stop()
	}
}

// The details of the conversation view: a view at the end stays there as
// images load and errors appear; an edit keeps the lines of a message;
// deleting asks in the page and errors show in it, never in browser
// dialogs; Edit and Delete are visible where nothing can hover.
// TestWebTellsJoinLeaveAddRemove: the open conversation says who joined,
// left, was added or removed, from the events' reason, with names as text.
func TestWebTellsJoinLeaveAddRemove(t *testing.T) {
	b := newBrowser(t)
	url, stop := startServe(t, t.TempDir(), "--dev")
	defer stop()
	aliceToken, carolToken := mintDevToken(t, url, "alice"), mintDevToken(t, url, "carol")
	const carol = `<img src=x onerror="window.injected=1">Carol`
	restDo(t, "PATCH", url, carolToken, "/v1/users/carol", `{"displayName":`+js(carol)+`}`)
	restPost(t, url, aliceToken, "/v1/conversations", `{"id":"club","name":"Club","isPublic":true}`)
	restPost(t, url, aliceToken, "/v1/conversations/club/messages", `{"parts":[{"type":"text/plain","data":"welcome"}]}`)
	a := b.newProfile("alice").open(url + "/")
	a.signIn("alice")
	a.openConversation("Club")
	a.waitMessages("welcome")

	restPost(t, url, carolToken, "/v1/conversations/club/join", "")
	restPost(t, url, carolToken, "/v1/conversations/club/leave", "")
	restPost(t, url, aliceToken, "/v1/conversations/club/participants", `{"userId":"carol"}`)
	restDo(t, "DELETE", url, aliceToken, "/v1/conversations/club/participants/carol", "")
	want, _ := json.Marshal([]string{"welcome", carol + " joined", carol + " left", "You added " + carol, "You removed " + carol})
	const lines = `JSON.stringify([...document.querySelectorAll('#message-list > li')].map(e => e.querySelector('.body')?.textContent ?? e.textContent))`
	a.waitFor("the four notices after the message", lines+` === JSON.stringify(`+string(want)+`)`, lines)
	var injected bool
	a.eval(`!!window.injected || !!document.querySelector('#message-list img')`, &injected)
	if injected {
		t.Error("a display name was read as HTML")
	}
}

// TestWebShowsRenames: when alice renames herself, bob's page shows her new
// name (and the initials of her avatar) in the messages, the list's
// preview and the chat's header at once, without a reload.
func TestWebShowsRenames(t *testing.T) {
	b := newBrowser(t)
	url, stop := startServe(t, t.TempDir(), "--dev")
	defer stop()
	aliceToken := mintDevToken(t, url, "alice")
	mintDevToken(t, url, "bob")
	mintDevToken(t, url, "carol")
	restPost(t, url, aliceToken, "/v1/conversations", `{"id":"team","name":"Team","participants":[{"userId":"bob"},{"userId":"carol"}]}`)
	restPost(t, url, aliceToken, "/v1/conversations/team/messages", `{"parts":[{"type":"text/plain","data":"hello team"}]}`)
	bp := b.newProfile("bob").open(url + "/")
	bp.signIn("bob")
	bp.openConversation("Team")
	bp.waitMessages("hello team")
	const shown = `JSON.stringify({
		sender: document.querySelector('#message-list .msg .sender')?.textContent,
		avatar: document.querySelector('#message-list .msg .avatar')?.textContent,
		members: document.getElementById('chat-members').textContent,
		preview: document.querySelector('#conv-list .conv-preview')?.textContent,
	})`
	bp.waitFor("alice's name as it was", `document.querySelector('#message-list .msg .sender')?.textContent === 'alice' && document.getElementById('chat-members').textContent.includes('alice')`, shown)
	bp.eval(`window.notReloaded = true`, new(bool))

	restDo(t, "PATCH", url, aliceToken, "/v1/users/alice", `{"displayName":"Alice Smith"}`)
	want, _ := json.Marshal(map[string]string{"sender": "Alice Smith", "avatar": "AS", "preview": "Alice Smith: hello team"})
	bp.waitFor("alice's new name everywhere", `(() => { const s = JSON.parse(`+shown+`), w = `+string(want)+`;
		return s.sender === w.sender && s.avatar === w.avatar && s.preview === w.preview && s.members.includes('Alice Smith') && !/\balice\b/.test(s.members); })()`, shown)
	var same bool
	bp.eval(`window.notReloaded === true`, &same)
	if !same {
		t.Fatal("the page was reloaded")
	}
}

func TestWebConversationDetails(t *testing.T) {
	b := newBrowser(t)
	url, stop := startServe(t, t.TempDir(), "--dev", "--max-message-bytes", "400")
	defer stop()
	aliceToken := mintDevToken(t, url, "alice")
	mintDevToken(t, url, "bob")
	restPost(t, url, aliceToken, "/v1/conversations", `{"id":"details","name":"Details","participants":[{"userId":"bob"}]}`)
	for i := 1; i <= 30; i++ {
		restPost(t, url, aliceToken, "/v1/conversations/details/messages", fmt.Sprintf(`{"parts":[{"type":"text/plain","data":"message %d"}]}`, i))
	}
	// Alice on a phone, bob on a computer.
	a := b.newProfile("alice").open(url + "/")
	a.run(chromedp.EmulateViewport(390, 700))
	a.signIn("alice")
	bp := b.newProfile("bob").open(url + "/")
	bp.signIn("bob")
	a.openConversation("Details")
	bp.openConversation("Details")
	// Browser dialogs block the page: none may open.
	for _, pg := range []*page{a, bp} {
		pg.eval(`window.dialogs = [], window.alert = window.confirm = window.prompt = m => { window.dialogs.push(m); return true; }, true`, new(bool))
	}
	lastMine := `[...document.querySelectorAll('#message-list .msg.mine:not(.pending)')].at(-1)`

	step(t, "Edit and Delete visible where nothing hovers")
	{
		var touch bool
		a.eval(`matchMedia('(hover: none)').matches`, &touch)
		if !touch {
			t.Log("this browser can hover: Edit and Delete show on hover")
		} else {
			a.waitFor("Edit and Delete visible without hovering",
				`[...document.querySelectorAll('#message-list .actions')].every(e => getComputedStyle(e).opacity === '1') && document.querySelector('#message-list .actions')`,
				`[...document.querySelectorAll('#message-list .actions')].map(e => getComputedStyle(e).opacity).join(' ')`)
		}
	}

	step(t, "an image keeps the view at the end")
	{
		a.eval(`(async () => {
			const c = document.createElement('canvas');
			c.width = 320; c.height = 240;
			const g = c.getContext('2d');
			g.fillStyle = '#1f5fbf'; g.fillRect(0, 0, 320, 240);
			const blob = await new Promise(r => c.toBlob(r, 'image/png'));
			const dt = new DataTransfer();
			dt.items.add(new File([blob], 'photo.png', { type: 'image/png' }));
			const input = document.getElementById('file');
			input.files = dt.files;
			input.dispatchEvent(new Event('change'));
			return true;
		})()`, new(bool))
		for _, pg := range []*page{a, bp} {
			pg.waitFor("the image loaded", `[...document.querySelectorAll('#message-list .file img')].some(i => i.complete && i.naturalWidth === 320)`, "")
			pg.waitFor("the view at the end after the image loaded", atBottomJS, distanceJS)
		}
	}

	step(t, "editing keeps the lines of a message")
	{
		// The first line fills the bubble's width: the edit box takes it all.
		const text = "line one, long enough to fill a bubble from one side to the other and then some more words\nline two"
		a.eval(`(() => { const t = document.getElementById('text'); t.value = `+js(text)+`; t.dispatchEvent(new Event('input')); return true; })()`, new(bool))
		a.pressEnter()
		bp.waitFor("the two-line message", `[...document.querySelectorAll('#message-list .msg .body')].at(-1)?.textContent === `+js(text),
			`[...document.querySelectorAll('#message-list .msg .body')].at(-1)?.textContent`)
		a.waitFor("the message sent", lastMine+`?.querySelector('.body')?.textContent === `+js(text), "")
		a.eval(lastMine+`.querySelector('.actions button').click(), true`, new(bool)) // Edit
		a.waitFor("the edit box", `document.querySelector('.edit-form textarea')`, "")
		var box string
		a.eval(`document.querySelector('.edit-form textarea').value`, &box)
		if box != text {
			t.Errorf("the edit box holds %q, want the message's two lines", box)
		}
		// Each button's label stays on one line.
		var wrapped []string
		a.eval(`[...document.querySelectorAll('.edit-form button')].filter(b => { const r = document.createRange(); r.selectNodeContents(b); return r.getClientRects().length !== 1; }).map(b => b.textContent)`, &wrapped)
		if len(wrapped) > 0 {
			t.Errorf("edit buttons whose label wraps: %q", wrapped)
		}
		a.eval(`document.querySelector('.edit-form').requestSubmit(), true`, new(bool)) // saved unchanged
		a.waitFor("the edit box closed", `!document.querySelector('.edit-form')`, "")
		bp.waitFor("the edited mark", `[...document.querySelectorAll('#message-list .msg')].at(-1).querySelector('.meta').textContent.includes('edited')`, "")
		var got string
		bp.eval(`[...document.querySelectorAll('#message-list .msg .body')].at(-1).textContent`, &got)
		if got != text {
			t.Errorf("after an edit saved unchanged, the message is %q", got)
		}
	}

	step(t, "an error shows in the page")
	{
		a.eval(lastMine+`.querySelector('.actions button').click(), true`, new(bool)) // Edit
		a.waitFor("the edit box", `document.querySelector('.edit-form textarea')`, "")
		a.eval(`(() => { const t = document.querySelector('.edit-form textarea'); t.value = 'x'.repeat(600); t.form.requestSubmit(); return true; })()`, new(bool))
		a.waitFor("the error banner", `!document.getElementById('error-banner').hidden && document.getElementById('error-text').textContent.startsWith('Could not edit the message')`,
			`document.getElementById('error-text').textContent`)
		a.eval(`document.getElementById('error-close').click(), true`, new(bool))
		a.waitFor("the banner dismissed", `document.getElementById('error-banner').hidden`, "")
		a.eval(`document.querySelector('.edit-form button[type=button]').click(), true`, new(bool)) // Cancel
		a.waitFor("the edit box closed", `!document.querySelector('.edit-form')`, "")
	}

	step(t, "deleting asks in the page")
	{
		a.eval(lastMine+`.querySelectorAll('.actions button')[1].click(), true`, new(bool)) // Delete
		a.waitFor("the inline confirmation", lastMine+`.querySelector('.actions.confirm')?.textContent.includes('Delete for everyone?')`, "")
		a.eval(lastMine+`.querySelector('.actions.confirm button.danger').click(), true`, new(bool))
		bp.waitFor("the message deleted", `[...document.querySelectorAll('#message-list .msg .body')].at(-1).textContent === 'This message was deleted.'`, "")
	}

	step(t, "a message refused stays in view, with its error")
	{
		a.eval(`(() => { const t = document.getElementById('text'); t.value = 'y'.repeat(600); t.dispatchEvent(new Event('input')); return true; })()`, new(bool))
		a.pressEnter()
		a.waitFor("the error under the message", `document.querySelector('#message-list .msg.pending .ticks.failed')?.textContent.startsWith('Not sent')`, "")
		a.waitFor("the view at the end with the error", atBottomJS, distanceJS)
		a.eval(`[...document.querySelectorAll('#message-list .msg.pending .actions button')].find(b => b.textContent === 'Discard').click(), true`, new(bool))
		a.waitFor("the message discarded", `!document.querySelector('#message-list .msg.pending')`, "")
	}

	for _, pg := range []*page{a, bp} {
		var dialogs []string
		pg.eval(`window.dialogs`, &dialogs)
		if len(dialogs) > 0 {
			t.Errorf("[%s] browser dialogs opened: %q", pg.name, dialogs)
		}
	}
}
