package storetest

import (
	"testing"

	"github.com/tidings/tidings"
)

// TestMuteParticipant: a moderator or the app's server mutes a participant
// in one conversation, who then cannot send there (forbidden) but still
// can elsewhere, and reads and marks as before; everyone in the
// conversation learns it by participantUpdated; unmuted, they send again.
func TestMuteParticipant(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "bob", "carol")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c",
		Participants: []tidings.NewParticipant{{UserID: "carol", Role: tidings.RoleAdmin}}}, "bob")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "d"}, "bob")

	_, err := f.Conversations.MuteParticipant(as("a", "bob"), "c", "carol", true)
	wantCode(t, "a member mutes an admin", err, tidings.EForbidden)
	_, err = f.Conversations.MuteParticipant(as("a", "carol"), "c", "alice", true)
	wantCode(t, "an admin mutes the owner", err, tidings.EForbidden)
	_, err = f.Conversations.MuteParticipant(as("a", "carol"), "c", "nobody", true)
	wantCode(t, "mute someone not in it", err, tidings.ENotFound)

	after := f.lastSeq()
	p := must[*tidings.Participant](t)(f.Conversations.MuteParticipant(as("a", "carol"), "c", "bob", true))
	if !p.Muted || p.Role != tidings.RoleMember {
		t.Errorf("bob after the mute: %+v", p)
	}
	must[*tidings.Participant](t)(f.Conversations.MuteParticipant(as("a", "carol"), "c", "bob", true)) // again: nothing
	_, _, err = f.Messages.SendMessage(as("a", "bob"), "c", tidings.NewMessage{Parts: text("let me speak")})
	wantCode(t, "a muted participant sends", err, tidings.EForbidden)
	f.send("a", "bob", "d", "elsewhere I may")
	if c := must[*tidings.Conversation](t)(f.Conversations.FindConversationByID(as("a", "bob"), "c")); !c.MutedByModerator {
		t.Error("bob's view of c does not say he is muted")
	}
	if c := must[*tidings.Conversation](t)(f.Conversations.FindConversationByID(as("a", "alice"), "c")); c.MutedByModerator {
		t.Error("alice's view of c says she is muted")
	}
	f.send("a", "alice", "c", "hello")
	must[*tidings.MessageStatus](t)(f.Messages.MarkRead(as("a", "bob"), "c", 0))
	evs := convEvents(f.stream("a", "alice", after), "c")
	var p0 tidings.ParticipantPayload
	if len(evs) == 0 || evs[0].Name != tidings.EventParticipantUpdated || evs[0].UserID != "bob" ||
		unmarshal(evs[0].Payload, &p0) != nil || p0.Muted == nil || !*p0.Muted || p0.Role != tidings.RoleMember {
		t.Errorf("the mute's event: %q %v", describe(evs), evs)
	}

	// The app's server unmutes; bob sends again.
	after = f.lastSeq()
	if p := must[*tidings.Participant](t)(f.Conversations.MuteParticipant(server("a"), "c", "bob", false)); p.Muted {
		t.Errorf("bob after the unmute: %+v", p)
	}
	f.send("a", "bob", "c", "thanks")
	evs = convEvents(f.stream("a", "bob", after), "c")
	if len(evs) < 1 || evs[0].Name != tidings.EventParticipantUpdated || evs[0].Actor != nil || unmarshal(evs[0].Payload, &p0) != nil || p0.Muted == nil || *p0.Muted {
		t.Errorf("the unmute's event: %q", describe(evs))
	}
}
