package storetest

import (
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
