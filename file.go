package tidings

import (
	"context"
	"io"
	"time"
)

// File is an attachment uploaded to a conversation. Only its participants
// can fetch it. Its content is opaque to Tidings.
type File struct {
	ID             string    `json:"id"`
	ConversationID string    `json:"conversationId"`
	UploaderID     string    `json:"uploaderId"`
	Name           string    `json:"name"`
	Type           string    `json:"type"` // content type given at upload
	Size           int64     `json:"size"`
	CreatedAt      time.Time `json:"createdAt"`
}

// FileService stores attachments. CreateFile needs PermSend in a
// conversation that is not deleted; FindFile and OpenFile need the caller
// to take part in the conversation. The app's server, as itself (a Server
// caller), may do all three in every conversation of its app: its files
// have no uploader (UploaderID empty) and count in the app's quota only.
type FileService interface {
	// CreateFile reads r to its end. ETooLarge past the configured limit,
	// in which case nothing is kept; ERateLimited, as a *RetryError, when
	// an upload quota (the uploader's, or the app's) is used up.
	CreateFile(ctx context.Context, conversationID, name, contentType string, r io.Reader) (*File, error)
	FindFile(ctx context.Context, conversationID, fileID string) (*File, error)
	// OpenFile returns the file and its content; the caller closes it.
	OpenFile(ctx context.Context, conversationID, fileID string) (*File, io.ReadCloser, error)
}

// RetryError is an error that passes once time goes by, such as an upload
// quota that is used up: After tells when to try again.
type RetryError struct {
	Err   *Error
	After time.Duration
}

func (e *RetryError) Error() string { return e.Err.Error() }

// Unwrap returns the *Error, so that ErrorCode and ErrorMessage see it.
func (e *RetryError) Unwrap() error { return e.Err }

// RetryAfter is how long to wait before trying again.
func (e *RetryError) RetryAfter() time.Duration { return e.After }

// BlobStore keeps file contents by key. The default stores them under the
// data directory (package disk); an object store can implement it too.
type BlobStore interface {
	// Put stores r under key. If r holds more than max bytes it stores
	// nothing and returns an ETooLarge error. It returns the size stored.
	Put(ctx context.Context, key string, r io.Reader, max int64) (int64, error)
	// Open returns ENotFound for an unknown key.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	Delete(ctx context.Context, key string) error
}
