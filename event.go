package tidings

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/tidings/tidings/internal/jsonenc"
)

// Event names. Durable events are stored in the event log; typing and
// presence (added with realtime delivery) are live-only.
const (
	EventProfileUpdate = "profile.update"

	EventConversationCreate   = "conversation.create"
	EventConversationUpdate   = "conversation.update"
	EventConversationDelete   = "conversation.delete"
	EventConversationUndelete = "conversation.undelete"
	EventParticipantAdded     = "conversation.participantAdded"
	EventParticipantUpdated   = "conversation.participantUpdated"
	EventParticipantRemoved   = "conversation.participantRemoved"

	EventMessageSent      = "conversationMessage.sent"
	EventMessageEdited    = "conversationMessage.edited"
	EventMessageDeleted   = "conversationMessage.deleted"
	EventMessageDelivered = "conversationMessage.delivered"
	EventMessageRead      = "conversationMessage.read"
)

// Event is a change that happened in an app: every change made through a
// service produces exactly one or more events, through one place in each
// implementation, stored in the same transaction as the change (so an
// event exists if and only if its change does) and published after commit.
//
// Who may see an event: for a conversation event (ConversationID set), the
// participants of that conversation at the time of the event, plus UserID
// when set (e.g. the participant who was removed); for a profile event,
// the user themself and every user who shares a conversation with them at
// the time of the event (Conversations).
type Event struct {
	// Seq is the event's position in the log of all events (all apps),
	// increasing in commit order. Set when stored.
	Seq   int64     `json:"seq"`
	ID    string    `json:"id"`
	AppID string    `json:"app"`
	Name  string    `json:"name"`
	Time  time.Time `json:"time"`
	// Actor is who made the change; nil when it was the app server.
	Actor *Profile `json:"actor,omitempty"`
	// ConversationID is set for conversation and message events.
	ConversationID string `json:"conversationId,omitempty"`
	// UserID is the user the event is about: the profile updated, the
	// participant added, updated or removed, the user whose status moved.
	UserID string `json:"userId,omitempty"`
	// Payload holds the event's fields (one of the *Payload types below),
	// encoded as JSON.
	Payload json.RawMessage `json:"payload"`
	// Conversations, on a profile event just published, are the
	// conversations its user took part in at the time: their other
	// participants receive it too. It is for live delivery, in memory
	// only: never encoded, and not set on events read from the log (whose
	// readers find the same audience through the log's memberships), but
	// for those of LogTail.Final, which are delivered live in a cluster.
	Conversations []string `json:"-"`
	// Message, on a message event just emitted by a store in this process,
	// is its payload before encoding: what Payload holds, decoded, so that
	// live delivery need not decode it again. In memory only: never
	// encoded, nil on events read from the log or from another node.
	// Nothing changes it once the event is emitted.
	Message *MessagePayload `json:"-"`
}

// ProfilePayload is the payload of profile.update.
type ProfilePayload struct {
	ProfileID string `json:"profileId"`
	User      *User  `json:"profile"`
}

// NewProfilePayload is the payload of the profile.update event of a change
// to u. Last seen is presence, not profile: the event, which everyone
// sharing a conversation with u receives, never carries it (it would show
// it despite the privacy switch, and stale on replay); nor the tokens'
// not-before, the app server's alone.
func NewProfilePayload(u *User) ProfilePayload {
	pu := *u
	pu.LastSeenAt, pu.TokensNotBefore = nil, nil
	return ProfilePayload{ProfileID: u.ID, User: &pu}
}

// ConversationPayload is the payload of conversation.create and
// conversation.update: the conversation's state after the change.
// Participants is set on create only.
type ConversationPayload struct {
	ConversationID string           `json:"conversationId"`
	Name           string           `json:"name"`
	Description    string           `json:"description"`
	IsPublic       bool             `json:"isPublic"`
	Roles          Roles            `json:"roles"`
	Participants   []NewParticipant `json:"participants,omitempty"`
}

// ConversationDatePayload is the payload of conversation.delete and
// conversation.undelete.
type ConversationDatePayload struct {
	ConversationID string    `json:"conversationId"`
	Date           time.Time `json:"date"`
}

// ParticipantPayload is the payload of participantAdded, participantUpdated
// and participantRemoved. Role is empty for participantRemoved; Reason
// (one of the Reason constants) is set on participantAdded and
// participantRemoved only. Events stored before Reason existed lack it:
// clients then compare the event's actor with ProfileID.
type ParticipantPayload struct {
	ConversationID string `json:"conversationId"`
	ProfileID      string `json:"profileId"`
	Role           Role   `json:"role,omitempty"`
	Reason         string `json:"reason,omitempty"`
	// Muted, on a participantUpdated that mutes or unmutes the
	// participant, says which (absent on a change of role).
	Muted *bool `json:"muted,omitempty"`
}

// Why a participant was added or removed: the Reason of a
// ParticipantPayload.
const (
	// ReasonJoined: the user joined a public conversation themselves.
	ReasonJoined = "joined"
	// ReasonAdded: someone added the user, or created the conversation
	// with them (the creator included).
	ReasonAdded = "added"
	// ReasonLeft: the user left the conversation themselves.
	ReasonLeft = "left"
	// ReasonRemoved: someone removed (kicked) the user.
	ReasonRemoved = "removed"
	// ReasonDeleted: the app deleted a user, who no longer takes part; the
	// event names no one (empty ProfileID and UserID): reload the
	// participants.
	ReasonDeleted = "deleted"
)

// NewEventID returns the id of a new event of this name and payload: the
// message's id for the conversationMessage.sent of a message (payload a
// MessagePayload without ReferrerID), a new id (NewID) otherwise. A
// message is sent once, so its id names its sent event as well, and the
// realtime protocol sends that id once (docs/protocol.md, "The event
// object"). Events stored by servers before 2026-12 have ids of their own.
func NewEventID(name string, payload any) string {
	if name == EventMessageSent {
		if p, ok := payload.(MessagePayload); ok && p.Message != nil && p.ReferrerID == "" && p.ID != "" {
			return p.ID
		}
	}
	return NewID()
}

// MessagePayload is the payload of conversationMessage.sent (the new
// message), .edited and .deleted (the message after the change, with
// ReferrerID naming the original message).
//
// It is encoded without what its event already says, which every delivery
// would otherwise pay for: the message's conversationId (the event's), and
// on conversationMessage.sent its sentAt (the event's time). Clients take
// them from the event (SDKs fill them in). Events stored by servers before
// 2026-12 have them, and also messageId, profileId and timestamp,
// repeating the message's id, sender.id and sentAt.
type MessagePayload struct {
	*Message
	ReferrerID string `json:"referrerId,omitempty"`
}

// NewMessagePayload returns the payload of an event about m; referrerID
// names the original message of an edit or a deletion (empty for a sent
// message).
func NewMessagePayload(m *Message, referrerID string) MessagePayload {
	return MessagePayload{Message: m, ReferrerID: referrerID}
}

// MarshalJSON encodes the payload without the message's conversationId,
// nor its sentAt when it is a sent message's (no ReferrerID). It writes
// what encoding/json writes of a messageInEvent, by hand: a store encodes
// one per message it stores, in its one writer (TestMessagePayloadJSON).
func (p MessagePayload) MarshalJSON() ([]byte, error) {
	if p.Message == nil {
		return []byte("null"), nil
	}
	m := p.Message
	b := make([]byte, 0, m.encodedSize())
	b = append(b, `{"id":`...)
	b = jsonenc.String(b, m.ID)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, m.Seq, 10)
	b = m.Sender.AppendJSON(append(b, `,"sender":`...))
	if m.System {
		b = append(b, `,"system":true`...)
	}
	if m.ClientID != "" {
		b = append(b, `,"clientId":`...)
		b = jsonenc.String(b, m.ClientID)
	}
	b = AppendPartsJSON(append(b, `,"parts":`...), m.Parts)
	if len(m.Metadata) > 0 {
		var err error
		if b, err = jsonenc.Value(append(b, `,"metadata":`...), m.Metadata); err != nil {
			return nil, err
		}
	}
	if m.Alert != "" {
		b = append(b, `,"alert":`...)
		b = jsonenc.String(b, m.Alert)
	}
	if p.ReferrerID != "" {
		b = jsonenc.Time(append(b, `,"sentAt":`...), m.SentAt)
	}
	if m.EditedAt != nil {
		b = jsonenc.Time(append(b, `,"editedAt":`...), *m.EditedAt)
	}
	if m.DeletedAt != nil {
		b = jsonenc.Time(append(b, `,"deletedAt":`...), *m.DeletedAt)
	}
	if p.ReferrerID != "" {
		b = append(b, `,"referrerId":`...)
		b = jsonenc.String(b, p.ReferrerID)
	}
	return append(b, '}'), nil
}

// encodedSize is about the size of m encoded (MarshalJSON), so that one
// allocation holds it: JSON's quotes, names and escapes aside, the
// strings' bytes.
func (m *Message) encodedSize() int {
	n := 224 + len(m.ID) + len(m.ClientID) + len(m.Metadata) + len(m.Alert) + m.Sender.encodedSize() + PartsSize(m.Parts)
	return n + n/16
}

// PartsSize is about the size of parts encoded (AppendPartsJSON), escapes
// aside.
func PartsSize(parts []Part) int {
	n := 2
	for _, p := range parts {
		n += 64 + len(p.Type) + len(p.Name) + len(p.Data) + len(p.FileID)
	}
	return n
}

// AppendPartsJSON appends parts as encoding/json writes them.
func AppendPartsJSON(b []byte, parts []Part) []byte {
	if parts == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, part := range parts {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"type":`...)
		b = jsonenc.String(b, part.Type)
		if part.Name != "" {
			b = append(b, `,"name":`...)
			b = jsonenc.String(b, part.Name)
		}
		if part.Data != "" {
			b = append(b, `,"data":`...)
			b = jsonenc.String(b, part.Data)
		}
		if part.FileID != "" {
			b = append(b, `,"fileId":`...)
			b = jsonenc.String(b, part.FileID)
		}
		if part.Size != 0 {
			b = append(b, `,"size":`...)
			b = strconv.AppendInt(b, part.Size, 10)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// messageInEvent is a Message as a MessagePayload encodes it.
type messageInEvent struct {
	ID         string          `json:"id"`
	Seq        int64           `json:"seq"`
	Sender     Profile         `json:"sender"`
	System     bool            `json:"system,omitempty"`
	ClientID   string          `json:"clientId,omitempty"`
	Parts      []Part          `json:"parts"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
	Alert      string          `json:"alert,omitempty"`
	SentAt     *time.Time      `json:"sentAt,omitempty"`
	EditedAt   *time.Time      `json:"editedAt,omitempty"`
	DeletedAt  *time.Time      `json:"deletedAt,omitempty"`
	ReferrerID string          `json:"referrerId,omitempty"`
}

// Complete fills in what the payload of ev, an event about a message, left
// out: the conversation, on a sent message the time it was sent, and the
// type of its parts of the default type, text/plain (the realtime
// protocol leaves it out).
func (p MessagePayload) Complete(ev *Event) {
	if p.Message == nil {
		return
	}
	for i := range p.Parts {
		if p.Parts[i].Type == "" {
			p.Parts[i].Type = DefaultPartType
		}
	}
	if p.ConversationID == "" {
		p.ConversationID = ev.ConversationID
	}
	if p.SentAt.IsZero() {
		p.SentAt = ev.Time
	}
}

// StatusPayload is the payload of conversationMessage.delivered and .read:
// ProfileID has delivered or read every message up to Seq (MessageID is
// the message at Seq).
type StatusPayload struct {
	ConversationID string    `json:"conversationId"`
	ProfileID      string    `json:"profileId"`
	Seq            int64     `json:"seq"`
	MessageID      string    `json:"messageId"`
	Timestamp      time.Time `json:"timestamp"`
}

// EventPublisher receives events after their change is committed, in
// commit order. Publish must not block for long: it runs on the write
// path. Realtime delivery subscribes here.
type EventPublisher interface {
	Publish(events ...*Event)
}

// Actors decodes the actors of events read together (the JSON of a
// Profile, as stores keep an event's actor) once each, for a store's
// reads of many events: a replay's events mostly come from a few people
// (the senders), and decoding each event's actor again was a tenth of a
// cluster node's CPU in a reconnect storm. The events of the read share
// each decoded Profile: nothing changes an event's Actor once read. A nil
// *Actors decodes every time.
type Actors map[string]*Profile

// Decode returns the Profile of the JSON b, decoded once per Actors.
func (m *Actors) Decode(b []byte) (*Profile, error) {
	if m != nil {
		if p, ok := (*m)[string(b)]; ok {
			return p, nil
		}
	}
	p := new(Profile)
	if err := json.Unmarshal(b, p); err != nil {
		return nil, err
	}
	if m != nil {
		if *m == nil {
			*m = make(Actors)
		}
		(*m)[string(b)] = p
	}
	return p, nil
}
