//go:build unix

package sqlite_test

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/tidings/tidings/sqlite"
)

// An operator command that holds its lock for long (a long erasure, or
// one suspended with ^Z) holds the server's writes up once, for at most
// a quarter of a second, not every one of them: the writer stops
// waiting for it for a while.
func TestServerWaitsForAnOperatorOnlyOnce(t *testing.T) {
	e, conv := pair(t)
	f, err := os.OpenFile(e.path+".operator.lock", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil { // as an operator's transaction
		t.Fatal(err)
	}
	for i := range 5 {
		e.send(t, "alice", conv, fmt.Sprint("while the operator holds on ", i))
	}
	if n := sqlite.OperatorWaitsOut(e.db); n != 1 {
		t.Errorf("the writer waited out the operator %d times for five sends, want once", n)
	}
}
