package tidings

import (
	"slices"
	"testing"
)

// TestServerPolicy: the app's server acting as itself (RoleServer) may see,
// read, send to, update and moderate every conversation of its app,
// private or deleted, as no participant may; it still keeps the last
// owner of a conversation that has one.
func TestServerPolicy(t *testing.T) {
	private := ServerView(view("", false, false))
	deleted := ServerView(view("", false, true))
	if private.Role != RoleServer || RoleServer.Valid() {
		t.Fatalf("ServerView role %q, Valid %v", private.Role, RoleServer.Valid())
	}
	checkErr(t, CanSeeConversation("c1", private), "", "")
	checkErr(t, CanReadConversation("c1", deleted), "", "")
	checkErr(t, CanSendMessage("c1", private), "", "")
	checkErr(t, CanSendMessage("c1", deleted), EConflict, msgConvDeleted)
	roles := DefaultRoles()
	checkErr(t, CanUpdateConversation("c1", private, ConversationUpdate{Roles: &roles}), "", "")
	checkErr(t, CanDeleteConversation("c1", private), "", "")
	checkErr(t, CanAddParticipant("c1", private, NewParticipant{UserID: "u2", Role: RoleOwner}, nil), "", "")
	owner := &Participant{UserID: "u2", Role: RoleOwner}
	checkErr(t, CanRemoveParticipant("c1", private, "u2", owner), "", "")
	one := func() (int, error) { return 1, nil }
	_, err := CanUpdateParticipant("c1", private, "u2", owner, RoleMember, one)
	checkErr(t, err, EConflict, msgNeedsAnOwner)
	two := func() (int, error) { return 2, nil }
	change, err := CanUpdateParticipant("c1", private, "u2", owner, RoleMember, two)
	checkErr(t, err, "", "")
	if !change {
		t.Error("the server demoting one of two owners changes nothing")
	}
	msg := &Message{ID: "m1", Sender: Profile{ID: "u2"}}
	checkErr(t, CanEditMessage("c1", private, "", "m1", msg), "", "")
	if del, err := CanDeleteMessage("c1", private, "", "m1", msg); err != nil || !del {
		t.Errorf("the server deletes a user's message: %v, %v", del, err)
	}
	// A system message is the server's: an owner may delete it (moderation)
	// but not edit it.
	sys := &Message{ID: "m2", System: true}
	checkErr(t, CanEditMessage("c1", view(RoleOwner, false, false), "u1", "m2", sys), EForbidden, "only the sender can edit a message")
	checkErr(t, CanEditMessage("c1", private, "", "m2", sys), "", "")
}

func TestConversationParticipants(t *testing.T) {
	nc := NewConversation{Participants: []NewParticipant{{UserID: "u1", Role: RoleMember}, {UserID: "u2", Role: RoleOwner}}}
	user := ConversationParticipants(Caller{AppID: "a", UserID: "u1"}, nc)
	want := []NewParticipant{{UserID: "u1", Role: RoleOwner}, {UserID: "u2", Role: RoleOwner}}
	if !slices.Equal(user, want) {
		t.Errorf("a user creates: %v, want %v", user, want)
	}
	server := ConversationParticipants(Caller{AppID: "a", Server: true}, nc)
	if !slices.Equal(server, nc.Participants) {
		t.Errorf("the server creates: %v, want %v", server, nc.Participants)
	}
}

// TestMutedCannotSend: a muted participant cannot send nor upload, with
// the documented error; a moderator may mute those not above them.
func TestMutedCannotSend(t *testing.T) {
	muted := with(view(RoleMember, false, false), func(c *Conversation) { c.MutedByModerator = true })
	msg := `you are muted in conversation "c1": you cannot send until a moderator unmutes you`
	checkErr(t, CanSendMessage("c1", muted), EForbidden, msg)
	checkErr(t, CanUploadFile("c1", muted), EForbidden, msg)
	checkErr(t, CanMarkMessages("c1", muted), "", "")
	member := &Participant{UserID: "u2", Role: RoleMember}
	checkErr(t, CanMuteParticipant("c1", view(RoleAdmin, false, false), "u2", member), "", "")
	checkErr(t, CanMuteParticipant("c1", view(RoleMember, false, false), "u2", member), EForbidden, "your role (member) does not allow removeParticipants in this conversation")
	checkErr(t, CanMuteParticipant("c1", view(RoleAdmin, false, false), "u2", &Participant{UserID: "u2", Role: RoleOwner}), EForbidden, "you (admin) cannot mute a owner")
	checkErr(t, CanMuteParticipant("c1", ServerView(view("", false, false)), "u2", &Participant{UserID: "u2", Role: RoleOwner}), "", "")
}
