package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
)

func TestRESTHelpers(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice", "bob", "carol")
	ctx := ctxT(t)
	opts := []client.Option{client.WithMode(client.ManualMode)}
	alice := newClient(t, s.URL(), append(opts, client.WithToken(s.token(t, "alice", time.Hour)))...)
	bob := newClient(t, s.URL(), append(opts, client.WithToken(s.token(t, "bob", time.Hour)))...)
	carol := newClient(t, s.URL(), append(opts, client.WithToken(s.token(t, "carol", time.Hour)))...)

	// Users.
	me, err := alice.Me(ctx)
	if err != nil || me.ID != "alice" {
		t.Fatalf("Me: %+v, %v", me, err)
	}
	u, err := alice.GetUser(ctx, "bob")
	if err != nil || u.DisplayName != "Bob" {
		t.Fatalf("GetUser: %+v, %v", u, err)
	}
	avatar := "https://example.com/alice.png"
	if u, err := alice.UpdateUser(ctx, "alice", tidings.UserUpdate{AvatarURL: &avatar}); err != nil || u.AvatarURL != avatar || u.DisplayName != "Alice" {
		t.Fatalf("UpdateUser: %+v, %v", u, err)
	}
	if _, err := alice.UpdateUser(ctx, "bob", tidings.UserUpdate{AvatarURL: &avatar}); client.ErrorCode(err) != tidings.EForbidden {
		t.Fatalf("UpdateUser of someone else: %v", err)
	}
	_, err = alice.GetUser(ctx, "nobody")
	var e *client.Error
	if !errors.As(err, &e) || e.Code != tidings.ENotFound || e.Message == "" {
		t.Fatalf("GetUser of nobody: %#v", err)
	}

	// Conversations.
	conv, err := alice.CreateConversation(ctx, tidings.NewConversation{ID: "trip", Name: "Trip", IsPublic: true,
		Participants: []tidings.NewParticipant{{UserID: "bob", Role: tidings.RoleAdmin}}})
	if err != nil || conv.ID != "trip" || conv.Role != tidings.RoleOwner || conv.ParticipantCount != 2 {
		t.Fatalf("CreateConversation: %+v, %v", conv, err)
	}
	if _, err := alice.CreateConversation(ctx, tidings.NewConversation{ID: "trip"}); client.ErrorCode(err) != tidings.EConflict {
		t.Fatalf("CreateConversation twice: %v", err)
	}
	other, err := alice.CreateConversation(ctx, tidings.NewConversation{Name: "Other"})
	if err != nil {
		t.Fatal(err)
	}
	desc := "Where and when"
	if c, err := bob.UpdateConversation(ctx, "trip", tidings.ConversationUpdate{Description: &desc}); err != nil || c.Description != desc {
		t.Fatalf("UpdateConversation: %+v, %v", c, err)
	}
	if c, err := bob.GetConversation(ctx, "trip"); err != nil || c.Description != desc || c.Role != tidings.RoleAdmin {
		t.Fatalf("GetConversation: %+v, %v", c, err)
	}
	page, err := alice.ListConversations(ctx, tidings.ConversationFilter{Limit: 1})
	if err != nil || len(page.Conversations) != 1 || page.NextCursor == "" {
		t.Fatalf("ListConversations: %+v, %v", page, err)
	}
	page2, err := alice.ListConversations(ctx, tidings.ConversationFilter{Cursor: page.NextCursor})
	if err != nil || len(page2.Conversations) != 1 || page2.Conversations[0].ID == page.Conversations[0].ID {
		t.Fatalf("ListConversations, page 2: %+v, %v", page2, err)
	}
	if err := alice.DeleteConversation(ctx, other.ID); err != nil {
		t.Fatal(err)
	}
	if page, err := alice.ListConversations(ctx, tidings.ConversationFilter{}); err != nil || len(page.Conversations) != 1 {
		t.Fatalf("ListConversations without the deleted: %+v, %v", page, err)
	}
	if page, err := alice.ListConversations(ctx, tidings.ConversationFilter{IncludeDeleted: true}); err != nil || len(page.Conversations) != 2 {
		t.Fatalf("ListConversations with the deleted: %+v, %v", page, err)
	}
	if c, err := alice.UndeleteConversation(ctx, other.ID); err != nil || c.DeletedAt != nil {
		t.Fatalf("UndeleteConversation: %+v, %v", c, err)
	}

	// Participants.
	if p, err := carol.Join(ctx, "trip"); err != nil || p.UserID != "carol" || p.Role != tidings.RoleMember {
		t.Fatalf("Join: %+v, %v", p, err)
	}
	if p, err := alice.UpdateParticipant(ctx, "trip", "carol", tidings.RoleAdmin); err != nil || p.Role != tidings.RoleAdmin {
		t.Fatalf("UpdateParticipant: %+v, %v", p, err)
	}
	if err := carol.Leave(ctx, "trip"); err != nil {
		t.Fatal(err)
	}
	if p, err := bob.AddParticipant(ctx, "trip", tidings.NewParticipant{UserID: "carol"}); err != nil || p.Role != tidings.RoleMember {
		t.Fatalf("AddParticipant: %+v, %v", p, err)
	}
	ps, err := carol.ListParticipants(ctx, "trip")
	if err != nil || len(ps) != 3 {
		t.Fatalf("ListParticipants: %+v, %v", ps, err)
	}
	if err := bob.RemoveParticipant(ctx, "trip", "carol"); err != nil {
		t.Fatal(err)
	}
	if ps, err := carol.ListParticipants(ctx, "trip"); err != nil || len(ps) != 2 { // a public conversation
		t.Fatalf("ListParticipants after removal: %v, %v", ps, err)
	}
	if _, err := carol.ListParticipants(ctx, other.ID); client.ErrorCode(err) != tidings.ENotFound {
		t.Fatalf("ListParticipants of a private conversation: %v", err)
	}

	// Messages.
	var ids []string
	for _, text := range expected(5) {
		m, err := bob.SendMessage(ctx, "trip", textMessage(text))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	mp, err := alice.ListMessages(ctx, "trip", tidings.MessageFilter{Limit: 2})
	if err != nil || len(mp.Messages) != 2 || mp.Messages[0].Seq != 4 || !mp.HasMore {
		t.Fatalf("ListMessages newest: %+v, %v", mp, err)
	}
	before := int64(4)
	if mp, err := alice.ListMessages(ctx, "trip", tidings.MessageFilter{Before: &before, Limit: 2}); err != nil ||
		len(mp.Messages) != 2 || mp.Messages[0].Seq != 2 || !mp.HasMore {
		t.Fatalf("ListMessages before: %+v, %v", mp, err)
	}
	after := int64(0)
	if mp, err := alice.ListMessages(ctx, "trip", tidings.MessageFilter{After: &after}); err != nil || len(mp.Messages) != 5 || mp.HasMore {
		t.Fatalf("ListMessages after: %+v, %v", mp, err)
	}
	if m, err := alice.GetMessage(ctx, "trip", ids[2]); err != nil || m.Parts[0].Data != "m002" {
		t.Fatalf("GetMessage: %+v, %v", m, err)
	}
	if m, err := bob.EditMessage(ctx, "trip", ids[2], tidings.MessageEdit{Parts: []tidings.Part{{Type: "text/plain", Data: "edited"}}}); err != nil || m.EditedAt == nil {
		t.Fatalf("EditMessage: %+v, %v", m, err)
	}
	if _, err := alice.EditMessage(ctx, "trip", ids[2], tidings.MessageEdit{Parts: []tidings.Part{{Type: "text/plain", Data: "x"}}}); client.ErrorCode(err) != tidings.EForbidden {
		t.Fatalf("EditMessage of another's message: %v", err)
	}
	if err := bob.DeleteMessage(ctx, "trip", ids[3]); err != nil {
		t.Fatal(err)
	}
	if st, err := alice.MarkDelivered(ctx, "trip", 3); err != nil || st.DeliveredSeq != 3 || st.ReadSeq != 0 {
		t.Fatalf("MarkDelivered: %+v, %v", st, err)
	}
	if st, err := alice.MarkRead(ctx, "trip", 0); err != nil || st.ReadSeq != 5 || st.UnreadCount != 0 {
		t.Fatalf("MarkRead: %+v, %v", st, err)
	}
	if _, err := alice.MarkRead(ctx, "trip", 99); client.ErrorCode(err) != tidings.EInvalid {
		t.Fatalf("MarkRead beyond the newest: %v", err)
	}

	// Files.
	content := bytes.Repeat([]byte("tidings "), 1000)
	f, err := alice.UploadFile(ctx, "trip", "notes été.txt", "text/plain; charset=utf-8", bytes.NewReader(content))
	if err != nil || f.Size != int64(len(content)) || f.Name != "notes été.txt" || f.UploaderID != "alice" {
		t.Fatalf("UploadFile: %+v, %v", f, err)
	}
	body, info, err := bob.DownloadFile(ctx, "trip", f.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(body)
	body.Close()
	if err != nil || !bytes.Equal(got, content) || info.Name != f.Name || info.Size != f.Size || info.Type != "text/plain; charset=utf-8" {
		t.Fatalf("DownloadFile: %d bytes, %+v, %v", len(got), info, err)
	}
	if _, _, err := carol.DownloadFile(ctx, "trip", f.ID); client.ErrorCode(err) != tidings.EForbidden {
		t.Fatalf("DownloadFile by a non-participant: %v", err)
	}
	if f, err := alice.UploadFile(ctx, "trip", "x", "", bytes.NewReader([]byte{0})); err != nil || f.Type != "application/octet-stream" {
		t.Fatalf("UploadFile without a type: %+v, %v; want it stored as application/octet-stream", f, err)
	}
	if _, err := alice.UploadFile(ctx, "trip", "x", "no type", bytes.NewReader(nil)); client.ErrorCode(err) != tidings.EUnsupportedType {
		t.Fatalf("UploadFile with a bad type: %v", err)
	}
	m, err := alice.SendMessage(ctx, "trip", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", FileID: f.ID}}})
	if err != nil || m.Parts[0].Size != f.Size {
		t.Fatalf("SendMessage with a file: %+v, %v", m, err)
	}
}

func TestRESTRefreshesARejectedToken(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	s.mkUsers(t, "alice")
	ctx := ctxT(t)
	calls := 0
	provider := func(ctx context.Context) (string, error) {
		calls++
		if calls == 1 { // a token that looks fine but that the server refuses
			tok := s.token(t, "alice", time.Hour)
			return tok[:len(tok)-4] + "AAAA", nil
		}
		return s.token(t, "alice", time.Hour), nil
	}
	c := newClient(t, s.URL(), client.WithMode(client.ManualMode))
	if _, err := c.LoginWith(ctx, provider); err != nil {
		t.Fatalf("LoginWith: %v", err)
	}
	if calls != 2 {
		t.Fatalf("provider called %d times", calls)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
}
