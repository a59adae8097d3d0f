package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tidings/tidings"
	tidingshttp "github.com/tidings/tidings/http"
	"github.com/tidings/tidings/push"
	"github.com/tidings/tidings/ratelimit"
	"github.com/tidings/tidings/realtime"
	"github.com/tidings/tidings/web"
	"github.com/tidings/tidings/ws"
)

// Where things live in the data directory.
const (
	dbFile   = "tidings.db"
	filesDir = "files"
)

// defaultAppID is the app created on the first start.
const defaultAppID = "default"

var serveCommand = &command{
	name:  "serve",
	args:  "[flags]",
	short: "run the server",
	long: `
Serve runs the Tidings API server until it receives SIGINT or SIGTERM,
then stops accepting connections, lets the requests in flight finish
(up to --shutdown-timeout) and closes the database.

Everything is kept in the data directory: the SQLite database tidings.db
and the uploaded files under files/. With --store postgres://…, the
database is PostgreSQL instead, which several nodes may share; with
--broker nats://… too, they serve as one server (docs/cluster.md), and
--blobs s3://… keeps the files where every node reaches them.

On the first start, when there is no app yet, serve creates the app
"default" and keeps its first server key in default-server-key in the data
directory (readable by its owner only), so that "tidings apps show
default" prints it; "tidings apps rotate-key default" replaces it and
removes that file. Other keys are stored hashed and shown only when made.

Logs go to stderr. Every flag can also be set with the environment
variable shown below it, or in the JSON file given by --config (keys are
the flag names, e.g. {"addr": "0.0.0.0:8080", "max-file-bytes": "100MiB"}).
A flag wins over the environment, which wins over the file. Sizes are
numbers of bytes, optionally with KiB, MiB or GiB; durations are written
like 30s, 5m or 1h30m.`,
	run: runServe,
}

func runServe(ctx context.Context, c *cli, args []string) error {
	cfg, err := parseServe(c, args)
	if err != nil {
		return err
	}
	log := newLogger(c.stderr, cfg)
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("tidings stopped on an error", "err", err)
		return errLogged
	}
	return nil
}

// parseServe returns the configuration given by the command line args of
// serve, the environment and the configuration file.
func parseServe(c *cli, args []string) (config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addServeFlags(fs, &cfg)
	args, err := c.parse(fs, args)
	if err != nil {
		return cfg, err
	}
	if err := wantArgs(args, 0, 0, ""); err != nil {
		return cfg, err
	}
	if err := cfg.check(); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// serve runs the server configured by cfg until ctx is done.
func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	dataDir := cfg.Data
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	node := realtime.NewNode()
	clustered := cfg.Broker != ""
	// The webhook dispatcher reads the events from the log (its store is
	// set once the store is open); commits only wake it.
	dispatcher := newDispatcher(nil, cfg, log)
	// The push dispatcher takes the messages sent as they commit (its
	// store, too, is set once the store is open); in a cluster, as the node
	// delivers them, on the node that holds its lease.
	pushDispatcher, err := newPushDispatcher(cfg.Push, nil, node, log)
	if err != nil {
		return err
	}
	// One node delivers the events its store publishes (they wait for
	// node.Open and pushDispatcher.Open); the nodes of a cluster deliver
	// the ranges the cluster's tailer publishes on the broker instead, and
	// the webhook dispatcher polls.
	var publisher tidings.EventPublisher = publishers{node, dispatcher, pushDispatcher}
	if clustered {
		publisher = nil
	}
	// The data directory holds the SQLite database, files and the first
	// key: created private, as SQLite creates it, whatever the store.
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create the data directory: %w", err)
	}
	blobs, blobsWhere, err := openBlobs(ctx, cfg, dataDir)
	if err != nil {
		return fmt.Errorf("open the file store: %w", err)
	}
	st, err := openStores(cfg, storeOptions{
		Data: dataDir, Publisher: publisher, Blobs: blobs, Create: true, Logger: log,
		MaxFileBytes: cfg.MaxFileBytes, UserQuota: cfg.UserUploadQuota, UserQuotaWindow: cfg.UserUploadWindow,
		AppQuota: cfg.AppStorageQuota, CommitInterval: cfg.CommitInterval,
	})
	if err != nil {
		return err
	}
	defer st.Close() // after a failure; the normal path closes it below
	warnIfOpen(dataDir, log)
	if err := ensureDefaultApp(ctx, st.Apps, cfg, log); err != nil {
		return err
	}

	// Both transports send through the apps' before-send hooks.
	messages := newBeforeSend(st, cfg, log)
	node.Apps, node.Users, node.Messages, node.Log, node.Logger = st.Apps, st.Users, messages, st.EventLog, log
	node.Conversations = st.Conversations // presence.get asks it who takes part, in a cluster
	if st.WebhookStore == nil {
		log.Warn("webhooks are not available on this store yet: /v1/webhooks answers 404 and no webhook is sent", "store", st.Where)
		dispatcher = nil
	} else {
		dispatcher.Store = st.WebhookStore
	}
	if st.PushStore == nil {
		log.Warn("push notifications are not available on this store yet: the push routes answer 404 and no push is sent", "store", st.Where)
	} else {
		pushDispatcher.Store = st.PushStore
	}
	if pushDispatcher.Store == nil {
		pushDispatcher.Close() // takes no more events
		pushDispatcher = nil
	}
	clusterAttrs := []any{}
	if clustered {
		if st.Tail == nil {
			return errors.New("the store cannot tell which events are final: it cannot serve a cluster")
		}
		nodeID := newNodeID()
		link, err := openBroker(splitList(cfg.Broker), cfg.BrokerPrefix, nodeID, cfg.PresenceLease, log)
		if err != nil {
			return fmt.Errorf("connect to the broker %s: %w", redactList(cfg.Broker), err)
		}
		defer link.Close() // after the node's shutdown, below
		node.Broker, node.Tail, node.Leases, node.PresenceStore, node.NodeID = link.Broker, st.Tail, link.Leases, link.Presence, nodeID
		node.PresenceLease = cfg.PresenceLease
		if dispatcher != nil {
			// One node of the cluster sends the webhooks.
			dispatcher.Leases, dispatcher.Node = link.Leases, nodeID
		}
		if pushDispatcher != nil {
			// Every node's dispatcher is handed the messages its node
			// delivers (every message of the cluster, once); one node of
			// the cluster, the lease's holder, pushes, to the users online
			// on no node.
			pushDispatcher.Leases, pushDispatcher.Node = link.Leases, nodeID
			pushDispatcher.Presence = &push.ClusterPresence{Local: node, Store: link.Presence, Logger: log}
			node.Delivered = pushDispatcher
		}
		clusterAttrs = append(clusterAttrs, "broker", redactList(cfg.Broker), "broker-prefix", cfg.BrokerPrefix, "node", nodeID)
	}
	node.LastSeen = st.LastSeen
	// The users of the node's sessions are read again every minute: the
	// sessions of a user whose access ended without the node being told
	// (the users commands, a cluster's lost update) end then.
	node.AccessCheck, node.CursorFlushInterval = cfg.AccessCheck, cfg.CursorFlush
	node.QueueSize, node.AuthTimeout, node.IdleTimeout = cfg.SendQueue, cfg.AuthTimeout, cfg.RealtimeIdle
	node.TypingTimeout, node.MaxConnsPerUser = cfg.TypingTimeout, cfg.MaxConnsPerUser
	node.PresenceLimit, node.MaxPresenceSubscriptions = cfg.PresenceLimit, cfg.MaxPresenceSubs
	node.CommandRate, node.CommandBurst = cfg.CommandRate, 2*cfg.CommandRate
	// One limiter for the API and the realtime node: a user has one budget.
	limits := ratelimit.New(cfg.limits())
	node.Limits = limits
	wsHandler := &ws.Handler{Node: node, Logger: log, PingInterval: cfg.PingInterval, PongTimeout: cfg.PongTimeout,
		MaxFrameBytes: int(cfg.MaxFrameBytes), WriteQueue: cfg.SendQueue, Writers: cfg.Writers, AllowedOrigins: splitList(cfg.AllowedOrigins)}
	node.Batcher = wsHandler
	if err := node.Open(); err != nil {
		return err
	}
	if pushDispatcher != nil {
		if err := pushDispatcher.Open(); err != nil {
			return err
		}
		defer pushDispatcher.Close() // pushes being gathered are dropped: best effort
	}

	srv := tidingshttp.NewServer()
	srv.Addr = cfg.Addr
	srv.Apps = st.Apps
	srv.Users = st.Users
	srv.Conversations = st.Conversations
	srv.Messages = messages
	srv.BeforeSend, srv.BeforeSendChanged = st.BeforeSend, messages.Forget
	if dispatcher != nil {
		srv.Webhooks, srv.WebhooksChanged = st.Webhooks, dispatcher.NotifyEndpoints
	}
	srv.Realtime, srv.Poller = wsHandler, node
	srv.Limits = limits
	srv.Web = web.Handler()
	srv.Sessions = node // ends the sessions of users whose access the app ends
	srv.AllowedOrigins = splitList(cfg.AllowedOrigins)
	if cfg.Dev {
		srv.DevApp = defaultAppID
		log.Warn("DEVELOPMENT MODE (--dev): anyone on this machine may sign in as any user of the app "+defaultAppID+
			" without credentials, at POST /v1/dev/token; never run a shared server like this", "app", defaultAppID)
	}
	srv.Files = st.Files
	if pushDispatcher != nil {
		srv.Push = st.Push
	}
	srv.Logger = log
	srv.Ready = st.Ping
	srv.MaxBodyBytes = cfg.MaxBodyBytes
	srv.MaxFileBytes = cfg.MaxFileBytes
	srv.MaxTokenTTL = cfg.TokenTTL
	srv.MaxBodyReads, srv.BodyTimeout, srv.BodyMinRate = cfg.MaxBodyReads, cfg.BodyTimeout, cfg.BodyMinRate
	srv.ReadHeaderTimeout = cfg.ReadHeaderTimeout
	srv.ReadTimeout = cfg.ReadTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	srv.IdleTimeout = cfg.IdleTimeout
	collectors := append(st.Collectors, node.Collectors()...)
	collectors = append(collectors, messages.Collectors()...)
	if pushDispatcher != nil {
		collectors = append(collectors, pushDispatcher.Collectors()...)
	}
	for _, col := range collectors {
		if err := srv.Registry.Register(col); err != nil {
			return fmt.Errorf("register database metrics: %w", err)
		}
	}
	if err := srv.Open(); err != nil {
		node.Close()
		return err
	}
	log.Info("tidings is listening", append([]any{"url", srv.URL(), "data", dataDir, "store", st.Where, "files", blobsWhere, "version", versionString()}, clusterAttrs...)...)
	if cfg.MemoryTrim > 0 {
		trimCtx, stopTrim := context.WithCancel(ctx)
		defer stopTrim()
		go trimMemory(trimCtx, cfg.MemoryTrim, log)
	}
	if cfg.DebugAddr != "" {
		stopDebug, err := serveDebug(cfg.DebugAddr, log)
		if err != nil {
			node.Close()
			wsHandler.Close()
			srv.Shutdown(context.Background())
			return err
		}
		defer stopDebug()
	}
	stopWebhooks := func() {}
	if dispatcher != nil {
		stopWebhooks, err = startWebhooks(dispatcher, srv.Registry)
		if err != nil {
			node.Close()
			wsHandler.Close()
			srv.Shutdown(context.Background())
			return err
		}
	}
	stopPruning := pruneEvents(st, cfg.Retention, log)
	stopSweeping := removeUnattachedFiles(st, cfg.UnattachedFileGrace, log)

	<-ctx.Done()
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// Realtime connections first, with "going away": clients reconnect and
	// resume where they stopped once the server is back.
	stopPruning()
	stopSweeping()
	if err := node.Shutdown(sctx); err != nil {
		log.Warn("realtime connections did not end in time", "err", err)
	}
	wsHandler.Close()
	if pushDispatcher != nil {
		pushDispatcher.Close() // the pushes being gathered are dropped (best effort)
	}
	if err := srv.Shutdown(sctx); err != nil {
		// Requests still running after the timeout are cut off; what they
		// wrote to the database is committed or not, never half-done.
		log.Warn("requests in flight did not finish in time", "err", err)
	}
	stopWebhooks() // saves the deliveries' progress: before the database closes
	if err := st.Close(); err != nil {
		return fmt.Errorf("close database: %w", err)
	}
	log.Info("stopped")
	return nil
}

// pruneEvents removes, every hour, the updates older than retention; it
// returns a function that stops it.
func pruneEvents(l *stores, retention time.Duration, log *slog.Logger) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			n, err := l.Prune(context.Background(), time.Now().Add(-retention))
			if err != nil {
				log.Error("prune old updates", "err", err)
			} else if n > 0 {
				log.Info("pruned old updates", "count", n, "retention", retention)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(stop); <-done }
}

// removeUnattachedFiles removes, at start and then every grace/4 (at most
// every hour), the uploaded files no message referred to within grace; it
// returns a function that stops it.
func removeUnattachedFiles(files *stores, grace time.Duration, log *slog.Logger) func() {
	every := min(grace/4, time.Hour)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			n, err := files.RemoveUnattached(context.Background(), grace)
			if err != nil {
				log.Error("remove unattached files", "err", err)
			} else if n > 0 {
				log.Info("removed files no message refers to", "count", n, "grace", grace)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(stop); <-done }
}

// limits returns the rate limits cfg sets.
func (cfg *config) limits() ratelimit.Config {
	return ratelimit.Config{
		User:          ratelimit.PerSecond(cfg.UserRate),
		App:           ratelimit.PerSecond(cfg.AppRate),
		Server:        ratelimit.PerSecond(cfg.ServerKeyRate),
		Conversations: ratelimit.PerMinute(cfg.ConversationRate),
		Participants:  ratelimit.PerMinute(cfg.ParticipantRate),
	}
}

// warnIfOpen logs a warning if other users of the machine may read the
// data directory dir (e.g. a volume mounted with mode 0755). Its files are
// private anyway (0600), but their names and any file put there by hand
// are not.
func warnIfOpen(dir string, log *slog.Logger) {
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm()&0o007 == 0 {
		return
	}
	log.Warn(fmt.Sprintf("the data directory is open to every user of this machine (mode %04o): "+
		"the files Tidings makes in it are private, but run `chmod 700 %s` to keep the directory so", fi.Mode().Perm(), shellQuote(dir)),
		"dir", dir)
}

// splitList splits a comma-separated setting, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// ensureDefaultApp creates the app "default" if there is no app at all,
// and then tells, once, how to get its server key. The key itself is never
// logged.
func ensureDefaultApp(ctx context.Context, apps tidings.AppService, cfg config, log *slog.Logger) error {
	list, err := apps.ListApps(ctx)
	if err != nil {
		return fmt.Errorf("list apps: %w", err)
	}
	if len(list) > 0 && !cfg.Dev {
		return nil
	}
	for _, a := range list {
		if a.ID == defaultAppID {
			return nil
		}
	}
	// An empty store, or development mode, which signs users in to the
	// app default, on a store where other apps were created first.
	app, err := apps.CreateApp(ctx, defaultAppID, defaultAppID)
	if tidings.ErrorCode(err) == tidings.EConflict {
		return nil // created meanwhile by "tidings apps create default"
	} else if err != nil {
		return fmt.Errorf("create the default app: %w", err)
	}
	show := "tidings apps show "
	if cfg.Data != defaultData {
		show += "--data " + shellQuote(cfg.Data) + " "
	}
	if cfg.Store != "" {
		// Without its password, which the reader knows.
		show += "--store " + shellQuote(redactURL(cfg.Store)) + " "
	}
	show += defaultAppID
	if err := saveFirstKey(cfg.Data, app.ServerKey); err != nil {
		// The database keeps only the key's hash: without the file, a
		// new key is the way.
		log.Warn("could not keep the default app's first server key; \"tidings apps rotate-key "+defaultAppID+"\" makes one", "err", err)
		return nil
	}
	log.Info(fmt.Sprintf("created app %s; `%s` prints its server key", defaultAppID, show), "app", defaultAppID)
	return nil
}

// shellQuote quotes s for a POSIX shell if it needs it.
func shellQuote(s string) string {
	safe := s != ""
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '/' || r == '.' || r == '_' || r == '-' || r == ':' || r == '=' || r == '+' || r == ',') {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	var b []byte
	b = append(b, '\'')
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			b = append(b, `'\''`...)
		} else {
			b = append(b, s[i])
		}
	}
	return string(append(b, '\''))
}
