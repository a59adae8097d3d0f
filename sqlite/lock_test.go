package sqlite_test

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// A second server cannot open a database a server has open: it would
// give the same seqs to other messages, and the journal's move would
// then drop one of two acknowledged messages. The error names the
// process that holds it. An operator command opens it beside (Beside),
// and once the server has closed it another server opens it.
func TestOneServerPerDatabase(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock(2): nothing keeps a second server off (lock_other.go)")
	}
	e := newEnv(t)
	second := sqlite.NewDB(e.path)
	err := second.Open()
	if !errors.Is(err, sqlite.ErrInUse) {
		t.Fatalf("a second server's Open: %v, want ErrInUse", err)
	}
	if want := fmt.Sprintf("(process %d)", os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("the error does not name the holder %q: %v", want, err)
	}
	// The refused Open left nothing open: it can be tried again, once
	// the server is gone.
	beside := sqlite.NewDB(e.path)
	beside.Beside = true
	if err := beside.Open(); err != nil {
		t.Fatalf("an operator command's Open beside the server: %v", err)
	}
	if err := beside.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := second.Open(); err != nil {
		t.Fatalf("a server's Open once the other has closed: %v", err)
	}
	defer second.Close()
	if b, err := os.ReadFile(e.path + ".lock"); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(os.Getpid()) {
		t.Errorf("the lock file holds %q (%v), want this process's pid", b, err)
	}
	// Still the server's: a third is refused.
	if err := sqlite.NewDB(e.path).Open(); !errors.Is(err, sqlite.ErrInUse) {
		t.Fatalf("a third server's Open: %v, want ErrInUse", err)
	}
}

// A send retried while its message waits in the server's journal is
// answered with that message, also when an operator command's Open
// beside the server has moved the journal into messages meanwhile (it
// moves what it finds there, as after a crash).
func TestRetriedSendAfterAnOperatorMovedTheJournal(t *testing.T) {
	e, conv := pair(t)
	send := func() (*tidings.Message, bool) {
		t.Helper()
		m, created, err := e.messages.SendMessage(user("a", "alice"), conv, tidings.NewMessage{ClientID: "x", Parts: text("once")})
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		return m, created
	}
	first, _ := send()
	op := sqlite.NewDB(e.path)
	op.Beside = true
	if err := op.Open(); err != nil {
		t.Fatal(err)
	}
	if err := op.Close(); err != nil {
		t.Fatal(err)
	}
	again, created := send()
	if created || again.ID != first.ID || again.Parts[0].Data != "once" {
		t.Fatalf("the retry: %+v, created %v; want message %s again", again, created, first.ID)
	}
	if m := e.send(t, "bob", conv, "next"); m.Seq != first.Seq+1 {
		t.Fatalf("the next message's seq: %d, want %d", m.Seq, first.Seq+1)
	}
}
