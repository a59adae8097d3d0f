package sqlite_test

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/disk"
	"github.com/tidings/tidings/sqlite"
)

// clockEnv is an env whose store reads the time from a clock the test
// moves.
func clockEnv(t *testing.T) (*env, *atomic.Int64, string) {
	var offset atomic.Int64
	e := openDBWith(t, filepath.Join(t.TempDir(), "tidings.db"), func(db *sqlite.DB) {
		db.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	for _, app := range []string{"a", "b"} {
		if _, err := e.apps.CreateApp(context.Background(), app, ""); err != nil {
			t.Fatal(err)
		}
	}
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	return e, &offset, c.ID
}

func TestUnattachedFilesAreRemovedAfterGrace(t *testing.T) {
	e, offset, conv := clockEnv(t)
	dir := t.TempDir()
	blobs := disk.NewBlobStore(dir)
	files := sqlite.NewFileService(e.db, blobs, 1000)
	up := func() *tidings.File {
		return must[*tidings.File](t)(files.CreateFile(user("a", "alice"), conv, "f.txt", "text/plain", strings.NewReader("hello")))
	}
	kept, edited, orphan, late := up(), up(), up(), up()
	e.send(t, "alice", conv, "first")
	m, _, err := e.messages.SendMessage(user("a", "alice"), conv, tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", FileID: kept.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	other := e.send(t, "bob", conv, "other")
	_ = m
	if _, err := e.messages.EditMessage(user("a", "bob"), conv, other.ID, tidings.MessageEdit{Parts: []tidings.Part{{Type: "text/plain", FileID: edited.ID}}}); err != nil {
		t.Fatal(err)
	}

	// Within the grace period nothing goes.
	offset.Store(int64(23 * time.Hour))
	if n := must[int](t)(files.RemoveUnattached(context.Background(), 24*time.Hour)); n != 0 {
		t.Fatalf("removed %d files within the grace period", n)
	}
	offset.Store(int64(25 * time.Hour))
	late2 := up() // uploaded now: in its grace period
	if n := must[int](t)(files.RemoveUnattached(context.Background(), 24*time.Hour)); n != 2 {
		t.Fatalf("removed %d files; want the 2 never attached", n)
	}
	for _, f := range []*tidings.File{orphan, late} {
		if _, _, err := files.OpenFile(user("a", "bob"), conv, f.ID); tidings.ErrorCode(err) != tidings.ENotFound {
			t.Errorf("unattached file still there: %v", err)
		}
		key := "a/" + conv + "/" + f.ID
		if _, err := blobs.Open(context.Background(), key); tidings.ErrorCode(err) != tidings.ENotFound {
			t.Errorf("content of an unattached file still there: %v", err)
		}
	}
	for _, f := range []*tidings.File{kept, edited, late2} {
		_, rc, err := files.OpenFile(user("a", "bob"), conv, f.ID)
		if err != nil {
			t.Fatalf("attached or recent file removed: %v", err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != "hello" {
			t.Errorf("file content %q", b)
		}
	}
	// A removed file can no longer be attached.
	_, _, err = e.messages.SendMessage(user("a", "alice"), conv, tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", FileID: orphan.ID}}})
	wantCode(t, err, tidings.EInvalid)
}
