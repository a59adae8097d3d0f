package storetest

import (
	"slices"
	"strings"
	"testing"

	"github.com/tidings/tidings"
)

// TestServerActsAsItself: the app's server, as itself (a Server caller),
// is an all-powerful moderator of every conversation of its app: it
// creates conversations with any participants and roles (no creator
// among them), sees and lists them all, sends system messages (no
// sender), edits and deletes any message, and manages participants; its
// events have no actor. It is no participant: it cannot join, leave or
// mark, and another app's conversations do not exist for it.
func TestServerActsAsItself(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "bob", "carol")
	f.mkUsers("b", "alice")
	srv := server("a")

	conv := must[*tidings.Conversation](t)(f.Conversations.CreateConversation(srv, tidings.NewConversation{ID: "s", Name: "Support",
		Participants: []tidings.NewParticipant{{UserID: "bob", Role: tidings.RoleOwner}, {UserID: "carol"}}}))
	if conv.ParticipantCount != 2 || conv.CreatedBy != "" || conv.Role != "" {
		t.Errorf("the server's conversation: %d participants, createdBy %q, role %q; want 2, \"\", \"\"", conv.ParticipantCount, conv.CreatedBy, conv.Role)
	}
	parts := must[*tidings.ParticipantPage](t)(f.Conversations.ListParticipants(srv, "s", tidings.ParticipantFilter{})).Participants
	var roles []string
	for _, p := range parts {
		roles = append(roles, p.UserID+":"+string(p.Role))
	}
	if want := []string{"bob:owner", "carol:member"}; !slices.Equal(roles, want) {
		t.Errorf("participants %v, want %v", roles, want)
	}
	for _, e := range convEvents(f.stream("a", "bob", 0), "s") {
		if e.Actor != nil {
			t.Errorf("%s of the server's conversation has actor %+v, want none", e.Name, e.Actor)
		}
	}
	if c := must[*tidings.Conversation](t)(f.Conversations.CreateConversation(srv, tidings.NewConversation{ID: "empty"})); c.ParticipantCount != 0 {
		t.Errorf("a conversation created empty has %d participants", c.ParticipantCount)
	}
	_, err := f.Conversations.CreateConversation(srv, tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "ghost"}}})
	wantCode(t, "the server creates with an unknown user", err, tidings.ENotFound)

	// It sees a private conversation it takes no part in, and lists every
	// conversation of its app.
	f.mkConv("a", "alice", tidings.NewConversation{ID: "p"}, "bob")
	f.mkConv("b", "alice", tidings.NewConversation{ID: "other"})
	if c := must[*tidings.Conversation](t)(f.Conversations.FindConversationByID(srv, "p")); c.Role != "" || c.UnreadCount != 0 {
		t.Errorf("the server's view of p: role %q, unread %d", c.Role, c.UnreadCount)
	}
	_, err = f.Conversations.FindConversationByID(server("a"), "other")
	wantCode(t, "the server finds another app's conversation", err, tidings.ENotFound)
	var ids []string
	page := &tidings.ConversationPage{}
	for first := true; first || page.NextCursor != ""; first = false {
		page = must[*tidings.ConversationPage](t)(f.Conversations.ListConversations(srv, tidings.ConversationFilter{Cursor: page.NextCursor, Limit: 2}))
		for _, c := range page.Conversations {
			ids = append(ids, c.ID)
		}
	}
	slices.Sort(ids)
	if want := []string{"empty", "p", "s"}; !slices.Equal(ids, want) {
		t.Errorf("the server lists %v, want %v", ids, want)
	}

	// System messages: no sender, no actor, idempotent by client id.
	f.send("a", "alice", "p", "hello")
	sys, created, err := f.Messages.SendMessage(srv, "p", tidings.NewMessage{ClientID: "k1", Parts: text("alice joined the team")})
	if err != nil || !created || !sys.System || sys.Sender.ID != "" || sys.Seq != 2 {
		t.Fatalf("system message: %+v, created %v, %v", sys, created, err)
	}
	again, created, err := f.Messages.SendMessage(srv, "p", tidings.NewMessage{ClientID: "k1", Parts: text("again")})
	if err != nil || created || again.ID != sys.ID {
		t.Errorf("system message sent again with its client id: created %v, id %v, %v", created, again, err)
	}
	got := must[*tidings.Message](t)(f.Messages.FindMessage(as("a", "bob"), "p", sys.ID))
	if !got.System || got.Sender.ID != "" || got.Parts[0].Data != "alice joined the team" {
		t.Errorf("bob reads the system message as %+v", got)
	}
	hist := must[*tidings.MessagePage](t)(f.Messages.ListMessages(srv, "p", tidings.MessageFilter{}))
	if len(hist.Messages) != 2 || hist.Messages[0].System || !hist.Messages[1].System {
		t.Errorf("the server reads the history: %+v", hist.Messages)
	}
	if c := must[*tidings.Conversation](t)(f.Conversations.FindConversationByID(as("a", "bob"), "p")); c.LastSeq != 2 || c.UnreadCount != 2 {
		t.Errorf("bob's view after the system message: lastSeq %d, unread %d; want 2, 2", c.LastSeq, c.UnreadCount)
	}
	evs := convEvents(f.stream("a", "bob", 0), "p")
	last := evs[len(evs)-1]
	var p tidings.MessagePayload
	if err := unmarshal(last.Payload, &p); err != nil || last.Name != tidings.EventMessageSent || last.Actor != nil || p.Message == nil || !p.System {
		t.Errorf("the system message's event: %s, actor %+v, payload %s (%v)", last.Name, last.Actor, last.Payload, err)
	}
	// A user's send goes on after it, with the next seq.
	if m := f.send("a", "bob", "p", "ok"); m.Seq != 3 {
		t.Errorf("bob's message after the system message has seq %d, want 3", m.Seq)
	}
	// Only the server edits a system message; a moderator may delete it.
	_, err = f.Messages.EditMessage(as("a", "alice"), "p", sys.ID, tidings.MessageEdit{Parts: text("mine")})
	wantCode(t, "the owner edits a system message", err, tidings.EForbidden)
	if m := must[*tidings.Message](t)(f.Messages.EditMessage(srv, "p", sys.ID, tidings.MessageEdit{Parts: text("fixed")})); !m.System || m.EditedAt == nil {
		t.Errorf("the server edits its system message: %+v", m)
	}

	// Moderation: the server edits and deletes anyone's message.
	hello := hist.Messages[0]
	if m := must[*tidings.Message](t)(f.Messages.EditMessage(srv, "p", hello.ID, tidings.MessageEdit{Parts: text("[redacted]")})); m.Sender.ID != "alice" || m.Parts[0].Data != "[redacted]" {
		t.Errorf("the server edits alice's message: %+v", m)
	}
	if m := must[*tidings.Message](t)(f.Messages.DeleteMessage(srv, "p", hello.ID)); m.DeletedAt == nil {
		t.Errorf("the server deletes alice's message: %+v", m)
	}
	evs = convEvents(f.stream("a", "bob", 0), "p")
	for _, e := range evs {
		if (e.Name == tidings.EventMessageEdited || e.Name == tidings.EventMessageDeleted) && e.Actor != nil {
			t.Errorf("%s by the server has actor %+v, want none", e.Name, e.Actor)
		}
	}

	// Participants: add an owner, demote one of two owners, remove anyone.
	must[*tidings.Participant](t)(f.Conversations.AddParticipant(srv, "p", tidings.NewParticipant{UserID: "carol", Role: tidings.RoleOwner}))
	if pp := must[*tidings.Participant](t)(f.Conversations.UpdateParticipant(srv, "p", "alice", tidings.RoleMember)); pp.Role != tidings.RoleMember {
		t.Errorf("alice's role after the server's change: %s", pp.Role)
	}
	_, err = f.Conversations.UpdateParticipant(srv, "p", "carol", tidings.RoleMember)
	wantCode(t, "the server demotes the last owner", err, tidings.EConflict)
	if err := f.Conversations.RemoveParticipant(srv, "p", "carol"); err != nil {
		t.Errorf("the server removes the last owner: %v", err)
	}
	evs = convEvents(f.stream("a", "carol", 0), "p")
	if last := evs[len(evs)-1]; last.Name != tidings.EventParticipantRemoved || last.Actor != nil || !strings.Contains(string(last.Payload), `"reason":"removed"`) {
		t.Errorf("carol's removal: %s, actor %+v, %s", last.Name, last.Actor, last.Payload)
	}
	roles2 := tidings.DefaultRoles()
	roles2.Member.Send = false
	if c := must[*tidings.Conversation](t)(f.Conversations.UpdateConversation(srv, "p", tidings.ConversationUpdate{Roles: &roles2})); c.Roles.Member.Send {
		t.Error("the server could not change what roles may do")
	}
	if err := f.Conversations.DeleteConversation(srv, "p"); err != nil {
		t.Fatalf("the server deletes p: %v", err)
	}
	_, _, err = f.Messages.SendMessage(srv, "p", tidings.NewMessage{Parts: text("late")})
	wantCode(t, "a system message to a deleted conversation", err, tidings.EConflict)
	must[*tidings.Conversation](t)(f.Conversations.UndeleteConversation(srv, "p"))

	// Files: the server uploads one for a system message, and reads the
	// participants' files.
	if f.Files != nil {
		file := must[*tidings.File](t)(f.Files.CreateFile(srv, "s", "report.txt", "text/plain", strings.NewReader("all good")))
		if file.UploaderID != "" {
			t.Errorf("the server's file has uploader %q", file.UploaderID)
		}
		m, _, err := f.Messages.SendMessage(srv, "s", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", FileID: file.ID}}})
		if err != nil || !m.System || m.Parts[0].Name != "report.txt" {
			t.Fatalf("a system message with a file: %+v, %v", m, err)
		}
		if got := must[*tidings.File](t)(f.Files.FindFile(as("a", "bob"), "s", file.ID)); got.Size != int64(len("all good")) {
			t.Errorf("bob finds the server's file: %+v", got)
		}
		mine := must[*tidings.File](t)(f.Files.CreateFile(as("a", "bob"), "s", "b.txt", "text/plain", strings.NewReader("bob's")))
		if got := must[*tidings.File](t)(f.Files.FindFile(srv, "s", mine.ID)); got.UploaderID != "bob" {
			t.Errorf("the server finds bob's file: %+v", got)
		}
	}

	// It takes part in nothing.
	_, err = f.Conversations.Join(srv, "p")
	wantCode(t, "the server joins", err, tidings.EForbidden)
	wantCode(t, "the server leaves", f.Conversations.Leave(srv, "p"), tidings.EForbidden)
	_, err = f.Messages.MarkRead(srv, "p", 0)
	wantCode(t, "the server marks read", err, tidings.EForbidden)
}
