package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/beforesend"
	"github.com/tidings/tidings/webhook"
)

// publishers hands every committed event to each of its publishers.
type publishers []tidings.EventPublisher

func (ps publishers) Publish(events ...*tidings.Event) {
	for _, p := range ps {
		p.Publish(events...)
	}
}

// newDispatcher returns the webhook dispatcher serve runs (see
// startWebhooks), configured by cfg.
// newBeforeSend returns the message service of both transports: the
// store's, behind the apps' before-send hooks (--webhook-deny-private
// applies to their calls too).
func newBeforeSend(st *stores, cfg config, log *slog.Logger) *beforesend.Service {
	return &beforesend.Service{MessageService: st.Messages, Store: st.BeforeSendStore,
		Users: st.Users, MaxMessageBytes: st.MaxMessageBytes, Logger: log,
		Client: beforesend.NewClient(cfg.WebhookDenyPrivate)}
}

func newDispatcher(store tidings.WebhookStore, cfg config, log *slog.Logger) *webhook.Dispatcher {
	d := webhook.New(store)
	d.Logger = log
	d.FailAfter, d.MaxBackoff, d.Timeout = cfg.WebhookFailAfter, cfg.WebhookMaxBackoff, cfg.WebhookTimeout
	d.MinBackoff = min(webhook.DefaultMinBackoff, cfg.WebhookMaxBackoff)
	d.DenyPrivate = cfg.WebhookDenyPrivate
	return d
}

// startWebhooks registers the dispatcher's metrics in reg and runs it
// until the returned function is called, which waits for it to save its
// progress.
func startWebhooks(d *webhook.Dispatcher, reg *prometheus.Registry) (stop func(), err error) {
	for _, col := range d.Collectors() {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("register webhook metrics: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()
	return func() { cancel(); <-done }, nil
}

const webhooksNote = `
The webhooks commands open the database of the data directory directly,
which is safe while the server runs: it finds the change within a second.
The same is at /v1/webhooks with the app's server key (see README.md).`

var webhooksAddCommand = &command{
	name:  "webhooks add",
	args:  "[--app ID] [--events LIST] [--secret SECRET] [flags] URL",
	short: "add a webhook endpoint to an app and print its secret",
	long: `
Webhooks add registers URL as a webhook endpoint of the app (default
"default"): the app's events committed from now on are POSTed to it as
JSON, signed with the endpoint's secret (Standard Webhooks: the
webhook-id, webhook-timestamp and webhook-signature headers), in order, at
least once. It prints the endpoint, with its secret, which your receiver
verifies deliveries with (see docs/webhooks.md).

--events lists, separated by commas, the events to deliver: event names
(conversationMessage.sent), prefixes (conversationMessage.*) or * for all
(the default).` + webhooksNote,
	run: runWebhooksAdd,
}

var webhooksListCommand = &command{
	name:  "webhooks list",
	args:  "[--app ID] [flags]",
	short: "list an app's webhook endpoints and their state",
	long: `
Webhooks list prints the webhook endpoints of the app (default "default"):
id, URL, events, state (ok, retrying since a time, failing, disabled) and
position in the event log (the last event received). It prints no
secret: "tidings webhooks add" prints it, and GET /v1/webhooks/{id} with
the server key.` + webhooksNote,
	run: runWebhooksList,
}

var webhooksShowCommand = &command{
	name:  "webhooks show",
	args:  "[--app ID] [--attempts N] [flags] ID",
	short: "print a webhook endpoint, its secret and its recent attempts",
	long: `
Webhooks show prints the webhook endpoint ID of the app (default
"default"): its URL, events, secret, state and position in the event log,
then its most recent delivery attempts, newest first (--attempts, 10 by
default): when, the event, the receiver's status (0: no answer, with the
error) and the latency.` + webhooksNote,
	run: runWebhooksShow,
}

var webhooksRemoveCommand = &command{
	name:  "webhooks remove",
	args:  "[--app ID] [flags] ID",
	short: "remove a webhook endpoint",
	long: `
Webhooks remove removes the webhook endpoint ID of the app (default
"default") and its attempts. A delivery in progress may still arrive.` + webhooksNote,
	run: runWebhooksRemove,
}

// webhooksFlags returns the flag set of a webhooks command and its --app.
func webhooksFlags(name string, cfg *config) (*flag.FlagSet, *string) {
	fs := dataFlags(name, cfg)
	app := fs.String("app", defaultAppID, "the app's `id`")
	return fs, app
}

// openWebhooks opens the store and returns the webhooks of the app,
// with a context that acts as the app's server.
func openWebhooks(ctx context.Context, cfg config, c *cli, appID string) (*stores, tidings.WebhookService, context.Context, error) {
	st, err := openAdminStores(cfg, c, false)
	if err != nil {
		return nil, nil, nil, err
	}
	if st.Webhooks == nil {
		st.Close()
		return nil, nil, nil, errors.New("webhooks are not available on this store yet (SQLite only)")
	}
	if _, err := st.Apps.FindAppByID(ctx, appID); err != nil {
		st.Close()
		return nil, nil, nil, appError(err, appID)
	}
	ctx = tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: appID, Server: true})
	return st, st.Webhooks, ctx, nil
}

func runWebhooksAdd(ctx context.Context, c *cli, args []string) error {
	cfg := defaultConfig()
	fs, app := webhooksFlags("webhooks add", &cfg)
	events := fs.String("events", "*", "comma-separated `events`: names, prefixes such as conversationMessage.*, or *")
	secret := fs.String("secret", "", "the endpoint's `secret` (whsec_ and base64); generated if empty")
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 1, 1, "URL"); err != nil {
		return err
	}
	st, hooks, ctx, err := openWebhooks(ctx, cfg, c, *app)
	if err != nil {
		return err
	}
	defer st.Close()
	ep, err := hooks.CreateWebhook(ctx, tidings.NewWebhook{URL: args[0], Events: splitList(*events), Secret: *secret})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "id:      %s\n", ep.ID)
	fmt.Fprintf(c.stdout, "url:     %s\n", ep.URL)
	fmt.Fprintf(c.stdout, "events:  %s\n", strings.Join(ep.Events, ","))
	fmt.Fprintf(c.stdout, "secret:  %s\n", ep.Secret)
	return st.Close()
}

func runWebhooksList(ctx context.Context, c *cli, args []string) error {
	cfg := defaultConfig()
	fs, app := webhooksFlags("webhooks list", &cfg)
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 0, 0, ""); err != nil {
		return err
	}
	st, hooks, ctx, err := openWebhooks(ctx, cfg, c, *app)
	if err != nil {
		return err
	}
	defer st.Close()
	list, err := hooks.ListWebhooks(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tURL\tEVENTS\tSTATE\tLAST SEQ")
	for _, ep := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", ep.ID, ep.URL, strings.Join(ep.Events, ","), webhookState(ep), ep.LastSeq)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return st.Close()
}

// webhookState says in a word or a few how an endpoint's deliveries go.
func webhookState(ep *tidings.WebhookEndpoint) string {
	s := "ok"
	switch {
	case ep.Disabled:
		s = "disabled"
	case ep.Failing:
		s = "failing since " + ep.FailingSince.UTC().Format(time.RFC3339)
	case ep.FailingSince != nil:
		s = "retrying since " + ep.FailingSince.UTC().Format(time.RFC3339)
	}
	if ep.MissedUpTo > 0 {
		s += fmt.Sprintf(", missed events up to %d", ep.MissedUpTo)
	}
	return s
}

func runWebhooksShow(ctx context.Context, c *cli, args []string) error {
	cfg := defaultConfig()
	fs, app := webhooksFlags("webhooks show", &cfg)
	n := fs.Int("attempts", 10, "how many recent attempts to print (a `count`, at most 100)")
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 1, 1, "webhook endpoint ID"); err != nil {
		return err
	}
	st, hooks, ctx, err := openWebhooks(ctx, cfg, c, *app)
	if err != nil {
		return err
	}
	defer st.Close()
	ep, err := hooks.FindWebhook(ctx, args[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "id:       %s\n", ep.ID)
	fmt.Fprintf(c.stdout, "url:      %s\n", ep.URL)
	fmt.Fprintf(c.stdout, "events:   %s\n", strings.Join(ep.Events, ","))
	fmt.Fprintf(c.stdout, "secret:   %s\n", ep.Secret)
	fmt.Fprintf(c.stdout, "state:    %s\n", webhookState(ep))
	fmt.Fprintf(c.stdout, "last seq: %d\n", ep.LastSeq)
	if *n <= 0 {
		return st.Close()
	}
	attempts, err := hooks.ListWebhookAttempts(ctx, ep.ID, *n)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout)
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSEQ\tEVENT\tATTEMPT\tSTATUS\tLATENCY\tERROR")
	for _, a := range attempts {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%.1fms\t%s\n", a.Time.UTC().Format(time.RFC3339), a.EventSeq, a.EventName,
			a.Attempt, a.Status, a.LatencyMS, a.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return st.Close()
}

func runWebhooksRemove(ctx context.Context, c *cli, args []string) error {
	cfg := defaultConfig()
	fs, app := webhooksFlags("webhooks remove", &cfg)
	args, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(args, 1, 1, "webhook endpoint ID"); err != nil {
		return err
	}
	st, hooks, ctx, err := openWebhooks(ctx, cfg, c, *app)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := hooks.DeleteWebhook(ctx, args[0]); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "removed webhook endpoint %s\n", args[0])
	return st.Close()
}
