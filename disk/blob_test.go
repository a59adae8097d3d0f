package disk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/disk"
)

func put(t *testing.T, s *disk.BlobStore, key, content string) {
	t.Helper()
	n, err := s.Put(context.Background(), key, strings.NewReader(content), 1<<20)
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	if n != int64(len(content)) {
		t.Fatalf("Put(%q) = %d bytes, want %d", key, n, len(content))
	}
}

func read(t *testing.T, s *disk.BlobStore, key string) string {
	t.Helper()
	rc, err := s.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return string(b)
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if got := tidings.ErrorCode(err); got != code {
		t.Fatalf("%s: error %v (code %q), want code %q", what, err, got, code)
	}
}

// files lists the regular files under dir, relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == dir {
			return nil
		}
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPutOpenDelete(t *testing.T) {
	s := disk.NewBlobStore(filepath.Join(t.TempDir(), "files"))
	ctx := context.Background()

	put(t, s, "app1/conv1/file1", "hello")
	put(t, s, "file2", "")
	if got := read(t, s, "app1/conv1/file1"); got != "hello" {
		t.Errorf("content = %q, want %q", got, "hello")
	}
	if got := read(t, s, "file2"); got != "" {
		t.Errorf("content of empty blob = %q", got)
	}

	// Put replaces.
	put(t, s, "app1/conv1/file1", "bye")
	if got := read(t, s, "app1/conv1/file1"); got != "bye" {
		t.Errorf("content after second Put = %q, want %q", got, "bye")
	}

	if err := s.Delete(ctx, "app1/conv1/file1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := s.Open(ctx, "app1/conv1/file1")
	wantCode(t, "Open after Delete", err, tidings.ENotFound)
	if got := read(t, s, "file2"); got != "" {
		t.Errorf("other blob changed: %q", got)
	}
}

func TestOpenUnknown(t *testing.T) {
	s := disk.NewBlobStore(filepath.Join(t.TempDir(), "files"))
	_, err := s.Open(context.Background(), "nothing-here")
	wantCode(t, "Open of unknown key in a missing directory", err, tidings.ENotFound)

	put(t, s, "a/b", "x")
	for _, key := range []string{"a/c", "a", "b"} {
		_, err := s.Open(context.Background(), key)
		wantCode(t, fmt.Sprintf("Open(%q)", key), err, tidings.ENotFound)
	}
}

func TestDeleteIsIdempotent(t *testing.T) {
	s := disk.NewBlobStore(filepath.Join(t.TempDir(), "files"))
	ctx := context.Background()
	if err := s.Delete(ctx, "never-stored"); err != nil {
		t.Fatalf("Delete of unknown key: %v", err)
	}
	put(t, s, "k", "v")
	for i := range 2 {
		if err := s.Delete(ctx, "k"); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	// A key that is only the prefix of others holds no blob; deleting it
	// leaves the others alone.
	put(t, s, "dir/blob", "v")
	if err := s.Delete(ctx, "dir"); err != nil {
		t.Fatalf("Delete of a prefix: %v", err)
	}
	if got := read(t, s, "dir/blob"); got != "v" {
		t.Errorf("blob under deleted prefix = %q", got)
	}
}

func TestPutOverLimitKeepsNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "files")
	s := disk.NewBlobStore(dir)
	ctx := context.Background()

	// Exactly the limit is fine.
	if n, err := s.Put(ctx, "exact", strings.NewReader("12345"), 5); err != nil || n != 5 {
		t.Fatalf("Put of max bytes = %d, %v", n, err)
	}
	_, err := s.Put(ctx, "big", strings.NewReader("123456"), 5)
	wantCode(t, "Put over the limit", err, tidings.ETooLarge)
	_, err = s.Open(ctx, "big")
	wantCode(t, "Open after a refused Put", err, tidings.ENotFound)

	// Replacing a blob with content over the limit keeps the old one.
	_, err = s.Put(ctx, "exact", strings.NewReader("too long"), 5)
	wantCode(t, "replacing Put over the limit", err, tidings.ETooLarge)
	if got := read(t, s, "exact"); got != "12345" {
		t.Errorf("blob after refused replacement = %q", got)
	}

	got := files(t, dir)
	if len(got) != 1 {
		t.Errorf("files on disk = %q, want only the blob \"exact\"", got)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		n := min(len(p), r.n)
		r.n -= n
		return n, nil
	}
	return 0, errors.New("connection reset")
}

func TestPutFailureKeepsNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "files")
	s := disk.NewBlobStore(dir)
	ctx := context.Background()

	if _, err := s.Put(ctx, "broken", &failingReader{n: 100}, 1<<20); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Put(cancelled, "cancelled", strings.NewReader("x"), 1<<20); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context: %v, want context.Canceled", err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("files left on disk: %q", got)
	}
}

func TestKeysCannotEscape(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "store", "files")
	s := disk.NewBlobStore(dir)
	ctx := context.Background()
	secret := filepath.Join(root, "secret")
	if err := os.WriteFile(secret, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}

	bad := []string{
		"", ".", "..", "../secret", "../../secret", "a/../../../secret", "a/..", "./a",
		"a/./b", "/etc/passwd", "/a", "a/", "a//b", `..\secret`, `a\b`, "C:secret",
		"a b", "a\x00b", "%2e%2e/secret", "ü", "a/~/b", strings.Repeat("a", 256),
		strings.Repeat("a/", 600) + "a",
	}
	for _, key := range bad {
		_, err := s.Put(ctx, key, strings.NewReader("overwritten"), 1<<20)
		wantCode(t, fmt.Sprintf("Put(%q)", key), err, tidings.EInvalid)
		_, err = s.Open(ctx, key)
		wantCode(t, fmt.Sprintf("Open(%q)", key), err, tidings.EInvalid)
		err = s.Delete(ctx, key)
		wantCode(t, fmt.Sprintf("Delete(%q)", key), err, tidings.EInvalid)
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != "keep" {
		t.Fatalf("file outside the store: %q, %v", b, err)
	}
	if got := files(t, root); len(got) != 1 {
		t.Errorf("files = %q, want only the secret", got)
	}

	// Dots are fine inside a segment.
	put(t, s, "a..b/.hidden/x.y-z_1", "ok")
	if got := read(t, s, "a..b/.hidden/x.y-z_1"); got != "ok" {
		t.Errorf("content = %q", got)
	}
}

func TestBlobsFanOut(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "files")
	s := disk.NewBlobStore(dir)
	for i := range 64 {
		put(t, s, fmt.Sprintf("file%d", i), "x")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	subdirs := 0
	for _, e := range entries {
		if !e.IsDir() {
			t.Errorf("%s is a file directly in the store's directory", e.Name())
		}
		subdirs++
	}
	if subdirs < 10 {
		t.Errorf("64 blobs went into %d subdirectories, want them spread out", subdirs)
	}
}

func TestConcurrentPutsOfOneKey(t *testing.T) {
	s := disk.NewBlobStore(filepath.Join(t.TempDir(), "files"))
	contents := make([]string, 8)
	for i := range contents {
		contents[i] = strings.Repeat(string(rune('a'+i)), 64<<10)
	}
	var wg sync.WaitGroup
	for _, c := range contents {
		wg.Go(func() {
			if _, err := s.Put(context.Background(), "same", bytes.NewReader([]byte(c)), 1<<20); err != nil {
				t.Errorf("Put: %v", err)
			}
		})
	}
	wg.Wait()
	got := read(t, s, "same")
	for _, c := range contents {
		if got == c {
			return
		}
	}
	t.Errorf("content is a mix of the writes (%d bytes)", len(got))
}

// Partial files left by a Put that a crash interrupted are removed at the
// next start; blobs are not touched.
func TestRemoveTempClearsPartialPuts(t *testing.T) {
	dir := t.TempDir()
	s := disk.NewBlobStore(dir)
	if err := s.RemoveTemp(); err != nil {
		t.Fatalf("RemoveTemp with no directory yet: %v", err)
	}
	if _, err := s.Put(context.Background(), "a/b", strings.NewReader("kept"), -1); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"put-123", "put-456"} {
		if err := os.WriteFile(filepath.Join(dir, "tmp", name), []byte("half a fi"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RemoveTemp(); err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir(filepath.Join(dir, "tmp")); err != nil || len(entries) != 0 {
		t.Errorf("tmp holds %d entries (%v); want none", len(entries), err)
	}
	rc, err := s.Open(context.Background(), "a/b")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "kept" {
		t.Errorf("blob = %q", b)
	}
}

// Uploaded files are this user's only, even in a directory made
// beforehand and open to everyone (a mounted volume).
func TestFilesArePrivateInAnOpenDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "files")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := disk.NewBlobStore(dir)
	put(t, s, "app1/conv1/file1", "secret")
	found := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		found++
		fi, err := d.Info()
		if err == nil && fi.Mode().Perm() != 0o600 {
			t.Errorf("uploaded file %s has mode %04o, want 0600", path, fi.Mode().Perm())
		}
		return err
	})
	if err != nil || found != 1 {
		t.Fatalf("found %d files (%v), want 1", found, err)
	}
}
