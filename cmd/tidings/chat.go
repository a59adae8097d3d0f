package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
)

var chatCommand = &command{
	name:  "chat",
	args:  "[--history N] [flags] CONVERSATION",
	short: "chat in a conversation from the terminal",
	long: `
Chat opens the conversation CONVERSATION (its id) in the terminal as a
user: it shows the last messages, then new ones as they arrive, and sends
each line typed as a message. It marks the messages it shows read, shows
who is typing and, after your own messages, whether the others got them
(✓✓) and read them. On a terminal the line being typed is kept at the
bottom and tells the others that you are typing. Commands list, switch
to, join and create other conversations, and send files; the new
messages of the conversations not shown are told of in a line each.

Commands, typed as a line:

` + chatHelpText() + `

A line starting with // sends the rest of it, from its second /.

When the server cannot be reached, the lines typed are queued: shown as
pending ("server unreachable, message queued"), then sent in order once
the server answers again (each with an id of its own, so that a message
is never sent twice). Leaving with messages queued waits for them to be
sent; leaving again (or Ctrl-C) leaves without them.

When the standard input is not a terminal, chat reads the lines to send
from it and stops at its end. Colours are left out when the output is not
a terminal, or NO_COLOR is set.` + remoteHelp,
	run: runChat,
}

func runChat(ctx context.Context, c *cli, args []string) error {
	var r remote
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	addRemoteFlags(fs, &r)
	device := fs.String("device", "chat", "`name` of this device: the server keeps a cursor per user and device")
	history := fs.Int("history", 20, "`number` of recent messages shown when the chat opens (at most 200)")
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 1, 1, "conversation ID"); err != nil {
		return err
	}
	if err := r.resolve(c, fs); err != nil {
		return err
	}
	if *history < 0 || *history > 200 {
		return usageErrorf("--history must be between 0 and 200")
	}
	cl, err := r.newClient(ctx, c, client.WithDevice(*device))
	if err != nil {
		return err
	}
	defer cl.Close()
	st := style{color: c.colorOutput()}
	ch := newChat(cl, args[0], st, *history)
	ch.server = r.server
	if err := ch.open(ctx); err != nil {
		return r.explain(err)
	}
	scr, err := c.chatScreen(st)
	if err != nil {
		return err
	}
	defer scr.close()
	return r.explain(ch.run(ctx, scr))
}

// typingRefresh is how often the chat tells again that the user is
// typing while they keep typing: more often than the server's typing
// timeout (5s by default) ends the indicator.
const typingRefresh = 3 * time.Second

// commandTimeout bounds each request of the chat to the server.
const commandTimeout = 30 * time.Second

// resendEvery is how often the chat tries again to send the messages
// queued while the server could not be reached (and at once when the
// realtime connection opens again).
const resendEvery = 2 * time.Second

// maxNameWidth bounds the column of the names.
const maxNameWidth = 16

// chat is an interactive chat, as one user, on a screen, in one
// conversation at a time. Create it with newChat, call open, then run.
type chat struct {
	cl      *client.Client
	server  string // its URL, to say which cannot be reached
	st      style
	history int
	scr     screen

	me      *tidings.User   // set by open
	typer   chan typing     // to the goroutine that sends typing indicators
	fatal   chan error      // ends run
	kick    chan struct{}   // wakes the sender up: something to send
	drained chan struct{}   // the outbox became empty
	wg      sync.WaitGroup  // the goroutines of typer and kick
	ctx     context.Context // of run, for the listeners' requests

	mu       sync.Mutex
	conv     string // the conversation shown
	title    string
	people   map[string]*person // the participants, by user id
	width    int                // of the names' column
	shown    map[int64]bool     // seqs of the messages shown
	oldest   int64              // the oldest seq shown; 0 before any
	lastDay  string             // the day of the last message shown
	lastOwn  int64              // the newest own message shown
	typing   []string           // who else is typing, in the order they started
	status   client.Status
	typingAt time.Time   // when the user's typing was last told; zero when not typing
	outbox   []*outgoing // the messages to send, in order
	offline  bool        // the last attempt to send found the server unreachable
}

// person is a participant.
type person struct {
	name         string
	role         tidings.Role
	deliveredSeq int64
	readSeq      int64
}

// typing is a typing indicator to send.
type typing struct {
	conv string
	on   bool
}

// outgoing is a message the user typed, waiting to be sent.
type outgoing struct {
	conv    string
	msg     tidings.NewMessage // with a ClientID: sending it again does not send it twice
	at      time.Time          // when it was typed
	pending bool               // shown as pending
}

func newChat(cl *client.Client, conv string, st style, history int) *chat {
	return &chat{cl: cl, conv: conv, st: st, history: history, people: make(map[string]*person),
		shown: make(map[int64]bool), typer: make(chan typing, 1), fatal: make(chan error, 1),
		kick: make(chan struct{}, 1), drained: make(chan struct{}, 1), status: client.StatusConnected}
}

// view is what the chat reads of a conversation to show it.
type view struct {
	id, title string
	member    bool // the user takes part in it
	public    bool
	people    map[string]*person
	width     int
}

// readConversation reads a conversation and its participants.
func (c *chat) readConversation(ctx context.Context, id string) (*view, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	conv, err := c.cl.GetConversation(ctx, id)
	if err != nil {
		return nil, err
	}
	v := &view{id: id, title: conv.Name, member: conv.Role != "", public: conv.IsPublic,
		people: make(map[string]*person), width: stringWidth("you")}
	if conv.DeletedAt != nil {
		v.title += " (deleted)"
	}
	if !v.member {
		return v, nil
	}
	parts, err := c.cl.ListParticipants(ctx, id)
	if err != nil {
		return nil, err
	}
	for _, p := range parts {
		v.people[p.UserID] = &person{name: displayName(p.Profile), role: p.Role, deliveredSeq: p.DeliveredSeq, readSeq: p.ReadSeq}
		if p.UserID != c.me.ID {
			v.width = max(v.width, min(maxNameWidth, stringWidth(printable(displayName(p.Profile)))))
		}
	}
	return v, nil
}

// open reads the user, the conversation and its participants: it fails
// when the server cannot be reached, refuses the token or does not know
// the conversation.
func (c *chat) open(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	me, err := c.cl.Me(ctx)
	if err != nil {
		return err
	}
	c.me = me
	v, err := c.readConversation(ctx, c.conv)
	if err != nil {
		return err
	}
	if !v.member {
		return notMember(v)
	}
	c.mu.Lock()
	c.setView(v)
	c.mu.Unlock()
	return nil
}

// notMember is the error of opening a conversation the user is not in.
func notMember(v *view) error {
	if v.public {
		return fmt.Errorf("you are not in the conversation %q: /join %s joins it", v.id, v.id)
	}
	return fmt.Errorf("you are not in the conversation %q", v.id)
}

// setView makes the conversation of v the one shown, from scratch. c.mu
// is held.
func (c *chat) setView(v *view) {
	c.conv, c.title, c.people, c.width = v.id, v.title, v.people, v.width
	c.shown, c.oldest, c.lastDay, c.lastOwn = make(map[int64]bool), 0, "", 0
	if c.typing = nil; c.scr != nil {
		c.scr.setTyping("")
	}
}

func displayName(p tidings.Profile) string {
	switch {
	case p.DisplayName != "":
		return p.DisplayName
	case p.ID == "":
		// A system message's sender (the app itself), or a deleted user's.
		return "*"
	}
	return p.ID
}

// run shows the conversation on scr and runs the chat until the user
// quits, ctx ends or the connection is refused for good.
func (c *chat) run(ctx context.Context, scr screen) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.ctx, c.scr = ctx, scr
	c.printHeader()
	// Say so when connecting takes more than a moment, and why.
	server := c.server
	if server == "" {
		server = "the server"
	}
	err := waitConnected(ctx, c.cl, server, "connecting...", c.say)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	// The updates wait while the history is read: the listener takes
	// c.mu.
	c.mu.Lock()
	c.cl.AddStatusListener(c.onStatus)
	c.cl.AddEventListener(c.onEvent)
	err = c.showRecent(ctx)
	conv, newest := c.conv, c.newestShown()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.markRead(conv, newest)

	c.wg.Add(2)
	go c.sendTyping(ctx)
	go c.sender(ctx)
	defer func() {
		c.stopTyping()
		close(c.typer)
		cancel()
		c.wg.Wait()
	}()
	scr.onKey(c.keystroke)

	type input struct {
		line string
		err  error
	}
	// On a terminal, Ctrl-D and Ctrl-C end a line, not the input: the
	// user may type on.
	_, terminal := scr.(*termScreen)
	lines := make(chan input)
	next := make(chan struct{}, 1) // read the next line: the last one was handled
	go func() {
		for {
			line, err := scr.readLine()
			select {
			case lines <- input{line, err}:
			case <-ctx.Done():
				return
			}
			if err != nil && (!terminal || !errors.Is(err, io.EOF)) {
				return
			}
			select {
			case <-next:
			case <-ctx.Done():
				return
			}
		}
	}()
	leaving := false
	// leave reports whether the chat may end: not while messages wait to
	// be sent, unless the user asks twice.
	leave := func() (bool, error) {
		n := c.queued()
		switch {
		case n == 0:
			return true, nil
		case leaving:
			return true, fmt.Errorf("left with %s not sent", plural(n, "queued message"))
		}
		leaving = true
		again := "Ctrl-C leaves without them"
		if terminal {
			again = "/quit again (or Ctrl-D) leaves without them"
		}
		scr.println(c.st.dim(fmt.Sprintf("%s not sent yet: waiting for the server; %s", plural(n, "message"), again)))
		return false, nil
	}
	for {
		select {
		case <-ctx.Done():
			if n := c.queued(); n > 0 {
				return fmt.Errorf("left with %s not sent", plural(n, "queued message"))
			}
			return nil
		case err := <-c.fatal:
			return err
		case <-c.drained:
			if leaving && c.queued() == 0 {
				return nil
			}
		case in := <-lines:
			quit := false
			switch {
			case errors.Is(in.err, io.EOF):
				quit = true
			case in.err != nil:
				return in.err
			default:
				quit = c.handle(ctx, in.line)
			}
			if quit {
				if ok, err := leave(); ok {
					return err
				}
			}
			next <- struct{}{}
		}
	}
}

// plural returns "1 message", "2 messages"...
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func (c *chat) printHeader() {
	var others []string
	for id, p := range c.people {
		if id != c.me.ID {
			others = append(others, fmt.Sprintf("%s (%s)", p.name, id))
		}
	}
	slices.Sort(others)
	with := "nobody else yet"
	if len(others) > 0 {
		with = strings.Join(others, ", ")
	}
	c.scr.println(c.st.bold(printable(fmt.Sprintf("%s · %s", c.title, c.conv))))
	c.scr.println(c.st.dim(printable(fmt.Sprintf("You are %s (%s). With %s.", displayName(c.me.Summary()), c.me.ID, with))))
	c.scr.println(c.st.dim("Type a message and press Enter; /help lists the commands, /quit leaves."))
}

// showRecent shows the last messages of the conversation, then those
// waiting to be sent to it. c.mu is held.
func (c *chat) showRecent(ctx context.Context) error {
	if c.history > 0 {
		ctx, cancel := context.WithTimeout(ctx, commandTimeout)
		defer cancel()
		page, err := c.cl.ListMessages(ctx, c.conv, tidings.MessageFilter{Limit: c.history})
		if err != nil {
			return err
		}
		switch {
		case len(page.Messages) == 0:
			c.scr.println(c.st.dim("No messages yet."))
		case page.HasMore:
			c.scr.println(c.st.dim("(/history shows earlier messages)"))
		}
		for _, m := range page.Messages {
			c.showMessage(m)
		}
	}
	for _, o := range c.outbox {
		if o.pending && o.conv == c.conv {
			c.showPending(o)
		}
	}
	return nil
}

func (c *chat) newestShown() int64 {
	var n int64
	for seq := range c.shown {
		n = max(n, seq)
	}
	return n
}

// handle acts on a line the user entered, and reports whether to quit.
func (c *chat) handle(ctx context.Context, line string) (quit bool) {
	switch {
	case strings.TrimSpace(line) == "":
		c.stopTyping()
	case strings.HasPrefix(line, "//"):
		c.send(line[1:])
	case strings.HasPrefix(line, "/"):
		c.stopTyping()
		return c.command(ctx, line)
	default:
		c.send(line)
	}
	return false
}

// chatCommands are the commands of the chat, for the help.
var chatCommands = []struct{ usage, help string }{
	{"/list", "list your conversations, with their unread messages (/ls)"},
	{"/switch ID", "show the conversation ID instead (/s)"},
	{"/join ID", "join the public conversation ID, and show it"},
	{"/new ID [USER...]", "create the conversation ID with the users given, and show it"},
	{"/upload PATH", "send the file at PATH"},
	{"/history [N]", "show N earlier messages"},
	{"/who", "list the participants and how far they read"},
	{"/help", "list the commands"},
	{"/quit", "leave (Ctrl-D and Ctrl-C too)"},
	{"//text", `send "/text"`},
}

// chatHelpText lists the commands, one a line.
func chatHelpText() string {
	width := 0
	for _, cmd := range chatCommands {
		width = max(width, len(cmd.usage))
	}
	var b strings.Builder
	for i, cmd := range chatCommands {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "  %-*s  %s", width, cmd.usage, cmd.help)
	}
	return b.String()
}

func (c *chat) command(ctx context.Context, line string) (quit bool) {
	fields := strings.Fields(line)
	arg := func(what string) (string, bool) {
		if len(fields) != 2 {
			c.say(fmt.Sprintf("%s takes %s: /help lists the commands", fields[0], what))
			return "", false
		}
		return fields[1], true
	}
	switch fields[0] {
	case "/quit", "/exit", "/q":
		return true
	case "/help", "/?":
		for _, l := range strings.Split(chatHelpText(), "\n") {
			c.scr.println(c.st.dim(strings.TrimPrefix(l, "  ")))
		}
	case "/who":
		c.who()
	case "/history":
		n := c.history
		if len(fields) > 1 {
			v, err := strconv.Atoi(fields[1])
			if err != nil || v < 1 || v > 200 {
				c.say("/history takes a number of messages, from 1 to 200")
				return false
			}
			n = v
		}
		if err := c.showEarlier(ctx, n); err != nil {
			c.say("could not read the history: " + c.problem(err))
		}
	case "/list", "/ls":
		c.list(ctx)
	case "/switch", "/s":
		if id, ok := arg("the id of a conversation"); ok {
			c.switchTo(ctx, id, false)
		}
	case "/join":
		if id, ok := arg("the id of a conversation"); ok {
			c.switchTo(ctx, id, true)
		}
	case "/new":
		if len(fields) < 2 {
			c.say("/new takes the id of the new conversation, then the users to add: /new ID [USER...]")
			return false
		}
		c.create(ctx, fields[1], fields[2:])
	case "/upload":
		path := strings.TrimSpace(strings.TrimPrefix(line, fields[0]))
		if path == "" {
			c.say("/upload takes the path of a file: /upload PATH")
			return false
		}
		c.upload(ctx, path)
	default:
		c.say(fmt.Sprintf("unknown command %s: /help lists the commands", fields[0]))
	}
	return false
}

// say shows a line from the chat itself.
func (c *chat) say(text string) {
	c.scr.println(c.st.dim(printable(text)))
}

// problem says what went wrong with a request, for a person.
func (c *chat) problem(err error) string {
	if why, ok := unreachable(err); ok {
		return "the server cannot be reached (" + why + ")"
	}
	return errorText(err)
}

// list lists the user's conversations.
func (c *chat) list(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	page, err := c.cl.ListConversations(ctx, tidings.ConversationFilter{Limit: 100})
	if err != nil {
		c.say("could not list the conversations: " + c.problem(err))
		return
	}
	if len(page.Conversations) == 0 {
		c.say("You are in no conversation yet: /new ID [USER...] creates one.")
		return
	}
	c.mu.Lock()
	current := c.conv
	c.mu.Unlock()
	width := 0
	for _, conv := range page.Conversations {
		width = max(width, stringWidth(conv.ID))
	}
	for _, conv := range page.Conversations {
		line := "  " + pad(conv.ID, width) + "  " + conv.Name
		if conv.ID == current {
			line = "* " + line[2:]
		}
		if conv.UnreadCount > 0 {
			line += fmt.Sprintf(" (%d unread)", conv.UnreadCount)
		}
		if conv.DeletedAt != nil {
			line += " (deleted)"
		}
		c.say(line)
	}
	if page.NextCursor != "" {
		c.say(fmt.Sprintf("(the %d most recently active)", len(page.Conversations)))
	}
}

// switchTo shows the conversation id instead of the current one, after
// joining it if join.
func (c *chat) switchTo(ctx context.Context, id string, join bool) {
	if join {
		jctx, cancel := context.WithTimeout(ctx, commandTimeout)
		_, err := c.cl.Join(jctx, id)
		cancel()
		if err != nil {
			c.say(fmt.Sprintf("could not join %s: %s", id, c.problem(err)))
			return
		}
	}
	v, err := c.readConversation(ctx, id)
	switch {
	case err != nil:
		c.say(fmt.Sprintf("could not open %s: %s", id, c.problem(err)))
		return
	case !v.member:
		c.say(notMember(v).Error())
		return
	}
	c.stopTyping()
	c.mu.Lock()
	c.setView(v)
	c.printHeader()
	err = c.showRecent(ctx)
	newest := c.newestShown()
	c.mu.Unlock()
	if err != nil {
		c.say("could not read the messages: " + c.problem(err))
	}
	c.markRead(id, newest)
}

// create creates the conversation id with the users given, and shows it.
func (c *chat) create(ctx context.Context, id string, users []string) {
	nc := tidings.NewConversation{ID: id, Name: id}
	for _, u := range users {
		nc.Participants = append(nc.Participants, tidings.NewParticipant{UserID: u})
	}
	cctx, cancel := context.WithTimeout(ctx, commandTimeout)
	_, err := c.cl.CreateConversation(cctx, nc)
	cancel()
	if err != nil {
		c.say(fmt.Sprintf("could not create %s: %s", id, c.problem(err)))
		return
	}
	c.switchTo(ctx, id, false)
}

// upload uploads the file at path to the conversation, and sends a
// message with it.
func (c *chat) upload(ctx context.Context, path string) {
	f, err := os.Open(path)
	if err != nil {
		var perr *os.PathError
		if errors.As(err, &perr) {
			err = perr.Err
		}
		c.say(fmt.Sprintf("cannot read %s: %v", path, err))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	switch {
	case err != nil:
		c.say(fmt.Sprintf("cannot read %s: %v", path, err))
		return
	case fi.IsDir():
		c.say(fmt.Sprintf("cannot send %s: it is a directory", path))
		return
	}
	typ := mime.TypeByExtension(filepath.Ext(path))
	if typ == "" {
		head := make([]byte, 512)
		n, _ := io.ReadFull(f, head)
		typ = http.DetectContentType(head[:n])
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			c.say(fmt.Sprintf("cannot read %s: %v", path, err))
			return
		}
	}
	if mt, _, err := mime.ParseMediaType(typ); err == nil {
		typ = mt // without its parameters, which a message's part cannot have
	}
	c.mu.Lock()
	conv := c.conv
	c.mu.Unlock()
	name := filepath.Base(path)
	c.say(fmt.Sprintf("uploading %s (%s)...", name, byteSize(fi.Size())))
	file, err := c.cl.UploadFile(ctx, conv, name, typ, f)
	if err != nil {
		if _, ok := unreachable(err); ok {
			c.say(fmt.Sprintf("%s not sent: %s; /upload it again once it answers", name, c.problem(err)))
			return
		}
		c.say(fmt.Sprintf("%s not sent: %s", name, errorText(err)))
		return
	}
	c.queue(conv, []tidings.Part{{Type: typ, Name: file.Name, FileID: file.ID, Size: file.Size}})
}

// who lists the participants.
func (c *chat) who() {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.people))
	for id := range c.people {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		p := c.people[id]
		line := fmt.Sprintf("%s (%s), %s, read up to #%d", p.name, id, p.role, p.readSeq)
		if id == c.me.ID {
			line += ", you"
		}
		if slices.Contains(c.typing, id) {
			line += ", typing"
		}
		c.scr.println(c.st.dim(printable(line)))
	}
}

// showEarlier shows up to n messages before the oldest one shown.
func (c *chat) showEarlier(ctx context.Context, n int) error {
	c.mu.Lock()
	before, conv := c.oldest, c.conv
	c.mu.Unlock()
	if before == 1 {
		c.scr.println(c.st.dim("No earlier messages."))
		return nil
	}
	f := tidings.MessageFilter{Limit: n}
	if before > 0 {
		f.Before = &before
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	page, err := c.cl.ListMessages(ctx, conv, f)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conv != conv {
		return nil
	}
	var old []*tidings.Message
	for _, m := range page.Messages {
		if !c.shown[m.Seq] {
			old = append(old, m)
		}
	}
	if len(old) == 0 {
		c.scr.println(c.st.dim("No earlier messages."))
		return nil
	}
	c.scr.println(c.st.dim(fmt.Sprintf("── %d earlier messages ──", len(old))))
	day := c.lastDay
	c.lastDay = ""
	for _, m := range old {
		c.showMessage(m)
	}
	more := ""
	if page.HasMore {
		more = " (/history for more)"
	}
	c.scr.println(c.st.dim("── end of the earlier messages ──" + more))
	c.lastDay = day
	return nil
}

// send sends text as a message to the conversation shown.
func (c *chat) send(text string) {
	c.mu.Lock()
	c.typingAt = time.Time{} // sending ends the typing indicator
	conv := c.conv
	c.mu.Unlock()
	c.queue(conv, []tidings.Part{{Type: "text/plain", Data: text}})
}

// queue adds a message to the outbox, which the sender sends in order.
func (c *chat) queue(conv string, parts []tidings.Part) {
	o := &outgoing{conv: conv, msg: tidings.NewMessage{ClientID: newClientID(), Parts: parts}, at: time.Now()}
	c.mu.Lock()
	c.outbox = append(c.outbox, o)
	c.mu.Unlock()
	c.wake()
}

// wake tells the sender to try and send the outbox.
func (c *chat) wake() {
	select {
	case c.kick <- struct{}{}:
	default: // it will
	}
}

// queued returns the number of messages waiting to be sent.
func (c *chat) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.outbox)
}

// sender sends the outbox, in order, when woken up, and every
// resendEvery while the server cannot be reached.
func (c *chat) sender(ctx context.Context) {
	defer c.wg.Done()
	retry := time.NewTimer(resendEvery)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-retry.C:
		}
		if !c.flush(ctx) && ctx.Err() == nil {
			retry.Reset(resendEvery)
		}
	}
}

// flush sends the messages of the outbox, in order, and reports whether
// it is empty. It stops at the first that could not be sent for want of
// a server: that one and those after it are shown as pending, to be sent
// later. A message the server refuses is dropped, and said so.
func (c *chat) flush(ctx context.Context) bool {
	for {
		c.mu.Lock()
		if len(c.outbox) == 0 {
			was := c.offline
			c.offline = false
			c.mu.Unlock()
			if was {
				c.say("the server answers again: the queued messages were sent")
			}
			select {
			case c.drained <- struct{}{}:
			default:
			}
			return true
		}
		o := c.outbox[0]
		c.mu.Unlock()

		m, err := c.deliver(ctx, o)
		if ctx.Err() != nil {
			return false
		}
		c.mu.Lock()
		switch {
		case err == nil:
			c.outbox = c.outbox[1:]
			if o.conv == c.conv {
				c.showMessage(m)
			} else if o.pending {
				c.scr.println(c.st.dim(printable(fmt.Sprintf("sent to %s: %s", o.conv, oneLine(messageText(m))))))
			}
		case retryable(err):
			var fresh int
			for _, q := range c.outbox {
				if !q.pending {
					q.pending = true
					fresh++
					if q.conv == c.conv {
						c.showPending(q)
					}
				}
			}
			c.offline = true
			if fresh > 0 {
				what := "server unreachable, message queued"
				if _, ok := unreachable(err); !ok {
					what = "server unavailable (" + errorText(err) + "), message queued"
				}
				if n := len(c.outbox); n > 1 {
					what += fmt.Sprintf(" (%d waiting); they are sent, in order, once it answers again", n)
				} else {
					what += "; it is sent once the server answers again"
				}
				c.scr.println(c.st.dim(printable(what)))
			}
			c.mu.Unlock()
			return false
		default:
			c.outbox = c.outbox[1:]
			what := "not sent: " + errorText(err)
			if o.pending || o.conv != c.conv {
				what = fmt.Sprintf("not sent to %s: %s (%s)", o.conv, oneLine(messageText(&tidings.Message{Parts: o.msg.Parts})), errorText(err))
			}
			c.scr.println(c.st.dim(printable(what)))
		}
		c.mu.Unlock()
	}
}

// deliver sends a message over the realtime connection, or the REST API
// when there is none.
func (c *chat) deliver(ctx context.Context, o *outgoing) (*tidings.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	m, err := c.cl.Socket().SendMessage(ctx, o.conv, o.msg)
	if errors.Is(err, client.ErrNotConnected) || errors.Is(err, client.ErrConnectionLost) {
		m, err = c.cl.SendMessage(ctx, o.conv, o.msg) // the same ClientID: not sent twice
	}
	return m, err
}

// retryable reports whether a message that could not be sent for err may
// be sent later: the server could not be reached, or was unavailable.
func retryable(err error) bool {
	if _, ok := unreachable(err); ok {
		return true
	}
	switch client.ErrorCode(err) {
	case tidings.EUnavailable, tidings.EInternal, tidings.ERateLimited:
		return true
	}
	return errors.Is(err, client.ErrNotConnected) || errors.Is(err, client.ErrConnectionLost)
}

// showPending shows a message waiting to be sent. c.mu is held.
func (c *chat) showPending(o *outgoing) {
	c.printLines(o.at.Local(), c.me.Summary(), messageText(&tidings.Message{Parts: o.msg.Parts}), " "+c.st.dim("(pending)"))
}

// newClientID returns a random id for a message, to send it again safely.
func newClientID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "cli-" + hex.EncodeToString(b)
}

// showMessage shows a message unless it was shown already, and reports
// whether it did. c.mu is held.
func (c *chat) showMessage(m *tidings.Message) bool {
	if c.shown[m.Seq] {
		return false
	}
	c.shown[m.Seq] = true
	if c.oldest == 0 || m.Seq < c.oldest {
		c.oldest = m.Seq
	}
	own := m.Sender.ID == c.me.ID
	if own {
		c.lastOwn = max(c.lastOwn, m.Seq)
	}
	// Sending moves the sender's marks to their message; no read update
	// comes for it (docs/protocol.md, message.send).
	if p := c.people[m.Sender.ID]; p != nil {
		p.readSeq, p.deliveredSeq = max(p.readSeq, m.Seq), max(p.deliveredSeq, m.Seq)
	}
	at := m.SentAt.Local()
	if day := at.Format("Monday 2 January 2006"); day != c.lastDay {
		if c.lastDay != "" || day != time.Now().Format("Monday 2 January 2006") {
			c.scr.println(c.st.dim("── " + day + " ──"))
		}
		c.lastDay = day
	}
	suffix := ""
	if m.EditedAt != nil {
		suffix = " " + c.st.dim("(edited)")
	}
	if own {
		suffix += c.marks(m.Seq)
	}
	c.printLines(at, m.Sender, messageText(m), suffix)
	return true
}

// printLines shows text as said by p at a time, aligned in columns.
func (c *chat) printLines(at time.Time, p tidings.Profile, text, suffix string) {
	ls := lines(text)
	for i, l := range ls {
		head := strings.Repeat(" ", len("15:04")+2+c.width+2)
		if i == 0 {
			head = c.st.dim(at.Format("15:04")) + "  " + c.name(p) + "  "
		}
		if i == len(ls)-1 {
			l += suffix
		}
		c.scr.println(head + l)
	}
}

// name is the name of p in the names' column: "you" for the user.
func (c *chat) name(p tidings.Profile) string {
	if p.ID == c.me.ID {
		return c.st.bold(pad("you", c.width))
	}
	name := displayName(p)
	if q := c.people[p.ID]; q != nil {
		name = q.name
	}
	h := fnv.New32a()
	h.Write([]byte(p.ID))
	return c.st.paint(nameColors[h.Sum32()%uint32(len(nameColors))], pad(printable(name), c.width))
}

// pad cuts or pads s to width columns of a terminal.
func pad(s string, width int) string {
	n := stringWidth(s)
	if n <= width {
		return s + strings.Repeat(" ", width-n)
	}
	var b strings.Builder
	w := 0
	for _, r := range s {
		if w+runeWidth(r) > width-1 {
			break
		}
		b.WriteRune(r)
		w += runeWidth(r)
	}
	return b.String() + "…" + strings.Repeat(" ", width-1-w)
}

// marks tells how far an own message went: ✓ stored, ✓✓ delivered to
// every other participant, ✓✓ read when every one read it. c.mu is held.
func (c *chat) marks(seq int64) string {
	var others, delivered int
	var readers []string
	for id, p := range c.people {
		if id == c.me.ID {
			continue
		}
		others++
		if p.deliveredSeq >= seq {
			delivered++
		}
		if p.readSeq >= seq {
			readers = append(readers, p.name)
		}
	}
	slices.Sort(readers)
	switch {
	case others == 0:
		return ""
	case len(readers) == others:
		return " " + c.st.dim("✓✓ read")
	case len(readers) > 0:
		return " " + c.st.dim(printable("✓ read by "+strings.Join(readers, ", ")))
	case delivered == others:
		return " " + c.st.dim("✓✓")
	}
	return " " + c.st.dim("✓")
}

// notice shows a line about the conversation, aligned with the messages.
// c.mu is held.
func (c *chat) notice(text string) {
	c.scr.println(strings.Repeat(" ", len("15:04")+2+c.width+2) + c.st.dim(printable(text)))
}

// nameOf returns the name of a user. c.mu is held.
func (c *chat) nameOf(id string) string {
	if p := c.people[id]; p != nil {
		return p.name
	}
	return id
}

// onEvent is the listener of updates.
func (c *chat) onEvent(e client.Event) {
	info := e.Info()
	c.mu.Lock()
	conv := c.conv
	known := true
	if pa, ok := e.(*client.ParticipantAdded); ok {
		_, known = c.people[pa.ProfileID]
	}
	c.mu.Unlock()
	if info.ConversationID != "" && info.ConversationID != conv {
		c.elsewhere(e)
		return
	}
	var markSeq int64
	if pa, ok := e.(*client.ParticipantAdded); ok && !known {
		// Learn the name before taking c.mu (which blocks the chat).
		ctx, cancel := context.WithTimeout(c.ctx, commandTimeout)
		u, err := c.cl.GetUser(ctx, pa.ProfileID)
		cancel()
		name := pa.ProfileID
		if err == nil {
			name = displayName(u.Summary())
		}
		c.mu.Lock()
		if c.conv == conv {
			c.people[pa.ProfileID] = &person{name: name, role: pa.Role}
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	if c.conv != conv { // the user switched meanwhile
		c.mu.Unlock()
		return
	}
	switch e := e.(type) {
	case *client.MessageSent:
		c.stoppedTyping(e.Message.Sender.ID)
		if c.showMessage(e.Message) && e.Message.Sender.ID != c.me.ID {
			markSeq = e.Message.Seq
		}
	case *client.MessageEdited:
		c.printLines(e.Time.Local(), e.Message.Sender, messageText(e.Message), " "+c.st.dim(fmt.Sprintf("(edited #%d)", e.Message.Seq)))
	case *client.MessageDeleted:
		c.notice(fmt.Sprintf("%s deleted a message", c.actorName(e.Actor)))
	case *client.ParticipantTyping:
		if e.ProfileID != c.me.ID && !slices.Contains(c.typing, e.ProfileID) {
			c.typing = append(c.typing, e.ProfileID)
			c.scr.setTyping(c.typingText())
		}
	case *client.ParticipantTypingOff:
		c.stoppedTyping(e.ProfileID)
	case *client.MessageDelivered:
		if p := c.people[e.ProfileID]; p != nil {
			p.deliveredSeq = max(p.deliveredSeq, e.Seq)
		}
	case *client.MessageRead:
		if p := c.people[e.ProfileID]; p != nil {
			before := p.readSeq
			p.readSeq = max(p.readSeq, e.Seq)
			p.deliveredSeq = max(p.deliveredSeq, e.Seq)
			if e.ProfileID != c.me.ID && c.lastOwn > before && c.lastOwn <= e.Seq {
				c.notice("✓✓ read by " + p.name)
			}
		}
	case *client.PresenceUpdate:
		if p := c.people[e.ProfileID]; p != nil && e.ProfileID != c.me.ID {
			state := "offline"
			if e.Online {
				state = "online"
			}
			c.notice(p.name + " is " + state)
		}
	case *client.ParticipantAdded:
		if p := c.people[e.ProfileID]; p != nil {
			p.role = e.Role
			if byThemselves(e.Reason, tidings.ReasonJoined, e.Actor, e.ProfileID) {
				c.notice(p.name + " joined")
			} else {
				c.notice(fmt.Sprintf("%s added %s", c.actorName(e.Actor), p.name))
			}
		}
	case *client.ParticipantUpdated:
		if p := c.people[e.ProfileID]; p != nil {
			p.role = e.Role
		}
	case *client.ParticipantRemoved:
		name := c.nameOf(e.ProfileID)
		c.stoppedTyping(e.ProfileID)
		delete(c.people, e.ProfileID)
		switch {
		case e.ProfileID == c.me.ID:
			c.notice("you are no longer in this conversation")
			c.end(fmt.Errorf("you were removed from the conversation %s", c.conv))
		case byThemselves(e.Reason, tidings.ReasonLeft, e.Actor, e.ProfileID):
			c.notice(name + " left")
		default:
			c.notice(fmt.Sprintf("%s removed %s", c.actorName(e.Actor), name))
		}
	case *client.ConversationUpdate:
		if e.Name != c.title {
			c.title = e.Name
			c.notice(fmt.Sprintf("%s renamed the conversation %q", c.actorName(e.Actor), e.Name))
		}
	case *client.ConversationDelete:
		c.notice(fmt.Sprintf("%s deleted the conversation", c.actorName(e.Actor)))
	case *client.ConversationUndelete:
		c.notice(fmt.Sprintf("%s restored the conversation", c.actorName(e.Actor)))
	case *client.ProfileUpdate:
		c.renamed(e)
	case *client.ResyncRequired:
		c.notice("some updates were lost while away: /history shows the messages")
	}
	c.mu.Unlock()
	if markSeq > 0 {
		c.markRead(conv, markSeq)
	}
}

// renamed shows a participant by the name of their changed profile from
// now on, and says so. c.mu is held.
func (c *chat) renamed(e *client.ProfileUpdate) {
	p := c.people[e.ProfileID]
	if e.Profile == nil || p == nil || e.ProfileID == c.me.ID {
		return
	}
	name := displayName(e.Profile.Summary())
	if name == p.name {
		return // an avatar, or a change the chat read already
	}
	old := p.name
	p.name = name
	c.width = max(c.width, min(maxNameWidth, stringWidth(printable(name))))
	c.notice(old + " is now " + name)
	if len(c.typing) > 0 {
		c.scr.setTyping(c.typingText())
	}
}

// elsewhere tells of what happens in the other conversations: new
// messages, and being added to one.
func (c *chat) elsewhere(e client.Event) {
	switch e := e.(type) {
	case *client.MessageSent:
		if e.Message.Sender.ID != c.me.ID {
			c.say(fmt.Sprintf("[%s] %s: %s", e.Message.ConversationID, displayName(e.Message.Sender), oneLine(messageText(e.Message))))
		}
	case *client.ParticipantAdded:
		if e.ProfileID == c.me.ID && (e.Actor == nil || e.Actor.ID != c.me.ID) {
			by := "the server"
			if e.Actor != nil {
				by = displayName(*e.Actor)
			}
			c.say(fmt.Sprintf("%s added you to %s: /switch %s shows it", by, e.ConversationID, e.ConversationID))
		}
	}
}

// byThemselves tells whether a participantAdded or participantRemoved
// event is the user's own doing (joined, left) rather than someone
// else's (added, removed): reason says so, and events older than reason
// have the actor to compare with the user. A creator added at creation
// is told as joining.
func byThemselves(reason, own string, actor *tidings.Profile, userID string) bool {
	if reason == own {
		return true
	}
	return actor != nil && actor.ID == userID
}

func (c *chat) actorName(p *tidings.Profile) string {
	switch {
	case p == nil:
		return "the server"
	case p.ID == c.me.ID:
		return "you"
	}
	return c.nameOf(p.ID)
}

// stoppedTyping takes id off the ones typing. c.mu is held.
func (c *chat) stoppedTyping(id string) {
	if i := slices.Index(c.typing, id); i >= 0 {
		c.typing = slices.Delete(c.typing, i, i+1)
		c.scr.setTyping(c.typingText())
	}
}

// typingText says who else is typing. c.mu is held.
func (c *chat) typingText() string {
	switch len(c.typing) {
	case 0:
		return ""
	case 1:
		return printable(c.nameOf(c.typing[0])) + " is typing…"
	case 2:
		return printable(c.nameOf(c.typing[0])+" and "+c.nameOf(c.typing[1])) + " are typing…"
	}
	return fmt.Sprintf("%d people are typing…", len(c.typing))
}

// onStatus is the listener of the connection's status.
func (c *chat) onStatus(ch client.StatusChange) {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.status
	c.status = ch.Status
	switch {
	case ch.Status == client.StatusReconnecting && prev != client.StatusReconnecting:
		c.typing = nil
		c.scr.setTyping("")
		c.scr.println(c.st.dim(printable(fmt.Sprintf("connection lost (%s); reconnecting...", statusReason(ch.Err)))))
	case ch.Status == client.StatusConnected && prev == client.StatusReconnecting:
		c.scr.println(c.st.dim("connected again"))
		c.wake() // to send what waits
	case ch.Status == client.StatusDisconnected && ch.Err != nil:
		c.end(ch.Err)
	}
}

// statusReason says in a few words why the connection was lost.
func statusReason(err error) string {
	var ce *client.CloseError
	switch {
	case err == nil:
		return "no reason given"
	case errors.As(err, &ce) && ce.Reason != "":
		return ce.Reason
	}
	if why, ok := unreachable(err); ok {
		return "the server cannot be reached: " + why
	}
	return strings.TrimPrefix(err.Error(), "client: ")
}

// end makes run return err.
func (c *chat) end(err error) {
	select {
	case c.fatal <- err:
	default:
	}
}

// markRead moves the user's read mark in conv to seq, while conv is the
// conversation shown.
func (c *chat) markRead(conv string, seq int64) {
	c.mu.Lock()
	p := c.people[c.me.ID]
	if seq == 0 || p == nil || p.readSeq >= seq || c.conv != conv {
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, commandTimeout)
	defer cancel()
	_, err := c.cl.Socket().MarkRead(ctx, conv, seq)
	if errors.Is(err, client.ErrNotConnected) || errors.Is(err, client.ErrConnectionLost) {
		_, err = c.cl.MarkRead(ctx, conv, seq)
	}
	if err == nil {
		c.mu.Lock()
		p.readSeq = max(p.readSeq, seq)
		c.mu.Unlock()
	}
}

// keystroke is called with the line being typed, at each character.
func (c *chat) keystroke(line string) {
	if strings.TrimSpace(line) == "" || (strings.HasPrefix(line, "/") && !strings.HasPrefix(line, "//")) {
		return
	}
	c.mu.Lock()
	now := time.Now()
	if !c.typingAt.IsZero() && now.Sub(c.typingAt) < typingRefresh {
		c.mu.Unlock()
		return
	}
	c.typingAt = now
	conv := c.conv
	c.mu.Unlock()
	select {
	case c.typer <- typing{conv, true}:
	default: // one is on its way
	}
}

// stopTyping tells the others that the user stopped typing, if they were
// told otherwise.
func (c *chat) stopTyping() {
	c.mu.Lock()
	was := !c.typingAt.IsZero()
	c.typingAt = time.Time{}
	conv := c.conv
	c.mu.Unlock()
	if was {
		c.typer <- typing{conv, false}
	}
}

// sendTyping sends the typing indicators of c.typer.
func (c *chat) sendTyping(ctx context.Context) {
	defer c.wg.Done()
	for t := range c.typer {
		ctx, cancel := context.WithTimeout(ctx, commandTimeout)
		if t.on {
			_ = c.cl.Socket().StartTyping(ctx, t.conv)
		} else {
			_ = c.cl.Socket().StopTyping(ctx, t.conv)
		}
		cancel()
	}
}
