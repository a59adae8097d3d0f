package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/tidings/tidings/client"
)

// A partial upload left by a crash (kill -9 in the middle of an upload) is
// removed when the server starts again.
func TestServeRemovesPartialUploads(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, filesDir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "put-123456"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stop := startServe(t, dir)
	defer stop()
	if entries, err := os.ReadDir(tmp); err != nil || len(entries) != 0 {
		t.Errorf("files/tmp holds %d entries (%v) once the server listens; want none", len(entries), err)
	}
}

// With --blobs s3://…, uploaded files are kept in the bucket, not under
// --data, and downloaded from there.
func TestServeBlobsOnS3(t *testing.T) {
	backend := s3mem.New()
	if err := backend.CreateBucket("files"); err != nil {
		t.Fatal(err)
	}
	fake := httptest.NewServer(gofakes3.New(backend).Server())
	defer fake.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "test-key")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	blobs := "s3://files/tidings?endpoint=" + strings.TrimPrefix(fake.URL, "http://") + "&insecure=true&path-style=true&region=us-east-1"

	dir := t.TempDir()
	url, stop := startServe(t, dir, "--dev", "--blobs", blobs)
	defer stop()
	tok := mintDevToken(t, url, "alice")
	callAPI(t, url, tok, "POST", "/v1/conversations", map[string]any{"id": "notes"}, nil, http.StatusCreated)
	cl, err := client.New(url, client.WithToken(tok), client.WithMode(client.ManualMode))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	f, err := cl.UploadFile(ctx, "notes", "hello.txt", "text/plain", strings.NewReader("hello, bucket"))
	if err != nil {
		t.Fatal(err)
	}
	rc, _, err := cl.DownloadFile(ctx, "notes", f.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "hello, bucket" {
		t.Errorf("downloaded %q", got)
	}
	list, err := backend.ListBucket("files", &gofakes3.Prefix{}, gofakes3.ListBucketPage{})
	if err != nil || len(list.Contents) != 1 || !strings.HasPrefix(list.Contents[0].Key, "tidings/") {
		t.Errorf("the bucket holds %v (%v); want the one file under tidings/", list, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, filesDir)); len(entries) != 0 {
		t.Errorf("files/ in --data holds %d entries; want none with --blobs", len(entries))
	}

	// A bucket that does not exist stops serve before it listens.
	r := runCLI(t, nil, "serve", "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--blobs", strings.Replace(blobs, "files", "nosuch", 1))
	if r.code != exitFailure || !strings.Contains(r.stderr, "nosuch does not exist") {
		t.Errorf("serve with a missing bucket: exit code %d, stderr:\n%s", r.code, r.stderr)
	}
	r = runCLI(t, nil, "serve", "--data", t.TempDir(), "--blobs", "/srv/files")
	if r.code != exitUsage {
		t.Errorf("serve --blobs /srv/files: exit code %d, want %d", r.code, exitUsage)
	}
}
