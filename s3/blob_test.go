package s3_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/s3"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/storetest"
)

// fakeS3 starts an S3-compatible server on 127.0.0.1 with an empty bucket
// "files", and returns the URL of a store on it under the prefix "tidings".
func fakeS3(t *testing.T) (storeURL string, backend *s3mem.Backend) {
	t.Helper()
	backend = s3mem.New()
	if err := backend.CreateBucket("files"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "test-key")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	return "s3://files/tidings?endpoint=" + strings.TrimPrefix(srv.URL, "http://") + "&insecure=true&path-style=true&region=us-east-1", backend
}

func openStore(t *testing.T, u string) *s3.BlobStore {
	t.Helper()
	s, err := s3.Open(u)
	if err != nil {
		t.Fatal(err)
	}
	s.TempDir = t.TempDir()
	if err := s.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBlobStore: what the disk store promises, on S3: a blob stored is read
// back whole, an unknown key is not_found, a blob over the limit is not
// stored at all, deleting twice is fine, and blobs live under the prefix.
func TestBlobStore(t *testing.T) {
	u, backend := fakeS3(t)
	s := openStore(t, u)
	ctx := context.Background()

	content := bytes.Repeat([]byte("tidings "), 1000)
	n, err := s.Put(ctx, "app/conv/f1", bytes.NewReader(content), int64(len(content)))
	if err != nil || n != int64(len(content)) {
		t.Fatalf("put exactly the limit: %d, %v", n, err)
	}
	rc, err := s.Open(ctx, "app/conv/f1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read back %d bytes (%v), want %d", len(got), err, len(content))
	}
	if _, err := backend.HeadObject("files", "tidings/app/conv/f1"); err != nil {
		t.Errorf("the object is not under the prefix: %v", err)
	}

	if _, err := s.Open(ctx, "app/conv/none"); tidings.ErrorCode(err) != tidings.ENotFound {
		t.Errorf("open unknown: %v, want not_found", err)
	}
	if _, err := s.Put(ctx, "app/conv/big", bytes.NewReader(content), int64(len(content))-1); tidings.ErrorCode(err) != tidings.ETooLarge {
		t.Errorf("put over the limit: %v, want too_large", err)
	}
	if _, err := s.Open(ctx, "app/conv/big"); tidings.ErrorCode(err) != tidings.ENotFound {
		t.Errorf("a blob over the limit was kept: %v", err)
	}
	for range 2 {
		if err := s.Delete(ctx, "app/conv/f1"); err != nil {
			t.Fatalf("delete: %v", err)
		}
	}
	if _, err := s.Open(ctx, "app/conv/f1"); tidings.ErrorCode(err) != tidings.ENotFound {
		t.Errorf("open deleted: %v, want not_found", err)
	}
	for _, key := range []string{"", "a/../b", "a//b", "./a"} {
		if _, err := s.Put(ctx, key, strings.NewReader("x"), -1); tidings.ErrorCode(err) != tidings.EInvalid {
			t.Errorf("put %q: %v, want invalid_argument", key, err)
		}
	}
}

// TestOpenRefusesWhatWouldLeak: credentials never go in the URL (it is
// logged), and a bad URL or a missing bucket is told at startup.
func TestOpenRefusesWhatWouldLeak(t *testing.T) {
	if _, err := s3.Open("s3://AKIA:secret@files?endpoint=127.0.0.1:9"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("credentials in the URL: %v", err)
	}
	for _, u := range []string{"files", "http://files", "s3://files?insecure=maybe"} {
		if _, err := s3.Open(u); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
	u, _ := fakeS3(t)
	s, err := s3.Open(strings.Replace(u, "s3://files", "s3://nobucket", 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "nobucket") {
		t.Errorf("missing bucket: %v", err)
	}
}

// TestFilesOnS3: the store conformance suite's file tests, with the
// contents on S3: uploads, downloads, limits and quotas behave as on disk.
func TestFilesOnS3(t *testing.T) {
	u, _ := fakeS3(t)
	storetest.TestFiles(t, func(t *testing.T, pub tidings.EventPublisher) storetest.Stores {
		dir := t.TempDir()
		db := sqlite.NewDB(filepath.Join(dir, "tidings.db"))
		db.Publisher = pub
		db.Logger = slog.New(slog.DiscardHandler)
		if err := db.Open(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		const maxFile = 4 << 10
		return storetest.Stores{
			Apps: sqlite.NewAppService(db), Users: sqlite.NewUserService(db),
			Conversations: sqlite.NewConversationService(db), Messages: sqlite.NewMessageService(db, 0),
			EventLog: sqlite.NewEventLog(db), Files: sqlite.NewFileService(db, openStore(t, u), maxFile),
			MaxFileBytes: maxFile,
		}
	})
}
