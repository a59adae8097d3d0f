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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

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
bottom and tells the others that you are typing.

Commands, typed as a line:

  /history [N]  show N earlier messages (default: --history)
  /who          list the participants and how far they read
  /help         list the commands
  /quit         leave (Ctrl-D and Ctrl-C too)

A line starting with // sends the rest of it, from its second /. When the
standard input is not a terminal, chat reads the lines to send from it and
stops at its end. Colours are left out when the output is not a terminal,
or NO_COLOR is set.` + remoteHelp,
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

// maxNameWidth bounds the column of the names.
const maxNameWidth = 16

// chat is an interactive chat in one conversation, as one user, on a
// screen. Create it with newChat, call open, then run.
type chat struct {
	cl      *client.Client
	conv    string
	st      style
	history int
	scr     screen

	me    *tidings.User   // set by open
	typer chan bool       // to the goroutine that sends typing indicators
	fatal chan error      // ends run
	wg    sync.WaitGroup  // the goroutine of typer
	ctx   context.Context // of run, for the listeners' requests

	mu       sync.Mutex
	title    string
	people   map[string]*person // the participants, by user id
	width    int                // of the names' column
	shown    map[int64]bool     // seqs of the messages shown
	oldest   int64              // the oldest seq shown; 0 before any
	lastDay  string             // the day of the last message shown
	lastOwn  int64              // the newest own message shown
	typing   []string           // who else is typing, in the order they started
	status   client.Status
	typingAt time.Time // when the user's typing was last told; zero when not typing
}

// person is a participant.
type person struct {
	name         string
	role         tidings.Role
	deliveredSeq int64
	readSeq      int64
}

func newChat(cl *client.Client, conv string, st style, history int) *chat {
	return &chat{cl: cl, conv: conv, st: st, history: history, people: make(map[string]*person),
		shown: make(map[int64]bool), typer: make(chan bool, 1), fatal: make(chan error, 1),
		status: client.StatusConnected}
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
	conv, err := c.cl.GetConversation(ctx, c.conv)
	if err != nil {
		return err
	}
	parts, err := c.cl.ListParticipants(ctx, c.conv)
	if err != nil {
		return err
	}
	c.me, c.title = me, conv.Name
	c.width = utf8.RuneCountInString("you")
	for _, p := range parts {
		c.people[p.UserID] = &person{name: displayName(p.Profile), role: p.Role, deliveredSeq: p.DeliveredSeq, readSeq: p.ReadSeq}
		if p.UserID != me.ID {
			c.width = max(c.width, min(maxNameWidth, utf8.RuneCountInString(displayName(p.Profile))))
		}
	}
	if conv.DeletedAt != nil {
		c.title += " (deleted)"
	}
	return nil
}

func displayName(p tidings.Profile) string {
	if p.DisplayName != "" {
		return p.DisplayName
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
	// Say so when connecting takes more than a moment.
	wctx, wcancel := context.WithTimeout(ctx, time.Second)
	err := c.cl.WaitConnected(wctx)
	wcancel()
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		scr.println(c.st.dim("connecting..."))
		err = c.cl.WaitConnected(ctx)
	}
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
	newest := c.newestShown()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	c.markRead(newest)

	c.wg.Add(1)
	go c.sendTyping(ctx)
	defer func() {
		c.stopTyping()
		close(c.typer)
		c.wg.Wait()
	}()
	scr.onKey(c.keystroke)

	type input struct {
		line string
		err  error
	}
	lines := make(chan input)
	go func() {
		for {
			line, err := scr.readLine()
			select {
			case lines <- input{line, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-c.fatal:
			return err
		case in := <-lines:
			switch {
			case errors.Is(in.err, io.EOF):
				return nil
			case in.err != nil:
				return in.err
			}
			if quit := c.handle(ctx, in.line); quit {
				return nil
			}
		}
	}
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

// showRecent shows the last messages of the conversation. c.mu is held.
func (c *chat) showRecent(ctx context.Context) error {
	if c.history == 0 {
		return nil
	}
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
		c.send(ctx, line[1:])
	case strings.HasPrefix(line, "/"):
		c.stopTyping()
		return c.command(ctx, line)
	default:
		c.send(ctx, line)
	}
	return false
}

const chatHelp = `/history [N]  show N earlier messages
/who          list the participants and how far they read
/help         list the commands
/quit         leave (Ctrl-D and Ctrl-C too)
//text        send "/text"`

func (c *chat) command(ctx context.Context, line string) (quit bool) {
	fields := strings.Fields(line)
	switch fields[0] {
	case "/quit", "/exit", "/q":
		return true
	case "/help", "/?":
		for _, l := range strings.Split(chatHelp, "\n") {
			c.scr.println(c.st.dim(l))
		}
	case "/who":
		c.who()
	case "/history":
		n := c.history
		if len(fields) > 1 {
			v, err := strconv.Atoi(fields[1])
			if err != nil || v < 1 || v > 200 {
				c.scr.println(c.st.dim("/history takes a number of messages, from 1 to 200"))
				return false
			}
			n = v
		}
		if err := c.showEarlier(ctx, n); err != nil {
			c.scr.println(c.st.dim("could not read the history: " + errorText(err)))
		}
	default:
		c.scr.println(c.st.dim(printable(fmt.Sprintf("unknown command %s: /help lists the commands", fields[0]))))
	}
	return false
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
	before := c.oldest
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
	page, err := c.cl.ListMessages(ctx, c.conv, f)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
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

// send sends text as a message, over the realtime connection, or the
// REST API when there is none.
func (c *chat) send(ctx context.Context, text string) {
	c.mu.Lock()
	c.typingAt = time.Time{} // sending ends the typing indicator
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	nm := tidings.NewMessage{ClientID: newClientID(), Parts: []tidings.Part{{Type: "text/plain", Data: text}}}
	m, err := c.cl.Socket().SendMessage(ctx, c.conv, nm)
	if errors.Is(err, client.ErrNotConnected) || errors.Is(err, client.ErrConnectionLost) {
		m, err = c.cl.SendMessage(ctx, c.conv, nm) // the same ClientID: not sent twice
	}
	if err != nil {
		c.scr.println(c.st.dim(printable("not sent: " + errorText(err))))
		return
	}
	c.mu.Lock()
	c.showMessage(m)
	c.mu.Unlock()
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
		if p := c.people[c.me.ID]; p != nil { // sending moves the sender's marks
			p.readSeq, p.deliveredSeq = max(p.readSeq, m.Seq), max(p.deliveredSeq, m.Seq)
		}
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

// pad cuts or pads s to width characters.
func pad(s string, width int) string {
	n := utf8.RuneCountInString(s)
	if n > width {
		r := []rune(s)
		return string(r[:width-1]) + "…"
	}
	return s + strings.Repeat(" ", width-n)
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
	if info.ConversationID != "" && info.ConversationID != c.conv {
		return
	}
	var markSeq int64
	if pa, ok := e.(*client.ParticipantAdded); ok && c.people[pa.ProfileID] == nil {
		// Learn the name before taking c.mu (which blocks the chat).
		ctx, cancel := context.WithTimeout(c.ctx, commandTimeout)
		u, err := c.cl.GetUser(ctx, pa.ProfileID)
		cancel()
		name := pa.ProfileID
		if err == nil {
			name = displayName(u.Summary())
		}
		c.mu.Lock()
		c.people[pa.ProfileID] = &person{name: name, role: pa.Role}
		c.mu.Unlock()
	}
	c.mu.Lock()
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
			c.notice(fmt.Sprintf("%s joined", p.name))
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
		case e.Actor != nil && e.Actor.ID == e.ProfileID:
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
	case *client.ResyncRequired:
		c.notice("some updates were lost while away: /history shows the messages")
	}
	c.mu.Unlock()
	if markSeq > 0 {
		c.markRead(markSeq)
	}
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
	return strings.TrimPrefix(err.Error(), "client: ")
}

// end makes run return err.
func (c *chat) end(err error) {
	select {
	case c.fatal <- err:
	default:
	}
}

// markRead moves the user's read mark to seq.
func (c *chat) markRead(seq int64) {
	c.mu.Lock()
	p := c.people[c.me.ID]
	if seq == 0 || p == nil || p.readSeq >= seq {
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, commandTimeout)
	defer cancel()
	_, err := c.cl.Socket().MarkRead(ctx, c.conv, seq)
	if errors.Is(err, client.ErrNotConnected) || errors.Is(err, client.ErrConnectionLost) {
		_, err = c.cl.MarkRead(ctx, c.conv, seq)
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
	c.mu.Unlock()
	select {
	case c.typer <- true:
	default: // one is on its way
	}
}

// stopTyping tells the others that the user stopped typing, if they were
// told otherwise.
func (c *chat) stopTyping() {
	c.mu.Lock()
	was := !c.typingAt.IsZero()
	c.typingAt = time.Time{}
	c.mu.Unlock()
	if was {
		c.typer <- false
	}
}

// sendTyping sends the typing indicators of c.typer.
func (c *chat) sendTyping(ctx context.Context) {
	defer c.wg.Done()
	for on := range c.typer {
		ctx, cancel := context.WithTimeout(ctx, commandTimeout)
		if on {
			_ = c.cl.Socket().StartTyping(ctx, c.conv)
		} else {
			_ = c.cl.Socket().StopTyping(ctx, c.conv)
		}
		cancel()
	}
}
