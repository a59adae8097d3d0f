package client

import (
	"encoding/json"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// Event is an update delivered to the event listeners: one of the pointer
// types of this file (*MessageSent, *ParticipantAdded…), or *UnknownEvent
// for an event this version of the SDK does not know. Use a type switch:
//
//	switch e := ev.(type) {
//	case *client.MessageSent:
//		fmt.Println(e.Message.Sender.DisplayName, e.Message.Parts[0].Data)
//	case *client.ParticipantTyping:
//		…
//	}
//
// Listeners share the values they receive and must not modify them.
type Event interface {
	// Info returns the fields common to every event.
	Info() EventInfo
}

// EventInfo holds the fields every event has.
type EventInfo struct {
	// Name is the event's name, e.g. "conversationMessage.sent".
	Name string
	// Account is the name of the account of the client the update is for
	// (DefaultAccount, "default", unless the client has others: see
	// Client.AddAccount).
	Account string
	// Ref identifies the update in the account's stream; refs increase
	// along the stream. Empty for live-only events (typing, presence),
	// which are never replayed.
	Ref string
	// Silent is true on an update that should not raise a notification
	// (the user's own actions, status changes, typing, presence).
	Silent bool
	// Action is "new", "update" or "delete" (protocol.Action*), as
	// protocol.ActionOf gives it for the event's name.
	Action string

	ID    string
	AppID string
	Time  time.Time
	// Actor is who made the change; nil when it was the app's server.
	Actor *tidings.Profile
	// ConversationID is set for conversation and message events.
	ConversationID string
	// UserID is the user the event is about, when there is one.
	UserID string
	// Payload is the event's payload as the server sent it, for fields this
	// version of the SDK does not decode.
	Payload json.RawMessage
}

// Info returns i; it makes every event type an Event.
func (i EventInfo) Info() EventInfo { return i }

// ProfileUpdate is profile.update: a user's profile changed, the
// logged-in user's own or that of a user who shares a conversation with
// them (ProfileID, and UserID, say whose): show the new name and avatar
// wherever that user appears.
type ProfileUpdate struct {
	EventInfo
	ProfileID string
	Profile   *tidings.User
}

// ConversationCreate is conversation.create: the conversation's state
// after creation, with its first participants.
type ConversationCreate struct {
	EventInfo
	Name         string
	Description  string
	IsPublic     bool
	Roles        tidings.Roles
	Participants []tidings.NewParticipant
}

// ConversationUpdate is conversation.update: the conversation's details
// after the change.
type ConversationUpdate struct {
	EventInfo
	Name        string
	Description string
	IsPublic    bool
	Roles       tidings.Roles
}

// ConversationDelete is conversation.delete.
type ConversationDelete struct {
	EventInfo
	Date time.Time
}

// ConversationUndelete is conversation.undelete.
type ConversationUndelete struct {
	EventInfo
	Date time.Time
}

// ParticipantAdded is conversation.participantAdded.
type ParticipantAdded struct {
	EventInfo
	ProfileID string
	Role      tidings.Role
	// Reason is tidings.ReasonJoined (they joined a public conversation
	// themselves) or ReasonAdded (someone added them, or created the
	// conversation with them). Events stored by servers older than the
	// field have it empty: compare Actor with ProfileID then.
	Reason string
}

// ParticipantUpdated is conversation.participantUpdated: a role changed.
type ParticipantUpdated struct {
	EventInfo
	ProfileID string
	Role      tidings.Role
}

// ParticipantRemoved is conversation.participantRemoved (a kick or a
// leave). A removed user receives this event, then nothing more of the
// conversation.
type ParticipantRemoved struct {
	EventInfo
	ProfileID string
	// Reason is tidings.ReasonLeft (they left themselves) or
	// ReasonRemoved (someone removed them). Events stored by servers
	// older than the field have it empty: compare Actor with ProfileID
	// then.
	Reason string
}

// ParticipantTyping is conversation.participantTyping (live only).
type ParticipantTyping struct {
	EventInfo
	ProfileID string
}

// ParticipantTypingOff is conversation.participantTypingOff (live only).
type ParticipantTypingOff struct {
	EventInfo
	ProfileID string
}

// MessageSent is conversationMessage.sent: a new message. The sender gets
// it too (silent). Message.ClientID is set on the sender's own messages
// only (the server sends it to no one else). A system message, sent by
// the app's server itself, has Message.System set, an empty
// Message.Sender.ID and no Actor.
type MessageSent struct {
	EventInfo
	Message *tidings.Message
}

// MessageEdited is conversationMessage.edited: Message is the message
// after the edit; ReferrerID names the original message.
type MessageEdited struct {
	EventInfo
	Message    *tidings.Message
	ReferrerID string
}

// MessageDeleted is conversationMessage.deleted: Message is the message
// after the deletion (its parts are gone); ReferrerID names it.
type MessageDeleted struct {
	EventInfo
	Message    *tidings.Message
	ReferrerID string
}

// MessageDelivered is conversationMessage.delivered: ProfileID has got
// every message of the conversation up to Seq (MessageID is the message at
// Seq).
type MessageDelivered struct {
	EventInfo
	ProfileID string
	Seq       int64
	MessageID string
	Timestamp time.Time
}

// MessageRead is conversationMessage.read: ProfileID has read every
// message of the conversation up to Seq.
type MessageRead struct {
	EventInfo
	ProfileID string
	Seq       int64
	MessageID string
	Timestamp time.Time
}

// PresenceUpdate is presence.update (live only): a user who shares a
// conversation with you came online (first connection) or went offline
// (last connection ended).
type PresenceUpdate struct {
	EventInfo
	ProfileID string
	Online    bool
}

// AccountClosed is account.closed: the server ended an account (Reason
// "token_expired"; or, when the app ended the user's access,
// "user_deactivated", "tokens_revoked" or "user_deleted": see protocol's
// Reason constants); the other accounts of the connection are not
// affected. The client authenticates the account again with a fresh token
// when its token provider can give one (a static token cannot be
// refreshed: the account then gives up, see Account.WaitConnected).
type AccountClosed struct {
	EventInfo
	Account string // the account ended, as EventInfo.Account
	Reason  string
}

// ResyncRequired is not sent by the server: the client delivers it when
// the server no longer keeps the updates that followed the last one
// processed (they were pruned by retention). The application should
// rebuild its state from the REST API; once its listeners have returned,
// the client resumes after Ref, the newest ref of the server ("" when the
// server did not know the ref the client had: then it resumes with new
// updates only).
type ResyncRequired struct {
	EventInfo
	Ref string
}

// EventResyncRequired is the Name of ResyncRequired events.
const EventResyncRequired = "client.resyncRequired"

// UnknownEvent is an event this version of the SDK does not know (or
// whose payload it could not read): Name and Payload tell what it is.
type UnknownEvent struct {
	EventInfo
}

// decodeUpdate turns an update frame into an Event and its ref's number
// (0 for a live-only update), app being the account's app (the server
// does not repeat it in each event). ok is false when the frame is
// unusable.
func decodeUpdate(f *protocol.Frame, app string) (ev Event, seq int64, ok bool) {
	var e tidings.Event
	if err := json.Unmarshal(f.Event, &e); err != nil {
		return nil, 0, false
	}
	if f.Ref != "" {
		if seq, ok = protocol.ParseRef(f.Ref); !ok {
			return nil, 0, false
		}
	}
	if e.AppID == "" {
		e.AppID = app
	}
	account := f.Account
	if account == "" {
		account = DefaultAccount
	}
	info := EventInfo{Name: e.Name, Account: account, Ref: f.Ref, Silent: f.Silent, Action: protocol.ActionOf(e.Name), ID: e.ID, AppID: e.AppID,
		Time: e.Time, Actor: e.Actor, ConversationID: e.ConversationID, UserID: e.UserID, Payload: e.Payload}
	return typedEvent(info), seq, true
}

// typedEvent decodes the payload of an event by its name.
func typedEvent(info EventInfo) Event {
	var ev Event
	var err error
	decode := func(v any) bool {
		err = json.Unmarshal(info.Payload, v)
		return err == nil
	}
	switch info.Name {
	case tidings.EventProfileUpdate:
		var p tidings.ProfilePayload
		if decode(&p) {
			ev = &ProfileUpdate{EventInfo: info, ProfileID: p.ProfileID, Profile: p.User}
		}
	case tidings.EventConversationCreate:
		var p tidings.ConversationPayload
		if decode(&p) {
			ev = &ConversationCreate{EventInfo: info, Name: p.Name, Description: p.Description, IsPublic: p.IsPublic,
				Roles: p.Roles, Participants: p.Participants}
		}
	case tidings.EventConversationUpdate:
		var p tidings.ConversationPayload
		if decode(&p) {
			ev = &ConversationUpdate{EventInfo: info, Name: p.Name, Description: p.Description, IsPublic: p.IsPublic, Roles: p.Roles}
		}
	case tidings.EventConversationDelete:
		var p tidings.ConversationDatePayload
		if decode(&p) {
			ev = &ConversationDelete{EventInfo: info, Date: p.Date}
		}
	case tidings.EventConversationUndelete:
		var p tidings.ConversationDatePayload
		if decode(&p) {
			ev = &ConversationUndelete{EventInfo: info, Date: p.Date}
		}
	case tidings.EventParticipantAdded:
		var p tidings.ParticipantPayload
		if decode(&p) {
			ev = &ParticipantAdded{EventInfo: info, ProfileID: p.ProfileID, Role: p.Role, Reason: p.Reason}
		}
	case tidings.EventParticipantUpdated:
		var p tidings.ParticipantPayload
		if decode(&p) {
			ev = &ParticipantUpdated{EventInfo: info, ProfileID: p.ProfileID, Role: p.Role}
		}
	case tidings.EventParticipantRemoved:
		var p tidings.ParticipantPayload
		if decode(&p) {
			ev = &ParticipantRemoved{EventInfo: info, ProfileID: p.ProfileID, Reason: p.Reason}
		}
	case protocol.EventTyping:
		var p protocol.TypingPayload
		if decode(&p) {
			ev = &ParticipantTyping{EventInfo: info, ProfileID: p.ProfileID}
		}
	case protocol.EventTypingOff:
		var p protocol.TypingPayload
		if decode(&p) {
			ev = &ParticipantTypingOff{EventInfo: info, ProfileID: p.ProfileID}
		}
	case tidings.EventMessageSent, tidings.EventMessageEdited, tidings.EventMessageDeleted:
		var p tidings.MessagePayload
		if decode(&p) && p.Message != nil {
			// What the server leaves out of the wire, as the event says it,
			// and the event's id when it is the message's.
			p.Complete(&tidings.Event{ConversationID: info.ConversationID, Time: info.Time})
			info.ID = protocol.EventID(info.Name, info.ID, p.ID)
			// The actor of a sent message is its sender, left out (an
			// edit's is its id only): the sender is the profile in full.
			a := info.Actor
			if (a == nil && info.Name == tidings.EventMessageSent && p.Sender.ID != "") ||
				(a != nil && a.ID == p.Sender.ID && a.DisplayName == "") {
				sender := p.Sender
				info.Actor = &sender
			}
			switch info.Name {
			case tidings.EventMessageSent:
				ev = &MessageSent{EventInfo: info, Message: p.Message}
			case tidings.EventMessageEdited:
				ev = &MessageEdited{EventInfo: info, Message: p.Message, ReferrerID: p.ReferrerID}
			default:
				ev = &MessageDeleted{EventInfo: info, Message: p.Message, ReferrerID: p.ReferrerID}
			}
		}
	case tidings.EventMessageDelivered, tidings.EventMessageRead:
		var p tidings.StatusPayload
		if decode(&p) {
			if info.Name == tidings.EventMessageRead {
				ev = &MessageRead{EventInfo: info, ProfileID: p.ProfileID, Seq: p.Seq, MessageID: p.MessageID, Timestamp: p.Timestamp}
			} else {
				ev = &MessageDelivered{EventInfo: info, ProfileID: p.ProfileID, Seq: p.Seq, MessageID: p.MessageID, Timestamp: p.Timestamp}
			}
		}
	case protocol.EventPresence:
		var p protocol.PresencePayload
		if decode(&p) {
			ev = &PresenceUpdate{EventInfo: info, ProfileID: p.ProfileID, Online: p.Status == protocol.PresenceOnline}
		}
	case protocol.EventAccountEnds:
		var p protocol.AccountClosedPayload
		if decode(&p) {
			ev = &AccountClosed{EventInfo: info, Account: p.Account, Reason: p.Reason}
		}
	}
	if ev == nil {
		ev = &UnknownEvent{EventInfo: info}
	}
	return ev
}
