package tidings

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// DefaultMaxFileBytes is the upload limit when none is configured.
const DefaultMaxFileBytes = 25 << 20

// DefaultUserQuotaWindow is the window of UploadQuotas.UserQuota when none
// is set.
const DefaultUserQuotaWindow = 24 * time.Hour

// UploadQuotas is the upload policy every FileService applies. Uploads
// are bounded three ways: each file by MaxFileBytes (ETooLarge); the bytes
// each user uploads within UserQuotaWindow by UserQuota; and the bytes an
// app stores in all by AppQuota (both ERateLimited, as a *RetryError).
// The app's server, as itself, has the app's quota only. Uploads in
// progress count towards the quotas with the most they may still write,
// so that concurrent uploads cannot overrun them together (those that
// reserved through this UploadQuotas: a cluster's other nodes are not
// seen until their files are stored).
//
// Set the fields before the first upload. The zero value has no quotas
// and DefaultMaxFileBytes as its limit.
type UploadQuotas struct {
	MaxFileBytes    int64
	UserQuota       int64 // 0: no limit
	UserQuotaWindow time.Duration
	AppQuota        int64 // 0: no limit

	mu       sync.Mutex
	inFlight map[uploadKey]int64 // bytes reserved by uploads in progress
}

// uploadKey names what reserved bytes count towards: a user of an app, or
// the app itself (user "").
type uploadKey struct{ app, user string }

// UploadUsage is what the quotas count of the files a store holds.
type UploadUsage interface {
	// UserUploads returns the bytes userID of appID uploaded after since,
	// and when the oldest of those uploads was made (zero if none).
	UserUploads(ctx context.Context, appID, userID string, since time.Time) (bytes int64, oldest time.Time, err error)
	// AppFileBytes returns the bytes the files of appID hold.
	AppFileBytes(ctx context.Context, appID string) (int64, error)
}

// UploadReservation is what Reserve set aside for one upload.
type UploadReservation struct {
	// Limit is the most the upload may write: MaxFileBytes, or less if a
	// quota has less room left.
	Limit    int64
	max      int64
	quotaErr error
	release  func()
}

// Release gives the reservation back: once the file is stored, where
// usage counts it, or was refused.
func (r *UploadReservation) Release() {
	if r.release != nil {
		r.release()
		r.release = nil
	}
}

// PutError is the error to answer for err, the error of storing the
// upload's content within Limit: a file that would fit the size limit
// but not the quota's room gets the quota's error, not ETooLarge.
func (r *UploadReservation) PutError(err error) error {
	if ErrorCode(err) == ETooLarge && r.Limit < r.max && r.quotaErr != nil {
		return r.quotaErr
	}
	return err
}

func (q *UploadQuotas) maxFileBytes() int64 {
	if q.MaxFileBytes <= 0 {
		return DefaultMaxFileBytes
	}
	return q.MaxFileBytes
}

// Reserve sets aside, for an upload by c at now, the most it may write.
// If a quota has no room at all, it returns that quota's error at once.
// The caller releases the reservation.
func (q *UploadQuotas) Reserve(ctx context.Context, c Caller, now time.Time, usage UploadUsage) (*UploadReservation, error) {
	maxBytes := q.maxFileBytes()
	r := &UploadReservation{Limit: maxBytes, max: maxBytes}
	if q.UserQuota <= 0 && q.AppQuota <= 0 {
		return r, nil
	}
	window := q.UserQuotaWindow
	if window <= 0 {
		window = DefaultUserQuotaWindow
	}
	// Held while usage is read, so that two uploads cannot both take the
	// same room.
	q.mu.Lock()
	defer q.mu.Unlock()
	keys := []uploadKey{{c.AppID, ""}}
	if !c.Server {
		keys = append(keys, uploadKey{c.AppID, c.UserID})
	}
	if q.UserQuota > 0 && !c.Server {
		used, oldest, err := usage.UserUploads(ctx, c.AppID, c.UserID, now.Add(-window))
		if err != nil {
			return nil, err
		}
		// Room frees up as the oldest upload of the window leaves it, or
		// as uploads in progress end.
		retry := window
		if !oldest.IsZero() {
			retry = oldest.Add(window).Sub(now)
		}
		room := q.UserQuota - used - q.inFlight[keys[1]]
		if room <= 0 && used < q.UserQuota {
			retry = min(retry, 10*time.Second) // uploads in progress hold the room
		}
		err = &RetryError{After: max(retry, time.Second), Err: Errorf(ERateLimited,
			"upload quota used up: each user may upload %s every %s; try again later", byteSize(q.UserQuota), humanDuration(window))}
		if room <= 0 {
			return nil, err
		}
		if room < r.Limit {
			r.Limit, r.quotaErr = room, err
		}
	}
	if q.AppQuota > 0 {
		used, err := usage.AppFileBytes(ctx, c.AppID)
		if err != nil {
			return nil, err
		}
		// Room frees up only as files are removed: unattached ones are,
		// within the grace period.
		err = &RetryError{After: time.Hour, Err: Errorf(ERateLimited,
			"the app's file storage is full: it may store %s in all; ask the app's operator to raise the limit", byteSize(q.AppQuota))}
		room := q.AppQuota - used - q.inFlight[keys[0]]
		if room <= 0 {
			return nil, err
		}
		if room < r.Limit {
			r.Limit, r.quotaErr = room, err
		}
	}
	if q.inFlight == nil {
		q.inFlight = make(map[uploadKey]int64)
	}
	for _, k := range keys {
		q.inFlight[k] += r.Limit
	}
	limit := r.Limit
	r.release = func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		for _, k := range keys {
			if q.inFlight[k] -= limit; q.inFlight[k] == 0 {
				delete(q.inFlight, k)
			}
		}
	}
	return r, nil
}

// FileName checks and cleans the name of an uploaded file: its last path
// element (either slash), 1 to 255 bytes of UTF-8.
func FileName(name string) (string, error) {
	name = path.Base(strings.ReplaceAll(strings.TrimSpace(name), "\\", "/"))
	if name == "" || name == "." || name == "/" || len(name) > 255 || !utf8.ValidString(name) {
		return "", Errorf(EInvalid, "a file needs a name of 1 to 255 bytes")
	}
	return name, nil
}

// BlobKey is where a file's content is kept in a BlobStore: per app and
// conversation, each id mapped to [A-Za-z0-9._-] so that no two ids share
// a key.
func BlobKey(appID, convID, fileID string) string {
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

// humanDuration writes d for people: 24 hours, 90 minutes, 45 seconds.
func humanDuration(d time.Duration) string {
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
