//go:build !unix && !windows

package sqlite

import "os"

// Without flock(2) or LockFileEx nothing locks: nothing stops a second server on the
// same database, and operators' writes wait in SQLite alone.

func lockFile(*os.File) (held bool, err error) { return false, nil }
func lockShared(*os.File) error                { return nil }
func unlockFile(*os.File) error                { return nil }
