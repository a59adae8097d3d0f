package tidings

import (
	"context"
	"time"
)

// Role is a participant's role in a conversation.
type Role string

const (
	RoleOwner  Role = "owner"
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
	// RoleServer is the app's server acting as itself (the server key
	// without Tidings-On-Behalf-Of): an all-powerful moderator of every
	// conversation of its app, above the owners. It is no participant's
	// role: never stored, never granted (not Valid), never shown. Stores set
	// it as the conversation's Role (the caller's) for a Server caller
	// before asking the access policy (see ServerView).
	RoleServer Role = "server"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleOwner || r == RoleAdmin || r == RoleMember }

// rank orders roles: owner > admin > member.
func (r Role) rank() int {
	switch r {
	case RoleServer:
		return 4
	case RoleOwner:
		return 3
	case RoleAdmin:
		return 2
	case RoleMember:
		return 1
	}
	return 0
}

// AtLeast reports whether r is at least as high as o.
func (r Role) AtLeast(o Role) bool { return r.rank() >= o.rank() }

// Permission is something a role may be allowed to do in a conversation.
type Permission string

const (
	PermSend               Permission = "send"
	PermAddParticipants    Permission = "addParticipants"
	PermRemoveParticipants Permission = "removeParticipants"
	PermUpdate             Permission = "update" // conversation details and participant roles
	PermDelete             Permission = "delete" // delete and undelete the conversation
)

// RolePermissions says what one role may do.
type RolePermissions struct {
	Send               bool `json:"send"`
	AddParticipants    bool `json:"addParticipants"`
	RemoveParticipants bool `json:"removeParticipants"`
	Update             bool `json:"update"`
	Delete             bool `json:"delete"`
}

func (p RolePermissions) allows(perm Permission) bool {
	switch perm {
	case PermSend:
		return p.Send
	case PermAddParticipants:
		return p.AddParticipants
	case PermRemoveParticipants:
		return p.RemoveParticipants
	case PermUpdate:
		return p.Update
	case PermDelete:
		return p.Delete
	}
	return false
}

// Roles holds the permissions of the admin and member roles of one
// conversation. The owner may always do everything, so that no
// conversation can lock out its owners.
type Roles struct {
	Admin  RolePermissions `json:"admin"`
	Member RolePermissions `json:"member"`
}

// DefaultRoles: admins may do everything but delete; members may send.
func DefaultRoles() Roles {
	return Roles{
		Admin:  RolePermissions{Send: true, AddParticipants: true, RemoveParticipants: true, Update: true},
		Member: RolePermissions{Send: true},
	}
}

// Allows reports whether a participant with role r may do perm.
func (rs Roles) Allows(r Role, perm Permission) bool {
	switch r {
	case RoleOwner, RoleServer:
		return true
	case RoleAdmin:
		return rs.Admin.allows(perm)
	case RoleMember:
		return rs.Member.allows(perm)
	}
	return false
}

// Conversation is a group of participants exchanging messages.
type Conversation struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// IsPublic conversations can be seen and joined by any user of the
	// app; private ones are invisible (ENotFound) to non-participants.
	IsPublic bool  `json:"isPublic"`
	Roles    Roles `json:"roles"`
	// LastSeq is the sequence number of the newest message (0: none).
	LastSeq int64 `json:"lastSeq"`
	// ParticipantCount is the number of current participants.
	ParticipantCount int    `json:"participantCount"`
	CreatedBy        string `json:"createdBy"`
	// LastActivityAt is when the last message was sent (or the
	// conversation created); conversation lists are sorted by it.
	LastActivityAt time.Time  `json:"lastActivityAt"`
	CreatedAt      time.Time  `json:"createdAt"`
	UpdatedAt      time.Time  `json:"updatedAt"`
	DeletedAt      *time.Time `json:"deletedAt,omitempty"`

	// Caller-specific view, filled when the caller is a participant.
	Role        Role  `json:"role,omitempty"` // the caller's role
	ReadSeq     int64 `json:"readSeq"`        // the caller's read high-water mark
	UnreadCount int64 `json:"unreadCount"`    // LastSeq - ReadSeq
	// MutedByModerator: the caller is muted in the conversation (by a
	// moderator or the app, MuteParticipant): they cannot send. (Not the
	// mute of its push notifications, which is the user's own.)
	MutedByModerator bool `json:"mutedByModerator,omitempty"`
}

// NewConversation is what a caller gives to create a conversation.
type NewConversation struct {
	ID           string           `json:"id"` // optional: generated if empty
	Name         string           `json:"name"`
	Description  string           `json:"description"`
	IsPublic     bool             `json:"isPublic"`
	Roles        *Roles           `json:"roles"`        // optional: DefaultRoles
	Participants []NewParticipant `json:"participants"` // besides the creator, who becomes owner
}

// NewParticipant names a user to add and their role (default member).
type NewParticipant struct {
	UserID string `json:"userId"`
	Role   Role   `json:"role"`
}

// ConversationUpdate holds fields to change; nil fields are left alone.
type ConversationUpdate struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
	IsPublic    *bool   `json:"isPublic"`
	Roles       *Roles  `json:"roles"`
}

// ConversationFilter pages through the caller's conversations, most
// recently active first.
type ConversationFilter struct {
	// Cursor is an opaque value from a previous page's NextCursor.
	Cursor         string
	Limit          int  // 0 means 50; capped at 200
	IncludeDeleted bool // include soft-deleted conversations
}

// ConversationPage is a page of conversations.
type ConversationPage struct {
	Conversations []*Conversation `json:"conversations"`
	NextCursor    string          `json:"nextCursor,omitempty"`
}

// ParticipantFilter pages through a conversation's participants, in the
// order they joined.
type ParticipantFilter struct {
	// Cursor is an opaque value from a previous page's NextCursor.
	Cursor string
	Limit  int // 0 means DefaultParticipantPage; capped at MaxParticipantPage
}

// ParticipantPage is a page of participants.
type ParticipantPage struct {
	Participants []*Participant `json:"participants"`
	NextCursor   string         `json:"nextCursor,omitempty"`
}

// Page sizes of participant lists: large enough that most conversations
// fit in one page, bounded so that a channel's never comes in one answer.
const (
	DefaultParticipantPage = 200
	MaxParticipantPage     = 1000
)

// Participant is a user's membership of a conversation, with their
// message status high-water marks.
type Participant struct {
	UserID       string    `json:"userId"`
	Profile      Profile   `json:"profile"`
	Role         Role      `json:"role"`
	DeliveredSeq int64     `json:"deliveredSeq"`
	ReadSeq      int64     `json:"readSeq"`
	JoinedAt     time.Time `json:"joinedAt"`
	// Muted is set while the participant is muted in the conversation:
	// they cannot send messages (nor upload files) until unmuted.
	Muted bool `json:"muted,omitempty"`
}

// Limits on conversation fields.
const (
	MaxNameLen             = 200
	MaxDescriptionLen      = 2000
	MaxInitialParticipants = 1000
)

// ConversationService manages conversations and their participants. The
// methods need a user caller, or the app's server acting as itself (a
// Server caller), which may do everything in every conversation of its
// app (RoleServer): see, list (ListConversations lists every conversation
// of the app), create with any participants and roles
// (ConversationParticipants), update, delete, add, change and remove
// anyone. Join and Leave need a user. A private conversation the caller
// does not take part in is ENotFound; a public one can be found and
// joined. Events of the server's changes have no actor.
//
// Events: CreateConversation emits EventConversationCreate then one
// EventParticipantAdded per participant (owner first); UpdateConversation
// EventConversationUpdate; Delete/Undelete EventConversationDelete and
// EventConversationUndelete; AddParticipant and Join
// EventParticipantAdded; UpdateParticipant EventParticipantUpdated;
// RemoveParticipant and Leave EventParticipantRemoved.
type ConversationService interface {
	CreateConversation(ctx context.Context, nc NewConversation) (*Conversation, error)
	// FindConversationByID returns a deleted conversation too (DeletedAt set)
	// to its participants.
	FindConversationByID(ctx context.Context, id string) (*Conversation, error)
	ListConversations(ctx context.Context, f ConversationFilter) (*ConversationPage, error)
	UpdateConversation(ctx context.Context, id string, upd ConversationUpdate) (*Conversation, error)
	// DeleteConversation soft-deletes: messages and participants are kept;
	// no message can be sent until it is undeleted. Needs PermDelete.
	DeleteConversation(ctx context.Context, id string) error
	UndeleteConversation(ctx context.Context, id string) (*Conversation, error)

	// ListParticipants returns a page of the participants, in the order
	// they joined.
	ListParticipants(ctx context.Context, conversationID string, f ParticipantFilter) (*ParticipantPage, error)
	// AddParticipant needs PermAddParticipants and cannot grant a role above
	// the caller's own. EConflict if already a participant.
	AddParticipant(ctx context.Context, conversationID string, p NewParticipant) (*Participant, error)
	// UpdateParticipant changes a role; needs PermUpdate; cannot grant or
	// change a role above the caller's own; the last owner cannot be demoted.
	UpdateParticipant(ctx context.Context, conversationID, userID string, role Role) (*Participant, error)
	// RemoveParticipant kicks userID; needs PermRemoveParticipants and a role
	// at least as high as theirs. Removing oneself is Leave.
	RemoveParticipant(ctx context.Context, conversationID, userID string) error
	// MuteParticipant mutes userID in the conversation (muted) or unmutes
	// them: a muted participant cannot send (EForbidden) until unmuted.
	// It needs PermRemoveParticipants and a role at least as high as
	// theirs (a moderator), or the app's server; it emits
	// EventParticipantUpdated (Muted set) when it changes.
	MuteParticipant(ctx context.Context, conversationID, userID string, muted bool) (*Participant, error)
	// Join adds the caller as member of a public conversation.
	Join(ctx context.Context, conversationID string) (*Participant, error)
	// Leave removes the caller. The last owner cannot leave (EConflict)
	// while other participants remain.
	Leave(ctx context.Context, conversationID string) error
}
