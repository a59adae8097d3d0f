package tidings

import (
	"context"
	"encoding/json"
	"time"
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
	CreatedAt   time.Time       `json:"createdAt"`
	UpdatedAt   time.Time       `json:"updatedAt"`
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

// UserUpdate holds the fields to change; nil fields are left alone.
// Metadata, when set, replaces the whole object.
type UserUpdate struct {
	DisplayName *string          `json:"displayName"`
	AvatarURL   *string          `json:"avatarUrl"`
	Identifier  *Identifier      `json:"identifier"`
	Metadata    *json.RawMessage `json:"metadata"`
}

// The profile fields, by their JSON names: what App.UserEditableFields
// lists.
const (
	FieldDisplayName = "displayName"
	FieldAvatarURL   = "avatarUrl"
	FieldIdentifier  = "identifier"
	FieldMetadata    = "metadata"
)

// ProfileFields are the fields of a profile, in their order.
var ProfileFields = []string{FieldDisplayName, FieldAvatarURL, FieldIdentifier, FieldMetadata}

// DefaultUserEditableFields are the profile fields users may change
// themselves unless their app says otherwise. The identifier and the
// metadata, which others may trust (an e-mail address, a "verified"
// flag), are the app server's.
var DefaultUserEditableFields = []string{FieldDisplayName, FieldAvatarURL}

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
	return fs
}

// UserFilter pages through users ordered by id.
type UserFilter struct {
	After string // return users whose id sorts after this one
	Limit int    // 0 means the default (50); capped at 200
}

// Limits on profile fields.
const (
	MaxDisplayNameLen = 200
	MaxURLLen         = 2048
	MaxMetadataBytes  = 16 << 10
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
}
