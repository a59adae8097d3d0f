package storetest

import (
	"slices"
	"strings"
	"testing"

	"github.com/tidings/tidings"
)

// TestCreateConversation: the creator becomes owner; the creation is
// followed by one participantAdded per first participant, the creator
// first; ids are unique per app.
func TestCreateConversation(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "bob", "carol")
	c := f.mkConv("a", "alice", tidings.NewConversation{ID: "team", Name: "Team",
		Participants: []tidings.NewParticipant{{UserID: "carol", Role: tidings.RoleAdmin}}}, "bob")
	if c.ID != "team" || c.Role != tidings.RoleOwner || c.ParticipantCount != 3 || c.CreatedBy != "alice" ||
		c.Roles != tidings.DefaultRoles() || c.LastSeq != 0 || c.CreatedAt.IsZero() {
		t.Errorf("created %+v", c)
	}
	evs := convEvents(f.stream("a", "bob", 0), "team")
	wantNames(t, "bob's stream of the new conversation", evs, tidings.EventConversationCreate,
		tidings.EventParticipantAdded+"/alice", tidings.EventParticipantAdded+"/carol", tidings.EventParticipantAdded+"/bob")
	if len(evs) == 4 {
		var p tidings.ConversationPayload
		if err := unmarshal(evs[0].Payload, &p); err != nil || p.Name != "Team" || len(p.Participants) != 3 ||
			p.Participants[0].UserID != "alice" || p.Participants[0].Role != tidings.RoleOwner {
			t.Errorf("create payload %s: want the first participants, the creator first as owner", evs[0].Payload)
		}
		var added tidings.ParticipantPayload
		if err := unmarshal(evs[2].Payload, &added); err != nil || added.Role != tidings.RoleAdmin || added.Reason != tidings.ReasonAdded {
			t.Errorf("carol's participantAdded payload %s: want role admin, reason added", evs[2].Payload)
		}
		if evs[0].Actor == nil || evs[0].Actor.ID != "alice" {
			t.Errorf("create actor %+v, want alice", evs[0].Actor)
		}
	}
	ps := must[*tidings.ParticipantPage](t)(f.Conversations.ListParticipants(as("a", "bob"), "team", tidings.ParticipantFilter{}))
	var got []string
	for _, p := range ps.Participants {
		got = append(got, p.UserID+":"+string(p.Role))
	}
	// They joined at once: the docs give no order among them.
	slices.Sort(got)
	if strings.Join(got, " ") != "alice:owner bob:member carol:admin" {
		t.Errorf("participants %v", got)
	}

	_, err := f.Conversations.CreateConversation(as("a", "bob"), tidings.NewConversation{ID: "team"})
	wantCode(t, "create a taken id", err, tidings.EConflict)
	_, err = f.Conversations.CreateConversation(as("a", "alice"), tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "ghost"}}})
	wantCode(t, "create with an unknown user", err, tidings.ENotFound)
	_, err = f.Conversations.CreateConversation(as("a", "alice"), tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob", Role: "king"}}})
	wantCode(t, "create with a bad role", err, tidings.EInvalid)
	_, err = f.Conversations.CreateConversation(as("a", "alice"), tidings.NewConversation{Name: strings.Repeat("x", tidings.MaxNameLen+1)})
	wantCode(t, "create with a name too long", err, tidings.EInvalid)
	gen := f.mkConv("a", "alice", tidings.NewConversation{})
	if gen.ID == "" || gen.ID == "team" {
		t.Errorf("generated id %q", gen.ID)
	}
	// Another app may use the same id.
	f.mkUsers("b", "alice")
	f.mkConv("b", "alice", tidings.NewConversation{ID: "team"})
}

// TestPrivateAndPublic: a private conversation is invisible (not found) to
// non-participants; a public one can be found and joined, but its history
// read and messages sent only once joined.
func TestPrivateAndPublic(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "eve")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "secret"})
	f.send("a", "alice", "secret", "psst")
	for what, err := range map[string]error{
		"find": func() error { _, err := f.Conversations.FindConversationByID(as("a", "eve"), "secret"); return err }(),
		"list participants": func() error {
			_, err := f.Conversations.ListParticipants(as("a", "eve"), "secret", tidings.ParticipantFilter{})
			return err
		}(),
		"join": func() error { _, err := f.Conversations.Join(as("a", "eve"), "secret"); return err }(),
		"send": func() error {
			_, _, err := f.Messages.SendMessage(as("a", "eve"), "secret", tidings.NewMessage{Parts: text("hi")})
			return err
		}(),
		"history": func() error {
			_, err := f.Messages.ListMessages(as("a", "eve"), "secret", tidings.MessageFilter{})
			return err
		}(),
		"update": func() error {
			_, err := f.Conversations.UpdateConversation(as("a", "eve"), "secret", tidings.ConversationUpdate{Name: ptr("mine")})
			return err
		}(),
		"delete": func() error { return f.Conversations.DeleteConversation(as("a", "eve"), "secret") }(),
		"add": func() error {
			_, err := f.Conversations.AddParticipant(as("a", "eve"), "secret", tidings.NewParticipant{UserID: "eve"})
			return err
		}(),
		"mark": func() error { _, err := f.Messages.MarkRead(as("a", "eve"), "secret", 0); return err }(),
	} {
		wantCode(t, "eve: "+what+" in a private conversation", err, tidings.ENotFound)
	}
	if page := must[*tidings.ConversationPage](t)(f.Conversations.ListConversations(as("a", "eve"), tidings.ConversationFilter{})); len(page.Conversations) != 0 {
		t.Errorf("eve lists %d conversations, want none", len(page.Conversations))
	}

	f.mkConv("a", "alice", tidings.NewConversation{ID: "town", IsPublic: true})
	f.send("a", "alice", "town", "welcome")
	if c := must[*tidings.Conversation](t)(f.Conversations.FindConversationByID(as("a", "eve"), "town")); !c.IsPublic || c.Role != "" {
		t.Errorf("eve finds the public conversation as %+v: want it, without a role", c)
	}
	_, err := f.Messages.ListMessages(as("a", "eve"), "town", tidings.MessageFilter{})
	wantCode(t, "read a public conversation before joining", err, tidings.EForbidden)
	_, _, err = f.Messages.SendMessage(as("a", "eve"), "town", tidings.NewMessage{Parts: text("hi")})
	wantCode(t, "send to a public conversation before joining", err, tidings.EForbidden)
	for _, e := range f.stream("a", "eve", 0) {
		if e.ConversationID == "town" {
			t.Errorf("eve received %s of a public conversation she never took part in", e.Name)
		}
	}
	p := must[*tidings.Participant](t)(f.Conversations.Join(as("a", "eve"), "town"))
	if p.UserID != "eve" || p.Role != tidings.RoleMember {
		t.Errorf("joined as %+v, want member", p)
	}
	evs := convEvents(f.stream("a", "eve", 0), "town")
	wantNames(t, "eve's stream after joining", evs, tidings.EventParticipantAdded+"/eve")
	if len(evs) == 1 {
		var pp tidings.ParticipantPayload
		if err := unmarshal(evs[0].Payload, &pp); err != nil || pp.Reason != tidings.ReasonJoined || evs[0].Actor == nil || evs[0].Actor.ID != "eve" {
			t.Errorf("join event %s by %+v: want reason joined, eve as actor", evs[0].Payload, evs[0].Actor)
		}
	}
	if page := must[*tidings.MessagePage](t)(f.Messages.ListMessages(as("a", "eve"), "town", tidings.MessageFilter{})); len(page.Messages) != 1 {
		t.Errorf("history after joining: %d messages, want the one sent before", len(page.Messages))
	}
	_, err = f.Conversations.AddParticipant(as("a", "alice"), "town", tidings.NewParticipant{UserID: "eve"})
	wantCode(t, "add eve again", err, tidings.EConflict)
}

// TestUpdateDeleteUndelete: updating needs PermUpdate, deleting PermDelete
// (the owner's by default); a deleted conversation keeps its participants
// and history but takes no message until undeleted.
func TestUpdateDeleteUndelete(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "bob", "carol")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c", Name: "Lunch",
		Participants: []tidings.NewParticipant{{UserID: "carol", Role: tidings.RoleAdmin}}}, "bob")
	_, err := f.Conversations.UpdateConversation(as("a", "bob"), "c", tidings.ConversationUpdate{Name: ptr("Bob's")})
	wantCode(t, "a member updates", err, tidings.EForbidden)
	c := must[*tidings.Conversation](t)(f.Conversations.UpdateConversation(as("a", "carol"), "c", tidings.ConversationUpdate{Name: ptr("Lunch on Friday"), Description: ptr("noon")}))
	if c.Name != "Lunch on Friday" || c.Description != "noon" {
		t.Errorf("updated %+v", c)
	}
	if c := must[*tidings.Conversation](t)(f.Conversations.FindConversationByID(as("a", "bob"), "c")); c.Name != "Lunch on Friday" {
		t.Errorf("read back %+v", c)
	}
	_, err = f.Conversations.UpdateConversation(as("a", "carol"), "c", tidings.ConversationUpdate{Name: ptr(strings.Repeat("x", tidings.MaxNameLen+1))})
	wantCode(t, "a name too long", err, tidings.EInvalid)
	f.send("a", "bob", "c", "before")

	wantCode(t, "an admin deletes (admins may not by default)", f.Conversations.DeleteConversation(as("a", "carol"), "c"), tidings.EForbidden)
	wantCode(t, "a member deletes", f.Conversations.DeleteConversation(as("a", "bob"), "c"), tidings.EForbidden)
	if err := f.Conversations.DeleteConversation(as("a", "alice"), "c"); err != nil {
		t.Fatalf("the owner deletes: %v", err)
	}
	if c := must[*tidings.Conversation](t)(f.Conversations.FindConversationByID(as("a", "bob"), "c")); c.DeletedAt == nil || c.Role != tidings.RoleMember {
		t.Errorf("deleted conversation as bob sees it: %+v: want DeletedAt set, bob still a member", c)
	}
	if page := must[*tidings.MessagePage](t)(f.Messages.ListMessages(as("a", "bob"), "c", tidings.MessageFilter{})); len(page.Messages) != 1 {
		t.Errorf("history of the deleted conversation: %d messages, want 1 kept", len(page.Messages))
	}
	_, _, err = f.Messages.SendMessage(as("a", "bob"), "c", tidings.NewMessage{Parts: text("anyone?")})
	wantCode(t, "send to a deleted conversation", err, tidings.EConflict)
	if page := must[*tidings.ConversationPage](t)(f.Conversations.ListConversations(as("a", "bob"), tidings.ConversationFilter{})); len(page.Conversations) != 0 {
		t.Errorf("bob's list shows %d conversations, want the deleted one left out", len(page.Conversations))
	}
	if page := must[*tidings.ConversationPage](t)(f.Conversations.ListConversations(as("a", "bob"), tidings.ConversationFilter{IncludeDeleted: true})); len(page.Conversations) != 1 {
		t.Errorf("bob's list with deleted ones shows %d conversations, want 1", len(page.Conversations))
	}
	_, err = f.Conversations.UndeleteConversation(as("a", "carol"), "c")
	wantCode(t, "an admin undeletes", err, tidings.EForbidden)
	c = must[*tidings.Conversation](t)(f.Conversations.UndeleteConversation(as("a", "alice"), "c"))
	if c.DeletedAt != nil {
		t.Errorf("undeleted %+v", c)
	}
	f.send("a", "bob", "c", "after")

	wantNames(t, "bob's stream", convEvents(f.stream("a", "bob", 0), "c"),
		tidings.EventConversationCreate, tidings.EventParticipantAdded+"/alice", tidings.EventParticipantAdded+"/carol",
		tidings.EventParticipantAdded+"/bob", tidings.EventConversationUpdate, tidings.EventMessageSent+":before",
		tidings.EventConversationDelete, tidings.EventConversationUndelete, tidings.EventMessageSent+":after")

	// Owners may let admins delete.
	roles := tidings.DefaultRoles()
	roles.Admin.Delete = true
	_, err = f.Conversations.UpdateConversation(as("a", "carol"), "c", tidings.ConversationUpdate{Roles: &roles})
	wantCode(t, "an admin changes what roles may do", err, tidings.EForbidden)
	must[*tidings.Conversation](t)(f.Conversations.UpdateConversation(as("a", "alice"), "c", tidings.ConversationUpdate{Roles: &roles}))
	if err := f.Conversations.DeleteConversation(as("a", "carol"), "c"); err != nil {
		t.Errorf("an admin allowed to delete deletes: %v", err)
	}
}

// TestParticipantsAndRoles: who may add, promote, remove; nobody grants
// above their own role; a conversation never loses its last owner.
func TestParticipantsAndRoles(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "bob", "carol", "dave", "erin")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c",
		Participants: []tidings.NewParticipant{{UserID: "carol", Role: tidings.RoleAdmin}}}, "bob")

	_, err := f.Conversations.AddParticipant(as("a", "bob"), "c", tidings.NewParticipant{UserID: "dave"})
	wantCode(t, "a member adds", err, tidings.EForbidden)
	_, err = f.Conversations.AddParticipant(as("a", "carol"), "c", tidings.NewParticipant{UserID: "dave", Role: tidings.RoleOwner})
	wantCode(t, "an admin adds an owner", err, tidings.EForbidden)
	_, err = f.Conversations.AddParticipant(as("a", "carol"), "c", tidings.NewParticipant{UserID: "ghost"})
	wantCode(t, "add an unknown user", err, tidings.ENotFound)
	_, err = f.Conversations.AddParticipant(as("a", "carol"), "c", tidings.NewParticipant{UserID: "bob"})
	wantCode(t, "add a participant again", err, tidings.EConflict)
	p := must[*tidings.Participant](t)(f.Conversations.AddParticipant(as("a", "carol"), "c", tidings.NewParticipant{UserID: "dave", Role: tidings.RoleAdmin}))
	if p.UserID != "dave" || p.Role != tidings.RoleAdmin || p.Profile.ID != "dave" {
		t.Errorf("added %+v", p)
	}

	_, err = f.Conversations.UpdateParticipant(as("a", "bob"), "c", "dave", tidings.RoleMember)
	wantCode(t, "a member changes a role", err, tidings.EForbidden)
	_, err = f.Conversations.UpdateParticipant(as("a", "carol"), "c", "bob", tidings.RoleOwner)
	wantCode(t, "an admin makes an owner", err, tidings.EForbidden)
	_, err = f.Conversations.UpdateParticipant(as("a", "carol"), "c", "alice", tidings.RoleMember)
	wantCode(t, "an admin demotes an owner", err, tidings.EForbidden)
	_, err = f.Conversations.UpdateParticipant(as("a", "alice"), "c", "alice", tidings.RoleAdmin)
	wantCode(t, "the last owner demotes themself", err, tidings.EConflict)
	_, err = f.Conversations.UpdateParticipant(as("a", "alice"), "c", "erin", tidings.RoleAdmin)
	wantCode(t, "change the role of a non-participant", err, tidings.ENotFound)
	p = must[*tidings.Participant](t)(f.Conversations.UpdateParticipant(as("a", "carol"), "c", "bob", tidings.RoleAdmin))
	if p.Role != tidings.RoleAdmin {
		t.Errorf("promoted %+v", p)
	}

	err = f.Conversations.RemoveParticipant(as("a", "carol"), "c", "alice")
	wantCode(t, "an admin removes an owner", err, tidings.EForbidden)
	must[*tidings.Participant](t)(f.Conversations.UpdateParticipant(as("a", "alice"), "c", "bob", tidings.RoleMember))
	err = f.Conversations.RemoveParticipant(as("a", "bob"), "c", "dave")
	wantCode(t, "a member removes", err, tidings.EForbidden)
	if err := f.Conversations.RemoveParticipant(as("a", "carol"), "c", "dave"); err != nil {
		t.Fatalf("an admin removes an admin: %v", err)
	}
	err = f.Conversations.RemoveParticipant(as("a", "carol"), "c", "dave")
	wantCode(t, "remove a non-participant", err, tidings.ENotFound)
	if err := f.Conversations.RemoveParticipant(as("a", "bob"), "c", "bob"); err != nil {
		t.Fatalf("bob removes himself: %v", err)
	}
	err = f.Conversations.Leave(as("a", "alice"), "c")
	wantCode(t, "the last owner leaves while others remain", err, tidings.EConflict)
	if err := f.Conversations.Leave(as("a", "carol"), "c"); err != nil {
		t.Fatalf("carol leaves: %v", err)
	}
	if c := must[*tidings.Conversation](t)(f.Conversations.FindConversationByID(as("a", "alice"), "c")); c.ParticipantCount != 1 {
		t.Errorf("participant count %d, want 1 (alice)", c.ParticipantCount)
	}
	if err := f.Conversations.Leave(as("a", "alice"), "c"); err != nil {
		t.Errorf("the last owner leaves as the last participant: %v", err)
	}

	evs := convEvents(f.stream("a", "dave", 0), "c")
	wantNames(t, "dave's stream", evs, tidings.EventParticipantAdded+"/dave", tidings.EventParticipantUpdated+"/bob",
		tidings.EventParticipantUpdated+"/bob", tidings.EventParticipantRemoved+"/dave")
	reasons := map[string]string{}
	for _, e := range convEvents(f.stream("a", "carol", 0), "c") {
		if e.Name == tidings.EventParticipantRemoved {
			var pp tidings.ParticipantPayload
			if err := unmarshal(e.Payload, &pp); err != nil {
				t.Fatal(err)
			}
			reasons[e.UserID] = pp.Reason
		}
	}
	if reasons["dave"] != tidings.ReasonRemoved || reasons["bob"] != tidings.ReasonLeft || reasons["carol"] != tidings.ReasonLeft {
		t.Errorf("removal reasons %v: want dave removed, bob (who removed himself) and carol left", reasons)
	}
}

// TestListParticipantsPages: participants come in the order they joined,
// page after page, each once.
func TestListParticipantsPages(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	names := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace"}
	f.mkUsers("a", names...)
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c"}, "bob", "carol")
	for _, u := range names[3:] {
		must[*tidings.Participant](t)(f.Conversations.AddParticipant(as("a", "alice"), "c", tidings.NewParticipant{UserID: u}))
	}
	var got []string
	cursor := ""
	for range 10 {
		page := must[*tidings.ParticipantPage](t)(f.Conversations.ListParticipants(as("a", "bob"), "c", tidings.ParticipantFilter{Cursor: cursor, Limit: 3}))
		if len(page.Participants) > 3 {
			t.Fatalf("page of %d participants, limit 3", len(page.Participants))
		}
		for _, p := range page.Participants {
			got = append(got, p.UserID)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if strings.Join(got, " ") != strings.Join(names, " ") {
		t.Errorf("participants page by page: %v, want %v", got, names)
	}
}

// TestListConversations: a user's conversations, most recently active
// first, page after page, with their role and unread count.
func TestListConversations(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "bob")
	for _, id := range []string{"one", "two", "three", "four"} {
		f.mkConv("a", "alice", tidings.NewConversation{ID: id}, "bob")
	}
	f.mkConv("a", "alice", tidings.NewConversation{ID: "alone"})
	f.send("a", "alice", "two", "hello")
	f.send("a", "alice", "two", "again")
	f.send("a", "alice", "one", "hi")
	var got []string
	unread := map[string]int64{}
	cursor := ""
	for range 10 {
		page := must[*tidings.ConversationPage](t)(f.Conversations.ListConversations(as("a", "bob"), tidings.ConversationFilter{Cursor: cursor, Limit: 2}))
		for _, c := range page.Conversations {
			got = append(got, c.ID)
			unread[c.ID] = c.UnreadCount
			if c.Role != tidings.RoleMember {
				t.Errorf("bob's role in %s: %q", c.ID, c.Role)
			}
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if strings.Join(got, " ") != "one two four three" {
		t.Errorf("bob's conversations %v, want the most recently active first: one two four three", got)
	}
	if unread["two"] != 2 || unread["one"] != 1 || unread["four"] != 0 {
		t.Errorf("unread counts %v", unread)
	}
}
