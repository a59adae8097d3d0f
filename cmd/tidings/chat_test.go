package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
)

// recorder keeps the updates an SDK client receives.
type recorder struct {
	mu      sync.Mutex
	events  []client.Event
	changed chan struct{}
}

// listen returns a client of user, connected, whose updates r records.
func (w *world) listen(t *testing.T, user string) (*client.Client, *recorder) {
	t.Helper()
	r := &recorder{changed: make(chan struct{})}
	c := w.client(t, user, client.WithDevice("test"), client.WithEventListener(func(e client.Event) {
		r.mu.Lock()
		r.events = append(r.events, e)
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
	}))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return c, r
}

// waitFor waits for an update that match accepts.
func (r *recorder) waitFor(t *testing.T, what string, match func(client.Event) bool) {
	t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		r.mu.Lock()
		for _, e := range r.events {
			if match(e) {
				r.mu.Unlock()
				return
			}
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitMessage waits for the message text from user.
func (r *recorder) waitMessage(t *testing.T, from, text string) {
	t.Helper()
	r.waitFor(t, fmt.Sprintf("the message %q from %s", text, from), func(e client.Event) bool {
		m, ok := e.(*client.MessageSent)
		return ok && m.Message.Sender.ID == from && m.Message.Parts[0].Data == text
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

func TestChat(t *testing.T) {
	w := newWorld(t)
	earlier := w.send(t, "bob", "earlier message")
	bob, bobGot := w.listen(t, "bob")

	chat := start(t, w.env("alice"), "chat", "lunch")
	chat.waitOutput(t, false, "/help lists the commands")
	chat.waitOutput(t, false, "  Bob  earlier message\n")
	// Shown, it is marked read.
	bobGot.waitFor(t, "alice's read mark", func(e client.Event) bool {
		r, ok := e.(*client.MessageRead)
		return ok && r.ProfileID == "alice" && r.Seq == earlier.Seq
	})

	// Bob types, then sends: alice sees both.
	if err := bob.Socket().StartTyping(ctxT(t), "lunch"); err != nil {
		t.Fatal(err)
	}
	chat.waitOutput(t, false, "\nBob is typing…\n")
	if _, err := bob.Socket().SendMessage(ctxT(t), "lunch", tidings.NewMessage{ClientID: "b1",
		Parts: []tidings.Part{{Type: "text/plain", Data: "hi alice\nhow are you?"}}}); err != nil {
		t.Fatal(err)
	}
	chat.waitOutput(t, false, "  Bob  hi alice\n"+strings.Repeat(" ", len("15:04  Bob  "))+"how are you?\n")

	// Alice's lines are sent; shown with a mark that bob read them once
	// he has.
	io.WriteString(chat.stdin, "hello bob\n")
	bobGot.waitMessage(t, "alice", "hello bob")
	chat.waitOutput(t, false, "  you  hello bob ✓")
	if _, err := bob.Socket().MarkRead(ctxT(t), "lunch", 0); err != nil {
		t.Fatal(err)
	}
	chat.waitOutput(t, false, "✓✓ read by Bob\n")
	io.WriteString(chat.stdin, "//slash\n")
	bobGot.waitMessage(t, "alice", "/slash")
	// Bob's send moves his read mark past alice's #4, with no read update
	// of its own: the chat takes it from the message.
	if _, err := bob.Socket().SendMessage(ctxT(t), "lunch", tidings.NewMessage{ClientID: "b2",
		Parts: []tidings.Part{{Type: "text/plain", Data: "bye"}}}); err != nil {
		t.Fatal(err)
	}
	chat.waitOutput(t, false, "  Bob  bye\n")

	io.WriteString(chat.stdin, "/who\n")
	chat.waitOutput(t, false, "Bob (bob), member, read up to #5")
	io.WriteString(chat.stdin, "/nope\n")
	chat.waitOutput(t, false, "unknown command /nope")
	io.WriteString(chat.stdin, "/quit\n")
	if code := chat.exit(t); code != exitOK {
		t.Errorf("/quit: exit code %d; stderr:\n%s", code, chat.stderr)
	}
	if out := chat.stdout.String(); strings.Contains(out, "\x1b") {
		t.Errorf("escape sequences written to a non-terminal:\n%q", out)
	}
}

// TestChatTellsJoinLeaveAddRemove: the chat says who left and who added
// whom from the events' reason.
func TestChatTellsJoinLeaveAddRemove(t *testing.T) {
	w := newWorld(t)
	chat := start(t, w.env("alice"), "chat", "lunch")
	// Connected: the history is read once the updates are listened to
	// (the header comes before; a new device gets the updates from its
	// connection on, and one made before it would be missed).
	chat.waitOutput(t, false, "No messages yet.\n")
	bob := w.client(t, "bob", client.WithMode(client.ManualMode))
	if err := bob.Leave(ctxT(t), "lunch"); err != nil {
		t.Fatal(err)
	}
	chat.waitOutput(t, false, "Bob left\n")
	alice := w.client(t, "alice", client.WithMode(client.ManualMode))
	if _, err := alice.AddParticipant(ctxT(t), "lunch", tidings.NewParticipant{UserID: "bob"}); err != nil {
		t.Fatal(err)
	}
	chat.waitOutput(t, false, "you added Bob\n")
	if err := alice.RemoveParticipant(ctxT(t), "lunch", "bob"); err != nil {
		t.Fatal(err)
	}
	chat.waitOutput(t, false, "you removed Bob\n")
	io.WriteString(chat.stdin, "/quit\n")
	if code := chat.exit(t); code != exitOK {
		t.Errorf("/quit: exit code %d; stderr:\n%s", code, chat.stderr)
	}
}

// TestChatShowsRenames: when another participant changes their name, the
// chat says so and shows the new name from then on.
func TestChatShowsRenames(t *testing.T) {
	w := newWorld(t)
	chat := start(t, w.env("alice"), "chat", "lunch")
	// Connected: the history is read once the updates are listened to
	// (the header comes before; a new device gets the updates from its
	// connection on, and one made before it would be missed).
	chat.waitOutput(t, false, "No messages yet.\n")
	bob := w.client(t, "bob", client.WithMode(client.ManualMode))
	name := "Bob Smith"
	if _, err := bob.UpdateUser(ctxT(t), "bob", tidings.UserUpdate{DisplayName: &name}); err != nil {
		t.Fatal(err)
	}
	chat.waitOutput(t, false, "Bob is now Bob Smith\n")
	if _, err := bob.SendMessage(ctxT(t), "lunch", tidings.NewMessage{ClientID: "b1",
		Parts: []tidings.Part{{Type: "text/plain", Data: "new name"}}}); err != nil {
		t.Fatal(err)
	}
	chat.waitOutput(t, false, "  Bob Smith  new name\n")
	io.WriteString(chat.stdin, "/who\n")
	chat.waitOutput(t, false, "Bob Smith (bob), member")
	io.WriteString(chat.stdin, "/quit\n")
	if code := chat.exit(t); code != exitOK {
		t.Errorf("/quit: exit code %d; stderr:\n%s", code, chat.stderr)
	}
}

func TestChatHistory(t *testing.T) {
	w := newWorld(t)
	for _, text := range []string{"m1", "m2", "m3\x1b[31mred"} {
		w.send(t, "bob", text)
	}
	chat := start(t, w.env("alice"), "chat", "--history", "1", "lunch")
	chat.waitOutput(t, false, "(/history shows earlier messages)")
	chat.waitOutput(t, false, "Bob  m3�[31mred\n") // no escape sequence from others
	io.WriteString(chat.stdin, "/history 5\n")
	chat.waitOutput(t, false, "── 2 earlier messages ──")
	chat.waitOutput(t, false, "── end of the earlier messages ──")
	out := chat.stdout.String()
	if i, j := strings.Index(out, "Bob  m1\n"), strings.Index(out, "Bob  m2\n"); i < 0 || j < i {
		t.Errorf("/history shows:\n%s", out)
	}
	io.WriteString(chat.stdin, "/history\n")
	chat.waitOutput(t, false, "No earlier messages.")
	chat.stdin.Close() // the end of the input ends the chat
	if code := chat.exit(t); code != exitOK {
		t.Errorf("exit code %d at the end of the input; stderr:\n%s", code, chat.stderr)
	}
}

func TestChatErrors(t *testing.T) {
	w := newWorld(t)
	r := runCLI(t, w.env("alice"), "chat", "nope")
	if r.code != exitFailure || !strings.Contains(r.stderr, `tidings chat: conversation "nope" not found`) {
		t.Errorf("chat nope: exit code %d, stderr %q", r.code, r.stderr)
	}
	r = runCLI(t, w.env("alice"), "chat")
	if r.code != exitUsage || !strings.Contains(r.stderr, "missing conversation ID") {
		t.Errorf("chat without a conversation: exit code %d, stderr %q", r.code, r.stderr)
	}
}

// On a terminal, typing tells the others; the prompt says who else types.
func TestChatOnATerminal(t *testing.T) {
	w := newWorld(t)
	bob, bobGot := w.listen(t, "bob")
	alice := w.client(t, "alice", client.WithDevice("terminal"))
	ch := newChat(alice, "lunch", style{color: true}, 20)
	if err := ch.open(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	in, keys := io.Pipe()
	out := new(syncBuffer)
	scr := newTermScreen(struct {
		io.Reader
		io.Writer
	}{in, out}, style{color: true})
	done := make(chan error, 1)
	go func() { done <- ch.run(context.Background(), scr) }()
	t.Cleanup(func() { keys.Close() })
	waitText := func(text string) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for !strings.Contains(out.String(), text) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %q in:\n%q", text, out)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitText("/help lists the commands")

	io.WriteString(keys, "hel")
	bobGot.waitFor(t, "alice typing", func(e client.Event) bool {
		ty, ok := e.(*client.ParticipantTyping)
		return ok && ty.ProfileID == "alice"
	})
	io.WriteString(keys, "lo\r")
	bobGot.waitMessage(t, "alice", "hello")
	waitText("you\x1b[0m  hello")

	// A draft erased, then an empty line: no longer typing.
	io.WriteString(keys, "draft\x15\r")
	bobGot.waitFor(t, "alice no longer typing", func(e client.Event) bool {
		ty, ok := e.(*client.ParticipantTypingOff)
		return ok && ty.ProfileID == "alice"
	})

	if err := bob.Socket().StartTyping(ctxT(t), "lunch"); err != nil {
		t.Fatal(err)
	}
	waitText("Bob is typing…\x1b[0m \x1b[1m> ")

	io.WriteString(keys, "\x04") // Ctrl-D
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Ctrl-D did not end the chat")
	}
}

// The chat says when the connection is lost and when it is back, once
// each, and forgets who was typing meanwhile.
func TestChatConnectionStatus(t *testing.T) {
	out := new(syncBuffer)
	ch := newChat(nil, "lunch", style{}, 20)
	ch.scr = newPlainScreen(strings.NewReader(""), out)
	ch.typing = []string{"bob"}
	lost := &client.CloseError{Code: 1001, Reason: "the server is shutting down: reconnect"}
	ch.onStatus(client.StatusChange{Status: client.StatusReconnecting, Err: lost})
	ch.onStatus(client.StatusChange{Status: client.StatusReconnecting, Err: fmt.Errorf("client: dial: connection refused")})
	ch.onStatus(client.StatusChange{Status: client.StatusConnected})
	want := "connection lost (the server is shutting down: reconnect); reconnecting...\nconnected again\n"
	if out.String() != want || len(ch.typing) != 0 {
		t.Errorf("printed %q, typing %v; want %q", out, ch.typing, want)
	}
	ch.onStatus(client.StatusChange{Status: client.StatusDisconnected, Err: lost})
	select {
	case err := <-ch.fatal:
		if err != lost {
			t.Errorf("ended with %v", err)
		}
	default:
		t.Errorf("a connection refused for good does not end the chat")
	}
}

// Lines typed while the server is down are queued, shown as pending, and
// sent in order, once each, when it is back; the chat waits for them
// before it ends.
func TestChatQueuesWhileTheServerIsDown(t *testing.T) {
	w := newWorld(t)
	chat := start(t, w.env("alice"), "chat", "lunch")
	chat.waitOutput(t, false, "/help lists the commands")
	io.WriteString(chat.stdin, "before\n")
	chat.waitOutput(t, false, "  you  before ✓")

	w.stopServer(t)
	io.WriteString(chat.stdin, "first offline\n")
	chat.waitOutput(t, false, "  you  first offline (pending)\n")
	chat.waitOutput(t, false, "server unreachable, message queued")
	io.WriteString(chat.stdin, "second offline\n")
	chat.waitOutput(t, false, "  you  second offline (pending)\n")
	// The end of the input waits for the queue.
	chat.stdin.Close()
	chat.waitOutput(t, false, "2 messages not sent yet: waiting for the server")
	select {
	case code := <-chat.done:
		t.Fatalf("the chat ended (code %d) with messages queued; stdout:\n%s", code, chat.stdout)
	default:
	}

	w.startServer(t)
	if code := chat.exit(t); code != exitOK {
		t.Errorf("exit code %d; stderr:\n%s", code, chat.stderr)
	}
	out := chat.stdout.String() + chat.stderr.String()
	for _, raw := range []string{"dial tcp", "connect:", "Post \""} {
		if strings.Contains(out, raw) {
			t.Errorf("the chat shows the error text %q:\n%s", raw, out)
		}
	}
	if i, j := strings.Index(out, "  you  first offline ✓"), strings.Index(out, "  you  second offline ✓"); i < 0 || j < i {
		t.Errorf("the queued messages are not shown as sent, in order:\n%s", out)
	}
	page, err := w.client(t, "bob", client.WithMode(client.ManualMode)).ListMessages(ctxT(t), "lunch", tidings.MessageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range page.Messages {
		got = append(got, m.Parts[0].Data)
		if !strings.HasPrefix(m.ClientID, "cli-") {
			t.Errorf("message %q sent without a client id", m.Parts[0].Data)
		}
	}
	if strings.Join(got, "|") != "before|first offline|second offline" {
		t.Errorf("bob reads %q", got)
	}
}

// The chat lists, switches to, joins and creates conversations, and
// sends files.
func TestChatConversationsAndFiles(t *testing.T) {
	w := newWorld(t)
	bob := w.client(t, "bob", client.WithMode(client.ManualMode))
	for _, nc := range []tidings.NewConversation{
		{ID: "dinner", Name: "Dinner", Participants: []tidings.NewParticipant{{UserID: "alice"}}},
		{ID: "town", Name: "Town square", IsPublic: true},
	} {
		if _, err := bob.CreateConversation(ctxT(t), nc); err != nil {
			t.Fatal(err)
		}
	}
	chat := start(t, w.env("alice"), "chat", "lunch")
	chat.waitOutput(t, false, "/help lists the commands")

	io.WriteString(chat.stdin, "/help\n")
	for _, cmd := range []string{"/list", "/switch ID", "/join ID", "/new ID [USER...]", "/upload PATH", "/history [N]", "/who", "/help", "/quit"} {
		chat.waitOutput(t, false, "\n"+cmd+" ")
	}

	// A message elsewhere is told of; /list shows it unread.
	for _, text := range []string{"dinner at 8?", "or 9"} {
		if _, err := bob.SendMessage(ctxT(t), "dinner", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: text}}}); err != nil {
			t.Fatal(err)
		}
	}
	chat.waitOutput(t, false, "[dinner] Bob: or 9\n")
	io.WriteString(chat.stdin, "/list\n")
	chat.waitOutput(t, false, "dinner  Dinner (2 unread)\n")
	chat.waitOutput(t, false, "* lunch   Lunch\n")

	io.WriteString(chat.stdin, "/switch dinner\n")
	chat.waitOutput(t, false, "Dinner · dinner\n")
	chat.waitOutput(t, false, "  Bob  or 9\n")
	io.WriteString(chat.stdin, "yes, 8\n")
	chat.waitOutput(t, false, "  you  yes, 8 ✓")
	waitMessages(t, bob, "dinner", "dinner at 8?|or 9|yes, 8")

	io.WriteString(chat.stdin, "/switch town\n")
	chat.waitOutput(t, false, `you are not in the conversation "town": /join town joins it`)
	io.WriteString(chat.stdin, "/join town\n")
	chat.waitOutput(t, false, "Town square · town\n")
	io.WriteString(chat.stdin, "/switch nope\n")
	chat.waitOutput(t, false, `could not open nope: conversation "nope" not found`)

	io.WriteString(chat.stdin, "/new picnic bob\n")
	chat.waitOutput(t, false, "picnic · picnic\n")
	chat.waitOutput(t, false, "With Bob (bob).")

	path := filepath.Join(t.TempDir(), "menu.txt")
	if err := os.WriteFile(path, []byte("sandwiches"), 0o600); err != nil {
		t.Fatal(err)
	}
	io.WriteString(chat.stdin, "/upload "+path+"\n")
	chat.waitOutput(t, false, "  you  [file menu.txt, text/plain, 10 B] ✓")
	page, err := bob.ListMessages(ctxT(t), "picnic", tidings.MessageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 1 || len(page.Messages[0].Parts) != 1 || page.Messages[0].Parts[0].FileID == "" {
		t.Fatalf("bob reads %+v in picnic", page.Messages)
	}
	p := page.Messages[0].Parts[0]
	rc, _, err := bob.DownloadFile(ctxT(t), "picnic", p.FileID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if p.Name != "menu.txt" || string(b) != "sandwiches" {
		t.Errorf("the file sent is %q: %q", p.Name, b)
	}
	io.WriteString(chat.stdin, "/upload "+path+".missing\n")
	chat.waitOutput(t, false, "cannot read "+path+".missing: no such file or directory")

	io.WriteString(chat.stdin, "/quit\n")
	if code := chat.exit(t); code != exitOK {
		t.Errorf("/quit: exit code %d; stderr:\n%s", code, chat.stderr)
	}
}

// waitMessages waits until the texts of conv's messages, joined by |, are
// want.
func waitMessages(t *testing.T, c *client.Client, conv, want string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		page, err := c.ListMessages(ctxT(t), conv, tidings.MessageFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range page.Messages {
			got = append(got, m.Parts[0].Data)
		}
		if strings.Join(got, "|") == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %q, want %q", conv, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// On a terminal, leaving with messages queued asks to leave again.
func TestChatOnATerminalLeavesQueuedMessagesWhenToldTwice(t *testing.T) {
	w := newWorld(t)
	alice := w.client(t, "alice", client.WithDevice("terminal"))
	ch := newChat(alice, "lunch", style{}, 20)
	if err := ch.open(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	in, keys := io.Pipe()
	out := new(syncBuffer)
	scr := newTermScreen(struct {
		io.Reader
		io.Writer
	}{in, out}, style{})
	done := make(chan error, 1)
	go func() { done <- ch.run(context.Background(), scr) }()
	t.Cleanup(func() { keys.Close() })
	waitText := func(text string) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for !strings.Contains(out.String(), text) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %q in:\n%q", text, out)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitText("No messages yet.") // connected
	w.stopServer(t)
	io.WriteString(keys, "lost\r")
	waitText("you  lost (pending)")
	waitText("server unreachable, message queued")
	io.WriteString(keys, "/quit\r")
	waitText("1 message not sent yet: waiting for the server; /quit again (or Ctrl-D) leaves without them")
	select {
	case err := <-done:
		t.Fatalf("the chat ended (%v) with a message queued", err)
	default:
	}
	io.WriteString(keys, "\x04") // Ctrl-D
	select {
	case err := <-done:
		if err == nil || err.Error() != "left with 1 queued message not sent" {
			t.Errorf("run ended with %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Ctrl-D did not end the chat")
	}
}

// The chat says at once why it cannot connect, and opens once it can.
func TestChatSaysWhyItCannotConnect(t *testing.T) {
	w := newWorld(t)
	r := &remote{server: w.url, token: w.tokens["alice"]}
	alice, err := r.newClient(ctxT(t), &cli{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alice.Close() })
	ch := newChat(alice, "lunch", style{}, 20)
	ch.server = w.url
	if err := ch.open(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	w.stopServer(t)
	in, keys := io.Pipe()
	out := new(syncBuffer)
	done := make(chan error, 1)
	go func() { done <- ch.run(context.Background(), newPlainScreen(in, out)) }()
	waitText := func(text string) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for !strings.Contains(out.String(), text) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %q in:\n%s", text, out)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitText("cannot reach " + w.url + ": connection refused; retrying\n")
	w.startServer(t)
	waitText("No messages yet.")
	keys.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("the end of the input did not end the chat")
	}
}
