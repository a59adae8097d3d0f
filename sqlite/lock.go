package sqlite

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// One server per database. The writer keeps state of its own in memory
// that the database alone does not give again: the messages waiting in
// the journal, the conversations' next seqs (the send cache) and the
// client ids known (the filter). Two servers on one file would each give
// a conversation's next message the same seq, both answer the send, and
// the second move into messages would skip the other's message (INSERT
// OR IGNORE): an acknowledged message lost. So Open takes an exclusive
// lock on the file beside the database (path + ".lock", with the pid of
// its holder in it), which the system releases when the process ends,
// however it ends: a second server's Open fails at once, saying which
// process holds it.
//
// An operator command that opens the database beside a running server
// (DB.Beside) writes no messages and does not take that lock. Its write
// transactions take turns with the server's: SQLite lets a connection
// that waits for the write lock only poll for it (every 1 to 100 ms),
// and a server that commits back to back (its commits as long as its
// commit interval) frees it for microseconds between two transactions,
// so an operator's write could wait out its busy timeout and fail. An
// operator's DB holds a shared lock on path + ".operator.lock" for each
// of its write transactions (and for its Open, which may write); the
// server's writer, before each transaction, waits while one is held (at
// most operatorWait), so the operator's transaction comes in between.

// ErrInUse is wrapped by the error of Open (and FillHistory) when
// another DB, of this process or another, has the database open (not
// Beside).
var ErrInUse = errors.New("the database is in use by another server")

// operatorWait bounds how long the server's writer waits for an operator
// command's transaction before it begins its own (which then waits in
// SQLite for the operator's commit, up to the busy timeout, as without
// turns). An operator that held its lock that long (a long erasure, or
// a command suspended with ^Z) is not waited for again for
// operatorRespite: each wait holds every send.
const (
	operatorWait    = 250 * time.Millisecond
	operatorRespite = 10 * time.Second
)

// lock takes the database's lock (a server's), and opens the operators'
// lock file.
func (db *DB) lock() error {
	if err := db.openTurns(); err != nil {
		return err
	}
	f, err := lockServer(db.path)
	if errors.Is(err, errNoLocks) {
		db.Logger.Warn("the database's file system does not lock files: nothing keeps a second server off this database; run one only", "path", db.path, "err", err)
		err = nil
	}
	if err != nil {
		db.unlock()
		return err
	}
	db.lockFile = f
	return nil
}

// errNoLocks is lockFile's error on a file system without flock(2) (some
// network and FUSE file systems): the database opens without its lock.
var errNoLocks = errors.New("the file system does not lock files")

// lockServer takes the lock of the database at path, which closing the
// file it returns releases.
func lockServer(path string) (*os.File, error) {
	lpath := path + ".lock"
	f, err := os.OpenFile(lpath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open the lock file: %w", err)
	}
	held, err := lockFile(f)
	if errors.Is(err, errNoLocks) {
		return f, err // the caller goes on without it, and says so
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("sqlite: lock %s: %w", lpath, err)
	}
	if held {
		b, _ := os.ReadFile(lpath)
		f.Close()
		holder := ""
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			holder = fmt.Sprintf(" (process %d)", pid)
		}
		return nil, fmt.Errorf("sqlite: %s: %w%s: one server per database; stop it, or give this one a database of its own",
			path, ErrInUse, holder)
	}
	// Who holds it, for the error above; the lock holds without it.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// openTurns opens the operators' lock file.
func (db *DB) openTurns() error {
	f, err := os.OpenFile(db.path+".operator.lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("sqlite: open the lock file: %w", err)
	}
	db.turnFile = f
	return nil
}

// unlock releases the locks (a no-op without them).
func (db *DB) unlock() error {
	var errs []error
	for _, f := range []**os.File{&db.lockFile, &db.turnFile} {
		if *f != nil {
			errs = append(errs, (*f).Close()) // releases its lock
			*f = nil
		}
	}
	return errors.Join(errs...)
}

// takeTurn comes before each write transaction of the writer, endTurn
// after it. An operator's DB (Beside) holds the operators' lock, shared,
// meanwhile; a server's waits while an operator holds it, at most
// operatorWait (and not at all for operatorRespite after such a wait).
func (db *DB) takeTurn() {
	if db.turnFile == nil {
		return
	}
	if db.Beside {
		if err := lockShared(db.turnFile); err != nil && !errors.Is(err, errNoLocks) {
			db.Logger.Warn("could not take the operators' lock: this write may wait for the server's commits", "err", err)
		}
		return
	}
	if time.Now().Before(db.turnRespite) {
		return
	}
	for deadline := time.Now().Add(operatorWait); ; time.Sleep(time.Millisecond) {
		held, err := lockFile(db.turnFile)
		if err == nil && !held {
			unlockFile(db.turnFile)
		}
		if err != nil || !held {
			return
		}
		if now := time.Now(); now.After(deadline) {
			db.turnRespite = now.Add(operatorRespite)
			db.turnWaitsOut.Add(1)
			db.Logger.Warn("an operator command has held the database's operator lock for longer than the server waits for it: not waiting for it for a while",
				"waited", operatorWait, "for", operatorRespite)
			return
		}
	}
}

func (db *DB) endTurn() {
	if db.Beside && db.turnFile != nil {
		unlockFile(db.turnFile)
	}
}
