package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tidings/tidings"
)

// FileService implements tidings.FileService: metadata in SQLite, content
// in a tidings.BlobStore.
//
// Uploads are bounded three ways: each file by the size limit (ETooLarge);
// the bytes each user uploads within UserQuotaWindow by UserQuota; and the
// bytes an app stores in all by AppQuota (both ERateLimited, as a
// *tidings.RetryError). Uploads in progress count towards the quotas with
// the most they may still write, so that concurrent uploads cannot overrun
// them together.
type FileService struct {
	db       *DB
	blobs    tidings.BlobStore
	maxBytes int64

	// UserQuota bounds the bytes one user may upload within
	// UserQuotaWindow (0: no limit); AppQuota, the bytes an app may store
	// (0: no limit). Set them before the first upload.
	UserQuota       int64
	UserQuotaWindow time.Duration
	AppQuota        int64

	mu       sync.Mutex
	inFlight map[quotaKey]int64 // bytes reserved by uploads in progress
}

// quotaKey names what reserved bytes count towards: a user of an app, or
// the app itself (user "").
type quotaKey struct{ app, user string }

var _ tidings.FileService = (*FileService)(nil)

// DefaultMaxFileBytes is the upload limit when none is configured.
const DefaultMaxFileBytes = 25 << 20

// DefaultUserQuotaWindow is the window of UserQuota when none is set.
const DefaultUserQuotaWindow = 24 * time.Hour

func NewFileService(db *DB, blobs tidings.BlobStore, maxFileBytes int64) *FileService {
	if maxFileBytes <= 0 {
		maxFileBytes = DefaultMaxFileBytes
	}
	return &FileService{db: db, blobs: blobs, maxBytes: maxFileBytes, inFlight: make(map[quotaKey]int64)}
}

func (s *FileService) CreateFile(ctx context.Context, convID, name, contentType string, r io.Reader) (*tidings.File, error) {
	c, err := actingCaller(ctx)
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
	if err := s.db.updateConv(ctx, c.AppID, convID, func(tx *Tx) error {
		conv, err := tx.conversation(c, convID)
		if err != nil {
			return err
		}
		return tidings.CanUploadFile(convID, conv)
	}); err != nil {
		return nil, err
	}
	limit, quotaErr, release, err := s.reserve(ctx, c)
	if err != nil {
		return nil, err
	}
	defer release() // once the file is in the table, where the quotas see it
	f := &tidings.File{ID: tidings.NewID(), ConversationID: convID, UploaderID: c.UserID, Name: name, Type: contentType}
	key := blobKey(c.AppID, convID, f.ID)
	if f.Size, err = s.blobs.Put(ctx, key, r, limit); err != nil {
		if tidings.ErrorCode(err) == tidings.ETooLarge && limit < s.maxBytes {
			return nil, quotaErr // the file would fit, the quota not
		}
		return nil, err
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

// reserve sets aside, for an upload by c, the most it may write: the file
// size limit, or less if a quota has less room left. It returns that
// limit; the error to answer if the file outgrows the quota's room; and a
// function that gives the reservation back. If a quota has no room at all,
// it returns that error at once.
func (s *FileService) reserve(ctx context.Context, c tidings.Caller) (int64, error, func(), error) {
	if s.UserQuota <= 0 && s.AppQuota <= 0 {
		return s.maxBytes, nil, func() {}, nil
	}
	window := s.UserQuotaWindow
	if window <= 0 {
		window = DefaultUserQuotaWindow
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	limit, quotaErr := s.maxBytes, error(nil)
	userKey, appKey := quotaKey{c.AppID, c.UserID}, quotaKey{c.AppID, ""}
	if s.UserQuota > 0 && !c.Server { // the app's server has the app's quota only
		now := s.db.Now()
		var used, oldest sql.NullInt64
		if err := s.db.queryRow(ctx, `SELECT SUM(size), MIN(created_at) FROM files
			WHERE app_id = ? AND uploader_id = ? AND created_at > ?`, c.AppID, c.UserID, micros(now.Add(-window))).Scan(&used, &oldest); err != nil {
			return 0, nil, nil, err
		}
		// Room frees up as the oldest upload of the window leaves it, or
		// as uploads in progress end.
		retry := window
		if oldest.Valid {
			retry = fromMicros(oldest.Int64).Add(window).Sub(now)
		}
		room := s.UserQuota - used.Int64 - s.inFlight[userKey]
		if room <= 0 && used.Int64 < s.UserQuota {
			retry = min(retry, 10*time.Second) // uploads in progress hold the room
		}
		err := &tidings.RetryError{After: max(retry, time.Second), Err: tidings.Errorf(tidings.ERateLimited,
			"upload quota used up: each user may upload %s every %s; try again later", byteSize(s.UserQuota), duration(window))}
		if room <= 0 {
			return 0, nil, nil, err
		}
		if room < limit {
			limit, quotaErr = room, err
		}
	}
	if s.AppQuota > 0 {
		var used sql.NullInt64
		if err := s.db.queryRow(ctx, `SELECT SUM(size) FROM files WHERE app_id = ?`, c.AppID).Scan(&used); err != nil {
			return 0, nil, nil, err
		}
		// Room frees up only as files are removed: unattached ones are,
		// within the grace period.
		err := &tidings.RetryError{After: time.Hour, Err: tidings.Errorf(tidings.ERateLimited,
			"the app's file storage is full: it may store %s in all; ask the app's operator to raise the limit", byteSize(s.AppQuota))}
		room := s.AppQuota - used.Int64 - s.inFlight[appKey]
		if room <= 0 {
			return 0, nil, nil, err
		}
		if room < limit {
			limit, quotaErr = room, err
		}
	}
	s.inFlight[userKey] += limit
	s.inFlight[appKey] += limit
	return limit, quotaErr, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, k := range []quotaKey{userKey, appKey} {
			if s.inFlight[k] -= limit; s.inFlight[k] == 0 {
				delete(s.inFlight, k)
			}
		}
	}, nil
}

// byteSize writes n bytes for people: 1 GiB, 300 MiB, 12345 bytes.
func byteSize(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

// duration writes d for people: 24 hours, 90 minutes, 45 seconds.
func duration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	case d%time.Minute == 0:
		return plural(int64(d/time.Minute), "minute")
	}
	return d.String()
}

func plural(n int64, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
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
