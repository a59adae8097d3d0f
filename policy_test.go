package tidings

import (
	"errors"
	"testing"
	"time"
)

// view builds a conversation "c1" as a caller with role sees it.
func view(role Role, public, deleted bool) *Conversation {
	c := &Conversation{ID: "c1", IsPublic: public, Roles: DefaultRoles(), Role: role, ParticipantCount: 2}
	if deleted {
		t := time.Unix(1700000000, 0)
		c.DeletedAt = &t
	}
	return c
}

// with returns conv changed by f.
func with(conv *Conversation, f func(*Conversation)) *Conversation {
	f(conv)
	return conv
}

// checkErr fails unless err is nil (code "") or an *Error with that code
// and message.
func checkErr(t *testing.T, err error, code, msg string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("got %v, want nil", err)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v, want %s: %s", err, code, msg)
	}
	if e.Code != code || e.Message != msg {
		t.Fatalf("got %s: %s\nwant %s: %s", e.Code, e.Message, code, msg)
	}
}

const (
	msgNotFound      = `conversation "c1" not found`
	msgNotIn         = `you do not take part in conversation "c1"`
	msgJoinFirst     = `you do not take part in conversation "c1": join it first`
	msgConvDeleted   = `conversation "c1" is deleted`
	msgNeedsAnOwner  = `conversation "c1" needs an owner: make another participant owner first`
	msgTargetMissing = `user "u2" does not take part in conversation "c1"`
)

func TestCanSeeConversation(t *testing.T) {
	tests := []struct {
		name string
		conv *Conversation
		code string
	}{
		{"no such conversation", nil, ENotFound},
		{"private, not in it", view("", false, false), ENotFound},
		{"public, not in it", view("", true, false), ""},
		{"public deleted, not in it", view("", true, true), ENotFound},
		{"private, member", view(RoleMember, false, false), ""},
		{"deleted, member", view(RoleMember, false, true), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, CanSeeConversation("c1", tt.conv), tt.code, msgNotFound)
		})
	}
}

func TestCanReadConversation(t *testing.T) {
	tests := []struct {
		name      string
		conv      *Conversation
		code, msg string
	}{
		{"no such conversation", nil, ENotFound, msgNotFound},
		{"private, not in it", view("", false, false), ENotFound, msgNotFound},
		{"public, not in it", view("", true, false), EForbidden, msgJoinFirst},
		{"member", view(RoleMember, false, false), "", ""},
		{"deleted, member", view(RoleMember, true, true), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, CanReadConversation("c1", tt.conv), tt.code, tt.msg)
		})
	}
}

func TestCanActInConversation(t *testing.T) {
	tests := []struct {
		name         string
		conv         *Conversation
		perm         Permission
		allowDeleted bool
		code, msg    string
	}{
		{"no such conversation", nil, "", true, ENotFound, msgNotFound},
		{"private, not in it", view("", false, false), "", true, ENotFound, msgNotFound},
		{"public, not in it", view("", true, false), "", true, EForbidden, msgNotIn},
		{"deleted", view(RoleOwner, false, true), "", false, EConflict, msgConvDeleted},
		{"deleted allowed", view(RoleMember, false, true), "", true, "", ""},
		{"member may send", view(RoleMember, false, false), PermSend, false, "", ""},
		{"member may not update", view(RoleMember, false, false), PermUpdate, false, EForbidden,
			"your role (member) does not allow update in this conversation"},
		{"admin may not delete", view(RoleAdmin, false, false), PermDelete, true, EForbidden,
			"your role (admin) does not allow delete in this conversation"},
		{"owner may do anything", with(view(RoleOwner, false, false), func(c *Conversation) { c.Roles = Roles{} }), PermDelete, true, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, CanActInConversation("c1", tt.conv, tt.perm, tt.allowDeleted), tt.code, tt.msg)
		})
	}
}

func TestCanSendMessage(t *testing.T) {
	noSend := func(c *Conversation) { c.Roles.Member.Send = false }
	tests := []struct {
		name      string
		conv      *Conversation
		code, msg string
	}{
		{"no such conversation", nil, ENotFound, msgNotFound},
		{"private, not in it", view("", false, false), ENotFound, msgNotFound},
		{"public deleted, not in it", view("", true, true), ENotFound, msgNotFound},
		{"public, not in it", view("", true, false), EForbidden, msgJoinFirst},
		{"deleted, member", view(RoleMember, false, true), EConflict, msgConvDeleted},
		{"member", view(RoleMember, false, false), "", ""},
		{"member without send", with(view(RoleMember, false, false), noSend), EForbidden,
			"your role (member) does not allow sending in this conversation"},
		{"owner without member send", with(view(RoleOwner, false, false), noSend), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, CanSendMessage("c1", tt.conv), tt.code, tt.msg)
		})
	}
}

func TestCanUploadFileAndMarkMessages(t *testing.T) {
	noSend := with(view(RoleMember, false, false), func(c *Conversation) { c.Roles.Member.Send = false })
	checkErr(t, CanUploadFile("c1", view(RoleMember, false, false)), "", "")
	checkErr(t, CanUploadFile("c1", noSend), EForbidden, "your role (member) does not allow send in this conversation")
	checkErr(t, CanUploadFile("c1", view(RoleMember, false, true)), EConflict, msgConvDeleted)
	checkErr(t, CanUploadFile("c1", view("", true, false)), EForbidden, msgNotIn)
	checkErr(t, CanMarkMessages("c1", view(RoleMember, false, true)), "", "")
	checkErr(t, CanMarkMessages("c1", noSend), "", "")
	checkErr(t, CanMarkMessages("c1", view("", true, false)), EForbidden, msgNotIn)
	checkErr(t, CanMarkMessages("c1", nil), ENotFound, msgNotFound)
}

func TestCanUpdateConversation(t *testing.T) {
	name := "new"
	roles := DefaultRoles()
	tests := []struct {
		name      string
		conv      *Conversation
		upd       ConversationUpdate
		code, msg string
	}{
		{"member", view(RoleMember, false, false), ConversationUpdate{Name: &name}, EForbidden,
			"your role (member) does not allow update in this conversation"},
		{"admin renames", view(RoleAdmin, false, false), ConversationUpdate{Name: &name}, "", ""},
		{"admin changes roles", view(RoleAdmin, false, false), ConversationUpdate{Roles: &roles}, EForbidden,
			"only an owner can change what roles may do"},
		{"owner changes roles", view(RoleOwner, false, false), ConversationUpdate{Roles: &roles}, "", ""},
		{"deleted", view(RoleOwner, false, true), ConversationUpdate{Name: &name}, EConflict, msgConvDeleted},
		{"not in it", view("", false, false), ConversationUpdate{Name: &name}, ENotFound, msgNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, CanUpdateConversation("c1", tt.conv, tt.upd), tt.code, tt.msg)
		})
	}
}

func TestCanDeleteConversation(t *testing.T) {
	checkErr(t, CanDeleteConversation("c1", view(RoleOwner, false, false)), "", "")
	checkErr(t, CanDeleteConversation("c1", view(RoleOwner, false, true)), "", "") // undelete
	checkErr(t, CanDeleteConversation("c1", view(RoleAdmin, false, false)), EForbidden,
		"your role (admin) does not allow delete in this conversation")
	checkErr(t, CanDeleteConversation("c1", view("", true, false)), EForbidden, msgNotIn)
	checkErr(t, CanDeleteConversation("c1", view("", true, true)), ENotFound, msgNotFound)
}

func TestCanAddParticipant(t *testing.T) {
	tests := []struct {
		name      string
		conv      *Conversation
		np        NewParticipant
		existing  *Participant
		code, msg string
	}{
		{"admin adds member", view(RoleAdmin, false, false), NewParticipant{UserID: "u2", Role: RoleMember}, nil, "", ""},
		{"admin adds admin", view(RoleAdmin, false, false), NewParticipant{UserID: "u2", Role: RoleAdmin}, nil, "", ""},
		{"admin grants owner", view(RoleAdmin, false, false), NewParticipant{UserID: "u2", Role: RoleOwner}, nil, EForbidden,
			"you (admin) cannot grant the owner role"},
		{"owner grants owner", view(RoleOwner, false, false), NewParticipant{UserID: "u2", Role: RoleOwner}, nil, "", ""},
		{"member", view(RoleMember, false, false), NewParticipant{UserID: "u2", Role: RoleMember}, nil, EForbidden,
			"your role (member) does not allow addParticipants in this conversation"},
		{"already in", view(RoleOwner, false, false), NewParticipant{UserID: "u2", Role: RoleMember}, &Participant{UserID: "u2", Role: RoleMember},
			EConflict, `user "u2" already takes part in conversation "c1"`},
		{"grant limit before already in", view(RoleAdmin, false, false), NewParticipant{UserID: "u2", Role: RoleOwner}, &Participant{UserID: "u2"},
			EForbidden, "you (admin) cannot grant the owner role"},
		{"deleted", view(RoleOwner, false, true), NewParticipant{UserID: "u2", Role: RoleMember}, nil, EConflict, msgConvDeleted},
		{"private, not in it", view("", false, false), NewParticipant{UserID: "u2", Role: RoleMember}, &Participant{UserID: "u2"},
			ENotFound, msgNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, CanAddParticipant("c1", tt.conv, tt.np, tt.existing), tt.code, tt.msg)
		})
	}
}

// ownerCount returns an owners function answering n, recording calls.
func ownerCount(n int, calls *int) func() (int, error) {
	return func() (int, error) { *calls++; return n, nil }
}

func TestCanUpdateParticipant(t *testing.T) {
	member := &Participant{UserID: "u2", Role: RoleMember}
	admin := &Participant{UserID: "u2", Role: RoleAdmin}
	owner := &Participant{UserID: "u2", Role: RoleOwner}
	tests := []struct {
		name       string
		conv       *Conversation
		target     *Participant
		role       Role
		owners     int
		change     bool
		countCalls int
		code, msg  string
	}{
		{"owner promotes member", view(RoleOwner, false, false), member, RoleAdmin, 1, true, 0, "", ""},
		{"same role is no change", view(RoleAdmin, false, false), owner, RoleOwner, 1, false, 0, "", ""},
		{"admin promotes to owner", view(RoleAdmin, false, false), member, RoleOwner, 1, false, 0, EForbidden,
			"you (admin) cannot change a member into a owner"},
		{"admin demotes owner", view(RoleAdmin, false, false), owner, RoleMember, 2, false, 0, EForbidden,
			"you (admin) cannot change a owner into a member"},
		{"admin demotes admin", view(RoleAdmin, false, false), admin, RoleMember, 1, true, 0, "", ""},
		{"last owner demoted", view(RoleOwner, false, false), owner, RoleAdmin, 1, false, 1, EConflict, msgNeedsAnOwner},
		{"one of two owners demoted", view(RoleOwner, false, false), owner, RoleAdmin, 2, true, 1, "", ""},
		{"target not in it", view(RoleOwner, false, false), nil, RoleAdmin, 1, false, 0, ENotFound, msgTargetMissing},
		{"member", view(RoleMember, false, false), nil, RoleAdmin, 1, false, 0, EForbidden,
			"your role (member) does not allow update in this conversation"},
		{"deleted", view(RoleOwner, false, true), member, RoleAdmin, 1, false, 0, EConflict, msgConvDeleted},
		{"private, not in it", view("", false, false), member, RoleAdmin, 1, false, 0, ENotFound, msgNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			change, err := CanUpdateParticipant("c1", tt.conv, "u2", tt.target, tt.role, ownerCount(tt.owners, &calls))
			checkErr(t, err, tt.code, tt.msg)
			if change != tt.change {
				t.Errorf("change = %v, want %v", change, tt.change)
			}
			if calls != tt.countCalls {
				t.Errorf("owners counted %d times, want %d", calls, tt.countCalls)
			}
		})
	}
	t.Run("count fails", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := CanUpdateParticipant("c1", view(RoleOwner, false, false), "u2", owner, RoleMember,
			func() (int, error) { return 0, boom })
		if !errors.Is(err, boom) {
			t.Fatalf("got %v, want the count's error", err)
		}
	})
}

func TestCanRemoveParticipant(t *testing.T) {
	tests := []struct {
		name      string
		conv      *Conversation
		target    *Participant
		code, msg string
	}{
		{"admin removes member", view(RoleAdmin, false, false), &Participant{Role: RoleMember}, "", ""},
		{"admin removes admin", view(RoleAdmin, false, false), &Participant{Role: RoleAdmin}, "", ""},
		{"admin removes owner", view(RoleAdmin, false, false), &Participant{Role: RoleOwner}, EForbidden, "you (admin) cannot remove a owner"},
		{"owner removes owner", view(RoleOwner, false, false), &Participant{Role: RoleOwner}, "", ""},
		{"member", view(RoleMember, false, false), &Participant{Role: RoleMember}, EForbidden,
			"your role (member) does not allow removeParticipants in this conversation"},
		{"target not in it", view(RoleOwner, false, false), nil, ENotFound, msgTargetMissing},
		{"deleted", view(RoleOwner, false, true), &Participant{Role: RoleMember}, EConflict, msgConvDeleted},
		{"public, not in it", view("", true, false), nil, EForbidden, msgNotIn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, CanRemoveParticipant("c1", tt.conv, "u2", tt.target), tt.code, tt.msg)
		})
	}
}

func TestCanJoinConversation(t *testing.T) {
	tests := []struct {
		name string
		conv *Conversation
		join bool
		code string
	}{
		{"public", view("", true, false), true, ""},
		{"private", view("", false, false), false, ENotFound},
		{"public deleted", view("", true, true), false, ENotFound},
		{"no such conversation", nil, false, ENotFound},
		{"already in", view(RoleMember, false, false), false, ""},
		{"already in, deleted", view(RoleMember, true, true), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			join, err := CanJoinConversation("c1", tt.conv)
			checkErr(t, err, tt.code, msgNotFound)
			if join != tt.join {
				t.Errorf("join = %v, want %v", join, tt.join)
			}
		})
	}
}

func TestCanLeaveConversation(t *testing.T) {
	alone := func(c *Conversation) { c.ParticipantCount = 1 }
	tests := []struct {
		name       string
		conv       *Conversation
		owners     int
		countCalls int
		code, msg  string
	}{
		{"member", view(RoleMember, false, false), 1, 0, "", ""},
		{"member of a deleted one", view(RoleMember, false, true), 1, 0, "", ""},
		{"last owner with others", view(RoleOwner, false, false), 1, 1, EConflict, msgNeedsAnOwner},
		{"last owner with others, deleted", view(RoleOwner, false, true), 1, 1, EConflict, msgNeedsAnOwner},
		{"one of two owners", view(RoleOwner, false, false), 2, 1, "", ""},
		{"last owner alone", with(view(RoleOwner, false, false), alone), 1, 0, "", ""},
		{"public, not in it", view("", true, false), 1, 0, EForbidden, msgNotIn},
		{"private, not in it", view("", false, false), 1, 0, ENotFound, msgNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			checkErr(t, CanLeaveConversation("c1", tt.conv, ownerCount(tt.owners, &calls)), tt.code, tt.msg)
			if calls != tt.countCalls {
				t.Errorf("owners counted %d times, want %d", calls, tt.countCalls)
			}
		})
	}
}

func TestCanEditMessage(t *testing.T) {
	now := time.Now()
	mine := &Message{ID: "m1", Sender: Profile{ID: "u1"}}
	theirs := &Message{ID: "m1", Sender: Profile{ID: "u2"}}
	deleted := &Message{ID: "m1", Sender: Profile{ID: "u1"}, DeletedAt: &now}
	tests := []struct {
		name      string
		conv      *Conversation
		m         *Message
		code, msg string
	}{
		{"sender", view(RoleMember, false, false), mine, "", ""},
		{"owner, not sender", view(RoleOwner, false, false), theirs, EForbidden, "only the sender can edit a message"},
		{"deleted message", view(RoleMember, false, false), deleted, EConflict, `message "m1" is deleted`},
		{"no such message", view(RoleMember, false, false), nil, ENotFound, `message "m1" not found in conversation "c1"`},
		{"deleted conversation", view(RoleMember, false, true), mine, EConflict, msgConvDeleted},
		{"sender who left", view("", true, false), mine, EForbidden, msgNotIn},
		{"private, not in it", view("", false, false), nil, ENotFound, msgNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkErr(t, CanEditMessage("c1", tt.conv, "u1", "m1", tt.m), tt.code, tt.msg)
		})
	}
}

func TestCanDeleteMessage(t *testing.T) {
	now := time.Now()
	mine := &Message{ID: "m1", Sender: Profile{ID: "u1"}}
	theirs := &Message{ID: "m1", Sender: Profile{ID: "u2"}}
	deletedTheirs := &Message{ID: "m1", Sender: Profile{ID: "u2"}, DeletedAt: &now}
	deletedMine := &Message{ID: "m1", Sender: Profile{ID: "u1"}, DeletedAt: &now}
	tests := []struct {
		name      string
		conv      *Conversation
		m         *Message
		del       bool
		code, msg string
	}{
		{"sender", view(RoleMember, false, false), mine, true, "", ""},
		{"admin moderates", view(RoleAdmin, false, false), theirs, true, "", ""},
		{"member, not sender", view(RoleMember, false, false), theirs, false, EForbidden, "only the sender or a moderator can delete a message"},
		{"admin without removeParticipants", with(view(RoleAdmin, false, false), func(c *Conversation) { c.Roles.Admin.RemoveParticipants = false }),
			theirs, false, EForbidden, "only the sender or a moderator can delete a message"},
		{"deleted already", view(RoleMember, false, false), deletedMine, false, "", ""},
		{"deleted already, not sender", view(RoleMember, false, false), deletedTheirs, false, EForbidden,
			"only the sender or a moderator can delete a message"},
		{"no such message", view(RoleOwner, false, false), nil, false, ENotFound, `message "m1" not found in conversation "c1"`},
		{"deleted conversation", view(RoleOwner, false, true), mine, false, EConflict, msgConvDeleted},
		{"private, not in it", view("", false, false), mine, false, ENotFound, msgNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			del, err := CanDeleteMessage("c1", tt.conv, "u1", "m1", tt.m)
			checkErr(t, err, tt.code, tt.msg)
			if del != tt.del {
				t.Errorf("del = %v, want %v", del, tt.del)
			}
		})
	}
}
