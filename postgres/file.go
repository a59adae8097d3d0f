package postgres

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tidings/tidings"
)

// FileService implements tidings.FileService: metadata in PostgreSQL,
// content in a tidings.BlobStore that every node reaches.
//
// Uploads are bounded as on SQLite: each file by the size limit
// (ETooLarge); the bytes each user uploads within UserQuotaWindow by
// UserQuota; and the bytes an app stores in all by AppQuota (both
// ERateLimited, as a *tidings.RetryError). Uploads in progress count
// towards the quotas with the most they may still write, so that
// concurrent uploads cannot overrun them together: those of this node.
// Uploads in progress on other nodes are not seen until they are stored,
// so a quota may be overrun by what the other nodes are uploading at the
// same moment (at most the size limit per upload).
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
	name = path.Base(strings.ReplaceAll(strings.TrimSpace(name), "\\", "/"))
	if name == "" || name == "." || name == "/" || len(name) > 255 || !utf8.ValidString(name) {
		return nil, tidings.Errorf(tidings.EInvalid, "a file needs a name of 1 to 255 bytes")
	}
	contentType, err = tidings.NormalizeMediaType("the file's content type", contentType)
	if err != nil {
		return nil, err
	}
	// Check the right to upload before reading anything.
	if err := s.mayUpload(ctx, c, convID); err != nil {
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
	// The app's server, as itself, has the app's quota only.
	keys := []quotaKey{{c.AppID, ""}}
	if !c.Server {
		keys = append(keys, quotaKey{c.AppID, c.UserID})
	}
	appKey := keys[0]
	if s.UserQuota > 0 && !c.Server {
		userKey := keys[1]
		now := s.db.Now()
		var used *int64
		var oldest *time.Time
		if err := s.db.queryRow(ctx, `SELECT sum(size)::bigint, min(created_at) FROM files
			WHERE app_id = $1 AND uploader_id = $2 AND created_at > $3`, c.AppID, c.UserID, now.Add(-window)).Scan(&used, &oldest); err != nil {
			return 0, nil, nil, err
		}
		var usedBytes int64
		if used != nil {
			usedBytes = *used
		}
		// Room frees up as the oldest upload of the window leaves it, or
		// as uploads in progress end.
		retry := window
		if oldest != nil {
			retry = oldest.Add(window).Sub(now)
		}
		room := s.UserQuota - usedBytes - s.inFlight[userKey]
		if room <= 0 && usedBytes < s.UserQuota {
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
		var used *int64
		if err := s.db.queryRow(ctx, `SELECT sum(size)::bigint FROM files WHERE app_id = $1`, c.AppID).Scan(&used); err != nil {
			return 0, nil, nil, err
		}
		var usedBytes int64
		if used != nil {
			usedBytes = *used
		}
		// Room frees up only as files are removed: unattached ones are,
		// within the grace period.
		err := &tidings.RetryError{After: time.Hour, Err: tidings.Errorf(tidings.ERateLimited,
			"the app's file storage is full: it may store %s in all; ask the app's operator to raise the limit", byteSize(s.AppQuota))}
		room := s.AppQuota - usedBytes - s.inFlight[appKey]
		if room <= 0 {
			return 0, nil, nil, err
		}
		if room < limit {
			limit, quotaErr = room, err
		}
	}
	for _, k := range keys {
		s.inFlight[k] += limit
	}
	return limit, quotaErr, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, k := range keys {
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

// blobKey is where a file's content is kept: per app and conversation.
// The same keys as SQLite's, so that one blob store may serve either.
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
