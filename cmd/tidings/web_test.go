package main

import (
	"encoding/json"
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

// waitMessages waits until the open conversation shows exactly want.
func (pg *page) waitMessages(want ...string) {
	pg.t.Helper()
	b, _ := json.Marshal(want)
	pg.waitFor("messages "+string(b), `JSON.stringify(`+messagesJS+`) === `+js(string(b)), `JSON.stringify(`+messagesJS+`)`)
}

func (pg *page) text(sel string) string {
	pg.t.Helper()
	var s string
	pg.eval(`document.querySelector(`+js(sel)+`)?.textContent ?? ''`, &s)
	return s
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

	t.Run("both ways, live", func(t *testing.T) {
		a.send("Noon at the usual place?")
		bp.waitMessages("Noon at the usual place?")
		bp.send("See you there!")
		a.waitMessages("Noon at the usual place?", "See you there!")
		// Bob read alice's message on his open page: her tick says so.
		a.waitFor("alice's message marked read", `document.querySelector('#message-list .msg.mine .ticks')?.dataset.tick === 'read'`,
			`document.querySelector('#message-list .msg.mine .ticks')?.dataset.tick`)
	})

	t.Run("typing indicator", func(t *testing.T) {
		bp.run(chromedp.SendKeys(chromedp.CSS("#text"), "On my w"))
		a.waitFor("bob's typing indicator", `document.getElementById('typing').textContent === 'bob is typing…'`, `document.getElementById('typing').textContent`)
		bp.send("ay")
		a.waitFor("the typing indicator to go", `document.getElementById('typing').textContent === ''`, `document.getElementById('typing').textContent`)
		a.waitMessages("Noon at the usual place?", "See you there!", "On my way")
	})

	before := []string{"Noon at the usual place?", "See you there!", "On my way"}
	t.Run("three messages while the page is closed", func(t *testing.T) {
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
	})

	t.Run("the server restarts", func(t *testing.T) {
		addr := strings.TrimPrefix(url, "http://")
		if code, logs := stop(); code != exitOK {
			t.Fatalf("serve exited with %d:\n%s", code, logs)
		}
		a.waitFor("alice's page to see the server gone", `document.getElementById('conn').dataset.status !== 'connected'`, "")
		// Typed while the server is away: kept, and sent once it is back.
		a.send("sent while offline")
		a.waitFor("the message waiting in the outbox", `document.querySelector('#message-list .msg.pending')`, "")
		url, stop = startServe(t, dir, "--dev", "--addr", addr)
		a.waitConnected()
		bp.waitConnected()
		want := append(before, "one", "two", "three", "sent while offline")
		bp.waitMessages(want...)
		a.waitMessages(want...)
		bp.send("welcome back")
		a.waitMessages(append(want, "welcome back")...)
	})

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
