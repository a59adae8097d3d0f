package sqlite_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
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

func wantRetry(t *testing.T, err error, mention string) *tidings.RetryError {
	t.Helper()
	var re *tidings.RetryError
	if !errors.As(err, &re) || tidings.ErrorCode(err) != tidings.ERateLimited || re.After <= 0 {
		t.Fatalf("error %v; want rate_limited with a time to retry", err)
	}
	if !strings.Contains(tidings.ErrorMessage(err), mention) {
		t.Fatalf("message %q does not mention %q", tidings.ErrorMessage(err), mention)
	}
	return re
}

func TestUploadQuotas(t *testing.T) {
	e, offset, conv := clockEnv(t)
	files := sqlite.NewFileService(e.db, disk.NewBlobStore(t.TempDir()), 100)
	files.UserQuota, files.UserQuotaWindow = 250, time.Hour
	files.AppQuota = 400
	up := func(who string, n int) (*tidings.File, error) {
		return files.CreateFile(user("a", who), conv, "f.bin", "application/octet-stream", strings.NewReader(strings.Repeat("x", n)))
	}

	// Past the file limit: too large.
	_, err := up("alice", 101)
	wantCode(t, err, tidings.ETooLarge)
	must[*tidings.File](t)(up("alice", 100))
	must[*tidings.File](t)(up("alice", 100))
	// 200 of 250 used: a file of 50 fits, one of 51 does not.
	_, err = up("alice", 51)
	re := wantRetry(t, err, "upload quota")
	if re.After > time.Hour || re.After < 59*time.Minute {
		t.Errorf("retry after %s; want about an hour, when the first upload leaves the window", re.After)
	}
	must[*tidings.File](t)(up("alice", 50))
	_, err = up("alice", 1)
	wantRetry(t, err, "upload quota")
	// Bob has his own quota, but the app's storage is shared: 250 + 150.
	must[*tidings.File](t)(up("bob", 100))
	must[*tidings.File](t)(up("bob", 50))
	_, err = up("bob", 1)
	wantRetry(t, err, "storage is full")

	// An hour on, Alice's uploads have left the window, not the storage.
	offset.Store(int64(61 * time.Minute))
	_, err = up("alice", 1)
	wantRetry(t, err, "storage is full")
}

// Concurrent uploads cannot overrun a quota together: each counts with
// what it may still write.
func TestUploadQuotaHoldsUnderConcurrentUploads(t *testing.T) {
	e, _, conv := clockEnv(t)
	files := sqlite.NewFileService(e.db, disk.NewBlobStore(t.TempDir()), 100)
	files.UserQuota = 300
	var wg sync.WaitGroup
	var stored atomic.Int64
	for range 8 {
		wg.Go(func() {
			f, err := files.CreateFile(user("a", "alice"), conv, "f.bin", "application/octet-stream", strings.NewReader(strings.Repeat("x", 100)))
			if err == nil {
				stored.Add(f.Size)
			} else if tidings.ErrorCode(err) != tidings.ERateLimited {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := stored.Load(); n > 300 || n < 100 {
		t.Errorf("8 concurrent uploads of 100 bytes stored %d bytes under a quota of 300", n)
	}
}

// The app's server has the app's quota only, and each of its uploads in
// progress counts once in it: with 300 bytes of room and uploads of at
// most 100, three may be under way at once.
func TestServerUploadsInProgressCountOnce(t *testing.T) {
	e, _, conv := clockEnv(t)
	files := sqlite.NewFileService(e.db, disk.NewBlobStore(t.TempDir()), 100)
	files.AppQuota = 300
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			pr, pw := io.Pipe()
			go func() {
				pw.Write([]byte("x"))
				started <- struct{}{}
				<-release
				pw.Close()
			}()
			_, err := files.CreateFile(server("a"), conv, "f.bin", "application/octet-stream", pr)
			pr.Close() // a refused upload does not leave its writer waiting
			if err != nil {
				t.Error(err)
			}
		})
	}
	<-started
	<-started // both have reserved, and are reading
	f, err := files.CreateFile(server("a"), conv, "third.bin", "application/octet-stream", strings.NewReader(strings.Repeat("x", 100)))
	close(release)
	wg.Wait()
	if err != nil {
		t.Fatalf("a third server upload beside two in progress: %v; want it stored (100 of 300 bytes left)", err)
	}
	if f.UploaderID != "" || f.Size != 100 {
		t.Errorf("stored %+v; want 100 bytes, no uploader", f)
	}
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
