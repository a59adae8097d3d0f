//go:build windows

package sqlite

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// The locks are LockFileEx's. A lock belongs to the handle, so a second
// DB of the same process is refused as another process's would be, and
// it ends with the handle (at Close, or when the process ends, however).
// Windows' locks keep other handles from reading and writing the bytes
// they cover: they cover one byte far past the end of the file, so that
// the holder's pid at its start stays readable.
var lockRegion = windows.Overlapped{Offset: 1 << 30} // 1 GiB: within any file system's limit

func lockRange(f *os.File, flags uint32) error {
	ol := lockRegion
	err := windows.LockFileEx(windows.Handle(f.Fd()), flags, 0, 1, 0, &ol)
	if noLocks(err) {
		return fmt.Errorf("%w: %w", errNoLocks, err)
	}
	return err
}

// lockFile takes an exclusive lock on f without waiting; held reports
// that another open file has a lock on it.
func lockFile(f *os.File) (held bool, err error) {
	err = lockRange(f, windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return true, nil
	}
	return false, err
}

// lockShared takes a shared lock on f, waiting for an exclusive one (os
// opens files for synchronous I/O, so LockFileEx waits).
func lockShared(f *os.File) error { return lockRange(f, 0) }

// noLocks reports whether err says the file system has no locks.
func noLocks(err error) bool {
	return errors.Is(err, windows.ERROR_NOT_SUPPORTED) || errors.Is(err, windows.ERROR_INVALID_FUNCTION)
}

// unlockFile releases f's lock.
func unlockFile(f *os.File) error {
	ol := lockRegion
	return windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, &ol)
}
