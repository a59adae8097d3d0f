package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidings/tidings"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DB is the PostgreSQL database behind every service of this package.
type DB struct {
	dsn string

	// Publisher, if set, receives the committed events once they are
	// final, in position order, each once (see publisher.go). Set it
	// before Open.
	Publisher tidings.EventPublisher
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now returns the current time; tests replace it.
	Now func() time.Time
	// MaxConns caps the pool's connections (default: pgxpool's, or the
	// DSN's pool_max_conns).
	MaxConns int32
	// PollInterval is how often the publisher looks for newly final
	// events when nothing wakes it earlier (default 5 ms).
	PollInterval time.Duration
	// SendBatch caps the sends committed together in one transaction
	// (default 64; see sendbatch.go).
	SendBatch int

	pool    *pgxpool.Pool
	horizon finality

	closeMu sync.RWMutex
	closed  bool
	stop    context.CancelFunc
	done    chan struct{}
	wake    chan struct{}

	sends sendQueue
}

// NewDB returns a DB that will connect to the PostgreSQL database named
// by dsn (a postgres:// URL or key=value string) on Open.
func NewDB(dsn string) *DB {
	return &DB{dsn: dsn, Now: time.Now}
}

// Open connects, applies the pending migrations (once, whatever the
// number of nodes starting at the same time) and starts the publisher if
// there is one.
func (db *DB) Open() error {
	if db.Logger == nil {
		db.Logger = slog.Default()
	}
	if db.Now == nil {
		db.Now = time.Now
	}
	if db.PollInterval <= 0 {
		db.PollInterval = 5 * time.Millisecond
	}
	if db.SendBatch <= 0 {
		db.SendBatch = 64
	}
	cfg, err := pgxpool.ParseConfig(db.dsn)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if db.MaxConns > 0 {
		cfg.MaxConns = db.MaxConns
	}
	params := cfg.ConnConfig.RuntimeParams
	if _, ok := params["application_name"]; !ok {
		params["application_name"] = "tidings"
	}
	// A transaction left open by a node that hangs holds the horizon of
	// every node (docs/cluster.md): the server ends it. Tidings's own
	// transactions never wait on their client for long.
	if _, ok := params["idle_in_transaction_session_timeout"]; !ok {
		params["idle_in_transaction_session_timeout"] = "10s"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	db.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if err := db.migrate(ctx); err != nil {
		db.pool.Close()
		db.pool = nil
		return err
	}
	db.wake = make(chan struct{}, 1)
	db.sends.start(db)
	if db.Publisher != nil {
		start, err := db.horizon.advance(ctx, db)
		if err != nil {
			db.sends.stop()
			db.pool.Close()
			db.pool = nil
			return fmt.Errorf("postgres: start the publisher: %w", err)
		}
		pctx, stop := context.WithCancel(context.Background())
		db.stop, db.done = stop, make(chan struct{})
		go db.publish(pctx, start)
	}
	return nil
}

// Close stops the publisher and closes the pool. Calls after Close fail
// with EUnavailable.
func (db *DB) Close() error {
	db.closeMu.Lock()
	if db.closed || db.pool == nil {
		db.closeMu.Unlock()
		return nil
	}
	db.closed = true
	db.closeMu.Unlock()
	// The sends queued already are committed (or fail) first.
	db.sends.stop()
	if db.stop != nil {
		db.stop()
		<-db.done
	}
	// Every write is done: what is left is closing the connections.
	// pgx closes a connection whose query a context cancelled by waiting
	// for the server to close its side, up to 15 s; seen at shutdown
	// (TestServeOnPostgres, about one run in 20 to 40), where it held
	// the process past --shutdown-timeout. Past poolCloseWait, the
	// connections left are abandoned to close on their own.
	closed := make(chan struct{})
	go func() {
		db.pool.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(poolCloseWait):
		db.Logger.Warn("postgres: connections still closing; not waiting for them", "waited", poolCloseWait)
	}
	return nil
}

// poolCloseWait is how long Close waits for the connections to close.
const poolCloseWait = 3 * time.Second

// Ping reports whether the database answers (for readiness checks).
func (db *DB) Ping(ctx context.Context) error {
	if err := db.usable(); err != nil {
		return err
	}
	return db.mapError(db.pool.Ping(ctx))
}

// usable returns EUnavailable once the DB is closed.
func (db *DB) usable() error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed || db.pool == nil {
		return tidings.Errorf(tidings.EUnavailable, "the database is closed")
	}
	return nil
}

// migrationLock is the key (in the two-key space of advisory locks, apart
// from the conversations' one-key locks) that the nodes migrating the
// database at once queue on.
const migrationLockA, migrationLockB = 0x7469, 1

// migrate applies the embedded migrations not yet applied, each in its own
// transaction, in the order of their version numbers, under an advisory
// lock so that nodes starting together migrate once.
func (db *DB) migrate(ctx context.Context) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", db.mapError(err))
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`, migrationLockA, migrationLockB); err != nil {
		return fmt.Errorf("postgres: migrate: %w", db.mapError(err))
	}
	defer conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1, $2)`, migrationLockA, migrationLockB)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version text PRIMARY KEY, applied_at timestamptz NOT NULL)`); err != nil {
		return fmt.Errorf("postgres: migrations table: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		version := strings.TrimSuffix(path.Base(name), ".sql")
		var applied bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, version).Scan(&applied); err != nil {
			return fmt.Errorf("postgres: migration %s: %w", version, err)
		}
		if applied {
			continue
		}
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			return err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// No arguments: the simple protocol, which runs every
			// statement of the file.
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, version, db.Now())
			return err
		})
		if err != nil {
			return fmt.Errorf("postgres: migration %s: %w", version, err)
		}
		db.Logger.Info("database migrated", "version", version)
	}
	return nil
}

// Tx is a write transaction, as the services see it.
type Tx struct {
	db     *DB
	ctx    context.Context
	tx     pgx.Tx
	now    time.Time
	events []*tidings.Event
	// hasXID is set once the transaction is known to have its id (it
	// called pg_current_xact_id()): it may then draw positions.
	hasXID bool
}

// update runs fn in a transaction and commits it. fn may run twice: a
// transaction cut before its commit (the connection lost, the server
// restarted, a deadlock) is run again once, from the start, on another
// connection; fn must only use tx, and must set what it returns to its
// caller afresh on each run. A transaction cut during its commit has an
// unknown outcome and is answered EUnavailable. Errors are mapped to
// tidings errors (see mapError).
//
// It starts once the sends queued on this DB before it was called have
// been committed (or have failed): a caller told that its send was
// queued (tidings.Queued) may write next, and its write comes after the
// send, as it would on SQLite.
func (db *DB) update(ctx context.Context, fn func(*Tx) error) error {
	if err := db.usable(); err != nil {
		return err
	}
	if err := db.sends.wait(ctx); err != nil {
		return err
	}
	return db.run(ctx, fn)
}

// run is update without waiting for the queued sends.
func (db *DB) run(ctx context.Context, fn func(*Tx) error) error {
	if err := db.usable(); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		err := db.attempt(ctx, fn)
		if err == nil {
			db.poke()
			return nil
		}
		var cut *cutError
		if errors.As(err, &cut) && attempt == 0 && ctx.Err() == nil {
			db.Logger.Warn("write transaction cut before its commit; running it again", "err", cut.err)
			continue
		}
		return db.mapError(err)
	}
}

// cutError is a transaction that failed before its commit for a reason
// that another try may not meet: it may run again.
type cutError struct{ err error }

func (e *cutError) Error() string { return e.err.Error() }
func (e *cutError) Unwrap() error { return e.err }

// errOutcomeUnknown answers a write whose commit was cut.
var errOutcomeUnknown = tidings.Errorf(tidings.EUnavailable,
	"the database connection was lost while the change was being committed: it may or may not have been made")

func (db *DB) attempt(ctx context.Context, fn func(*Tx) error) (err error) {
	ptx, err := db.pool.Begin(ctx)
	if err != nil {
		if retryable(err) {
			return &cutError{err}
		}
		return err
	}
	committed := false
	defer func() {
		if !committed { // an error, or a panic in fn
			ptx.Rollback(context.Background())
		}
	}()
	tx := &Tx{db: db, ctx: ctx, tx: ptx, now: db.Now().UTC().Truncate(time.Microsecond)}
	if err := fn(tx); err != nil {
		if retryable(err) {
			return &cutError{err}
		}
		return err
	}
	// The commit is not cut short by the caller's context: once asked,
	// it completes or fails, so that the caller learns which.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	err = ptx.Commit(cctx)
	committed = true // or failed: nothing left to roll back
	if err != nil {
		// Not pgconn.SafeToRetry: pgx reports a commit whose answer was
		// lost as "conn closed", safe to retry, although it was sent and
		// may have been made (TestCommitCut).
		if isConnError(err) {
			db.Logger.Error("write transaction cut during its commit: outcome unknown", "err", err)
			return errOutcomeUnknown
		}
		return err
	}
	return nil
}

// commitTimeout bounds a commit that the server does not answer.
const commitTimeout = 30 * time.Second

// retryable reports whether a transaction that failed with err before its
// commit may run again: the connection failed, or the server gave up the
// transaction for a deadlock or a serialization failure.
func retryable(err error) bool {
	var te *tidings.Error
	if errors.As(err, &te) {
		return false
	}
	if isConnError(err) {
		return true
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// isConnError reports whether err means that the server could not be
// reached or the connection to it was lost.
func isConnError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", // shutting down, crashed, starting up
			pe.Code == "53300": // too many connections
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.Timeout(err)
}

// mapError turns what PostgreSQL or the pool said into a tidings error
// where there is one: a unique key taken is EConflict, an unreachable
// server is EUnavailable. Context errors and tidings errors are returned
// as they are; anything else is an internal error.
func (db *DB) mapError(err error) error {
	var te *tidings.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		return te
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return err
	case isConnError(err):
		db.Logger.Warn("the database is unavailable", "err", err)
		return tidings.Errorf(tidings.EUnavailable, "the database is unavailable; retry later")
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
		if pe.ConstraintName == "users_by_identifier" {
			return tidings.Errorf(tidings.EConflict, "another user already has this identifier: identifiers are unique in an app")
		}
		return tidings.Errorf(tidings.EConflict, "it already exists")
	}
	if errors.As(err, &pe) && pe.Code == "23503" { // foreign_key_violation
		// What a change refers to was deleted meanwhile (a user deleted
		// while a change naming them ran on another connection).
		return tidings.Errorf(tidings.ENotFound, "what this refers to was deleted meanwhile")
	}
	if db.usable() != nil {
		return tidings.Errorf(tidings.EUnavailable, "the database is closed")
	}
	return fmt.Errorf("postgres: %w", err)
}

func (tx *Tx) exec(query string, args ...any) (pgconn.CommandTag, error) {
	return tx.tx.Exec(tx.ctx, query, args...)
}

func (tx *Tx) query(query string, args ...any) (pgx.Rows, error) {
	return tx.tx.Query(tx.ctx, query, args...)
}

func (tx *Tx) queryRow(query string, args ...any) pgx.Row {
	return tx.tx.QueryRow(tx.ctx, query, args...)
}

// query runs a read outside any write transaction.
func (db *DB) query(ctx context.Context, query string, args ...any) (pgx.Rows, error) {
	if err := db.usable(); err != nil {
		return nil, err
	}
	rows, err := db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, db.mapError(err)
	}
	return rows, nil
}

// queryRow runs a read of one row outside any write transaction. Its
// Scan returns pgx.ErrNoRows when there is none, and mapped errors
// otherwise.
func (db *DB) queryRow(ctx context.Context, query string, args ...any) pgx.Row {
	if err := db.usable(); err != nil {
		return errRow{err}
	}
	return mappedRow{db, db.pool.QueryRow(ctx, query, args...)}
}

type mappedRow struct {
	db  *DB
	row pgx.Row
}

func (r mappedRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if err == nil || errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	return r.db.mapError(err)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

func isNoRows(err error) bool { return errors.Is(err, pgx.ErrNoRows) }
