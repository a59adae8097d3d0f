package main

import (
	"context"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
)

var updateScreenshot = flag.Bool("update", false, "write docs/screenshot.png (TestScreenshot)")

// TestScreenshot takes the screenshot of the web page shown in the README:
//
//	go test ./cmd/tidings -run TestScreenshot -update
//
// Without -update it only checks that the page can be captured.
func TestScreenshot(t *testing.T) {
	b := newBrowser(t)
	url, stop := startServe(t, t.TempDir(), "--dev")
	defer stop()
	ctx := context.Background()

	people := map[string]*client.Client{}
	for _, u := range [][2]string{{"alice", "Alice Martin"}, {"bob", "Bob Chen"}, {"carol", "Carol Diaz"}} {
		resp, err := http.Post(url+"/v1/dev/token", "application/json",
			strings.NewReader(`{"userId":"`+u[0]+`","displayName":"`+u[1]+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if u[0] == "alice" {
			continue // she uses the page
		}
		c, err := client.New(url, client.WithToken(mintDevToken(t, url, u[0])), client.WithMode(client.ManualMode), client.WithDevice("phone"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		people[u[0]] = c
	}
	bob, carol := people["bob"], people["carol"]
	say := func(c *client.Client, conv, text string) {
		t.Helper()
		if _, err := c.SendMessage(ctx, conv, tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: text}}}); err != nil {
			t.Fatal(err)
		}
	}
	conv := func(c *client.Client, id, name string, with ...string) {
		t.Helper()
		nc := tidings.NewConversation{ID: id, Name: name}
		for _, u := range with {
			nc.Participants = append(nc.Participants, tidings.NewParticipant{UserID: u})
		}
		if _, err := c.CreateConversation(ctx, nc); err != nil {
			t.Fatal(err)
		}
	}

	conv(carol, "release", "Release 1.0", "alice", "bob")
	say(carol, "release", "The release notes are ready for review.")
	conv(bob, "lunch", "Lunch on Friday", "alice", "carol")
	say(bob, "lunch", "Anyone up for lunch on Friday?")
	say(carol, "lunch", "Yes! The noodle place on 5th?")

	a := b.newProfile("alice").open(url + "/")
	a.run(chromedp.EmulateViewport(1100, 700))
	a.signIn("alice")
	a.openConversation("Lunch on Friday")
	a.send("Count me in. Noon works for me.")
	a.waitMessages("Anyone up for lunch on Friday?", "Yes! The noodle place on 5th?", "Count me in. Noon works for me.")
	say(bob, "lunch", "Great, I'll book a table for three.")
	f, err := carol.UploadFile(ctx, "lunch", "menu.txt", "text/plain", strings.NewReader("Soups, noodles, dumplings.\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carol.SendMessage(ctx, "lunch", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", FileID: f.ID, Name: f.Name}}}); err != nil {
		t.Fatal(err)
	}
	a.send("Perfect, see you there!")
	a.waitMessages("Anyone up for lunch on Friday?", "Yes! The noodle place on 5th?", "Count me in. Noon works for me.",
		"Great, I'll book a table for three.", "menu.txt (27 B)", "Perfect, see you there!")
	for _, c := range []*client.Client{bob, carol} {
		if _, err := c.MarkRead(ctx, "lunch", 0); err != nil {
			t.Fatal(err)
		}
	}
	conv(bob, "design", "Design review", "alice")
	say(bob, "design", "I pushed the new mockups.")
	say(bob, "design", "Could you look at the sign-in page?")
	// Bob comes online and starts typing.
	if err := bob.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bob.Socket().StartTyping(ctx, "lunch"); err != nil {
		t.Fatal(err)
	}
	a.waitFor("read ticks", `[...document.querySelectorAll('#message-list .msg.mine .ticks')].every(e => e.dataset.tick === 'read')`, "")
	a.waitFor("bob online and typing", `document.querySelector('#chat-members .presence.online') && document.getElementById('typing').textContent.includes('Bob Chen')`, "")
	a.waitFor("the design review unread", `document.querySelector('#conv-list .unread')`, "")
	a.eval(`document.activeElement.blur(), true`, new(bool))
	a.run(chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, 600, 5)) // no message hovered
	time.Sleep(300 * time.Millisecond)                                         // let the last frame paint

	ctxShot, cancel := context.WithTimeout(a.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctxShot, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if len(png) < 1000 {
		t.Fatalf("screenshot of %d bytes", len(png))
	}
	if *updateScreenshot {
		path := filepath.Join("..", "..", "docs", "screenshot.png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}
}
