// Package disk implements tidings.BlobStore on a local directory: the
// default home of uploaded files, under the data directory.
package disk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/tidings/tidings"
)

// Limits on keys. A segment is one file or directory name, so it must fit
// the name limit of common file systems.
const (
	MaxKeyLen     = 1024
	MaxSegmentLen = 255
)

// tmpDir is the subdirectory of the store's directory where Put writes
// before renaming. Blobs always live under a two-character fan-out
// directory (see BlobStore.path), so no key can collide with it.
const tmpDir = "tmp"

// BlobStore keeps each blob in its own file under a directory.
//
// A key is made of one or more segments separated by "/"; a segment
// consists of letters, digits, '.', '_' and '-' and is neither "." nor
// "..". The blob with key k is stored at dir/hh/k, where hh is the first
// two hex digits of the SHA-256 of k: spreading blobs over 256
// subdirectories keeps directories small whatever the shape of the keys.
//
// Put is atomic: a blob is either absent or complete, even after a crash
// (a crash may leave a partial temporary file in dir/tmp, never a partial
// blob). The zero value is not usable; call NewBlobStore.
type BlobStore struct {
	dir string
}

var _ tidings.BlobStore = (*BlobStore)(nil)

// NewBlobStore returns a store keeping its blobs under dir, which is
// created when the first blob is stored.
func NewBlobStore(dir string) *BlobStore {
	return &BlobStore{dir: dir}
}

// Put stores the content of r under key, replacing any blob already there,
// and returns its size. If r holds more than max bytes (a negative max
// means no limit) it stores nothing and returns an ETooLarge error. The
// blob is synced to disk before Put returns. Put stops early when ctx is
// done.
func (s *BlobStore) Put(ctx context.Context, key string, r io.Reader, max int64) (size int64, err error) {
	if err := validKey(key); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	dst := s.path(key)
	tmp := filepath.Join(s.dir, tmpDir)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return 0, fmt.Errorf("disk: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return 0, fmt.Errorf("disk: %w", err)
	}
	f, err := os.CreateTemp(tmp, "put-*")
	if err != nil {
		return 0, fmt.Errorf("disk: %w", err)
	}
	// Until the rename succeeds, any failure removes the temporary file.
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			os.Remove(f.Name())
		}
	}()

	src := &ctxReader{ctx: ctx, r: r}
	if max >= 0 {
		// Read one byte more than allowed to tell "exactly max" from "more".
		size, err = io.Copy(f, io.LimitReader(src, max+1))
	} else {
		size, err = io.Copy(f, src)
	}
	if err != nil {
		return 0, fmt.Errorf("disk: write %s: %w", key, err)
	}
	if max >= 0 && size > max {
		return 0, tidings.Errorf(tidings.ETooLarge, "file is larger than the limit of %d bytes", max)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("disk: sync %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("disk: close %s: %w", key, err)
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return 0, fmt.Errorf("disk: %w", err)
	}
	renamed = true
	// Make the rename itself durable.
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return 0, fmt.Errorf("disk: sync directory of %s: %w", key, err)
	}
	return size, nil
}

// RemoveTemp empties the directory where Put writes before renaming, of
// the partial files a crash (or kill -9) left in the middle of a Put. Call
// it when the program starts, before the first Put.
func (s *BlobStore) RemoveTemp() error {
	entries, err := os.ReadDir(filepath.Join(s.dir, tmpDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.dir, tmpDir, e.Name())); err != nil {
			return fmt.Errorf("disk: %w", err)
		}
	}
	return nil
}

// Open returns the content of the blob stored under key, or an ENotFound
// error if there is none. The caller closes it.
func (s *BlobStore) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := validKey(key); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, tidings.Errorf(tidings.ENotFound, "no blob %q", key)
	} else if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	// A key naming a directory (the prefix of other keys) is not a blob.
	if fi, err := f.Stat(); err != nil {
		f.Close()
		return nil, fmt.Errorf("disk: %w", err)
	} else if !fi.Mode().IsRegular() {
		f.Close()
		return nil, tidings.Errorf(tidings.ENotFound, "no blob %q", key)
	}
	return f, nil
}

// Delete removes the blob stored under key. Deleting a key that holds no
// blob is not an error.
func (s *BlobStore) Delete(ctx context.Context, key string) error {
	if err := validKey(key); err != nil {
		return err
	}
	p := s.path(key)
	// A key naming a directory (the prefix of other keys) holds no blob:
	// leave the directory alone.
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	if fi.IsDir() {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("disk: %w", err)
	}
	return nil
}

// path returns where the blob with a valid key is stored.
func (s *BlobStore) path(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(s.dir, hex.EncodeToString(sum[:1]), filepath.FromSlash(key))
}

// validKey returns an EInvalid error unless key is made of "/"-separated
// segments of letters, digits, '.', '_' and '-', none of them empty, "."
// or "..". Such a key can only name a path below the store's directory.
func validKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return tidings.Errorf(tidings.EInvalid, "blob key must be 1 to %d bytes long", MaxKeyLen)
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." || len(seg) > MaxSegmentLen {
			return tidings.Errorf(tidings.EInvalid, "blob key %q is not valid", key)
		}
		for i := 0; i < len(seg); i++ {
			if c := seg[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
				return tidings.Errorf(tidings.EInvalid, "blob key %q is not valid", key)
			}
		}
	}
	return nil
}

// syncDir flushes a directory's entries to disk. Windows cannot sync a
// directory and does not need to.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ctxReader fails reads once its context is done, so that a long upload
// stops when its request is abandoned.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
