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
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidings/tidings"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// defaultMaxBatch is the default of DB.MaxBatch. Batches reach it only
// when writes come faster than the writer commits them, and then the
// larger the batch, the more of its sends share the pages they write (two
// sends to one conversation, its leaf pages): sends into 2,000 rooms of 5
// at saturation went from about 5,400 a second with 512 to 6,300 with
// 1,024 and 7,300 with 2,048 or 4,096 (docs/benchmarks.md, "Larger
// batches under overload").
const defaultMaxBatch = 2048

// busyTimeout is how long a connection waits for a lock that another
// holds (another process's writer, a checkpoint) before it fails.
const busyTimeout = 10 * time.Second

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
	// MaxBatch caps the number of jobs committed together (default
	// defaultMaxBatch).
	MaxBatch int
	// CommitInterval is the least time from one commit's start to the
	// next's: the jobs that come meanwhile wait for it and commit
	// together (0: a commit starts as soon as the last one ended).
	CommitInterval time.Duration
	// CacheMiB is the size of the write connection's page cache (default
	// 64 MiB) once the database is 1 GiB or more; smaller, it is 8 MiB
	// (see pagecache.go).
	CacheMiB int
	// PageSize is the page size, in bytes, of a database that Open
	// creates (a power of two from 512 to 65536; 0: SQLite's default,
	// 4096). A database that exists keeps the page size it was created
	// with. Smaller pages were measured and not kept (docs/benchmarks.md,
	// issue #14): it is here for such measurements.
	PageSize int
	// Synchronous is the SQLite synchronous setting: "FULL" (default: a
	// committed write survives power loss) or "NORMAL" (survives a crash of
	// the process, may lose the last commits on power loss).
	Synchronous string
	// Beside opens the database beside the server that may have it open
	// (an operator command's): Open does not take the database's lock
	// (see lock.go), and the DB must not be used to send messages.
	Beside bool
	// CheckpointInterval is the least time between two checkpoints, which
	// a goroutine of their own runs every 200 jobs committed (default
	// 200 ms; see checkpoint.go).
	CheckpointInterval time.Duration

	lockFile *os.File // the database's lock (lock.go); nil when Beside
	turnFile *os.File // the operators' lock (lock.go)
	// turnRespite: the server's writer does not wait for operators until
	// then (writer only); turnWaitsOut counts the waits that ran out.
	turnRespite  time.Time
	turnWaitsOut atomic.Int64
	write        *sql.DB
	wconn        *sql.Conn
	read         *sql.DB
	reads        readStmts                // statements prepared on read
	stmts        map[string]*sql.Stmt     // prepared on wconn; used by the writer only
	roles        map[string]tidings.Roles // decoded roles columns; writer only
	cache        *sendCache               // writer only
	// marksPending: committed sends have marks not written yet (see
	// sendCache and syncMarks).
	marksPending atomic.Bool
	// unwritten: the marks of committed sends not written yet, for
	// readers (see unwritten.go)
	unwritten *unwritten
	// marksDue, marksIdle and marksChunk: markDelay, markDelay and
	// markChunk (see sendCache; tests set others).
	marksDue, marksIdle time.Duration
	marksChunk          int
	// journal: the messages sent and not moved into messages yet (see
	// journal.go); moveDelay, how long they may wait (moveDelay; tests
	// set others).
	journal   *journal
	moveDelay time.Duration
	// clientIDs says which client ids messages certainly has not (see
	// clientfilter.go).
	clientIDs *clientFilter
	// clientIDsHold, if set (tests), holds the filter's read of messages
	// until closed.
	clientIDsHold chan struct{}
	// clientIDsRebuildFrom, if set (tests), is the filter's rebuildFrom.
	clientIDsRebuildFrom int

	// largePages: from this many pages the database is past its
	// lock-byte page and the writer's cache is CacheMiB (see
	// pagecache.go; tests set less); dbPages, the size the checkpointer
	// read last; cacheLarge, whether the writer's cache is CacheMiB
	// (writer only).
	largePages int64
	dbPages    atomic.Int64
	cacheLarge bool
	// overloadedAt: when the writer last ran a batch of overloadBatch
	// jobs or more; overloaded, whether that was less than overloadHold
	// (tests set less) ago (writer only; see pagecache.go).
	overloadedAt time.Time
	overloaded   bool
	overloadHold time.Duration

	// warmStop ends the start's warm-up (warm.go); warmDone is closed
	// once the warm-up has ended.
	warmStop context.CancelFunc
	warmDone chan struct{}

	ckpt  *sql.DB    // the checkpointer's connection
	walMu sync.Mutex // held by the writer for each transaction; see checkpoint.go
	// restartFrames is the WAL's size, in pages, from which the
	// checkpointer has it start again (restartFrames; tests set less)
	restartFrames int
	// checkpointJobs: jobs committed between two checkpoints
	// (checkpointJobs; tests set less); ckptJobs, since the last one
	checkpointJobs int
	ckptJobs       atomic.Int64
	ckptWake       chan struct{}
	ckptStop       chan struct{}
	ckptDone       chan struct{}

	// pushApps holds the apps that have at least one push target (see
	// PushService.HasPushTargets); pushDirty, those whose targets the
	// jobs of the current transaction changed, checked again once it
	// has committed or rolled back (writer only).
	pushMu    sync.RWMutex
	pushApps  map[string]bool
	pushDirty map[string]bool

	// sendsIndexedThrough is the newest sent event that is in
	// events_by_conversation (those of messages stored before migration
	// 0011); replay reads the later ones through messages. userStream is
	// the replay query with it (userStreamQuery).
	sendsIndexedThrough int64
	userStream          string

	metrics *metrics
	jobs    chan *job
	done    chan struct{}
	closeMu sync.RWMutex
	closed  bool
}

// NewDB returns a DB that will use the database file at path (created,
// with its directory, on Open).
func NewDB(path string) *DB {
	db := &DB{path: path, Now: time.Now, MaxBatch: defaultMaxBatch, Synchronous: "FULL", metrics: newMetrics(),
		marksDue: markDelay, marksIdle: markDelay, marksChunk: markChunk, unwritten: newUnwritten(), overloadHold: overloadHold,
		moveDelay: moveDelay}
	db.journal = newJournal(db.metrics.journalMoved)
	return db
}

// Open opens the database, applies pending migrations and starts the
// writer.
func (db *DB) Open() (err error) {
	if db.Logger == nil {
		db.Logger = slog.Default()
	}
	if db.Now == nil {
		db.Now = time.Now
	}
	if db.MaxBatch <= 0 {
		db.MaxBatch = defaultMaxBatch
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
	// The database holds the apps' signing secrets: it is for this user
	// only, whatever the umask and the directory (a volume mounted with
	// 0755). SQLite gives the -wal and -shm files the mode of the database.
	if err := createPrivate(db.path); err != nil {
		return err
	}
	if db.Beside {
		// Its writes, migrations and moves take their turn (lock.go).
		if err := db.openTurns(); err != nil {
			return err
		}
		db.takeTurn()
		defer db.endTurn()
	} else if err := db.lock(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			db.unlock()
		}
	}()
	if err := db.setPageSize(); err != nil {
		return err
	}
	// temp_store(MEMORY) keeps the savepoint journals of group commit in
	// memory instead of temporary files.
	pragmas := fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()) + "&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=temp_store(MEMORY)"
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
	// The writer's page cache holds the pages that sends write again and
	// again: with thousands of active conversations, the last page of each
	// one's messages and indexes. Its size follows the database's (see
	// pagecache.go): small until the database is 1 GiB, since SQLite scans
	// the whole cache at most commits until then.
	if err := db.openCacheSize(ctx); err != nil {
		db.wconn.Close()
		db.write.Close()
		return err
	}
	if err := db.migrate(ctx); err != nil {
		db.wconn.Close()
		db.write.Close()
		return err
	}
	if err := db.wconn.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'sends_indexed_through'`).Scan(&db.sendsIndexedThrough); err != nil {
		db.wconn.Close()
		db.write.Close()
		return fmt.Errorf("sqlite: open: %w", err)
	}
	db.userStream = userStreamQuery(db.sendsIndexedThrough)
	if err := db.hashServerKeys(ctx); err != nil {
		db.wconn.Close()
		db.write.Close()
		return err
	}
	// Before the marks are repaired: they are repaired from messages.
	if n, err := moveJournal(ctx, db.wconn); err != nil {
		db.wconn.Close()
		db.write.Close()
		return err
	} else if n > 0 {
		db.Logger.Info("moved the messages a stop left in the journal", "messages", n)
	}
	if err := db.repairMarks(ctx); err != nil {
		db.wconn.Close()
		db.write.Close()
		return err
	}
	// The checkpointer's goroutine checkpoints, not the writer's commits.
	if _, err := db.wconn.ExecContext(ctx, `PRAGMA wal_autocheckpoint = 0`); err != nil {
		db.wconn.Close()
		db.write.Close()
		return fmt.Errorf("sqlite: open: %w", err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Chmod(db.path+suffix, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			db.Logger.Warn("could not make a database file private", "file", db.path+suffix, "err", err)
		}
	}
	// The read connections' and the checkpointer's page caches are small:
	// every connection of the process shares one budget of pages with the
	// writer (see pagecache.go), and a read connection's cache is dropped
	// anyway at its next read after any commit (WAL).
	pragmas += fmt.Sprintf("&_pragma=cache_size(%d)", -otherCacheKiB)
	db.read, err = sql.Open("sqlite", "file:"+db.path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		db.wconn.Close()
		db.write.Close()
		return fmt.Errorf("sqlite: open: %w", err)
	}
	db.read.SetMaxOpenConns(8)
	db.read.SetMaxIdleConns(8)
	if err := db.loadPushApps(ctx); err != nil {
		db.wconn.Close()
		db.write.Close()
		db.read.Close()
		return err
	}
	if err := db.openCheckpointer(pragmas); err != nil {
		db.wconn.Close()
		db.write.Close()
		db.read.Close()
		return err
	}
	// After the journal's move: every message stored before the writer
	// starts is in messages, where the filter's goroutine reads them.
	db.startClientFilter()
	db.startWarm()
	db.stmts = make(map[string]*sql.Stmt)
	db.roles = make(map[string]tidings.Roles)
	db.cache = newSendCache(db)
	db.jobs = make(chan *job, 4*db.MaxBatch)
	db.done = make(chan struct{})
	go db.writer()
	return nil
}

// setPageSize gives a database file that is still empty (new) the page
// size of DB.PageSize, if set. It must come before the first table and before
// the database is put in WAL mode, both of which write the page size
// into the file's header for good; the write connection's pragmas would
// come too late (the driver sets journal_mode first), so a connection of
// its own does it and puts the database in WAL mode. A database that
// exists keeps its page size.
func (db *DB) setPageSize() error {
	size := db.PageSize
	if size == 0 {
		return nil
	}
	if size < 512 || size > 65536 || size&(size-1) != 0 {
		return fmt.Errorf("sqlite: page size must be a power of two from 512 to 65536, not %d", size)
	}
	fi, err := os.Stat(db.path)
	if err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	if fi.Size() > 0 {
		return nil
	}
	c, err := sql.Open("sqlite", "file:"+db.path)
	if err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	defer c.Close()
	c.SetMaxOpenConns(1)
	// One connection: the pragma holds for the connection that sets it.
	conn, err := c.Conn(context.Background())
	if err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	defer conn.Close()
	for _, q := range []string{fmt.Sprintf("PRAGMA page_size = %d", size), "PRAGMA journal_mode = WAL"} {
		if _, err := conn.ExecContext(context.Background(), q); err != nil {
			return fmt.Errorf("sqlite: set the page size: %w", err)
		}
	}
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
	db.stopClientFilter()
	db.stopWarm()
	ckErr := db.closeCheckpointer()
	for _, s := range db.stmts {
		s.Close()
	}
	db.closeReadStmts()
	// Last: the lock is the database's until its connections are closed.
	return errors.Join(ckErr, db.wconn.Close(), db.write.Close(), db.read.Close(), db.unlock())
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
		if before := beforeMigration[version]; before != nil {
			if err := before(ctx, db, tx); err != nil {
				tx.Rollback()
				return fmt.Errorf("sqlite: migration %s: %w", version, err)
			}
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migration %s: %w", version, err)
		}
		if after := afterMigration[version]; after != nil {
			if err := after(ctx, db, tx); err != nil {
				tx.Rollback()
				return fmt.Errorf("sqlite: migration %s: %w", version, err)
			}
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

// createPrivate creates the file at path readable and writable by this
// user only, or makes it so if it exists.
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite: create database: %w", err)
	}
	f.Close()
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("sqlite: make the database private: %w", err)
	}
	return nil
}

// beforeMigration holds what runs in a migration's transaction before its
// SQL, by version.
var beforeMigration = map[string]func(ctx context.Context, db *DB, tx *sql.Tx) error{
	"0002_security": logDuplicateIdentifiers,
}

// afterMigration holds what runs in a migration's transaction after its
// SQL, by version.
var afterMigration = map[string]func(ctx context.Context, db *DB, tx *sql.Tx) error{
	"0011_sends_replayed_from_messages": indexSendsThroughNow,
}

// indexSendsThroughNow makes events_by_conversation again for migration
// 0011: without the sent events to come, which replay reads through
// messages, but with those stored so far, whose messages do not name
// their events. The newest event now is written into the index's
// condition and kept in meta (sends_indexed_through), for the queries
// (sendsIndexedThrough).
func indexSendsThroughNow(ctx context.Context, db *DB, tx *sql.Tx) error {
	var k int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM events`).Scan(&k); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `CREATE INDEX events_by_conversation ON events (app_id, conversation_id, seq) WHERE `+eventIndexed(k)); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('sends_indexed_through', ?)`, k)
	return err
}

// eventIndexed is the condition of events_by_conversation (about the
// events table's columns, unqualified, or those of alias e), with the
// newest event indexed whatever its name, k: a query must say it
// literally, as its own term, for SQLite to use the index.
func eventIndexed(k int64, alias ...string) string {
	p := ""
	if len(alias) > 0 {
		p = alias[0] + "."
	}
	return fmt.Sprintf("(%sname <> '%s' OR %sseq <= %d)", p, tidings.EventMessageSent, p, k)
}

// logDuplicateIdentifiers logs the users whose identifier migration 0002
// clears because an older user of their app has the same one.
func logDuplicateIdentifiers(ctx context.Context, db *DB, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT u.app_id, u.id, u.identifier_kind,
		(SELECT o.id FROM users AS o WHERE o.app_id = u.app_id AND o.identifier_kind IS u.identifier_kind
			AND o.identifier_value = u.identifier_value ORDER BY o.created_at, o.id LIMIT 1)
		FROM users AS u
		WHERE u.identifier_value IS NOT NULL AND EXISTS (
			SELECT 1 FROM users AS o
			WHERE o.app_id = u.app_id AND o.identifier_kind IS u.identifier_kind AND o.identifier_value = u.identifier_value
			  AND (o.created_at < u.created_at OR (o.created_at = u.created_at AND o.id < u.id)))`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var app, user, keeper string
		var kind sql.NullString
		if err := rows.Scan(&app, &user, &kind, &keeper); err != nil {
			return err
		}
		db.Logger.Warn("identifiers are now unique: cleared the identifier of a user that an older user of the app has too",
			"app", app, "user", user, "kind", kind.String, "kept_by", keeper)
	}
	return rows.Err()
}

// serverKeyHashPrefix starts every stored server key: what is stored is
// its SHA-256, never the key.
const serverKeyHashPrefix = "sha256:"

// hashServerKey returns what is stored of a server key.
func hashServerKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return serverKeyHashPrefix + hex.EncodeToString(sum[:])
}

// hashServerKeys replaces the server keys stored in plain text (before
// version 2) by their hashes. They keep working.
func (db *DB) hashServerKeys(ctx context.Context) error {
	rows, err := db.wconn.QueryContext(ctx, `SELECT id, server_key FROM apps WHERE server_key NOT LIKE 'sha256:%'`)
	if err != nil {
		return fmt.Errorf("sqlite: hash server keys: %w", err)
	}
	keys := map[string]string{}
	for rows.Next() {
		var id, key string
		if err := rows.Scan(&id, &key); err != nil {
			rows.Close()
			return fmt.Errorf("sqlite: hash server keys: %w", err)
		}
		keys[id] = key
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: hash server keys: %w", err)
	}
	if len(keys) == 0 {
		return nil
	}
	// secure_delete overwrites the plain keys' bytes instead of leaving
	// them in free space; the checkpoint then moves the rewritten pages
	// over the old ones in the database file.
	if _, err := db.wconn.ExecContext(ctx, `PRAGMA secure_delete = ON`); err != nil {
		return fmt.Errorf("sqlite: hash server keys: %w", err)
	}
	defer db.wconn.ExecContext(ctx, `PRAGMA secure_delete = OFF`)
	tx, err := db.wconn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: hash server keys: %w", err)
	}
	for id, key := range keys {
		if _, err := tx.ExecContext(ctx, `UPDATE apps SET server_key = ? WHERE id = ? AND server_key = ?`, hashServerKey(key), id, key); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: hash server keys: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: hash server keys: %w", err)
	}
	if _, err := db.wconn.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return fmt.Errorf("sqlite: hash server keys: %w", err)
	}
	db.Logger.Info("server keys are now stored hashed; they keep working", "apps", len(keys))
	return nil
}
