//go:build windows

package cputime

import (
	"syscall"
	"time"
)

func self() time.Duration {
	h, err := syscall.GetCurrentProcess() // a pseudo-handle: nothing to close
	if err != nil {
		return 0
	}
	var creation, exit, kernel, user syscall.Filetime
	if err := syscall.GetProcessTimes(h, &creation, &exit, &kernel, &user); err != nil {
		return 0
	}
	return filetime(kernel) + filetime(user)
}

// filetime is a FILETIME read as a duration: 100-nanosecond ticks.
func filetime(ft syscall.Filetime) time.Duration {
	return time.Duration(int64(ft.HighDateTime)<<32|int64(ft.LowDateTime)) * 100
}
