package postgres

import (
	"context"
	"io"
	"time"

	"github.com/tidings/tidings"
)

// FileService implements tidings.FileService: metadata in PostgreSQL,
// content in a tidings.BlobStore that every node reaches, uploads bounded
// by the embedded tidings.UploadQuotas (set its fields before the first
// upload) as on SQLite. Its uploads in progress are this node's: those on
// other nodes are not seen until they are stored, so a quota may be
// overrun by what the other nodes are uploading at the same moment (at
// most the size limit per upload).
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

// mayUpload checks the right to upload to a conversation.
func (s *FileService) mayUpload(ctx context.Context, c tidings.Caller, convID string) error {
	if err := s.db.usable(); err != nil {
		return err
	}
	conv, err := loadConversation(ctx, s.db.pool, c, convID)
	if err != nil {
		return s.db.mapError(err)
	}
	return tidings.CanUploadFile(convID, conv)
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
	if err := s.mayUpload(ctx, c, convID); err != nil {
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
	err = s.db.update(ctx, func(tx *Tx) error {
		// Checked again: the caller may have been removed meanwhile. The
		// participant's row is locked (a share lock: uploads do not wait
		// for each other) so that a removal waits for the file to be in.
		// The app's server, no participant, uploads with no uploader.
		conv, err := loadConversation(tx.ctx, tx.tx, c, convID)
		if err != nil {
			return err
		}
		if err := tidings.CanUploadFile(convID, conv); err != nil {
			return err
		}
		f.CreatedAt = tx.now
		if c.Server {
			_, err = tx.exec(`INSERT INTO files (app_id, conversation_id, id, uploader_id, name, type, size, blob_key, created_at)
				VALUES ($1, $2, $3, '', $4, $5, $6, $7, $8)`, c.AppID, convID, f.ID, f.Name, f.Type, f.Size, key, tx.now)
			return err
		}
		var one int
		err = tx.queryRow(`SELECT 1 FROM participants WHERE app_id = $1 AND conversation_id = $2 AND user_id = $3 FOR SHARE`,
			c.AppID, convID, c.UserID).Scan(&one)
		if isNoRows(err) {
			return tidings.Errorf(tidings.EForbidden, "you do not take part in conversation %q", convID)
		}
		if err != nil {
			return err
		}
		_, err = tx.exec(`INSERT INTO files (app_id, conversation_id, id, uploader_id, name, type, size, blob_key, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, c.AppID, convID, f.ID, c.UserID, f.Name, f.Type, f.Size, key, tx.now)
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
	var used *int64
	var oldest *time.Time
	if err := u.db.queryRow(ctx, `SELECT sum(size)::bigint, min(created_at) FROM files
		WHERE app_id = $1 AND uploader_id = $2 AND created_at > $3`, appID, userID, since).Scan(&used, &oldest); err != nil {
		return 0, time.Time{}, err
	}
	var bytes int64
	if used != nil {
		bytes = *used
	}
	if oldest == nil {
		return bytes, time.Time{}, nil
	}
	return bytes, *oldest, nil
}

func (u fileUsage) AppFileBytes(ctx context.Context, appID string) (int64, error) {
	var used *int64
	if err := u.db.queryRow(ctx, `SELECT sum(size)::bigint FROM files WHERE app_id = $1`, appID).Scan(&used); err != nil {
		return 0, err
	}
	if used == nil {
		return 0, nil
	}
	return *used, nil
}

// removeChunk is how many files one transaction of RemoveUnattached
// removes at most.
const removeChunk = 500

// RemoveUnattached removes the files uploaded more than grace ago that no
// message refers to (a file is attached once a message sent or edited
// refers to it, and stays so), and returns how many it removed. Nodes may
// run it at the same time: each removes what the others have not.
func (s *FileService) RemoveUnattached(ctx context.Context, grace time.Duration) (int, error) {
	total := 0
	for {
		var keys []string
		err := s.db.update(ctx, func(tx *Tx) error {
			keys = keys[:0]
			rows, err := tx.query(`DELETE FROM files WHERE (app_id, conversation_id, id) IN
				(SELECT app_id, conversation_id, id FROM files WHERE NOT attached AND created_at < $1
					LIMIT $2 FOR UPDATE SKIP LOCKED)
				AND NOT attached
				RETURNING blob_key`, tx.now.Add(-grace), removeChunk)
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
		if len(keys) < removeChunk {
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
	if _, err := readable(ctx, s.db, c, convID); err != nil {
		return nil, "", err
	}
	f := &tidings.File{ID: fileID, ConversationID: convID}
	var key string
	err = s.db.queryRow(ctx, `SELECT uploader_id, name, type, size, blob_key, created_at FROM files
		WHERE app_id = $1 AND conversation_id = $2 AND id = $3`, c.AppID, convID, fileID).
		Scan(&f.UploaderID, &f.Name, &f.Type, &f.Size, &key, &f.CreatedAt)
	if isNoRows(err) {
		return nil, "", tidings.ErrFileNotFound(convID, fileID)
	}
	if err != nil {
		return nil, "", err
	}
	f.CreatedAt = f.CreatedAt.UTC()
	return f, key, nil
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
