package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
)

var sendCommand = &command{
	name:  "send",
	args:  "--conversation ID [--client-id ID] [--json] [flags] [TEXT...]",
	short: "send a message",
	long: `
Send sends a message to a conversation as a user, and prints the message
stored: its seq (its number in the conversation) and its id. The text is
the arguments, joined by spaces, or else the standard input:

  tidings send --conversation lunch "lunch at noon?"
  echo "lunch at noon?" | tidings send --conversation lunch

--client-id makes a retry safe: sending again with the same id in the same
conversation returns the message sent the first time instead of sending
another.` + remoteHelp,
	run: runSend,
}

func runSend(ctx context.Context, c *cli, args []string) error {
	var r remote
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	addRemoteFlags(fs, &r)
	conv := fs.String("conversation", "", "`id` of the conversation (required)")
	clientID := fs.String("client-id", "", "an `id` of your choosing that makes sending idempotent")
	typ := fs.String("type", "text/plain", "media `type` of the message's part")
	asJSON := fs.Bool("json", false, "print the message stored as JSON")
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if *conv == "" {
		return usageErrorf("--conversation is required")
	}
	if err := r.resolve(c, fs); err != nil {
		return err
	}
	text := strings.Join(args, " ")
	if len(args) == 0 {
		b, err := io.ReadAll(c.input())
		if err != nil {
			return fmt.Errorf("read the standard input: %w", err)
		}
		text = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	}
	if strings.TrimSpace(text) == "" {
		return usageErrorf("nothing to send: give the text as arguments or on the standard input")
	}

	cl, err := r.newClient(ctx, c, client.WithMode(client.ManualMode))
	if err != nil {
		return err
	}
	defer cl.Close()
	m, err := cl.SendMessage(ctx, *conv, tidings.NewMessage{ClientID: *clientID,
		Parts: []tidings.Part{{Type: *typ, Data: text}}})
	if err != nil {
		return r.explain(err)
	}
	if *asJSON {
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		_, err = c.stdout.Write(append(b, '\n'))
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "sent #%d to %s (message %s)\n", m.Seq, m.ConversationID, m.ID)
	return err
}
