//go:build unix

package sqlite

import (
	"errors"
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
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	return false, err
}

// lockShared takes a shared lock on f, waiting for an exclusive one.
func lockShared(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// unlockFile releases f's lock.
func unlockFile(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
