package tidings

import (
	"context"
	"encoding/json"
	"time"
)

// DefaultPartType is the type of the parts that the realtime protocol
// sends without one, in the updates about messages.
const DefaultPartType = "text/plain"

// Part is one piece of a message. Type is a MIME content type and is
// free: "text/plain" for text, "image/png" for a picture, or any type an
// application chooses (e.g. "application/x-e2ee") — Data then passes
// through untouched, so end-to-end-encrypted payloads are never read.
// A part carries either inline Data or a FileID of a file uploaded to the
// same conversation (Name and Size then default to the file's; Type is
// required on every part, a file's too).
type Part struct {
	Type   string `json:"type"`
	Name   string `json:"name,omitempty"`
	Data   string `json:"data,omitempty"`
	FileID string `json:"fileId,omitempty"`
	Size   int64  `json:"size,omitempty"`
}

// Message is a message in a conversation. Seq numbers the messages of one
// conversation from 1 without gaps.
type Message struct {
	ID             string `json:"id"`
	ConversationID string `json:"conversationId"`
	Seq            int64  `json:"seq"`
	// Sender is who sent the message. A system message (System), sent by
	// the app's server as itself, has none: its sender's id is empty. So
	// has a message whose sender was deleted with their messages kept
	// (anonymized): System is then false.
	Sender   Profile         `json:"sender"`
	System   bool            `json:"system,omitempty"`
	ClientID string          `json:"clientId,omitempty"`
	Parts    []Part          `json:"parts"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	Alert    string          `json:"alert,omitempty"` // push notification text
	SentAt   time.Time       `json:"sentAt"`
	EditedAt *time.Time      `json:"editedAt,omitempty"`
	// DeletedAt is set on a deleted message, whose parts, metadata and
	// alert are then gone.
	DeletedAt *time.Time `json:"deletedAt,omitempty"`
}

// NewMessage is what a sender gives. ClientID, chosen by the client, makes
// sending idempotent: sending again with the same ClientID in the same
// conversation returns the first message instead of a new one.
type NewMessage struct {
	ClientID string          `json:"clientId"`
	Parts    []Part          `json:"parts"`
	Metadata json.RawMessage `json:"metadata"`
	Alert    string          `json:"alert"`
}

// MessageEdit replaces the parts (and the metadata, if set) of a message.
type MessageEdit struct {
	Parts    []Part           `json:"parts"`
	Metadata *json.RawMessage `json:"metadata"`
}

// MessageFilter selects a page of history. With Before, the newest Limit
// messages with seq < *Before; with After, the oldest Limit messages with
// seq > *After (After = 0 pages forward from the first message); with
// neither, the newest Limit messages. Pages are always in ascending seq
// order.
type MessageFilter struct {
	Before *int64
	After  *int64
	Limit  int // 0 means 50; capped at 200
}

// MessagePage is a page of history; HasMore says whether more messages
// exist beyond the page in the direction asked (older for Before and the
// default, newer for After).
type MessagePage struct {
	Messages []*Message `json:"messages"`
	HasMore  bool       `json:"hasMore"`
}

// MessageStatus is a participant's delivered and read high-water marks
// after a change.
type MessageStatus struct {
	ConversationID string `json:"conversationId"`
	UserID         string `json:"userId"`
	DeliveredSeq   int64  `json:"deliveredSeq"`
	ReadSeq        int64  `json:"readSeq"`
	UnreadCount    int64  `json:"unreadCount"`
}

// Limits on messages (the byte limit is configurable; see SendMessage).
const (
	MaxParts           = 50
	MaxAlertLen        = 1000
	DefaultMessageSize = 64 << 10
)

// MessageService sends and reads messages. All methods need a user caller
// who takes part in the conversation: ENotFound otherwise, or EForbidden
// for a public conversation (it can be seen, but must be joined first).
// The app's server acting as itself (a Server caller) may read every
// conversation of its app, send system messages (Message.System, no
// sender; the event has no actor), and edit and delete any message; it
// has no marks (MarkDelivered and MarkRead need a user).
//
// Events: SendMessage emits EventMessageSent; EditMessage EventMessageEdited
// and DeleteMessage EventMessageDeleted, whose payload names the original
// message as referrerId; MarkDelivered and MarkRead EventMessageDelivered
// and EventMessageRead when a mark moves forward.
type MessageService interface {
	// SendMessage needs PermSend and a conversation that is not deleted.
	// created is false when ClientID matched an earlier message, which is
	// returned unchanged. The message is durable when this returns nil.
	// Sending moves the sender's own delivered and read marks to the new
	// message.
	SendMessage(ctx context.Context, conversationID string, m NewMessage) (msg *Message, created bool, err error)
	FindMessage(ctx context.Context, conversationID, messageID string) (*Message, error)
	ListMessages(ctx context.Context, conversationID string, f MessageFilter) (*MessagePage, error)
	// EditMessage is for the sender only, on a message not deleted.
	EditMessage(ctx context.Context, conversationID, messageID string, e MessageEdit) (*Message, error)
	// DeleteMessage is for the sender, or a participant allowed to remove
	// participants (a moderator). Deleting twice is not an error.
	DeleteMessage(ctx context.Context, conversationID, messageID string) (*Message, error)
	// MarkDelivered and MarkRead move the caller's high-water mark to seq
	// (0 means the newest message); marking seq read marks every message up
	// to it read, and delivered too. A mark never moves back; a seq beyond
	// the newest message is EInvalid.
	MarkDelivered(ctx context.Context, conversationID string, seq int64) (*MessageStatus, error)
	MarkRead(ctx context.Context, conversationID string, seq int64) (*MessageStatus, error)
}
