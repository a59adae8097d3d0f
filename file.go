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
// to take part in the conversation.
type FileService interface {
	// CreateFile reads r to its end. ETooLarge past the configured limit,
	// in which case nothing is kept.
	CreateFile(ctx context.Context, conversationID, name, contentType string, r io.Reader) (*File, error)
	FindFile(ctx context.Context, conversationID, fileID string) (*File, error)
	// OpenFile returns the file and its content; the caller closes it.
	OpenFile(ctx context.Context, conversationID, fileID string) (*File, io.ReadCloser, error)
}

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
