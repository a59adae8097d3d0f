package sqlite

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/tidings/tidings"
)

// FileService implements tidings.FileService: metadata in SQLite, content
// in a tidings.BlobStore.
type FileService struct {
	db       *DB
	blobs    tidings.BlobStore
	maxBytes int64
}

var _ tidings.FileService = (*FileService)(nil)

// DefaultMaxFileBytes is the upload limit when none is configured.
const DefaultMaxFileBytes = 25 << 20

func NewFileService(db *DB, blobs tidings.BlobStore, maxFileBytes int64) *FileService {
	if maxFileBytes <= 0 {
		maxFileBytes = DefaultMaxFileBytes
	}
	return &FileService{db: db, blobs: blobs, maxBytes: maxFileBytes}
}

func (s *FileService) CreateFile(ctx context.Context, convID, name, contentType string, r io.Reader) (*tidings.File, error) {
	c, err := userCaller(ctx)
	if err != nil {
		return nil, err
	}
	name = path.Base(strings.ReplaceAll(strings.TrimSpace(name), "\\", "/"))
	if name == "" || name == "." || name == "/" || len(name) > 255 || !utf8.ValidString(name) {
		return nil, tidings.Errorf(tidings.EInvalid, "a file needs a name of 1 to 255 bytes")
	}
	contentType, err = tidings.NormalizeMediaType("the file's content type", contentType)
	if err != nil {
		return nil, err
	}
	// Check the right to upload before reading anything.
	if err := s.db.update(ctx, func(tx *Tx) error {
		_, err := tx.memberOf(c, convID, tidings.PermSend, false)
		return err
	}); err != nil {
		return nil, err
	}
	f := &tidings.File{ID: tidings.NewID(), ConversationID: convID, UploaderID: c.UserID, Name: name, Type: contentType}
	key := blobKey(c.AppID, convID, f.ID)
	if f.Size, err = s.blobs.Put(ctx, key, r, s.maxBytes); err != nil {
		return nil, err
	}
	err = s.db.update(ctx, func(tx *Tx) error {
		// Checked again: the caller may have been removed meanwhile.
		if _, err := tx.memberOf(c, convID, tidings.PermSend, false); err != nil {
			return err
		}
		f.CreatedAt = tx.now
		_, err := tx.exec(`INSERT INTO files (app_id, conversation_id, id, uploader_id, name, type, size, blob_key, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, c.AppID, convID, f.ID, c.UserID, f.Name, f.Type, f.Size, key, micros(tx.now))
		return err
	})
	if err != nil {
		s.blobs.Delete(context.Background(), key)
		return nil, err
	}
	return f, nil
}

// blobKey is where a file's content is kept: per app and conversation.
func blobKey(appID, convID, fileID string) string {
	return safeSegment(appID) + "/" + safeSegment(convID) + "/" + fileID
}

// safeSegment maps an id to a string of [A-Za-z0-9._-] that no two ids
// share (ids may contain @ and :, which are escaped).
func safeSegment(id string) string {
	var b strings.Builder
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, "_%02X", r)
		}
	}
	return b.String()
}

func (s *FileService) FindFile(ctx context.Context, convID, fileID string) (*tidings.File, error) {
	f, _, err := s.find(ctx, convID, fileID)
	return f, err
}

func (s *FileService) find(ctx context.Context, convID, fileID string) (*tidings.File, string, error) {
	c, err := userCaller(ctx)
	if err != nil {
		return nil, "", err
	}
	if _, err := readable(ctx, s.db.read, c, convID); err != nil {
		return nil, "", err
	}
	f := &tidings.File{ID: fileID, ConversationID: convID}
	var key string
	var created int64
	err = s.db.queryRow(ctx, `SELECT uploader_id, name, type, size, blob_key, created_at FROM files
		WHERE app_id = ? AND conversation_id = ? AND id = ?`, c.AppID, convID, fileID).
		Scan(&f.UploaderID, &f.Name, &f.Type, &f.Size, &key, &created)
	if isNoRows(err) {
		return nil, "", tidings.Errorf(tidings.ENotFound, "file %q not found in conversation %q", fileID, convID)
	}
	f.CreatedAt = fromMicros(created)
	return f, key, err
}

func (s *FileService) OpenFile(ctx context.Context, convID, fileID string) (*tidings.File, io.ReadCloser, error) {
	f, key, err := s.find(ctx, convID, fileID)
	if err != nil {
		return nil, nil, err
	}
	rc, err := s.blobs.Open(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	return f, rc, nil
}
