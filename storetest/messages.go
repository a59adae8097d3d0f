package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tidings/tidings"
)

// TestSendMessage: messages are numbered from 1 without gaps per
// conversation; sending moves the sender's own marks and the others'
// unread counts; bad messages are refused.
func TestSendMessage(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "bob")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c"}, "bob")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "d"}, "bob")
	for i := 1; i <= 3; i++ {
		m := f.send("a", "alice", "c", fmt.Sprint("c", i))
		if m.Seq != int64(i) || m.ConversationID != "c" || m.Sender.ID != "alice" || m.ID == "" || m.SentAt.IsZero() {
			t.Errorf("message %d: %+v", i, m)
		}
	}
	if m := f.send("a", "bob", "d", "d1"); m.Seq != 1 {
		t.Errorf("first message of another conversation has seq %d, want 1", m.Seq)
	}
	c := must[*tidings.Conversation](t)(f.Conversations.FindConversationByID(as("a", "alice"), "c"))
	if c.LastSeq != 3 || c.ReadSeq != 3 || c.UnreadCount != 0 {
		t.Errorf("alice's view after sending 3: lastSeq %d, readSeq %d, unread %d; want 3, 3, 0", c.LastSeq, c.ReadSeq, c.UnreadCount)
	}
	c = must[*tidings.Conversation](t)(f.Conversations.FindConversationByID(as("a", "bob"), "c"))
	if c.LastSeq != 3 || c.ReadSeq != 0 || c.UnreadCount != 3 {
		t.Errorf("bob's view: lastSeq %d, readSeq %d, unread %d; want 3, 0, 3", c.LastSeq, c.ReadSeq, c.UnreadCount)
	}
	// The sender's marks moved without a read event.
	for _, e := range f.stream("a", "bob", 0) {
		if e.Name == tidings.EventMessageRead || e.Name == tidings.EventMessageDelivered {
			t.Errorf("a send emitted %s", e.Name)
		}
	}
	for _, p := range must[*tidings.ParticipantPage](t)(f.Conversations.ListParticipants(as("a", "bob"), "c", tidings.ParticipantFilter{})).Participants {
		if p.UserID == "alice" && (p.ReadSeq != 3 || p.DeliveredSeq != 3) {
			t.Errorf("alice's marks %d/%d after sending 3, want 3/3", p.DeliveredSeq, p.ReadSeq)
		}
	}

	got := must[*tidings.Message](t)(f.Messages.FindMessage(as("a", "bob"), "c", f.send("a", "bob", "c", "found").ID))
	if got.Parts[0].Data != "found" || got.Seq != 4 {
		t.Errorf("found %+v", got)
	}
	_, err := f.Messages.FindMessage(as("a", "bob"), "d", got.ID)
	wantCode(t, "find a message in another conversation", err, tidings.ENotFound)
	_, err = f.Messages.FindMessage(as("a", "bob"), "c", "nope")
	wantCode(t, "find an unknown message", err, tidings.ENotFound)

	for what, nm := range map[string]tidings.NewMessage{
		"no part":        {},
		"an empty part":  {Parts: []tidings.Part{{Type: "text/plain"}}},
		"too many parts": {Parts: make([]tidings.Part, tidings.MaxParts+1)},
		"a bad clientId": {ClientID: "-x", Parts: text("hi")},
	} {
		_, _, err := f.Messages.SendMessage(as("a", "alice"), "c", nm)
		wantCode(t, "send "+what, err, tidings.EInvalid)
	}
	limit := f.MaxMessageBytes
	if limit <= 0 {
		limit = tidings.DefaultMessageSize
	}
	_, _, err = f.Messages.SendMessage(as("a", "alice"), "c", tidings.NewMessage{Parts: text(strings.Repeat("x", limit+1))})
	wantCode(t, "send a message over the size limit", err, tidings.ETooLarge)
	_, _, err = f.Messages.SendMessage(as("a", "alice"), "nope", tidings.NewMessage{Parts: text("hi")})
	wantCode(t, "send to an unknown conversation", err, tidings.ENotFound)

	// Owners may take sending away from members.
	roles := tidings.DefaultRoles()
	roles.Member.Send = false
	must[*tidings.Conversation](t)(f.Conversations.UpdateConversation(as("a", "alice"), "c", tidings.ConversationUpdate{Roles: &roles}))
	_, _, err = f.Messages.SendMessage(as("a", "bob"), "c", tidings.NewMessage{Parts: text("may I?")})
	wantCode(t, "a member sends where members may not", err, tidings.EForbidden)
	if c := must[*tidings.Conversation](t)(f.Conversations.FindConversationByID(as("a", "bob"), "c")); c.LastSeq != 4 {
		t.Errorf("lastSeq %d after refused sends, want 4: a refused message takes no number", c.LastSeq)
	}
}

// TestIdempotentClientID: sending again with the same clientId in the same
// conversation returns the first message and changes nothing, even when
// the retries race; another conversation is another scope.
func TestIdempotentClientID(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "bob")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c"}, "bob")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "d"}, "bob")
	nm := tidings.NewMessage{ClientID: "m-1", Parts: text("once")}
	first, created, err := f.Messages.SendMessage(as("a", "alice"), "c", nm)
	if err != nil || !created {
		t.Fatalf("first send: created %v, %v", created, err)
	}
	before := f.lastSeq()
	again, created, err := f.Messages.SendMessage(as("a", "alice"), "c", tidings.NewMessage{ClientID: "m-1", Parts: text("twice?")})
	if err != nil || created || again.ID != first.ID || again.Seq != first.Seq || again.Parts[0].Data != "once" {
		t.Errorf("retry: created %v, %+v, %v; want the first message, unchanged", created, again, err)
	}
	if after := f.lastSeq(); after != before {
		t.Errorf("a retry emitted events: last seq %d → %d", before, after)
	}
	other, created, err := f.Messages.SendMessage(as("a", "alice"), "d", nm)
	if err != nil || !created || other.ID == first.ID {
		t.Errorf("same clientId in another conversation: created %v, %v: want a new message", created, err)
	}

	// Retries that race: one message, the same answer for all.
	const n = 8
	ids := make([]string, n)
	createdN := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			m, c, err := f.Messages.SendMessage(as("a", "bob"), "c", tidings.NewMessage{ClientID: "race", Parts: text("race")})
			if err != nil {
				t.Errorf("racing send %d: %v", i, err)
				return
			}
			ids[i], createdN[i] = m.ID, c
		})
	}
	wg.Wait()
	nCreated := 0
	for i := range n {
		if createdN[i] {
			nCreated++
		}
		if ids[i] != ids[0] {
			t.Errorf("racing sends got messages %s and %s", ids[0], ids[i])
		}
	}
	if nCreated != 1 {
		t.Errorf("%d of %d racing sends with one clientId created a message, want 1", nCreated, n)
	}
	page := must[*tidings.MessagePage](t)(f.Messages.ListMessages(as("a", "bob"), "c", tidings.MessageFilter{}))
	if len(page.Messages) != 2 {
		t.Errorf("history holds %d messages, want 2", len(page.Messages))
	}
}

// TestEditDeleteMessage: the sender edits; the sender or a moderator
// deletes; a deleted message loses its content and cannot be edited.
func TestEditDeleteMessage(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "bob", "carol")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c",
		Participants: []tidings.NewParticipant{{UserID: "carol", Role: tidings.RoleAdmin}}}, "bob")
	m := must[*tidings.Message](t)(func() (*tidings.Message, error) {
		m, _, err := f.Messages.SendMessage(as("a", "bob"), "c", tidings.NewMessage{Parts: text("helo"), Alert: "Bob: helo"})
		return m, err
	}())
	_, err := f.Messages.EditMessage(as("a", "alice"), "c", m.ID, tidings.MessageEdit{Parts: text("hacked")})
	wantCode(t, "the owner edits bob's message", err, tidings.EForbidden)
	_, err = f.Messages.EditMessage(as("a", "bob"), "c", m.ID, tidings.MessageEdit{})
	wantCode(t, "an edit without parts", err, tidings.EInvalid)
	ed := must[*tidings.Message](t)(f.Messages.EditMessage(as("a", "bob"), "c", m.ID, tidings.MessageEdit{Parts: text("hello")}))
	if ed.ID != m.ID || ed.Seq != m.Seq || ed.Parts[0].Data != "hello" || ed.EditedAt == nil {
		t.Errorf("edited %+v", ed)
	}
	if got := must[*tidings.Message](t)(f.Messages.FindMessage(as("a", "alice"), "c", m.ID)); got.Parts[0].Data != "hello" || got.EditedAt == nil {
		t.Errorf("read back %+v", got)
	}

	other := f.send("a", "alice", "c", "mine")
	_, err = f.Messages.DeleteMessage(as("a", "bob"), "c", other.ID)
	wantCode(t, "a member deletes another's message", err, tidings.EForbidden)
	del := must[*tidings.Message](t)(f.Messages.DeleteMessage(as("a", "carol"), "c", m.ID))
	if del.DeletedAt == nil || len(del.Parts) != 0 || del.Alert != "" || del.ID != m.ID {
		t.Errorf("deleted by a moderator: %+v: want DeletedAt set and the content gone", del)
	}
	if _, err := f.Messages.DeleteMessage(as("a", "bob"), "c", m.ID); err != nil {
		t.Errorf("deleting twice: %v, want no error", err)
	}
	_, err = f.Messages.EditMessage(as("a", "bob"), "c", m.ID, tidings.MessageEdit{Parts: text("back")})
	wantCode(t, "edit a deleted message", err, tidings.EConflict)
	must[*tidings.Message](t)(f.Messages.DeleteMessage(as("a", "alice"), "c", other.ID))
	_, err = f.Messages.DeleteMessage(as("a", "alice"), "c", "nope")
	wantCode(t, "delete an unknown message", err, tidings.ENotFound)

	evs := convEvents(f.stream("a", "alice", 0), "c")
	var changes []*tidings.Event
	for _, e := range evs {
		if e.Name == tidings.EventMessageEdited || e.Name == tidings.EventMessageDeleted {
			changes = append(changes, e)
		}
	}
	if len(changes) != 3 {
		t.Fatalf("edit and delete events %q, want edited, deleted, deleted (deleting twice emits once)", describe(changes))
	}
	for i, want := range []string{m.ID, m.ID, other.ID} {
		var p tidings.MessagePayload
		if err := unmarshal(changes[i].Payload, &p); err != nil || p.ReferrerID != want || p.Message == nil || p.ID != want {
			t.Errorf("%s payload %s: want referrerId %s", changes[i].Name, changes[i].Payload, want)
		}
	}
	if changes[1].Actor == nil || changes[1].Actor.ID != "carol" {
		t.Errorf("deletion's actor %+v, want carol", changes[1].Actor)
	}
	// A sent message's event has the message's id (tidings.NewEventID:
	// the realtime protocol sends it once); the others have their own.
	ids := map[string]bool{}
	for _, e := range evs {
		var p tidings.MessagePayload
		if err := unmarshal(e.Payload, &p); err != nil || p.Message == nil {
			continue
		}
		if (e.Name == tidings.EventMessageSent) != (e.ID == p.ID) || ids[e.ID] {
			t.Errorf("%s of message %s: event id %s", e.Name, p.ID, e.ID)
		}
		ids[e.ID] = true
	}
}

// TestHistory pages through history both ways; pages are in ascending
// seq order and say whether more lie beyond.
func TestHistory(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c"})
	for i := 1; i <= 7; i++ {
		f.send("a", "alice", "c", fmt.Sprint(i))
	}
	page := func(flt tidings.MessageFilter) string {
		t.Helper()
		p := must[*tidings.MessagePage](t)(f.Messages.ListMessages(as("a", "alice"), "c", flt))
		var b strings.Builder
		for _, m := range p.Messages {
			fmt.Fprintf(&b, "%d ", m.Seq)
		}
		return fmt.Sprintf("%smore=%v", b.String(), p.HasMore)
	}
	i := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		f    tidings.MessageFilter
		want string
	}{
		{tidings.MessageFilter{}, "1 2 3 4 5 6 7 more=false"},
		{tidings.MessageFilter{Limit: 3}, "5 6 7 more=true"},
		{tidings.MessageFilter{Before: i(5), Limit: 3}, "2 3 4 more=true"},
		{tidings.MessageFilter{Before: i(2), Limit: 3}, "1 more=false"},
		{tidings.MessageFilter{After: i(0), Limit: 3}, "1 2 3 more=true"},
		{tidings.MessageFilter{After: i(4), Limit: 3}, "5 6 7 more=false"},
		{tidings.MessageFilter{After: i(7)}, "more=false"},
	} {
		if got := page(tc.f); got != tc.want {
			t.Errorf("page before %v after %v limit %d: %q, want %q", deref(tc.f.Before), deref(tc.f.After), tc.f.Limit, got, tc.want)
		}
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestMarks: delivered and read marks only move forward; read implies
// delivered; 0 means the newest message; an event is emitted only when a
// mark moves; unread counts follow.
func TestMarks(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "bob")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c"}, "bob")
	for i := range 3 {
		f.send("a", "alice", "c", fmt.Sprint(i+1))
	}
	status := func(st *tidings.MessageStatus, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("delivered %d read %d unread %d", st.DeliveredSeq, st.ReadSeq, st.UnreadCount)
	}
	bob := as("a", "bob")
	before := f.lastSeq()
	for _, step := range []struct {
		what string
		got  string
		want string
	}{
		{"deliver 2", status(f.Messages.MarkDelivered(bob, "c", 2)), "delivered 2 read 0 unread 3"},
		{"read 1", status(f.Messages.MarkRead(bob, "c", 1)), "delivered 2 read 1 unread 2"},
		{"deliver 1 (back)", status(f.Messages.MarkDelivered(bob, "c", 1)), "delivered 2 read 1 unread 2"},
		{"read the newest (0)", status(f.Messages.MarkRead(bob, "c", 0)), "delivered 3 read 3 unread 0"},
		{"read 2 (back)", status(f.Messages.MarkRead(bob, "c", 2)), "delivered 3 read 3 unread 0"},
	} {
		if step.got != step.want {
			t.Errorf("%s: %s, want %s", step.what, step.got, step.want)
		}
	}
	_, err := f.Messages.MarkRead(bob, "c", 4)
	wantCode(t, "read beyond the newest", err, tidings.EInvalid)
	_, err = f.Messages.MarkDelivered(bob, "c", -1)
	wantCode(t, "deliver a negative seq", err, tidings.EInvalid)

	marks := f.stream("a", "alice", before)
	wantNames(t, "alice sees bob's marks move (only when they move)", marks,
		tidings.EventMessageDelivered+"/bob", tidings.EventMessageRead+"/bob", tidings.EventMessageRead+"/bob")
	if len(marks) == 3 {
		var p tidings.StatusPayload
		if err := unmarshal(marks[2].Payload, &p); err != nil || p.Seq != 3 || p.ProfileID != "bob" || p.MessageID == "" {
			t.Errorf("read payload %s: want seq 3 and its message", marks[2].Payload)
		}
	}
	c := must[*tidings.Conversation](t)(f.Conversations.FindConversationByID(bob, "c"))
	if c.ReadSeq != 3 || c.UnreadCount != 0 {
		t.Errorf("bob's view: read %d unread %d", c.ReadSeq, c.UnreadCount)
	}
	f.send("a", "alice", "c", "4")
	if c := must[*tidings.Conversation](t)(f.Conversations.FindConversationByID(bob, "c")); c.UnreadCount != 1 {
		t.Errorf("bob's unread count after a new message: %d, want 1", c.UnreadCount)
	}
	for _, p := range must[*tidings.ParticipantPage](t)(f.Conversations.ListParticipants(bob, "c", tidings.ParticipantFilter{})).Participants {
		if p.UserID == "bob" && (p.DeliveredSeq != 3 || p.ReadSeq != 3) {
			t.Errorf("bob's marks in the participant list: %d/%d, want 3/3", p.DeliveredSeq, p.ReadSeq)
		}
	}
	_, err = f.Messages.MarkRead(context.Background(), "c", 1)
	if err == nil {
		t.Errorf("a mark without a caller succeeded")
	}
}
