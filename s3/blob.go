// Package s3 implements tidings.BlobStore on S3-compatible object storage
// (AWS S3, MinIO, Cloudflare R2, Ceph…): where a cluster of Tidings nodes
// keeps uploaded files, so that every node can serve them. A single node
// keeps them on its disk (package disk) and needs none of this.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/tidings/tidings"
)

// BlobStore keeps each blob as one object of a bucket, under a prefix.
//
// Put writes the content to a temporary file first, so that it knows the
// size before uploading (one request for small files, a multipart upload
// for large ones) and stores nothing when the content is over the limit:
// an object is either absent or complete, as S3 makes a PUT visible only
// once it has completed.
type BlobStore struct {
	client *minio.Client
	bucket string
	prefix string // "" or ends with "/"
	// TempDir is where Put spools contents before uploading them
	// (default: the system's).
	TempDir string
}

var _ tidings.BlobStore = (*BlobStore)(nil)

// Open returns a store for a URL of the form
//
//	s3://BUCKET[/PREFIX]?endpoint=HOST[:PORT][&region=R][&insecure=true][&path-style=true]
//
// endpoint defaults to s3.amazonaws.com; insecure=true speaks plain HTTP
// (a MinIO on the same network); path-style=true puts the bucket in the
// path rather than the host name, as most S3-compatible servers need.
// Credentials are never part of the URL, which gets logged: they come from
// the environment, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or
// MINIO_ACCESS_KEY and MINIO_SECRET_KEY), else from the AWS credentials
// file or the machine's IAM role. The bucket must exist.
func Open(rawURL string) (*BlobStore, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return nil, fmt.Errorf("s3: %q is not an s3://BUCKET[/PREFIX]?endpoint=HOST URL", redact(rawURL))
	}
	if u.User != nil {
		return nil, errors.New("s3: credentials do not belong in the URL (it is logged): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	q := u.Query()
	endpoint := q.Get("endpoint")
	if endpoint == "" {
		endpoint = "s3.amazonaws.com"
	}
	insecure, err := boolParam(q, "insecure")
	if err != nil {
		return nil, err
	}
	pathStyle, err := boolParam(q, "path-style")
	if err != nil {
		return nil, err
	}
	lookup := minio.BucketLookupDNS
	if pathStyle {
		lookup = minio.BucketLookupPath
	}
	creds := credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{}, &credentials.EnvMinio{}, &credentials.FileAWSCredentials{}, &credentials.IAM{},
	})
	client, err := minio.New(endpoint, &minio.Options{
		Creds: creds, Secure: !insecure, Region: q.Get("region"), BucketLookup: lookup,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	return New(client, u.Host, strings.TrimPrefix(u.Path, "/")), nil
}

// New returns a store on bucket of an S3 client, keeping blobs under
// prefix (may be empty).
func New(client *minio.Client, bucket, prefix string) *BlobStore {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &BlobStore{client: client, bucket: bucket, prefix: prefix}
}

func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("s3: %s=%q is not true or false", name, v)
	}
	return b, nil
}

// redact drops any user information from a URL for an error message.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	return u.String()
}

// Check tells whether the bucket can be reached and exists: call it at
// startup so that a wrong endpoint, bucket or credential is told at once
// rather than at the first upload.
func (s *BlobStore) Check(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("s3: bucket %s: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("s3: bucket %s does not exist", s.bucket)
	}
	return nil
}

// Put stores the content of r under key, replacing any blob there, and
// returns its size. If r holds more than max bytes (a negative max: no
// limit) it stores nothing and returns an ETooLarge error.
func (s *BlobStore) Put(ctx context.Context, key string, r io.Reader, max int64) (int64, error) {
	if err := validKey(key); err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(s.TempDir, "tidings-s3-*")
	if err != nil {
		return 0, fmt.Errorf("s3: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	src := r
	if max >= 0 {
		// One byte more than allowed tells "exactly max" from "more".
		src = io.LimitReader(r, max+1)
	}
	size, err := io.Copy(f, &ctxReader{ctx: ctx, r: src})
	if err != nil {
		return 0, fmt.Errorf("s3: spool %s: %w", key, err)
	}
	if max >= 0 && size > max {
		return 0, tidings.Errorf(tidings.ETooLarge, "file is larger than the limit of %d bytes", max)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("s3: %w", err)
	}
	_, err = s.client.PutObject(ctx, s.bucket, s.prefix+key, f, size,
		minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return 0, fmt.Errorf("s3: put %s: %w", key, err)
	}
	return size, nil
}

// Open returns the content of the blob under key, or an ENotFound error.
func (s *BlobStore) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := validKey(key); err != nil {
		return nil, err
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("s3: get %s: %w", key, err)
	}
	// GetObject is lazy: Stat sends the request and tells a missing key.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil, tidings.Errorf(tidings.ENotFound, "no blob %q", key)
		}
		return nil, fmt.Errorf("s3: get %s: %w", key, err)
	}
	return obj, nil
}

// Delete removes the blob under key; a key with no blob is not an error.
func (s *BlobStore) Delete(ctx context.Context, key string) error {
	if err := validKey(key); err != nil {
		return err
	}
	err := s.client.RemoveObject(ctx, s.bucket, s.prefix+key, minio.RemoveObjectOptions{})
	if err != nil && minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		return fmt.Errorf("s3: delete %s: %w", key, err)
	}
	return nil
}

// validKey accepts the keys the disk store accepts: "/"-separated
// segments, none empty, "." or "..", at most 1024 bytes in all.
func validKey(key string) error {
	if key == "" || len(key) > 1024 {
		return tidings.Errorf(tidings.EInvalid, "blob key must be 1 to 1024 bytes long")
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return tidings.Errorf(tidings.EInvalid, "blob key %q is not valid", key)
		}
	}
	return nil
}

// ctxReader stops a copy when its context is done.
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
