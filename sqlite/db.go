// Package sqlite implements the Tidings services on an embedded SQLite
// database (pure Go, modernc.org/sqlite) in WAL mode.
//
// Writes go through one writer goroutine that owns the only write
// connection and commits them in groups: every write request (a job)
// waiting when a transaction starts joins it, each in its own savepoint so
// that one failing job does not undo the others, and all are answered once
// the group has committed and been synced. Many writes then share one
// fsync, which is what makes durable sends fast. Reads use a separate pool
// of read-only connections and never wait for the writer.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tidings/tidings"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DB is the SQLite database behind every service of this package.
type DB struct {
	path string

	// Publisher, if set, receives the events of every committed write, in
	// commit order, from the writer goroutine. Set it before Open.
	Publisher tidings.EventPublisher
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now returns the current time; tests replace it.
	Now func() time.Time
	// MaxBatch caps the number of jobs committed together (default 512).
	MaxBatch int
	// Synchronous is the SQLite synchronous setting: "FULL" (default: a
	// committed write survives power loss) or "NORMAL" (survives a crash of
	// the process, may lose the last commits on power loss).
	Synchronous string

	write *sql.DB
	wconn *sql.Conn
	read  *sql.DB
	reads readStmts                // statements prepared on read
	stmts map[string]*sql.Stmt     // prepared on wconn; used by the writer only
	roles map[string]tidings.Roles // decoded roles columns; writer only
	cache *sendCache               // writer only

	metrics *metrics
	jobs    chan *job
	done    chan struct{}
	closeMu sync.RWMutex
	closed  bool
}

// NewDB returns a DB that will use the database file at path (created,
// with its directory, on Open).
func NewDB(path string) *DB {
	return &DB{path: path, Now: time.Now, MaxBatch: 512, Synchronous: "FULL", metrics: newMetrics()}
}

// Open opens the database, applies pending migrations and starts the
// writer.
func (db *DB) Open() error {
	if db.Logger == nil {
		db.Logger = slog.Default()
	}
	if db.Now == nil {
		db.Now = time.Now
	}
	if db.MaxBatch <= 0 {
		db.MaxBatch = 512
	}
	switch strings.ToUpper(db.Synchronous) {
	case "":
		db.Synchronous = "FULL"
	case "FULL", "NORMAL":
	default:
		return fmt.Errorf("sqlite: synchronous must be FULL or NORMAL, not %q", db.Synchronous)
	}
	if dir := filepath.Dir(db.path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("sqlite: create data directory: %w", err)
		}
	}
	// temp_store(MEMORY) keeps the savepoint journals of group commit in
	// memory instead of temporary files.
	pragmas := "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=temp_store(MEMORY)"
	var err error
	db.write, err = sql.Open("sqlite", "file:"+db.path+"?"+pragmas+"&_pragma=synchronous("+db.Synchronous+")")
	if err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	db.write.SetMaxOpenConns(1)
	db.write.SetConnMaxIdleTime(0)
	db.write.SetConnMaxLifetime(0)
	ctx := context.Background()
	if db.wconn, err = db.write.Conn(ctx); err != nil {
		db.write.Close()
		return fmt.Errorf("sqlite: open: %w", err)
	}
	if err := db.migrate(ctx); err != nil {
		db.wconn.Close()
		db.write.Close()
		return err
	}
	db.read, err = sql.Open("sqlite", "file:"+db.path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		db.wconn.Close()
		db.write.Close()
		return fmt.Errorf("sqlite: open: %w", err)
	}
	db.read.SetMaxOpenConns(8)
	db.read.SetMaxIdleConns(8)
	db.stmts = make(map[string]*sql.Stmt)
	db.roles = make(map[string]tidings.Roles)
	db.cache = newSendCache(db)
	db.jobs = make(chan *job, 4*db.MaxBatch)
	db.done = make(chan struct{})
	go db.writer()
	return nil
}

// Close stops the writer after the jobs already queued and closes the
// database. Writes after Close fail with EUnavailable.
func (db *DB) Close() error {
	db.closeMu.Lock()
	if db.closed || db.jobs == nil {
		db.closeMu.Unlock()
		return nil
	}
	db.closed = true
	close(db.jobs)
	db.closeMu.Unlock()
	<-db.done
	for _, s := range db.stmts {
		s.Close()
	}
	db.closeReadStmts()
	return errors.Join(db.wconn.Close(), db.write.Close(), db.read.Close())
}

// Ping reports whether the database answers (for readiness checks).
func (db *DB) Ping(ctx context.Context) error {
	var one int
	return db.read.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// migrate applies the embedded migrations not yet applied, each in its own
// transaction, in the order of their version numbers.
func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.wconn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite: migrations table: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		version := strings.TrimSuffix(filepath.Base(name), ".sql")
		var n int
		if err := db.wconn.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", version, err)
		}
		if n > 0 {
			continue
		}
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			return err
		}
		tx, err := db.wconn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", version, err)
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migration %s: %w", version, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, version, db.Now().UnixMicro()); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migration %s: %w", version, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlite: migration %s: %w", version, err)
		}
		db.Logger.Info("database migrated", "version", version)
	}
	return nil
}
