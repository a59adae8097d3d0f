package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tidings/tidings"
)

var appsBeforeSendCommand = &command{
	name:  "apps before-send",
	args:  "[--url URL [--timeout 2s] [--fail-open] [--secret SECRET] | --off] [flags] ID",
	short: "show, set or remove an app's before-send hook",
	long: `
Apps before-send prints the before-send hook of the app ID (its URL,
secret, timeout and failure mode), or "none". With --url, it sets the
hook: from then on each new message of the app's users is POSTed to URL,
signed with the hook's secret as webhooks are, before it is stored, and
the answer accepts it, rejects it or replaces its parts (see
docs/webhooks.md). --timeout bounds a call (100ms to 10s, by default 2s);
a call that fails refuses the message (the sender gets "unavailable")
unless --fail-open, which sends it unchanged. --secret gives the secret
(whsec_ and base64); without it the hook keeps its secret, or gets a new
one. --off removes the hook. A running server applies a change within a
second. The same settings are at GET, PUT and DELETE /v1/app/before-send,
with the server key.` + appsNote,
	run: runAppsBeforeSend,
}

func runAppsBeforeSend(ctx context.Context, c *cli, args []string) error {
	cfg := defaultConfig()
	fs := dataFlags("apps before-send", &cfg)
	url := fs.String("url", "", "set the hook: the `URL` each new message is POSTed to")
	timeout := fs.Duration("timeout", tidings.DefaultBeforeSendTimeout, "with --url: how long a call may take (100ms to 10s)")
	failOpen := fs.Bool("fail-open", false, "with --url: send the message unchanged when a call fails, instead of refusing it")
	secret := fs.String("secret", "", "with --url: the hook's `secret` (whsec_ and base64); kept, or generated, if empty")
	off := fs.Bool("off", false, "remove the hook")
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 1, 1, "app ID"); err != nil {
		return err
	}
	if *off && *url != "" {
		return usageErrorf("give --url or --off, not both")
	}
	st, err := openAdminStores(cfg, c, false)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.Apps.FindAppByID(ctx, args[0]); err != nil {
		return appError(err, args[0])
	}
	if st.BeforeSend == nil {
		return errors.New("this store has no before-send hooks")
	}
	ctx = tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: args[0], Server: true})
	var h *tidings.BeforeSendHook
	switch {
	case *off:
		err = st.BeforeSend.DeleteBeforeSend(ctx)
	case *url != "":
		h, err = st.BeforeSend.SetBeforeSend(ctx, tidings.BeforeSendConfig{URL: *url, Secret: *secret,
			TimeoutMS: int(*timeout / time.Millisecond), FailOpen: *failOpen})
	default:
		h, err = st.BeforeSend.FindBeforeSend(ctx)
		if tidings.ErrorCode(err) == tidings.ENotFound {
			h, err = nil, nil
		}
	}
	if err != nil {
		return err
	}
	printBeforeSend(c.stdout, h)
	return st.Close()
}

// printBeforeSend prints a hook, one "label: value" a line, or "none".
func printBeforeSend(w io.Writer, h *tidings.BeforeSendHook) {
	if h == nil {
		fmt.Fprintln(w, "before-send hook: none")
		return
	}
	mode := "closed (a failed call refuses the message)"
	if h.FailOpen {
		mode = "open (a failed call sends the message unchanged)"
	}
	fmt.Fprintf(w, "url:     %s\n", h.URL)
	fmt.Fprintf(w, "secret:  %s\n", h.Secret)
	fmt.Fprintf(w, "timeout: %s\n", h.Timeout())
	fmt.Fprintf(w, "fails:   %s\n", mode)
}
