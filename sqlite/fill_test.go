package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// FillHistory stores messages as sends do: they are in the history and
// found by id, their events are in the members' streams, and the next send
// takes the next seq.
func TestFillHistoryStoresMessagesAsSendsDo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tidings.db")
	e := openDB(t, path)
	if _, err := e.apps.CreateApp(context.Background(), "a", ""); err != nil {
		t.Fatal(err)
	}
	e.mkUsers(t, "a", "alice", "bob")
	c1 := e.mkConv(t, "a", "alice", tidings.NewConversation{ID: "f-1", Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.mkConv(t, "a", "bob", tidings.NewConversation{ID: "f-2"})
	e.mkConv(t, "a", "bob", tidings.NewConversation{ID: "other"})
	// Not beside a server: it writes without a journal.
	if _, err := sqlite.FillHistory(context.Background(), path, "a", "f-", 7, nil); !errors.Is(err, sqlite.ErrInUse) {
		t.Fatalf("fill while a server has the database: %v, want ErrInUse", err)
	}
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	n, err := sqlite.FillHistory(context.Background(), path, "a", "f-", 7, nil)
	if err != nil || n != 14 {
		t.Fatalf("fill: %d, %v; want 14 messages", n, err)
	}
	e = openDB(t, path)
	page, err := e.messages.ListMessages(user("a", "bob"), "f-1", tidings.MessageFilter{Limit: 100})
	if err != nil || len(page.Messages) != 7 {
		t.Fatalf("history of f-1: %v, %v", page, err)
	}
	m := page.Messages[0]
	if m.Sender.ID != "alice" || len(m.Parts) != 1 || m.Parts[0].Type != "text/plain" {
		t.Errorf("a filled message: %+v", m)
	}
	if got, err := e.messages.FindMessage(user("a", "bob"), "f-1", m.ID); err != nil || got.Seq != m.Seq {
		t.Errorf("found by id: %+v, %v", got, err)
	}
	evs, err := sqlite.NewEventLog(e.db).UserEvents(context.Background(), "a", "bob", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for _, ev := range evs {
		if ev.Name == tidings.EventMessageSent && ev.ConversationID == "f-1" {
			sent++
		}
	}
	if sent != 7 {
		t.Errorf("bob's stream has %d messages of f-1, want 7", sent)
	}
	next, _, err := e.messages.SendMessage(user("a", "alice"), "f-1", tidings.NewMessage{Parts: text("after")})
	if err != nil || next.Seq != c1.LastSeq+8 {
		t.Errorf("next send: %+v, %v; want seq %d", next, err, c1.LastSeq+8)
	}
	if page, _ := e.messages.ListMessages(user("a", "bob"), "other", tidings.MessageFilter{Limit: 100}); page != nil && len(page.Messages) != 0 {
		t.Errorf("a conversation outside the prefix got %d messages", len(page.Messages))
	}
}
