package sqlite_test

import (
	"context"
	"database/sql"
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
	// The filled sends' marks are written: the next start has none to
	// repair (it would read every filled event to find them).
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	var marksSeq, newest int64
	err = raw.QueryRow(`SELECT (SELECT value FROM meta WHERE key = 'marks_seq'), (SELECT MAX(seq) FROM events)`).Scan(&marksSeq, &newest)
	raw.Close()
	if err != nil || marksSeq != newest {
		t.Errorf("after the fill, marks written through event %d (%v); want the newest, %d", marksSeq, err, newest)
	}
	e = openDB(t, path)
	for _, c := range []struct {
		user   string
		unread int64
	}{{"alice", 0}, {"bob", 7}} {
		conv, err := e.convs.FindConversationByID(user("a", c.user), "f-1")
		if err != nil || conv.LastSeq != c1.LastSeq+7 || conv.UnreadCount != c.unread {
			t.Errorf("%s sees f-1 at last seq %d with %d unread (%v); want %d and %d", c.user, conv.LastSeq, conv.UnreadCount, err, c1.LastSeq+7, c.unread)
		}
	}
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
	// Each has a client id, as the SDKs' sends do: a send retried with it
	// is answered with the filled message.
	if m.ClientID == "" {
		t.Errorf("a filled message has no client id: %+v", m)
	} else if got, created, err := e.messages.SendMessage(user("a", "alice"), "f-1", tidings.NewMessage{ClientID: m.ClientID, Parts: text("again")}); err != nil || created || got.ID != m.ID {
		t.Errorf("a send retried with a filled client id: %+v, created %v, %v; want message %s", got, created, err, m.ID)
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
