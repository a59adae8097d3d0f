package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
	"github.com/tidings/tidings/protocol"
)

var listenCommand = &command{
	name:  "listen",
	args:  "[--json] [--cursor FILE] [--count N] [--timeout DURATION] [flags]",
	short: "print a user's updates as they arrive",
	long: `
Listen connects to the server as a user and prints the user's updates
(messages, read marks, typing, participants...) as they arrive, one line
each, until it is interrupted (Ctrl-C). It reconnects by itself when the
connection drops, and resumes where it stopped. Each update is
acknowledged once printed: the server does not send it again to the same
device. Connection changes are reported on stderr, at once when the
server cannot be reached ("cannot reach ...: connection refused;
retrying").

A line shows the time of the event, its name, the conversation, who made
the change, and what it is (the text of a message):

  2026-11-23 09:37:46  conversationMessage.sent  lunch  bob  #2 lunch at noon?

With --json, each line is instead a JSON object, as the update frame of
docs/protocol.md without its type and account:

  {"ref":"6","silent":false,"action":"new","event":{"seq":6,"id":"...",
   "app":"default","name":"conversationMessage.sent","time":"...",
   "actor":{...},"conversationId":"lunch","payload":{...}}}

The server keeps one cursor per user and device (--device): a device it
has never seen starts with new updates only, a known one gets what it
missed since it last listened. --cursor keeps the cursor in a file as
well, to resume after it even when the server's cursor moved on.` + remoteHelp,
	run: runListen,
}

// listenOptions are the flags of listen.
type listenOptions struct {
	json         bool
	cursor       string
	count        int
	timeout      time.Duration
	device       string
	conversation string
}

func runListen(ctx context.Context, c *cli, args []string) error {
	var r remote
	var o listenOptions
	fs := flag.NewFlagSet("listen", flag.ContinueOnError)
	addRemoteFlags(fs, &r)
	fs.BoolVar(&o.json, "json", false, "print each update as a line of JSON")
	fs.StringVar(&o.cursor, "cursor", "", "`file` keeping the last update printed, to resume after it when listen starts again")
	fs.IntVar(&o.count, "count", 0, "stop after printing this `number` of updates (0: never)")
	fs.Var((*durationValue)(&o.timeout), "timeout", "stop after this `duration` (0: never); with --count, it is a failure to stop before the count")
	fs.StringVar(&o.device, "device", "listen", "`name` of this device: the server keeps a cursor per user and device")
	fs.StringVar(&o.conversation, "conversation", "", "print the updates of the conversation `id` only")
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 0, 0, ""); err != nil {
		return err
	}
	if err := r.resolve(c, fs); err != nil {
		return err
	}
	if o.count < 0 {
		return usageErrorf("--count must not be negative")
	}
	if o.cursor != "" {
		if o.cursor, err = filepath.Abs(o.cursor); err != nil {
			return err
		}
	}
	return listen(ctx, c, &r, o)
}

func listen(ctx context.Context, c *cli, r *remote, o listenOptions) error {
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	opts := []client.Option{client.WithDevice(o.device)}
	if o.cursor != "" {
		opts = append(opts, client.WithCursorStore(client.NewFileCursor(o.cursor)))
	}
	fatal := make(chan error, 1)
	prev := client.StatusDisconnected
	opts = append(opts, client.WithStatusListener(func(ch client.StatusChange) {
		switch ch.Status {
		case client.StatusConnected:
			if prev == client.StatusReconnecting {
				fmt.Fprintln(c.stderr, "connected again")
			}
		case client.StatusReconnecting:
			fmt.Fprintf(c.stderr, "not connected (%s); trying again...\n", statusReason(r.explain(ch.Err)))
		case client.StatusDisconnected:
			if ch.Err != nil {
				select {
				case fatal <- r.explain(ch.Err):
				default:
				}
			}
		}
		prev = ch.Status
	}))
	cl, err := r.newClient(ctx, c, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	// Updates wait in the client until a listener is added.
	err = waitConnected(ctx, cl, r.server, "", func(s string) { fmt.Fprintln(c.stderr, s) })
	if err != nil {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded) && o.count > 0:
			return fmt.Errorf("timed out after %s before connecting", o.timeout)
		case ctx.Err() != nil:
			return nil
		}
		return r.explain(err)
	}
	fmt.Fprintf(c.stderr, "listening to %s as %s (device %s); Ctrl-C stops\n", r.server, cl.UserID(), o.device)

	p := &updatePrinter{w: c.stdout, json: o.json}
	done := make(chan error, 1)
	var mu sync.Mutex // guards remove, n
	var remove func()
	n := 0
	mu.Lock()
	remove = cl.AddEventListener(func(e client.Event) {
		if o.conversation != "" && e.Info().ConversationID != o.conversation {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if err := p.print(e); err != nil {
			remove()
			done <- err
			return
		}
		n++
		if n == o.count {
			// The updates after this one wait, unacknowledged, for the
			// next listen.
			remove()
			done <- nil
		}
	})
	mu.Unlock()

	select {
	case err = <-done:
	case err = <-fatal:
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && o.count > 0 {
			mu.Lock()
			err = fmt.Errorf("timed out after %s with %d of %d updates", o.timeout, n, o.count)
			mu.Unlock()
		}
	}
	cl.Close() // acknowledges what was printed
	return err
}

// Until the first connection opens, listen and chat check every
// reachCheck why it has not yet, and say so.
const reachCheck = 2 * time.Second

// waitConnected waits for the first connection of cl, to server. The
// client keeps trying by itself; when it has not connected after a
// moment, this asks the server over HTTP whether it is there, and says
// that it cannot be reached (and why) as soon as that is so, and again
// when the reason changes. If it can be reached, it says slow, once
// (unless "").
func waitConnected(ctx context.Context, cl *client.Client, server, slow string, say func(string)) error {
	said := ""
	wait := 250 * time.Millisecond // the first connection is usually faster
	for {
		wctx, cancel := context.WithTimeout(ctx, wait)
		err := cl.WaitConnected(wctx)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		wait = reachCheck
		pctx, cancel := context.WithTimeout(ctx, commandTimeout)
		_, err = cl.Me(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		now := slow
		if why, ok := unreachable(err); ok {
			now = fmt.Sprintf("cannot reach %s: %s; retrying", server, why)
		} else if client.ErrorCode(err) == tidings.EUnavailable {
			now = fmt.Sprintf("%s is unavailable; retrying", server)
		}
		if now != said && now != "" {
			say(now)
		}
		said = now
	}
}

// updatePrinter prints updates, one line each.
type updatePrinter struct {
	w    io.Writer
	json bool
}

// jsonUpdate is the line of an update with --json: the update frame of
// the protocol without its type and account.
type jsonUpdate struct {
	Ref    string        `json:"ref,omitempty"`
	Silent bool          `json:"silent"`
	Action string        `json:"action,omitempty"`
	Event  tidings.Event `json:"event"`
}

func (p *updatePrinter) print(e client.Event) error {
	if p.json {
		info := e.Info()
		seq, _ := protocol.ParseRef(info.Ref)
		payload := info.Payload
		if len(payload) == 0 {
			payload = json.RawMessage("{}")
		}
		if rs, ok := e.(*client.ResyncRequired); ok {
			payload, _ = json.Marshal(map[string]string{"ref": rs.Ref})
		}
		u := jsonUpdate{Ref: info.Ref, Silent: info.Silent, Action: info.Action, Event: tidings.Event{
			Seq: seq, ID: info.ID, AppID: info.AppID, Name: info.Name, Time: info.Time, Actor: info.Actor,
			ConversationID: info.ConversationID, UserID: info.UserID, Payload: payload}}
		b, err := json.Marshal(u)
		if err != nil {
			return err
		}
		_, err = p.w.Write(append(b, '\n'))
		return err
	}
	_, err := io.WriteString(p.w, updateLine(e)+"\n")
	return err
}

// updateLine is the human-readable line of an update.
func updateLine(e client.Event) string {
	info := e.Info()
	at := "-"
	if !info.Time.IsZero() {
		at = info.Time.Local().Format(time.DateTime)
	}
	conv, actor := "-", "-"
	if info.ConversationID != "" {
		conv = info.ConversationID
	}
	if info.Actor != nil {
		actor = info.Actor.ID
	}
	fields := []string{at, info.Name, conv, actor}
	if what := updateDetail(e); what != "" {
		fields = append(fields, what)
	}
	return printable(strings.Join(fields, "  "))
}

// updateDetail says what an update is about, in a few words.
func updateDetail(e client.Event) string {
	switch e := e.(type) {
	case *client.MessageSent:
		return fmt.Sprintf("#%d %s", e.Message.Seq, oneLine(messageText(e.Message)))
	case *client.MessageEdited:
		return fmt.Sprintf("#%d edited: %s", e.Message.Seq, oneLine(messageText(e.Message)))
	case *client.MessageDeleted:
		return fmt.Sprintf("#%d deleted", e.Message.Seq)
	case *client.MessageDelivered:
		return fmt.Sprintf("%s got up to #%d", e.ProfileID, e.Seq)
	case *client.MessageRead:
		return fmt.Sprintf("%s read up to #%d", e.ProfileID, e.Seq)
	case *client.ParticipantTyping:
		return e.ProfileID + " is typing"
	case *client.ParticipantTypingOff:
		return e.ProfileID + " stopped typing"
	case *client.PresenceUpdate:
		if e.Online {
			return e.ProfileID + " is online"
		}
		return e.ProfileID + " is offline"
	case *client.ParticipantAdded:
		if byThemselves(e.Reason, tidings.ReasonJoined, e.Actor, e.ProfileID) {
			return fmt.Sprintf("%s joined as %s", e.ProfileID, e.Role)
		}
		return fmt.Sprintf("%s added as %s", e.ProfileID, e.Role)
	case *client.ParticipantUpdated:
		return fmt.Sprintf("%s is now %s", e.ProfileID, e.Role)
	case *client.ParticipantRemoved:
		if byThemselves(e.Reason, tidings.ReasonLeft, e.Actor, e.ProfileID) {
			return e.ProfileID + " left"
		}
		return e.ProfileID + " removed"
	case *client.ConversationCreate:
		return fmt.Sprintf("created %q", e.Name)
	case *client.ConversationUpdate:
		return fmt.Sprintf("now %q", e.Name)
	case *client.ProfileUpdate:
		if e.Profile != nil {
			return fmt.Sprintf("%s is now %q", e.ProfileID, e.Profile.DisplayName)
		}
		return e.ProfileID
	case *client.AccountClosed:
		return "session ended: " + e.Reason
	case *client.ResyncRequired:
		return "updates were lost: rebuild the state from the API"
	}
	return ""
}
