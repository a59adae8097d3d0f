// Package protocol is the Tidings realtime wire protocol, shared by the
// server and the Go SDK. docs/protocol.md describes it for people who
// write a client in another language.
//
// A connection carries JSON frames. The client sends commands (each with
// an id) and replies (acknowledging an update's ref); the server sends
// answers (to a command, with the same id) and updates. One WebSocket
// message from the server may hold several frames separated by '\n'; a
// client message holds one frame.
package protocol

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/tidings/tidings"
)

// Subprotocol is the WebSocket subprotocol of this version.
const Subprotocol = "tidings.v1"

// Frame types.
const (
	TypeCommand = "command" // client → server
	TypeAnswer  = "answer"  // server → client, answers a command
	TypeUpdate  = "update"  // server → client
	TypeReply   = "reply"   // client → server, acknowledges updates
)

// Frame is the envelope of every frame; which fields are set depends on
// Type.
type Frame struct {
	Type string `json:"type"`
	// ID is set by the client on a command and copied on its answer.
	ID string `json:"id,omitempty"`
	// Command names the command.
	Command string `json:"command,omitempty"`
	// Account names which authenticated account of the connection a
	// command, update or reply is about (default "default").
	Account string `json:"account,omitempty"`
	// Data holds a command's arguments.
	Data json.RawMessage `json:"data,omitempty"`
	// Result holds a successful answer's value; Error a failed one's.
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`
	// Ref identifies an update in its account's stream. Replying with it
	// acknowledges that update and every earlier one. Live-only updates
	// (typing, presence) have no ref and need no reply.
	Ref string `json:"ref,omitempty"`
	// Silent is true on an update that should not raise a notification
	// (your own actions, status changes, typing).
	Silent bool `json:"silent,omitempty"`
	// Event is the update's event.
	Event json.RawMessage `json:"event,omitempty"`
}

// Event is an event as an update frame carries it: a tidings.Event
// without what the frame or the account already says (the event's seq is
// the frame's ref, its app the account's), and on the message events
// whose actor is always the message's sender (sent, edited) with Actor
// reduced to its ID: the payload's sender is the same profile in full.
// The payload of a message event leaves out what the event says too (see
// tidings.MessagePayload). ID is absent on a conversationMessage.sent
// whose id is its message's (payload.id; tidings.NewEventID): EventID
// gives it.
type Event struct {
	ID             string           `json:"id,omitempty"`
	Name           string           `json:"name"`
	Time           time.Time        `json:"time"`
	Actor          *tidings.Profile `json:"actor,omitempty"`
	ConversationID string           `json:"conversationId,omitempty"`
	UserID         string           `json:"userId,omitempty"`
	Payload        json.RawMessage  `json:"payload"`
}

// EventID returns the id of an event named name, as an update frame
// carries it: id, or when the frame left it out, the id of the message of
// a conversationMessage.sent, messageID (its payload's id), which names
// the event too.
func EventID(name, id, messageID string) string {
	if id == "" && name == tidings.EventMessageSent {
		return messageID
	}
	return id
}

// Error is a failed answer. Code is one of the error codes of the HTTP API
// (tidings.E…). Ref is set with resync_required: the newest ref, to
// resume from once the client has rebuilt its state.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Ref     string `json:"ref,omitempty"`
}

// ErrorResponse is the body of an error answered over HTTP: by the REST
// API, and by the realtime endpoint to a handshake it refuses.
type ErrorResponse struct {
	Error Error `json:"error"`
}

// Update actions: whether an event makes something new, changes
// something or removes something (ActionOf).
const (
	ActionNew    = "new"
	ActionUpdate = "update"
	ActionDelete = "delete"
)

// ActionOf returns the action of the events of this name. Servers before
// 2026-12 sent it in each update frame ("action"); it follows from the
// event's name.
func ActionOf(name string) string {
	switch name {
	case tidings.EventConversationCreate, tidings.EventParticipantAdded, tidings.EventMessageSent,
		EventTyping:
		return ActionNew
	case tidings.EventConversationDelete, tidings.EventParticipantRemoved, tidings.EventMessageDeleted,
		EventTypingOff, EventAccountEnds:
		return ActionDelete
	}
	return ActionUpdate
}

// Commands.
const (
	CmdAuth          = "auth"              // AuthArgs → AuthResult
	CmdLogout        = "logout"            // {} → {}: ends the account on this connection
	CmdPing          = "ping"              // {} → PingResult
	CmdSend          = "message.send"      // SendArgs → SendResult
	CmdMarkDelivered = "message.delivered" // MarkArgs → tidings.MessageStatus
	CmdMarkRead      = "message.read"      // MarkArgs → tidings.MessageStatus
	CmdTypingStart   = "typing.start"      // TypingArgs → {}
	CmdTypingStop    = "typing.stop"       // TypingArgs → {}
	CmdPresenceGet   = "presence.get"      // PresenceArgs → PresenceResult
	// CmdPresenceSubscribe and CmdPresenceUnsubscribe follow the presence
	// of users by id, whatever conversations they share.
	CmdPresenceSubscribe   = "presence.subscribe"   // PresenceSubscribeArgs → PresenceSubscribeResult
	CmdPresenceUnsubscribe = "presence.unsubscribe" // PresenceSubscribeArgs → {}
)

// AuthArgs authenticates an account on the connection, or refreshes its
// token when the account is already authenticated (same user).
type AuthArgs struct {
	Token string `json:"token"`
	// Device names the client's installation; the server keeps one cursor
	// (last acknowledged ref) per user and device. Default "default".
	Device string `json:"device,omitempty"`
	// ResumeAfter, when set, is the ref after which to resume, overriding
	// the server's cursor (a client that keeps its own cursor). "latest"
	// starts with new updates only.
	ResumeAfter string `json:"resumeAfter,omitempty"`
}

// AuthResult answers auth.
type AuthResult struct {
	Account   string `json:"account"`
	AppID     string `json:"app"`
	UserID    string `json:"userId"`
	Device    string `json:"device"`
	ExpiresAt string `json:"expiresAt"` // RFC 3339: when the token expires
	// ResumedAfter is the ref after which updates are sent: replayed ones
	// first, then live ones.
	ResumedAfter string `json:"resumedAfter"`
}

// PingResult answers ping.
type PingResult struct {
	Time string `json:"time"` // server clock, RFC 3339
}

// SendArgs sends a message (the fields of tidings.NewMessage).
type SendArgs struct {
	ConversationID string          `json:"conversationId"`
	ClientID       string          `json:"clientId,omitempty"`
	Parts          json.RawMessage `json:"parts"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`
	Alert          string          `json:"alert,omitempty"`
}

// SendResult answers message.send. A new message is answered with what
// the server added to the command (its id, seq, sender and time), and its
// parts when the server changed them (an app's before-send hook replaced
// them, or it filled in uploaded files): the rest is the command's, which
// the sender has already. A send whose clientId named a message already
// stored is answered with that message whole, as it is now (it may have
// been edited or deleted since), and Duplicate. Message rebuilds the
// message from the result and the command.
type SendResult struct {
	ID             string          `json:"id"`
	ConversationID string          `json:"conversationId,omitempty"`
	Seq            int64           `json:"seq"`
	Sender         tidings.Profile `json:"sender"`
	System         bool            `json:"system,omitempty"`
	ClientID       string          `json:"clientId,omitempty"`
	Parts          []tidings.Part  `json:"parts,omitempty"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`
	Alert          string          `json:"alert,omitempty"`
	SentAt         time.Time       `json:"sentAt"`
	EditedAt       *time.Time      `json:"editedAt,omitempty"`
	DeletedAt      *time.Time      `json:"deletedAt,omitempty"`
	Duplicate      bool            `json:"duplicate,omitempty"`
}

// NewSendResult returns the answer to the sending of nm that stored m;
// created is false when nm's clientId named m, stored earlier.
func NewSendResult(nm tidings.NewMessage, m *tidings.Message, created bool) SendResult {
	if !created {
		return SendResult{ID: m.ID, ConversationID: m.ConversationID, Seq: m.Seq, Sender: m.Sender, System: m.System,
			ClientID: m.ClientID, Parts: m.Parts, Metadata: m.Metadata, Alert: m.Alert, SentAt: m.SentAt,
			EditedAt: m.EditedAt, DeletedAt: m.DeletedAt, Duplicate: true}
	}
	r := SendResult{ID: m.ID, Seq: m.Seq, Sender: m.Sender, System: m.System, SentAt: m.SentAt}
	if !slices.Equal(m.Parts, nm.Parts) {
		r.Parts = m.Parts
	}
	if !bytes.Equal(m.Metadata, nm.Metadata) {
		r.Metadata = m.Metadata
	}
	if m.Alert != nm.Alert {
		r.Alert = m.Alert
	}
	return r
}

// Message returns the message that r answers, sent to conversationID as
// nm: r's fields, and the command's for those r leaves out (copied: the
// message shares nothing with nm).
func (r *SendResult) Message(conversationID string, nm tidings.NewMessage) *tidings.Message {
	m := &tidings.Message{ID: r.ID, ConversationID: r.ConversationID, Seq: r.Seq, Sender: r.Sender, System: r.System,
		ClientID: r.ClientID, Parts: r.Parts, Metadata: r.Metadata, Alert: r.Alert, SentAt: r.SentAt,
		EditedAt: r.EditedAt, DeletedAt: r.DeletedAt}
	if r.Duplicate {
		if m.Parts == nil {
			m.Parts = []tidings.Part{} // deleted
		}
		return m
	}
	m.ConversationID, m.ClientID = conversationID, nm.ClientID
	if m.Parts == nil {
		m.Parts = slices.Clone(nm.Parts)
	}
	if m.Metadata == nil {
		m.Metadata = bytes.Clone(nm.Metadata)
	}
	if m.Alert == "" {
		m.Alert = nm.Alert
	}
	return m
}

// MarkArgs moves a delivered or read mark (seq 0: the newest message).
type MarkArgs struct {
	ConversationID string `json:"conversationId"`
	Seq            int64  `json:"seq,omitempty"`
}

// TypingArgs says in which conversation the user types.
type TypingArgs struct {
	ConversationID string `json:"conversationId"`
}

// PresenceArgs names the conversation whose presence is asked.
type PresenceArgs struct {
	ConversationID string `json:"conversationId"`
}

// PresenceResult is who, among a conversation's participants, is online
// now (the asking user included) and who is typing in it, each sorted.
// From then on, presence.update and typing updates keep it current.
type PresenceResult struct {
	Online []string `json:"online"`
	Typing []string `json:"typing"`
}

// PresenceSubscribeArgs lists the users (ids of the account's app) whose
// presence to follow, or to stop following.
type PresenceSubscribeArgs struct {
	UserIDs []string `json:"userIds"`
}

// PresenceSubscribeResult answers presence.subscribe: the status of each
// user subscribed by the command, in the order asked, and the ids that
// are no user of the app (not subscribed).
type PresenceSubscribeResult struct {
	Users   []UserPresence `json:"users"`
	Unknown []string       `json:"unknown"`
}

// UserPresence is a user's presence as another user may see it.
type UserPresence struct {
	UserID string `json:"userId"`
	Status string `json:"status"` // PresenceOnline or PresenceOffline
	// LastSeenAt is when the user's last connection closed (RFC 3339);
	// absent when never, or hidden by the user's privacy switch.
	LastSeenAt string `json:"lastSeenAt,omitempty"`
}

// Live-only event names, besides the durable ones of package tidings.
const (
	EventTyping      = "conversation.participantTyping"
	EventTypingOff   = "conversation.participantTypingOff"
	EventPresence    = "presence.update"
	EventAccountEnds = "account.closed" // the account was closed by the server (token expired, user deactivated, tokens revoked, user deleted)
)

// TypingPayload is the payload of the live-only events EventTyping and
// EventTypingOff.
type TypingPayload struct {
	ConversationID string `json:"conversationId"`
	ProfileID      string `json:"profileId"`
}

// PresencePayload is the payload of the live-only event EventPresence.
type PresencePayload struct {
	ProfileID string `json:"profileId"`
	Status    string `json:"status"` // PresenceOnline or PresenceOffline
	// LastSeenAt is set on PresenceOffline when the user's last connection
	// closed (RFC 3339); absent when the user hid their presence.
	LastSeenAt string `json:"lastSeenAt,omitempty"`
}

// Presence statuses.
const (
	PresenceOnline  = "online"
	PresenceOffline = "offline"
)

// AccountClosedPayload is the payload of the live-only event
// EventAccountEnds.
type AccountClosedPayload struct {
	Account string `json:"account"`
	Reason  string `json:"reason"` // one of the Reason constants
}

// Why the server closes an account (AccountClosedPayload.Reason).
const (
	// ReasonTokenExpired: its token expired without being refreshed.
	ReasonTokenExpired = "token_expired"
	// ReasonUserDeactivated: the app deactivated (banned) the user.
	ReasonUserDeactivated = "user_deactivated"
	// ReasonTokensRevoked: the app revoked the user's tokens.
	ReasonTokensRevoked = "tokens_revoked"
	// ReasonUserDeleted: the app deleted the user.
	ReasonUserDeleted = "user_deleted"
)

// CloseCode returns the close code of a connection whose last account the
// server closed for reason.
func CloseCode(reason string) int {
	switch reason {
	case ReasonUserDeactivated:
		return CloseUserDeactivated
	case ReasonTokensRevoked:
		return CloseTokensRevoked
	case ReasonUserDeleted:
		return CloseUserDeleted
	}
	return CloseTokenExpired
}

// FormatRef and ParseRef convert between refs and event seqs.
func FormatRef(seq int64) string { return strconv.FormatInt(seq, 10) }

func ParseRef(ref string) (int64, bool) {
	n, err := strconv.ParseInt(ref, 10, 64)
	return n, err == nil && n >= 0
}

// Close codes sent by the server (besides RFC 6455's own).
const (
	CloseNormal       = 1000 // the client asked, or every account logged out
	CloseGoingAway    = 1001 // the server shuts down: reconnect and resume
	CloseTooBig       = 1009 // a frame was larger than the limit
	CloseBadFrame     = 4000 // a frame was not valid JSON or not a known type
	CloseAuthTimeout  = 4001 // no account authenticated in time after connecting
	CloseTokenExpired = 4003 // the last account's token expired without refresh
	ClosePingTimeout  = 4004 // no pong (or ping command) in time: the connection is dead
	CloseIdle         = 4005 // no command or reply for longer than the idle timeout
	CloseSlowConsumer = 4009 // updates were not read fast enough: reconnect and resume
	CloseTooManyConns = 4010 // the user has too many connections
	// The app ended the user's access: their last account closed with
	// account.closed first.
	CloseUserDeactivated = 4011 // the user was deactivated (banned): do not reconnect until the app reactivates them
	CloseTokensRevoked   = 4012 // the user's tokens were revoked: reconnect only with a new token
	CloseUserDeleted     = 4013 // the user was deleted: do not reconnect
)
