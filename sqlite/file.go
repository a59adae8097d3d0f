package sqlite

import (
	"context"
	"database/sql"
	"io"
	"time"

	"github.com/tidings/tidings"
)

// FileService implements tidings.FileService: metadata in SQLite, content
// in a tidings.BlobStore, uploads bounded by the embedded
// tidings.UploadQuotas (set its fields before the first upload).
type FileService struct {
	db    *DB
	blobs tidings.BlobStore
	tidings.UploadQuotas
}

var _ tidings.FileService = (*FileService)(nil)

// NewFileService returns the file service of db; maxFileBytes bounds each
// file (0: tidings.DefaultMaxFileBytes).
func NewFileService(db *DB, blobs tidings.BlobStore, maxFileBytes int64) *FileService {
	return &FileService{db: db, blobs: blobs, UploadQuotas: tidings.UploadQuotas{MaxFileBytes: maxFileBytes}}
}

func (s *FileService) CreateFile(ctx context.Context, convID, name, contentType string, r io.Reader) (*tidings.File, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	if name, err = tidings.FileName(name); err != nil {
		return nil, err
	}
	contentType, err = tidings.NormalizeMediaType("the file's content type", contentType)
	if err != nil {
		return nil, err
	}
	// Check the right to upload before reading anything.
	if err := s.db.updateConv(ctx, c.AppID, convID, func(tx *Tx) error {
		conv, err := tx.conversation(c, convID)
		if err != nil {
			return err
		}
		return tidings.CanUploadFile(convID, conv)
	}); err != nil {
		return nil, err
	}
	res, err := s.Reserve(ctx, c, s.db.Now(), fileUsage{s.db})
	if err != nil {
		return nil, err
	}
	defer res.Release() // once the file is in the table, where the quotas see it
	f := &tidings.File{ID: tidings.NewID(), ConversationID: convID, UploaderID: c.UserID, Name: name, Type: contentType}
	key := tidings.BlobKey(c.AppID, convID, f.ID)
	if f.Size, err = s.blobs.Put(ctx, key, r, res.Limit); err != nil {
		return nil, res.PutError(err)
	}
	err = s.db.updateConv(ctx, c.AppID, convID, func(tx *Tx) error {
		// Checked again: the caller may have been removed meanwhile.
		conv, err := tx.conversation(c, convID)
		if err != nil {
			return err
		}
		if err := tidings.CanUploadFile(convID, conv); err != nil {
			return err
		}
		f.CreatedAt = tx.now
		_, err = tx.exec(`INSERT INTO files (app_id, conversation_id, id, uploader_id, name, type, size, blob_key, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, c.AppID, convID, f.ID, c.UserID, f.Name, f.Type, f.Size, key, micros(tx.now))
		return err
	})
	if err != nil {
		s.blobs.Delete(context.Background(), key)
		return nil, err
	}
	return f, nil
}

// fileUsage reads what the upload quotas count (tidings.UploadUsage).
type fileUsage struct{ db *DB }

func (u fileUsage) UserUploads(ctx context.Context, appID, userID string, since time.Time) (int64, time.Time, error) {
	var used, oldest sql.NullInt64
	if err := u.db.queryRow(ctx, `SELECT SUM(size), MIN(created_at) FROM files
		WHERE app_id = ? AND uploader_id = ? AND created_at > ?`, appID, userID, micros(since)).Scan(&used, &oldest); err != nil {
		return 0, time.Time{}, err
	}
	if !oldest.Valid {
		return used.Int64, time.Time{}, nil
	}
	return used.Int64, fromMicros(oldest.Int64), nil
}

func (u fileUsage) AppFileBytes(ctx context.Context, appID string) (int64, error) {
	var used sql.NullInt64
	err := u.db.queryRow(ctx, `SELECT SUM(size) FROM files WHERE app_id = ?`, appID).Scan(&used)
	return used.Int64, err
}

// RemoveUnattached removes the files uploaded more than grace ago that no
// message refers to (a file is attached once a message sent or edited
// refers to it, and stays so), and returns how many it removed.
func (s *FileService) RemoveUnattached(ctx context.Context, grace time.Duration) (int, error) {
	total := 0
	for {
		var keys []string
		err := s.db.updateAside(ctx, func(tx *Tx) error {
			keys = keys[:0]
			rows, err := tx.query(`DELETE FROM files WHERE (app_id, conversation_id, id) IN
				(SELECT app_id, conversation_id, id FROM files WHERE attached = 0 AND created_at < ? LIMIT 500)
				RETURNING blob_key`, micros(tx.now.Add(-grace)))
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var k string
				if err := rows.Scan(&k); err != nil {
					return err
				}
				keys = append(keys, k)
			}
			return rows.Err()
		})
		if err != nil {
			return total, err
		}
		// The rows are gone, so no message can attach these files any more:
		// their contents can go too.
		for _, k := range keys {
			if err := s.blobs.Delete(ctx, k); err != nil {
				return total, err
			}
		}
		total += len(keys)
		if len(keys) < 500 {
			return total, nil
		}
	}
}

func (s *FileService) FindFile(ctx context.Context, convID, fileID string) (*tidings.File, error) {
	f, _, err := s.find(ctx, convID, fileID)
	return f, err
}

func (s *FileService) find(ctx context.Context, convID, fileID string) (*tidings.File, string, error) {
	c, err := actingCaller(ctx)
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
		return nil, "", tidings.ErrFileNotFound(convID, fileID)
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
