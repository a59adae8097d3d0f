package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// storeKind is the engine a --store value names.
type storeKind int

const (
	storeSQLite   storeKind = iota // SQLite in the data directory (the default)
	storePostgres                  // PostgreSQL at a postgres:// URL
)

// storeSpec is a parsed --store value.
type storeSpec struct {
	kind storeKind
	dsn  string // the PostgreSQL URL as given, secrets included: never log it
}

// parseStore reads a --store value: empty or "sqlite" for SQLite in the
// data directory, a postgres:// or postgresql:// URL for PostgreSQL. Its
// errors never repeat the value, which may hold a password.
func parseStore(s string) (storeSpec, error) {
	s = strings.TrimSpace(s)
	switch lower := strings.ToLower(s); {
	case s == "" || lower == "sqlite":
		return storeSpec{kind: storeSQLite}, nil
	case strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://"):
		u, err := url.Parse(s)
		if err != nil || u.Host == "" && u.Opaque != "" {
			// url.Parse's message quotes the URL, password included.
			return storeSpec{}, errors.New("--store is not a valid PostgreSQL URL: write it as postgres://user:password@host:5432/database?sslmode=disable")
		}
		return storeSpec{kind: storePostgres, dsn: s}, nil
	}
	return storeSpec{}, errors.New("--store must be empty (SQLite in --data) or a PostgreSQL URL (postgres://user@host/database)")
}

// parseBroker reads a --broker value: a comma-separated list of NATS
// server URLs (nats:// or tls://). Its errors never repeat the value.
func parseBroker(s string) ([]string, error) {
	urls := splitList(s)
	for i, item := range urls {
		u, err := url.Parse(item)
		if err != nil || u.Host == "" || u.Scheme != "nats" && u.Scheme != "tls" {
			return nil, fmt.Errorf("--broker: item %d is not a NATS server URL: write nats://host:4222, several separated by commas", i+1)
		}
	}
	return urls, nil
}

// redactURL returns the URL s without its secrets (the password of its
// user, and any password parameter), for logs and messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(an invalid URL)"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	changed := false
	for k := range q {
		switch strings.ToLower(k) {
		case "password", "sslpassword", "token":
			q[k], changed = []string{"xxxxx"}, true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// redactList redacts each URL of a comma-separated list.
func redactList(s string) string {
	items := splitList(s)
	for i, item := range items {
		items[i] = redactURL(item)
	}
	return strings.Join(items, ",")
}

// checkCluster checks --store and --broker together: a broker joins nodes
// that share a PostgreSQL store; SQLite is one node.
func checkCluster(store, broker string) error {
	spec, err := parseStore(store)
	if err != nil {
		return err
	}
	if broker == "" {
		return nil
	}
	if _, err := parseBroker(broker); err != nil {
		return err
	}
	if spec.kind != storePostgres {
		return errors.New("--broker joins nodes that share a PostgreSQL store: give --store postgres://… too (SQLite in --data serves one node only)")
	}
	return nil
}

// stores are the services of the store named by --store, opened.
type stores struct {
	Apps          tidings.AppService
	Users         tidings.UserService
	Conversations tidings.ConversationService
	Messages      tidings.MessageService
	EventLog      tidings.EventLog
	// Files is nil unless storeOptions.Blobs was given.
	Files tidings.FileService
	// Webhooks and WebhookStore are nil when the store has no webhooks.
	Webhooks     tidings.WebhookService
	WebhookStore tidings.WebhookStore
	// BeforeSend and BeforeSendStore: the apps' before-send hooks.
	BeforeSend      tidings.BeforeSendService
	BeforeSendStore tidings.BeforeSendStore
	// MaxMessageBytes is the message size limit the store was given.
	MaxMessageBytes int
	// Push and PushStore are nil when the store has no push
	// notifications.
	Push      tidings.PushService
	PushStore tidings.PushStore
	// LastSeen keeps when users were last seen.
	LastSeen tidings.LastSeenStore
	// Tail tells which events are final, for the cluster's tailer; nil
	// when the store has none.
	Tail tidings.LogTail
	// Collectors are the store's metrics.
	Collectors []prometheus.Collector
	// Where names the store for logs, without secrets.
	Where string

	ping             func(context.Context) error
	close            func() error
	prune            func(ctx context.Context, before time.Time) (int64, error)
	removeUnattached func(ctx context.Context, grace time.Duration) (int, error)
}

// Ping reports whether the store answers (readiness).
func (s *stores) Ping(ctx context.Context) error { return s.ping(ctx) }

// Close closes the store; it may be called more than once.
func (s *stores) Close() error { return s.close() }

// Prune removes the updates older than before.
func (s *stores) Prune(ctx context.Context, before time.Time) (int64, error) {
	return s.prune(ctx, before)
}

// RemoveUnattached removes the files no message referred to within grace.
func (s *stores) RemoveUnattached(ctx context.Context, grace time.Duration) (int, error) {
	if s.removeUnattached == nil {
		return 0, nil
	}
	return s.removeUnattached(ctx, grace)
}

// storeOptions say how to open the stores.
type storeOptions struct {
	// Data is the data directory (absolute for serve).
	Data string
	// Publisher, when set, receives the events of every committed write
	// (a node's in-process delivery).
	Publisher tidings.EventPublisher
	// Blobs holds the contents of uploaded files; nil opens no FileService
	// (the admin commands).
	Blobs tidings.BlobStore
	// Create, for SQLite, creates the database when there is none; else a
	// missing database is an error (most likely a wrong --data).
	Create bool
	// Beside, for SQLite, opens the database beside the server that may
	// be running on it (an operator command's), without the lock that
	// keeps a second server off it (sqlite.DB.Beside).
	Beside bool
	Logger *slog.Logger

	MaxMessageBytes                   int
	MaxFileBytes, UserQuota, AppQuota int64
	UserQuotaWindow                   time.Duration
	// CommitInterval is the SQLite writer's (sqlite.DB.CommitInterval).
	CommitInterval time.Duration
}

// openStores opens the store --store names (cfg.Store).
func openStores(cfg config, opts storeOptions) (*stores, error) {
	spec, err := parseStore(cfg.Store)
	if err != nil {
		return nil, usageError{err}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxMessageBytes == 0 {
		opts.MaxMessageBytes = int(cfg.MaxMessageBytes)
	}
	switch spec.kind {
	case storePostgres:
		return openPostgres(spec.dsn, opts)
	default:
		return openSQLite(opts)
	}
}

// openSQLite opens the SQLite database of the data directory.
func openSQLite(opts storeOptions) (*stores, error) {
	path := filepath.Join(opts.Data, dbFile)
	if !opts.Create {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("there is no database %s: start the server once with \"tidings serve\", or use --data to name its data directory", path)
		}
	}
	db := sqlite.NewDB(path)
	db.Logger = opts.Logger
	db.CommitInterval = opts.CommitInterval
	db.Beside = opts.Beside
	if opts.Publisher != nil {
		db.Publisher = opts.Publisher // before Open: the writer reads it
	}
	if err := db.Open(); err != nil {
		return nil, err
	}
	users := sqlite.NewUserService(db)
	eventLog := sqlite.NewEventLog(db)
	webhooks := sqlite.NewWebhookService(db)
	pushes := sqlite.NewPushService(db)
	beforeSend := sqlite.NewBeforeSendService(db)
	s := &stores{
		BeforeSend:      beforeSend,
		BeforeSendStore: beforeSend,
		MaxMessageBytes: opts.MaxMessageBytes,
		Apps:            sqlite.NewAppService(db),
		Users:           users,
		Conversations:   sqlite.NewConversationService(db),
		Messages:        sqlite.NewMessageService(db, opts.MaxMessageBytes),
		EventLog:        eventLog,
		Webhooks:        webhooks,
		WebhookStore:    webhooks,
		Push:            pushes,
		PushStore:       pushes,
		LastSeen:        users,
		Tail:            sqlite.NewTail(db),
		Collectors:      db.Collectors(),
		Where:           path,
		ping:            db.Ping,
		close:           db.Close,
		prune:           eventLog.Prune,
	}
	if opts.Blobs != nil {
		files := sqlite.NewFileService(db, opts.Blobs, opts.MaxFileBytes)
		files.UserQuota, files.UserQuotaWindow, files.AppQuota = opts.UserQuota, opts.UserQuotaWindow, opts.AppQuota
		s.Files, s.removeUnattached = files, files.RemoveUnattached
	}
	return s, nil
}

// openAdminStores opens the store for an operator command, logging only
// warnings and errors.
func openAdminStores(cfg config, c *cli, create bool) (*stores, error) {
	return openStores(cfg, storeOptions{
		Data:   cfg.Data,
		Create: create,
		Beside: true,
		Logger: slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
}
