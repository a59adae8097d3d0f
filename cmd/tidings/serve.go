package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/disk"
	tidingshttp "github.com/tidings/tidings/http"
	"github.com/tidings/tidings/ratelimit"
	"github.com/tidings/tidings/realtime"
	"github.com/tidings/tidings/sqlite"
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
and the uploaded files under files/. On the first start, when there is no
app yet, serve creates the app "default" and keeps its first server key in
default-server-key (readable by its owner only), so that "tidings apps show
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
	db := sqlite.NewDB(filepath.Join(dataDir, dbFile))
	db.Logger = log
	apps := sqlite.NewAppService(db)
	users := sqlite.NewUserService(db)
	messages := sqlite.NewMessageService(db, int(cfg.MaxMessageBytes))
	eventLog := sqlite.NewEventLog(db)
	node := realtime.NewNode()
	webhooks := sqlite.NewWebhookService(db)
	dispatcher := newDispatcher(webhooks, cfg, log)
	pushes := sqlite.NewPushService(db)
	pushDispatcher, err := newPushDispatcher(cfg.Push, pushes, node, log)
	if err != nil {
		return err
	}
	// Before Open: the writer reads it; events wait for node.Open,
	// dispatcher.Open and pushDispatcher.Open.
	db.Publisher = publishers{node, dispatcher, pushDispatcher}
	if err := db.Open(); err != nil {
		return err
	}
	defer db.Close() // after a failure; the normal path closes it below
	warnIfOpen(dataDir, log)
	if err := ensureDefaultApp(ctx, apps, cfg, log); err != nil {
		return err
	}

	node.Apps, node.Users, node.Messages, node.Log, node.Logger = apps, users, messages, eventLog, log
	node.QueueSize, node.AuthTimeout, node.IdleTimeout = cfg.SendQueue, cfg.AuthTimeout, cfg.RealtimeIdle
	node.TypingTimeout, node.MaxConnsPerUser = cfg.TypingTimeout, cfg.MaxConnsPerUser
	node.PresenceLimit, node.MaxPresenceSubscriptions = cfg.PresenceLimit, cfg.MaxPresenceSubs
	node.CommandRate, node.CommandBurst = cfg.CommandRate, 2*cfg.CommandRate
	// One limiter for the API and the realtime node: a user has one budget.
	limits := ratelimit.New(cfg.limits())
	node.Limits = limits
	wsHandler := &ws.Handler{Node: node, Logger: log, PingInterval: cfg.PingInterval, PongTimeout: cfg.PongTimeout,
		MaxFrameBytes: int(cfg.MaxFrameBytes), WriteQueue: cfg.SendQueue, AllowedOrigins: splitList(cfg.AllowedOrigins)}
	node.Batcher = wsHandler
	if err := node.Open(); err != nil {
		return err
	}
	if err := pushDispatcher.Open(); err != nil {
		return err
	}
	defer pushDispatcher.Close() // pushes being gathered are dropped: best effort

	srv := tidingshttp.NewServer()
	srv.Addr = cfg.Addr
	srv.Apps = apps
	srv.Users = users
	srv.Conversations = sqlite.NewConversationService(db)
	srv.Messages = messages
	srv.Webhooks, srv.WebhooksChanged = webhooks, dispatcher.NotifyEndpoints
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
	blobs := disk.NewBlobStore(filepath.Join(dataDir, filesDir))
	// Uploads cut short by a crash left partial files; no upload runs yet.
	if err := blobs.RemoveTemp(); err != nil {
		node.Close()
		return fmt.Errorf("remove partial uploads: %w", err)
	}
	files := sqlite.NewFileService(db, blobs, cfg.MaxFileBytes)
	files.UserQuota, files.UserQuotaWindow = cfg.UserUploadQuota, cfg.UserUploadWindow
	files.AppQuota = cfg.AppStorageQuota
	srv.Files = files
	srv.Push = pushes
	srv.Logger = log
	srv.Ready = db.Ping
	srv.MaxBodyBytes = cfg.MaxBodyBytes
	srv.MaxFileBytes = cfg.MaxFileBytes
	srv.MaxTokenTTL = cfg.TokenTTL
	srv.MaxBodyReads, srv.BodyTimeout, srv.BodyMinRate = cfg.MaxBodyReads, cfg.BodyTimeout, cfg.BodyMinRate
	srv.ReadHeaderTimeout = cfg.ReadHeaderTimeout
	srv.ReadTimeout = cfg.ReadTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	srv.IdleTimeout = cfg.IdleTimeout
	for _, col := range append(append(db.Collectors(), node.Collectors()...), pushDispatcher.Collectors()...) {
		if err := srv.Registry.Register(col); err != nil {
			return fmt.Errorf("register database metrics: %w", err)
		}
	}
	if err := srv.Open(); err != nil {
		node.Close()
		return err
	}
	log.Info("tidings is listening", "url", srv.URL(), "data", dataDir, "version", versionString())
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
	stopWebhooks, err := startWebhooks(dispatcher, srv.Registry)
	if err != nil {
		node.Close()
		wsHandler.Close()
		srv.Shutdown(context.Background())
		return err
	}
	stopPruning := pruneEvents(eventLog, cfg.Retention, log)
	stopSweeping := removeUnattachedFiles(files, cfg.UnattachedFileGrace, log)

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
	pushDispatcher.Close() // the pushes being gathered are dropped (best effort)
	if err := srv.Shutdown(sctx); err != nil {
		// Requests still running after the timeout are cut off; what they
		// wrote to the database is committed or not, never half-done.
		log.Warn("requests in flight did not finish in time", "err", err)
	}
	stopWebhooks() // saves the deliveries' progress: before the database closes
	if err := db.Close(); err != nil {
		return fmt.Errorf("close database: %w", err)
	}
	log.Info("stopped")
	return nil
}

// pruneEvents removes, every hour, the updates older than retention; it
// returns a function that stops it.
func pruneEvents(l *sqlite.EventLog, retention time.Duration, log *slog.Logger) func() {
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
func removeUnattachedFiles(files *sqlite.FileService, grace time.Duration, log *slog.Logger) func() {
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
	if len(list) > 0 {
		return nil
	}
	app, err := apps.CreateApp(ctx, defaultAppID, defaultAppID)
	if tidings.ErrorCode(err) == tidings.EConflict {
		return nil // created meanwhile by "tidings apps create default"
	} else if err != nil {
		return fmt.Errorf("create the default app: %w", err)
	}
	show := "tidings apps show " + defaultAppID
	if cfg.Data != defaultData {
		show = fmt.Sprintf("tidings apps show --data %s %s", shellQuote(cfg.Data), defaultAppID)
	}
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
