package tidings

import (
	"context"
	"encoding/json"
	"time"

	"github.com/tidings/tidings/internal/jsonenc"
)

// Identifier is how people know a user outside Tidings, e.g.
// {value: "alice@example.com", kind: "email"}.
type Identifier struct {
	Value string `json:"value"`
	Kind  string `json:"kind"`
}

// User is a person in an app, with their profile. The id is chosen by the
// customer (usually their own user id).
type User struct {
	ID          string          `json:"id"`
	DisplayName string          `json:"displayName"`
	AvatarURL   string          `json:"avatarUrl,omitempty"`
	Identifier  *Identifier     `json:"identifier,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"` // a JSON object, or absent
	// PresenceHidden, set by the user (or the app's server), hides from
	// other users whether they are online and when they were last seen:
	// to others they are offline, never seen. They see their own.
	PresenceHidden bool `json:"presenceHidden"`
	// LastSeenAt is when the user's last realtime connection closed: nil
	// when it never did, and for callers who may not see it (see
	// HidePresenceFrom).
	LastSeenAt *time.Time `json:"lastSeenAt,omitempty"`
	// DeactivatedAt is set while the user is deactivated (banned from the
	// app): their tokens are refused and they cannot connect. Everyone
	// who sees the profile sees it.
	DeactivatedAt *time.Time `json:"deactivatedAt,omitempty"`
	// TokensNotBefore, set when the app revoked the user's tokens, refuses
	// every access token issued before it (iat), or without iat. It is on
	// a whole second. Only the app's server sees it.
	TokensNotBefore *time.Time `json:"tokensNotBefore,omitempty"`
	CreatedAt       time.Time  `json:"createdAt"`
	UpdatedAt       time.Time  `json:"updatedAt"`
}

// AcceptsToken says whether an access token of the user, issued at
// issuedAt (zero when it has no iat claim), may be used now: not while the
// user is deactivated, nor when the app revoked the user's tokens after it
// was issued. The error is EUnauthenticated, saying which.
func (u *User) AcceptsToken(issuedAt time.Time) error {
	if u.DeactivatedAt != nil {
		return Errorf(EUnauthenticated, "user %q is deactivated: the app must reactivate them", u.ID)
	}
	if u.TokensNotBefore != nil && issuedAt.Before(*u.TokensNotBefore) {
		return Errorf(EUnauthenticated, "this access token was revoked: the app revoked the tokens of user %q issued before %s", u.ID, u.TokensNotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// HideFrom removes what the caller may not see of the user: their
// presence (HidePresenceFrom), and TokensNotBefore but for the app's
// server.
func (u *User) HideFrom(c Caller) {
	u.HidePresenceFrom(c)
	if !c.Server {
		u.TokensNotBefore = nil
	}
}

// PresenceVisibleTo reports whether the caller may see the user's
// presence (online or not, last seen): the app's server and the user
// themself always may; other users of the app unless the user hides it.
func (u *User) PresenceVisibleTo(c Caller) bool {
	return c.Server || c.UserID == u.ID || !u.PresenceHidden
}

// HidePresenceFrom removes what the caller may not see of the user's
// presence (LastSeenAt).
func (u *User) HidePresenceFrom(c Caller) {
	if !u.PresenceVisibleTo(c) {
		u.LastSeenAt = nil
	}
}

// Summary returns the profile summary carried by events about the user.
func (u *User) Summary() Profile {
	return Profile{ID: u.ID, DisplayName: u.DisplayName, AvatarURL: u.AvatarURL, Identifier: u.Identifier}
}

// Profile is the short form of a user carried by events and messages
// (seed 004's sender: display name, avatar URL, identifier).
type Profile struct {
	ID          string      `json:"id"`
	DisplayName string      `json:"displayName"`
	AvatarURL   string      `json:"avatarUrl,omitempty"`
	Identifier  *Identifier `json:"identifier,omitempty"`
}

// encodedSize is about the size of p encoded (AppendJSON), escapes aside.
func (p Profile) encodedSize() int {
	n := 64 + len(p.ID) + len(p.DisplayName) + len(p.AvatarURL)
	if p.Identifier != nil {
		n += 40 + len(p.Identifier.Value) + len(p.Identifier.Kind)
	}
	return n
}

// AppendJSON appends p as encoding/json writes it, without its
// reflection: for the encodings paid once per message (a message event's
// payload, the answer to a send).
func (p Profile) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = jsonenc.String(b, p.ID)
	b = append(b, `,"displayName":`...)
	b = jsonenc.String(b, p.DisplayName)
	if p.AvatarURL != "" {
		b = append(b, `,"avatarUrl":`...)
		b = jsonenc.String(b, p.AvatarURL)
	}
	if idf := p.Identifier; idf != nil {
		b = append(b, `,"identifier":{"value":`...)
		b = jsonenc.String(b, idf.Value)
		b = append(b, `,"kind":`...)
		b = jsonenc.String(b, idf.Kind)
		b = append(b, '}')
	}
	return append(b, '}')
}

// UserUpdate holds the fields to change; nil fields are left alone.
// Metadata, when set, replaces the whole object.
type UserUpdate struct {
	DisplayName *string          `json:"displayName"`
	AvatarURL   *string          `json:"avatarUrl"`
	Identifier  *Identifier      `json:"identifier"`
	Metadata    *json.RawMessage `json:"metadata"`
	// PresenceHidden turns the user's presence privacy switch on or off.
	PresenceHidden *bool `json:"presenceHidden"`
}

// The profile fields, by their JSON names: what App.UserEditableFields
// lists.
const (
	FieldDisplayName = "displayName"
	FieldAvatarURL   = "avatarUrl"
	FieldIdentifier  = "identifier"
	FieldMetadata    = "metadata"
	// FieldPresenceHidden is the privacy switch of the user's presence.
	FieldPresenceHidden = "presenceHidden"
)

// ProfileFields are the fields of a profile, in their order.
var ProfileFields = []string{FieldDisplayName, FieldAvatarURL, FieldIdentifier, FieldMetadata, FieldPresenceHidden}

// DefaultUserEditableFields are the profile fields users may change
// themselves unless their app says otherwise. The identifier and the
// metadata, which others may trust (an e-mail address, a "verified"
// flag), are the app server's; the presence privacy switch is the user's.
var DefaultUserEditableFields = []string{FieldDisplayName, FieldAvatarURL, FieldPresenceHidden}

// Fields returns the names of the fields upd sets, in ProfileFields order.
func (upd UserUpdate) Fields() []string {
	var fs []string
	if upd.DisplayName != nil {
		fs = append(fs, FieldDisplayName)
	}
	if upd.AvatarURL != nil {
		fs = append(fs, FieldAvatarURL)
	}
	if upd.Identifier != nil {
		fs = append(fs, FieldIdentifier)
	}
	if upd.Metadata != nil {
		fs = append(fs, FieldMetadata)
	}
	if upd.PresenceHidden != nil {
		fs = append(fs, FieldPresenceHidden)
	}
	return fs
}

// UserFilter pages through users ordered by id.
type UserFilter struct {
	After string // return users whose id sorts after this one
	Limit int    // 0 means the default (50); capped at 200
	// IDPrefix keeps the users whose id starts with it.
	IDPrefix string
	// Search keeps the users whose display name or identifier value
	// contains it, ignoring the case of ASCII letters.
	Search string
}

// Limits on profile fields.
const (
	MaxDisplayNameLen = 200
	MaxURLLen         = 2048
	MaxMetadataBytes  = 16 << 10
)

// MessagesOfDeleted says what becomes of the messages of a deleted user.
type MessagesOfDeleted string

const (
	// EraseMessages empties them: each stays in its place (seq) as a
	// deleted message without content or sender; files the user uploaded
	// are removed.
	EraseMessages MessagesOfDeleted = "erase"
	// AnonymizeMessages keeps them, content and files, under an anonymous
	// sender (an empty sender id, not System).
	AnonymizeMessages MessagesOfDeleted = "anonymize"
)

// UserService manages users and profiles.
//
// Creating and listing users needs the app server. Finding a user is open
// to the server and to any user of the same app. Updating a profile is
// open to the server and to the user themself, for the fields their app
// lets users edit (App.UserEditableFields; EForbidden naming the field
// otherwise). An identifier is unique in its app for its kind: setting one
// another user has is EConflict. Every change emits EventProfileUpdate.
type UserService interface {
	// CreateUser creates u.ID (EConflict if taken; EInvalid for a bad id
	// or fields). DisplayName defaults to the id.
	CreateUser(ctx context.Context, u *User) (*User, error)
	FindUserByID(ctx context.Context, id string) (*User, error)
	ListUsers(ctx context.Context, f UserFilter) ([]*User, error)
	UpdateUser(ctx context.Context, id string, upd UserUpdate) (*User, error)

	// DeactivateUser and ReactivateUser turn the user's deactivation (ban)
	// on or off (User.DeactivatedAt; doing it twice changes nothing). They
	// need the app's server and emit EventProfileUpdate when it changes.
	// Closing the user's open connections is the caller's (the realtime
	// node's CloseUser).
	DeactivateUser(ctx context.Context, id string) (*User, error)
	ReactivateUser(ctx context.Context, id string) (*User, error)
	// RevokeTokens refuses every token of the user issued until now: it
	// sets User.TokensNotBefore to the second after now. It needs the
	// app's server and emits no event.
	RevokeTokens(ctx context.Context, id string) (*User, error)
	// DeleteUser deletes the user and every trace of them: their profile,
	// participations (a conversation whose last owner they were is left
	// without one), memberships, cursors and profile shares; their
	// messages are erased or anonymized (MessagesOfDeleted); the events
	// about them (their profile, participation and marks) leave the log,
	// and the others no longer name them (actor, sender, participant
	// lists). Each conversation they took part in gets an
	// EventParticipantRemoved naming no one (ReasonDeleted), and with
	// EraseMessages an EventMessageDeleted for each message. It needs the
	// app's server; ENotFound for an unknown user.
	DeleteUser(ctx context.Context, id string, messages MessagesOfDeleted) error
}

// UserRef names a user of an app.
type UserRef struct {
	AppID, UserID string
}

// AccessLog is a UserService whose store logs, in commit order, every
// user whose access may have ended: deactivated, tokens revoked or
// deleted, by whatever wrote the database (another node, a command that
// opened the store directly). The realtime node's access check reads it
// instead of reading every user of its sessions again: with nothing
// changed, one read of the log and none of the users.
//
// A point is a position in the log: AccessLogHead returns the newest;
// AccessChangesSince returns the users logged after one (oldest first, at
// most limit of them, a user possibly more than once; a deleted user's
// entries are replaced by one of their app with no UserID, which stands
// for every user of the app, so that the log keeps no trace of them) and
// the point to
// ask from next, which is after when nothing was logged since. complete
// is false when the log no longer holds everything logged after after
// (the oldest entries go once the log is long, or after is not a point of
// this log): the caller must then read every user it cares about, having
// taken the head first. A user whose change is in the log was changed,
// in the store, before the entry became readable. The caller needs no
// app: the log covers every app.
type AccessLog interface {
	AccessLogHead(ctx context.Context) (int64, error)
	AccessChangesSince(ctx context.Context, after int64, limit int) (users []UserRef, next int64, complete bool, err error)
}

// LastSeen is when a user's last realtime connection closed.
type LastSeen struct {
	AppID, UserID string
	At            time.Time
}

// UserPresence is what the realtime node needs of a user to tell their
// presence: the privacy switch and when they were last seen (zero: never).
type UserPresence struct {
	UserID     string
	Hidden     bool
	LastSeenAt time.Time
}

// LastSeenStore keeps when users were last seen. Its methods are the
// realtime node's (no caller in the context).
type LastSeenStore interface {
	// SaveLastSeen stores when users were last seen; a time earlier than
	// the one stored is ignored, and unknown users are skipped.
	SaveLastSeen(ctx context.Context, seen []LastSeen) error
	// UsersPresence returns the presence of those of ids that are users of
	// the app, in any order; the others are left out.
	UsersPresence(ctx context.Context, appID string, ids []string) ([]UserPresence, error)
}
