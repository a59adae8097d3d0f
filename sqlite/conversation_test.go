package sqlite_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/tidings/tidings"
)

func (e *env) mkConv(t testing.TB, app, owner string, nc tidings.NewConversation) *tidings.Conversation {
	t.Helper()
	c, err := e.convs.CreateConversation(user(app, owner), nc)
	if err != nil {
		t.Fatalf("create conversation: %v", err)
	}
	return c
}

func TestCreateConversationMakesOwnerAndEvents(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	e.events.take()
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Name: "Team", Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	if c.Role != tidings.RoleOwner || c.ParticipantCount != 2 || c.CreatedBy != "alice" || c.ID == "" {
		t.Fatalf("created %+v", c)
	}
	if c.Roles != tidings.DefaultRoles() {
		t.Fatalf("roles %+v, want defaults", c.Roles)
	}
	evs := e.events.take()
	want := []string{tidings.EventConversationCreate, tidings.EventParticipantAdded, tidings.EventParticipantAdded}
	if !slices.Equal(names(evs), want) {
		t.Fatalf("events %v, want %v", names(evs), want)
	}
	if evs[1].UserID != "alice" || evs[2].UserID != "bob" || evs[0].Actor.ID != "alice" || evs[0].ConversationID != c.ID {
		t.Fatalf("events %+v: want owner added first, alice as actor", evs)
	}
	var p tidings.ConversationPayload
	json.Unmarshal(evs[0].Payload, &p)
	if p.Name != "Team" || len(p.Participants) != 2 {
		t.Fatalf("create payload %s", evs[0].Payload)
	}
	ps := must[*tidings.ParticipantPage](t)(e.convs.ListParticipants(user("a", "bob"), c.ID, tidings.ParticipantFilter{})).Participants
	if len(ps) != 2 || ps[0].UserID != "alice" || ps[0].Role != tidings.RoleOwner || ps[1].Role != tidings.RoleMember {
		t.Fatalf("participants %+v", ps)
	}
	// Ids are unique per app; unknown users cannot be added.
	_, err := e.convs.CreateConversation(user("a", "bob"), tidings.NewConversation{ID: c.ID})
	wantCode(t, err, tidings.EConflict)
	_, err = e.convs.CreateConversation(user("a", "alice"), tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "ghost"}}})
	wantCode(t, err, tidings.ENotFound)
	_, err = e.convs.CreateConversation(user("a", "alice"), tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob", Role: "king"}}})
	wantCode(t, err, tidings.EInvalid)
}

func TestPrivateConversationIsInvisibleToOthers(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "eve")
	e.mkUsers(t, "b", "alice")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{ID: "secret"})
	for _, ctx := range []struct {
		name string
		err  error
	}{
		{"find", func() error { _, err := e.convs.FindConversationByID(user("a", "eve"), c.ID); return err }()},
		{"participants", func() error {
			_, err := e.convs.ListParticipants(user("a", "eve"), c.ID, tidings.ParticipantFilter{})
			return err
		}()},
		{"join", func() error { _, err := e.convs.Join(user("a", "eve"), c.ID); return err }()},
		{"send", func() error {
			_, _, err := e.messages.SendMessage(user("a", "eve"), c.ID, tidings.NewMessage{Parts: text("hi")})
			return err
		}()},
		{"history", func() error {
			_, err := e.messages.ListMessages(user("a", "eve"), c.ID, tidings.MessageFilter{})
			return err
		}()},
		{"other app, same user id", func() error { _, err := e.convs.FindConversationByID(user("b", "alice"), c.ID); return err }()},
	} {
		if code := tidings.ErrorCode(ctx.err); code != tidings.ENotFound {
			t.Errorf("%s by a non-participant: %q (%v), want not_found", ctx.name, code, ctx.err)
		}
	}
	page := must[*tidings.ConversationPage](t)(e.convs.ListConversations(user("a", "eve"), tidings.ConversationFilter{}))
	if len(page.Conversations) != 0 {
		t.Fatalf("eve lists %d conversations", len(page.Conversations))
	}
}

func TestPublicConversationJoinAndLeave(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Name: "lobby", IsPublic: true})
	got := must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", "bob"), c.ID))
	if got.Role != "" || got.Name != "lobby" {
		t.Fatalf("bob sees %+v before joining", got)
	}
	_, _, err := e.messages.SendMessage(user("a", "bob"), c.ID, tidings.NewMessage{Parts: text("hi")})
	wantCode(t, err, tidings.EForbidden)
	e.events.take()
	p := must[*tidings.Participant](t)(e.convs.Join(user("a", "bob"), c.ID))
	if p.Role != tidings.RoleMember || p.Profile.DisplayName != "bob" {
		t.Fatalf("joined as %+v", p)
	}
	must[*tidings.Participant](t)(e.convs.Join(user("a", "bob"), c.ID)) // again: no change
	if evs := e.events.take(); !slices.Equal(names(evs), []string{tidings.EventParticipantAdded}) {
		t.Fatalf("join events %v", names(evs))
	}
	must[*tidings.Message](t)(func() (*tidings.Message, error) {
		m, _, err := e.messages.SendMessage(user("a", "bob"), c.ID, tidings.NewMessage{Parts: text("hi")})
		return m, err
	}())
	if err := e.convs.Leave(user("a", "bob"), c.ID); err != nil {
		t.Fatal(err)
	}
	got = must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", "alice"), c.ID))
	if got.ParticipantCount != 1 {
		t.Fatalf("count after leave = %d", got.ParticipantCount)
	}
	evs := e.events.take()
	if len(evs) != 2 || evs[1].Name != tidings.EventParticipantRemoved || evs[1].UserID != "bob" {
		t.Fatalf("leave events %v", names(evs))
	}
}

func TestRolesAndPermissions(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "owner", "admin", "member", "carol", "dave")
	c := e.mkConv(t, "a", "owner", tidings.NewConversation{Participants: []tidings.NewParticipant{
		{UserID: "admin", Role: tidings.RoleAdmin}, {UserID: "member"},
	}})
	// A member cannot add, remove, update or delete.
	_, err := e.convs.AddParticipant(user("a", "member"), c.ID, tidings.NewParticipant{UserID: "carol"})
	wantCode(t, err, tidings.EForbidden)
	wantCode(t, e.convs.RemoveParticipant(user("a", "member"), c.ID, "admin"), tidings.EForbidden)
	name := "x"
	_, err = e.convs.UpdateConversation(user("a", "member"), c.ID, tidings.ConversationUpdate{Name: &name})
	wantCode(t, err, tidings.EForbidden)
	wantCode(t, e.convs.DeleteConversation(user("a", "member"), c.ID), tidings.EForbidden)

	// An admin adds, but cannot grant owner, cannot kick an owner, cannot delete.
	must[*tidings.Participant](t)(e.convs.AddParticipant(user("a", "admin"), c.ID, tidings.NewParticipant{UserID: "carol"}))
	_, err = e.convs.AddParticipant(user("a", "admin"), c.ID, tidings.NewParticipant{UserID: "carol"})
	wantCode(t, err, tidings.EConflict)
	_, err = e.convs.AddParticipant(user("a", "admin"), c.ID, tidings.NewParticipant{UserID: "dave", Role: tidings.RoleOwner})
	wantCode(t, err, tidings.EForbidden)
	_, err = e.convs.AddParticipant(user("a", "admin"), c.ID, tidings.NewParticipant{UserID: "ghost"})
	wantCode(t, err, tidings.ENotFound)
	wantCode(t, e.convs.RemoveParticipant(user("a", "admin"), c.ID, "owner"), tidings.EForbidden)
	wantCode(t, e.convs.DeleteConversation(user("a", "admin"), c.ID), tidings.EForbidden)
	_, err = e.convs.UpdateParticipant(user("a", "admin"), c.ID, "member", tidings.RoleOwner)
	wantCode(t, err, tidings.EForbidden)
	roles := tidings.DefaultRoles()
	roles.Member.Send = false
	_, err = e.convs.UpdateConversation(user("a", "admin"), c.ID, tidings.ConversationUpdate{Roles: &roles})
	wantCode(t, err, tidings.EForbidden)

	// An admin kicks a member, who then stops being a participant.
	if err := e.convs.RemoveParticipant(user("a", "admin"), c.ID, "carol"); err != nil {
		t.Fatal(err)
	}
	_, err = e.convs.FindConversationByID(user("a", "carol"), c.ID)
	wantCode(t, err, tidings.ENotFound)
	wantCode(t, e.convs.RemoveParticipant(user("a", "admin"), c.ID, "carol"), tidings.ENotFound)

	// The owner can take sending away from members.
	must[*tidings.Conversation](t)(e.convs.UpdateConversation(user("a", "owner"), c.ID, tidings.ConversationUpdate{Roles: &roles}))
	_, _, err = e.messages.SendMessage(user("a", "member"), c.ID, tidings.NewMessage{Parts: text("hi")})
	wantCode(t, err, tidings.EForbidden)

	// The last owner can neither leave nor be demoted; after promoting
	// another owner, they can.
	wantCode(t, e.convs.Leave(user("a", "owner"), c.ID), tidings.EConflict)
	_, err = e.convs.UpdateParticipant(user("a", "owner"), c.ID, "owner", tidings.RoleAdmin)
	wantCode(t, err, tidings.EConflict)
	_, err = e.convs.UpdateParticipant(user("a", "owner"), c.ID, "admin", "boss")
	wantCode(t, err, tidings.EInvalid)
	p := must[*tidings.Participant](t)(e.convs.UpdateParticipant(user("a", "owner"), c.ID, "admin", tidings.RoleOwner))
	if p.Role != tidings.RoleOwner {
		t.Fatalf("promoted to %s", p.Role)
	}
	if err := e.convs.Leave(user("a", "owner"), c.ID); err != nil {
		t.Fatalf("leave after promoting another owner: %v", err)
	}
}

func TestDeleteAndUndelete(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.events.take()
	if err := e.convs.DeleteConversation(user("a", "alice"), c.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.convs.DeleteConversation(user("a", "alice"), c.ID); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
	_, _, err := e.messages.SendMessage(user("a", "bob"), c.ID, tidings.NewMessage{Parts: text("hi")})
	wantCode(t, err, tidings.EConflict)
	got := must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", "bob"), c.ID))
	if got.DeletedAt == nil {
		t.Fatal("deleted conversation has no deletedAt")
	}
	page := must[*tidings.ConversationPage](t)(e.convs.ListConversations(user("a", "bob"), tidings.ConversationFilter{}))
	if len(page.Conversations) != 0 {
		t.Fatal("a deleted conversation is listed")
	}
	page = must[*tidings.ConversationPage](t)(e.convs.ListConversations(user("a", "bob"), tidings.ConversationFilter{IncludeDeleted: true}))
	if len(page.Conversations) != 1 {
		t.Fatal("includeDeleted does not list the deleted conversation")
	}
	got = must[*tidings.Conversation](t)(e.convs.UndeleteConversation(user("a", "alice"), c.ID))
	if got.DeletedAt != nil {
		t.Fatal("undeleted conversation still has deletedAt")
	}
	if evs := e.events.take(); !slices.Equal(names(evs), []string{tidings.EventConversationDelete, tidings.EventConversationUndelete}) {
		t.Fatalf("events %v", names(evs))
	}
}

func TestListConversationsByActivityWithUnread(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	var ids []string
	for range 5 {
		c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
		ids = append(ids, c.ID)
	}
	// A message makes the first conversation the most recent.
	_, _, err := e.messages.SendMessage(user("a", "alice"), ids[0], tidings.NewMessage{Parts: text("hi")})
	if err != nil {
		t.Fatal(err)
	}
	var got []*tidings.Conversation
	cursor := ""
	for {
		page := must[*tidings.ConversationPage](t)(e.convs.ListConversations(user("a", "bob"), tidings.ConversationFilter{Cursor: cursor, Limit: 2}))
		got = append(got, page.Conversations...)
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if len(got) != 5 || got[0].ID != ids[0] {
		t.Fatalf("listed %d, first %s; want 5 with %s first", len(got), got[0].ID, ids[0])
	}
	if got[0].UnreadCount != 1 || got[1].UnreadCount != 0 {
		t.Fatalf("unread counts %d, %d; want 1, 0", got[0].UnreadCount, got[1].UnreadCount)
	}
	_, err = e.convs.ListConversations(user("a", "bob"), tidings.ConversationFilter{Cursor: "!!"})
	wantCode(t, err, tidings.EInvalid)
}
