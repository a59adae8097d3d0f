//go:build !unix

package loadgen

// RaiseFileLimit returns 0: this system has no limit of open files to
// raise (or Go does not reach it).
func RaiseFileLimit() (uint64, error) { return 0, nil }
