package tidings_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// usage is a store's count of stored files, kept by hand.
type usage struct {
	user   map[string]int64
	oldest time.Time
	app    int64
}

func (u *usage) UserUploads(_ context.Context, _, userID string, _ time.Time) (int64, time.Time, error) {
	if u.user[userID] == 0 {
		return 0, time.Time{}, nil
	}
	return u.user[userID], u.oldest, nil
}

func (u *usage) AppFileBytes(context.Context, string) (int64, error) { return u.app, nil }

var (
	alice  = tidings.Caller{AppID: "a", UserID: "alice"}
	server = tidings.Caller{AppID: "a", Server: true}
)

func reserve(t *testing.T, q *tidings.UploadQuotas, c tidings.Caller, u *usage) *tidings.UploadReservation {
	t.Helper()
	r, err := q.Reserve(context.Background(), c, time.Now(), u)
	if err != nil {
		t.Fatalf("reserve for %+v: %v", c, err)
	}
	return r
}

func wantQuotaError(t *testing.T, err error, mention string) *tidings.RetryError {
	t.Helper()
	var re *tidings.RetryError
	if !errors.As(err, &re) || tidings.ErrorCode(err) != tidings.ERateLimited {
		t.Fatalf("error %v; want rate_limited with a time to retry", err)
	}
	if !strings.Contains(tidings.ErrorMessage(err), mention) {
		t.Fatalf("message %q does not mention %q", tidings.ErrorMessage(err), mention)
	}
	return re
}

func TestUploadQuotasWithoutQuotasReserveTheFileLimit(t *testing.T) {
	var q tidings.UploadQuotas
	r := reserve(t, &q, alice, &usage{})
	if r.Limit != tidings.DefaultMaxFileBytes {
		t.Errorf("limit %d; want the default file limit %d", r.Limit, tidings.DefaultMaxFileBytes)
	}
	tooLarge := tidings.Errorf(tidings.ETooLarge, "too large")
	if err := r.PutError(tooLarge); err != tooLarge {
		t.Errorf("a file over the file limit answers %v; want ETooLarge", err)
	}
	r.Release()
}

// An upload in progress holds the most it may write, so that uploads at
// the same time cannot overrun a quota together; releasing gives it back.
func TestUploadQuotasCountUploadsInProgress(t *testing.T) {
	q := tidings.UploadQuotas{MaxFileBytes: 100, UserQuota: 250, UserQuotaWindow: time.Hour}
	u := &usage{user: map[string]int64{"alice": 100}, oldest: time.Now().Add(-20 * time.Minute)}
	first := reserve(t, &q, alice, u)
	if first.Limit != 100 {
		t.Fatalf("first limit %d; want the file limit, 100", first.Limit)
	}
	second := reserve(t, &q, alice, u)
	if second.Limit != 50 {
		t.Fatalf("second limit %d; want what is left of 250 after 100 stored and 100 in progress: 50", second.Limit)
	}
	// A file over the room the quota left gets the quota's error, not
	// ETooLarge: it would fit the file limit.
	wantQuotaError(t, second.PutError(tidings.Errorf(tidings.ETooLarge, "too large")), "upload quota")
	_, err := q.Reserve(context.Background(), alice, time.Now(), u)
	re := wantQuotaError(t, err, "each user may upload 250 bytes every 1 hour")
	if re.After > 10*time.Second {
		t.Errorf("retry after %s while uploads in progress hold the room; want at most 10s", re.After)
	}
	// Bob has his own quota.
	if r := reserve(t, &q, tidings.Caller{AppID: "a", UserID: "bob"}, u); r.Limit != 100 {
		t.Errorf("bob's limit %d; want 100", r.Limit)
	}
	first.Release()
	first.Release() // twice gives back once
	if r := reserve(t, &q, alice, u); r.Limit != 100 {
		t.Errorf("limit after a release %d; want 100 again", r.Limit)
	}
}

func TestUploadQuotasRetryWhenTheOldestUploadLeavesTheWindow(t *testing.T) {
	q := tidings.UploadQuotas{MaxFileBytes: 100, UserQuota: 200, UserQuotaWindow: time.Hour}
	u := &usage{user: map[string]int64{"alice": 200}, oldest: time.Now().Add(-15 * time.Minute)}
	_, err := q.Reserve(context.Background(), alice, time.Now(), u)
	re := wantQuotaError(t, err, "upload quota")
	if re.After < 44*time.Minute || re.After > 45*time.Minute {
		t.Errorf("retry after %s; want 45 minutes, when the oldest upload leaves the window", re.After)
	}
}

// The app's server, as itself, has the app's quota only; each of its
// uploads in progress counts once in it.
func TestUploadQuotasServerUploadsCountOnceInTheAppQuota(t *testing.T) {
	q := tidings.UploadQuotas{MaxFileBytes: 100, UserQuota: 1, AppQuota: 400}
	u := &usage{app: 100}
	for i, want := range []int64{100, 100, 100} {
		if r := reserve(t, &q, server, u); r.Limit != want {
			t.Fatalf("server upload %d: limit %d; want %d", i+1, r.Limit, want)
		}
	}
	// 100 stored and 300 in progress: the app's storage is full, for the
	// server and for its users.
	_, err := q.Reserve(context.Background(), server, time.Now(), u)
	wantQuotaError(t, err, "storage is full")
	_, err = q.Reserve(context.Background(), tidings.Caller{AppID: "a", UserID: "bob"}, time.Now(), u)
	wantQuotaError(t, err, "storage is full")
	// Another app's storage is its own.
	if r := reserve(t, &q, tidings.Caller{AppID: "b", Server: true}, u); r.Limit != 100 {
		t.Errorf("another app's server: limit %d; want 100", r.Limit)
	}
}

func TestFileName(t *testing.T) {
	for in, want := range map[string]string{
		"cat.png":                "cat.png",
		"  cat.png ":             "cat.png",
		"photos/2026/cat.png":    "cat.png",
		`C:\Users\me\cat.png`:    "cat.png",
		"../../etc/passwd":       "passwd",
		"chat 💬.txt":             "chat 💬.txt",
		strings.Repeat("x", 255): strings.Repeat("x", 255),
	} {
		if got, err := tidings.FileName(in); err != nil || got != want {
			t.Errorf("FileName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "  ", ".", "/", strings.Repeat("x", 256), "bad\xff.txt"} {
		if got, err := tidings.FileName(in); tidings.ErrorCode(err) != tidings.EInvalid {
			t.Errorf("FileName(%q) = %q, %v; want invalid", in, got, err)
		}
	}
}

// Two different ids never share a blob key, and a key's segments hold
// only [A-Za-z0-9._-], never starting with a dot, for any valid ids.
func TestBlobKeysAreSafeAndDistinct(t *testing.T) {
	seen := map[string]string{}
	for _, ids := range [][3]string{{"a", "c", "f"}, {"a", "c_", "f"}, {"a", "c@x", "f"}, {"a", "c_40x", "f"}, {"a", "c:x", "f"}, {"a", "c_3Ax", "f"}, {"a.b", "c", "f"}, {"a", "b.c", "f"}} {
		for _, id := range ids {
			if !tidings.ValidID(id) {
				t.Fatalf("%q is not a valid id", id)
			}
		}
		k := tidings.BlobKey(ids[0], ids[1], ids[2])
		if prev, ok := seen[k]; ok {
			t.Errorf("ids %v and %s share the key %q", ids, prev, k)
		}
		seen[k] = strings.Join(ids[:], ",")
		parts := strings.Split(k, "/")
		if len(parts) != 3 {
			t.Errorf("key %q of %v has %d segments; want 3", k, ids, len(parts))
		}
		for _, p := range parts {
			if p == "" || p[0] == '.' || strings.Trim(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
				t.Errorf("key %q of %v has the segment %q", k, ids, p)
			}
		}
	}
}
