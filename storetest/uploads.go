package storetest

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// quotas are the limits a quota test sets: UploadQuotas' UserQuota,
// UserQuotaWindow and AppQuota.
type quotas struct {
	user   int64
	window time.Duration
	app    int64
}

// quotaFixture is a fixture whose file service has a file limit of 100
// bytes and the quotas q; alice and bob take part in conversation "c" of
// app "a". It skips the test if the stores have no file service, no
// quotas to set, or (advance) no clock to move.
func quotaFixture(t *testing.T, newStores Factory, q quotas, advance bool) *fixture {
	f := newFixture(t, newStores)
	if f.Files == nil || f.UploadQuotas == nil {
		t.Skip("the store has no file service with upload quotas")
	}
	if advance && f.Advance == nil {
		t.Skip("the store's clock cannot be moved")
	}
	f.UploadQuotas.MaxFileBytes, f.UploadQuotas.UserQuota, f.UploadQuotas.UserQuotaWindow, f.UploadQuotas.AppQuota =
		100, q.user, q.window, q.app
	f.mkUsers("a", "alice", "bob")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c"}, "bob")
	return f
}

func (f *fixture) upload(app, who string, n int) (*tidings.File, error) {
	ctx := as(app, who)
	if who == "" {
		ctx = server(app)
	}
	return f.Files.CreateFile(ctx, "c", "f.bin", "application/octet-stream", strings.NewReader(strings.Repeat("x", n)))
}

func wantRetry(t *testing.T, what string, err error, mention string) *tidings.RetryError {
	t.Helper()
	var re *tidings.RetryError
	if !errors.As(err, &re) || tidings.ErrorCode(err) != tidings.ERateLimited || re.After <= 0 {
		t.Fatalf("%s: %v; want rate_limited with a time to retry", what, err)
	}
	if !strings.Contains(tidings.ErrorMessage(err), mention) {
		t.Fatalf("%s: message %q does not mention %q", what, tidings.ErrorMessage(err), mention)
	}
	return re
}

// TestUploadQuotas: each user may upload so much within a window, and an
// app may store so much in all (tidings.UploadQuotas).
func TestUploadQuotas(t *testing.T, newStores Factory) {
	f := quotaFixture(t, newStores, quotas{user: 250, window: time.Hour, app: 400}, true)
	ok := func(who string, n int) {
		t.Helper()
		if _, err := f.upload("a", who, n); err != nil {
			t.Fatalf("%s uploads %d bytes: %v", who, n, err)
		}
	}
	_, err := f.upload("a", "alice", 101)
	wantCode(t, "a file over the limit", err, tidings.ETooLarge)
	ok("alice", 100)
	ok("alice", 100)
	// 200 of 250 used: a file of 50 fits, one of 51 does not.
	_, err = f.upload("a", "alice", 51)
	re := wantRetry(t, "past alice's quota", err, "upload quota")
	if re.After > time.Hour || re.After < 59*time.Minute {
		t.Errorf("retry after %s; want about an hour, when the first upload leaves the window", re.After)
	}
	ok("alice", 50)
	_, err = f.upload("a", "alice", 1)
	wantRetry(t, "alice's quota used up", err, "upload quota")
	// Bob has his own quota, but the app's storage is shared: 250 + 150.
	ok("bob", 100)
	ok("bob", 50)
	_, err = f.upload("a", "bob", 1)
	wantRetry(t, "the app's storage full", err, "storage is full")
	// Another app's storage is its own.
	f.mkUsers("b", "alice")
	f.mkConv("b", "alice", tidings.NewConversation{ID: "c"})
	if _, err := f.upload("b", "alice", 100); err != nil {
		t.Errorf("alice of another app: %v", err)
	}

	// An hour on, Alice's uploads have left the window, not the storage.
	f.Advance(61 * time.Minute)
	_, err = f.upload("a", "alice", 1)
	wantRetry(t, "the app's storage full, an hour on", err, "storage is full")
}

// TestUploadQuotasUnderConcurrentUploads: uploads at the same time cannot
// overrun a quota together: each counts with the most it may still write.
func TestUploadQuotasUnderConcurrentUploads(t *testing.T, newStores Factory) {
	f := quotaFixture(t, newStores, quotas{user: 300}, false)
	var wg sync.WaitGroup
	var stored atomic.Int64
	for range 8 {
		wg.Go(func() {
			file, err := f.upload("a", "alice", 100)
			if err == nil {
				stored.Add(file.Size)
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

// TestServerUploadsCountOnce: the app's server, as itself, has the app's
// quota only, and each of its uploads in progress counts once in it: with
// 300 bytes of room and uploads of at most 100, three may be under way at
// once.
func TestServerUploadsCountOnce(t *testing.T, newStores Factory) {
	f := quotaFixture(t, newStores, quotas{user: 1, app: 300}, false)
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			pr, pw := io.Pipe()
			go func() {
				pw.Write([]byte(strings.Repeat("x", 100)))
				started <- struct{}{}
				<-release
				pw.Close()
			}()
			_, err := f.Files.CreateFile(server("a"), "c", "f.bin", "application/octet-stream", pr)
			pr.Close() // a refused upload does not leave its writer waiting
			if err != nil {
				t.Error(err)
			}
		})
	}
	<-started
	<-started // both have reserved, and read all they will store
	file, err := f.upload("a", "", 100)
	close(release)
	wg.Wait()
	if err != nil {
		t.Fatalf("a third server upload beside two in progress: %v; want it stored (100 of 300 bytes left)", err)
	}
	if file.UploaderID != "" || file.Size != 100 {
		t.Errorf("stored %+v; want 100 bytes, no uploader", file)
	}
	// 300 stored: full, for the server and its users alike.
	_, err = f.upload("a", "", 1)
	wantRetry(t, "the server past the app's storage", err, "storage is full")
	_, err = f.upload("a", "bob", 1)
	wantRetry(t, "bob past the app's storage", err, "storage is full")
}

// TestUnattachedFilesAreRemoved: files no message refers to are removed,
// content included, once their grace period is over; attached ones stay,
// and a removed file can no longer be attached.
func TestUnattachedFilesAreRemoved(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	if f.Files == nil || f.RemoveUnattachedFiles == nil || f.Blobs == nil || f.Advance == nil {
		t.Skip("the store has no file service that removes unattached files, or its clock cannot be moved")
	}
	f.mkUsers("a", "alice", "bob")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c"}, "bob")
	ctx := context.Background()
	up := func() *tidings.File {
		t.Helper()
		return must[*tidings.File](t)(f.Files.CreateFile(as("a", "alice"), "c", "f.txt", "text/plain", strings.NewReader("hello")))
	}
	kept, edited, orphan, late := up(), up(), up(), up()
	f.sendParts("a", "alice", "c", []tidings.Part{{Type: "text/plain", FileID: kept.ID}})
	other := f.send("a", "bob", "c", "other")
	if _, err := f.Messages.EditMessage(as("a", "bob"), "c", other.ID, tidings.MessageEdit{Parts: []tidings.Part{{Type: "text/plain", FileID: edited.ID}}}); err != nil {
		t.Fatal(err)
	}

	// Within the grace period nothing goes.
	f.Advance(23 * time.Hour)
	if n, err := f.RemoveUnattachedFiles(ctx, 24*time.Hour); err != nil || n != 0 {
		t.Fatalf("removed %d files within the grace period (%v)", n, err)
	}
	f.Advance(2 * time.Hour)
	late2 := up() // uploaded now: in its grace period
	if n, err := f.RemoveUnattachedFiles(ctx, 24*time.Hour); err != nil || n != 2 {
		t.Fatalf("removed %d files (%v); want the 2 never attached", n, err)
	}
	for _, file := range []*tidings.File{orphan, late} {
		_, _, err := f.Files.OpenFile(as("a", "bob"), "c", file.ID)
		wantCode(t, "an unattached file", err, tidings.ENotFound)
		_, err = f.Blobs.Open(ctx, tidings.BlobKey("a", "c", file.ID))
		wantCode(t, "the content of an unattached file", err, tidings.ENotFound)
	}
	for _, file := range []*tidings.File{kept, edited, late2} {
		_, rc, err := f.Files.OpenFile(as("a", "bob"), "c", file.ID)
		if err != nil {
			t.Fatalf("attached or recent file removed: %v", err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != "hello" {
			t.Errorf("file content %q", b)
		}
	}
	_, _, err := f.Messages.SendMessage(as("a", "alice"), "c", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", FileID: orphan.ID}}})
	wantCode(t, "a removed file attached", err, tidings.EInvalid)
}
