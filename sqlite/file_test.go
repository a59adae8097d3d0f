package sqlite_test

import (
	"context"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/disk"
	"github.com/tidings/tidings/sqlite"
)

func TestFilesBelongToTheirConversation(t *testing.T) {
	e, conv := pair(t)
	dir := t.TempDir()
	files := sqlite.NewFileService(e.db, disk.NewBlobStore(dir), 1024)
	f := must[*tidings.File](t)(files.CreateFile(user("a", "alice"), conv, "../../etc/notes.txt", "text/plain; charset=utf-8", strings.NewReader("hello")))
	if f.Name != "notes.txt" || f.Size != 5 || f.UploaderID != "alice" {
		t.Fatalf("stored %+v: want the base name only, size 5", f)
	}
	got, rc, err := files.OpenFile(user("a", "bob"), conv, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rc)
	rc.Close()
	if string(body) != "hello" || got.Type != "text/plain; charset=utf-8" {
		t.Fatalf("bob read %q as %q", body, got.Type)
	}
	// A non-participant does not even learn the conversation exists.
	_, _, err = files.OpenFile(user("a", "eve"), conv, f.ID)
	wantCode(t, err, tidings.ENotFound)
	_, err = files.CreateFile(user("a", "eve"), conv, "x.txt", "text/plain", strings.NewReader("x"))
	wantCode(t, err, tidings.ENotFound)
	// A file of another conversation is not found through this one.
	other := e.mkConv(t, "a", "bob", tidings.NewConversation{})
	_, err = files.FindFile(user("a", "bob"), other.ID, f.ID)
	wantCode(t, err, tidings.ENotFound)

	// Over the limit: refused, and nothing is left on disk.
	_, err = files.CreateFile(user("a", "alice"), conv, "big.bin", "application/octet-stream", strings.NewReader(strings.Repeat("x", 1025)))
	wantCode(t, err, tidings.ETooLarge)
	_, err = files.CreateFile(user("a", "alice"), conv, "x.bin", "not a type", strings.NewReader("x"))
	wantCode(t, err, tidings.EUnsupportedType)
	_, err = files.CreateFile(user("a", "alice"), conv, " ", "text/plain", strings.NewReader("x"))
	wantCode(t, err, tidings.EInvalid)
	var stored int
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			stored++
		}
		return nil
	})
	if stored != 1 {
		t.Fatalf("%d files on disk, want 1", stored)
	}

	// A message can carry the file; its part gets the file's size and name.
	m, _, err := e.messages.SendMessage(user("a", "alice"), conv, tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", FileID: f.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	if p := m.Parts[0]; p.Size != 5 || p.Name != "notes.txt" {
		t.Fatalf("file part %+v", p)
	}
}

// A retry of a send with files (same client id) is answered with the
// earlier message even if it names other files, or files that are gone,
// and attaches none of them.
func TestRetryOfASendWithFiles(t *testing.T) {
	e, conv := pair(t)
	files := sqlite.NewFileService(e.db, disk.NewBlobStore(t.TempDir()), 1024)
	f := must[*tidings.File](t)(files.CreateFile(user("a", "alice"), conv, "a.txt", "text/plain", strings.NewReader("a")))
	other := must[*tidings.File](t)(files.CreateFile(user("a", "alice"), conv, "b.txt", "text/plain", strings.NewReader("b")))
	first, created, err := e.messages.SendMessage(user("a", "alice"), conv, tidings.NewMessage{ClientID: "k",
		Parts: []tidings.Part{{Type: "text/plain", FileID: f.ID}}})
	if err != nil || !created {
		t.Fatalf("first send: created %v, %v", created, err)
	}
	for _, id := range []string{other.ID, "gone"} {
		again, created, err := e.messages.SendMessage(user("a", "alice"), conv, tidings.NewMessage{ClientID: "k",
			Parts: []tidings.Part{{Type: "text/plain", FileID: id}}})
		if err != nil || created || again.ID != first.ID || again.Parts[0].FileID != f.ID {
			t.Fatalf("retry with file %s: created %v, %+v, %v; want the first message", id, created, again, err)
		}
	}
	// The other file was not attached: it goes with the unattached ones.
	n, err := files.RemoveUnattached(context.Background(), -time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("removed %d unattached files, want 1 (the file the retry named)", n)
	}
}
