//go:build !unix

package ws

import "syscall"

// rawIO is false where a socket's handle cannot be read and written
// without waiting as on Unix: lingerConn then reads and writes through
// net.Conn, whose writes wait for the peer (within the write timeout).
const rawIO = false

func sysRead(uintptr, []byte) (int, error)  { return 0, syscall.EINVAL }
func sysWrite(uintptr, []byte) (int, error) { return 0, syscall.EINVAL }
