package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/disk"
	"github.com/tidings/tidings/s3"
)

// checkBlobs checks a --blobs value: empty, or an s3:// URL.
func checkBlobs(s string) error {
	if s == "" || strings.HasPrefix(strings.ToLower(s), "s3://") {
		return nil
	}
	return errors.New("--blobs must be empty (files under --data) or an S3 URL: s3://BUCKET[/PREFIX]?endpoint=HOST")
}

// openBlobs returns where uploaded files are kept: --blobs, or the
// directory files/ of the data directory. For the disk, it first removes
// the partial files of uploads cut short by a crash (no upload runs yet);
// for S3, it checks that the bucket can be reached.
func openBlobs(ctx context.Context, cfg config, dataDir string) (tidings.BlobStore, string, error) {
	if cfg.Blobs == "" {
		dir := filepath.Join(dataDir, filesDir)
		blobs := disk.NewBlobStore(dir)
		if err := blobs.RemoveTemp(); err != nil {
			return nil, "", err
		}
		return blobs, dir, nil
	}
	blobs, err := s3.Open(cfg.Blobs)
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := blobs.Check(ctx); err != nil {
		return nil, "", err
	}
	return blobs, redactURL(cfg.Blobs), nil
}
