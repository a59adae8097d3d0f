//go:build unix

package sqlite

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// The locks are flock(2)'s: a lock belongs to the open file, so a second
// DB of the same process is refused as another process's would be, and
// it ends with the last descriptor of that file (at Close, or when the
// process ends, however).

// lockFile takes an exclusive lock on f without waiting; held reports
// that another open file has a lock on it.
func lockFile(f *os.File) (held bool, err error) {
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK):
		return true, nil
	case noLocks(err):
		return false, fmt.Errorf("%w: %w", errNoLocks, err)
	}
	return false, err
}

// lockShared takes a shared lock on f, waiting for an exclusive one.
func lockShared(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if noLocks(err) {
			return fmt.Errorf("%w: %w", errNoLocks, err)
		}
		return err
	}
}

// noLocks reports whether err says the file system has no flock(2).
func noLocks(err error) bool {
	return errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.ENOLCK)
}

// unlockFile releases f's lock.
func unlockFile(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
