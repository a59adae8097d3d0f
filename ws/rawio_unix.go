//go:build unix

package ws

import "syscall"

// rawIO says whether a connection's socket is read and written by the
// system calls below, which never wait (lingerConn), through its
// syscall.RawConn.
const rawIO = true

func sysRead(fd uintptr, p []byte) (int, error)  { return syscall.Read(int(fd), p) }
func sysWrite(fd uintptr, p []byte) (int, error) { return syscall.Write(int(fd), p) }
