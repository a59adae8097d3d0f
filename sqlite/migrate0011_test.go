package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tidings/tidings"
)

// downgradeTo0010 makes the closed database at path as version 0010 left
// it: messages without event_seq, every event in events_by_conversation.
func downgradeTo0010(t *testing.T, path string) {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, q := range []string{
		`ALTER TABLE messages DROP COLUMN event_seq`,
		`DROP INDEX events_by_conversation`,
		`CREATE INDEX events_by_conversation ON events (app_id, conversation_id, seq)`,
		`DELETE FROM meta WHERE key = 'sends_indexed_through'`,
		`DELETE FROM schema_migrations WHERE version = '0011_sends_replayed_from_messages'`,
	} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// streamEvent is an event of a stream as the test compares them.
type streamEvent struct {
	Seq  int64
	Name string
	Msg  string // the message's id, for message events
}

func stream(t *testing.T, db *DB, user string, after int64) []streamEvent {
	t.Helper()
	evs, err := NewEventLog(db).UserEvents(context.Background(), "a", user, after, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []streamEvent
	for _, e := range evs {
		if e.ConversationID != "c" {
			continue
		}
		var p struct {
			ID string `json:"id"`
		}
		if strings.HasPrefix(e.Name, "conversationMessage.") {
			if err := json.Unmarshal(e.Payload, &p); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, streamEvent{e.Seq, e.Name, p.ID})
	}
	return out
}

// Migration 0011: the sends stored before it stay in
// events_by_conversation, later ones are replayed through their messages;
// a stream read from any point, across memberships that end and start
// again on both sides of the migration, has each event of the
// conversation the user could see once, in order, and nothing else; and
// erasing a user reaches the events of their sends on both sides.
func TestMigration0011ReplaysSendsOnBothSides(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tidings.db")
	ctx := context.Background()
	open := func() (*DB, *ConversationService, *MessageService) {
		db := NewDB(path)
		if err := db.Open(); err != nil {
			t.Fatal(err)
		}
		return db, NewConversationService(db), NewMessageService(db, 0)
	}
	alice := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "a", UserID: "alice"})
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "a", Server: true})
	var sent []string // ids of the messages sent, in order
	var seenByBob []string
	send := func(ms *MessageService, clientID string, bobSees bool) {
		t.Helper()
		m, created, err := ms.SendMessage(alice, "c", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: "hi"}}, ClientID: clientID})
		if err != nil || !created {
			t.Fatalf("send: %v, created %v", err, created)
		}
		sent = append(sent, m.ID)
		if bobSees {
			seenByBob = append(seenByBob, m.ID)
		}
	}

	db, convs, msgs := open()
	if _, err := NewAppService(db).CreateApp(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	users := NewUserService(db)
	for _, id := range []string{"alice", "bob"} {
		if _, err := users.CreateUser(server, &tidings.User{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := convs.CreateConversation(alice, tidings.NewConversation{ID: "c", Participants: []tidings.NewParticipant{{UserID: "bob"}}}); err != nil {
		t.Fatal(err)
	}
	send(msgs, "old-1", true)
	send(msgs, "", true)
	if err := convs.RemoveParticipant(server, "c", "bob"); err != nil {
		t.Fatal(err)
	}
	send(msgs, "", false)
	if _, err := convs.AddParticipant(server, "c", tidings.NewParticipant{UserID: "bob"}); err != nil {
		t.Fatal(err)
	}
	send(msgs, "", true) // bob's second membership spans the migration
	before := stream(t, db, "bob", 0)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	downgradeTo0010(t, path)
	db, convs, msgs = open()
	if got := stream(t, db, "bob", 0); !slices.Equal(got, before) {
		t.Fatalf("after migrating, bob's stream is\n%v\nwas\n%v", got, before)
	}
	if db.sendsIndexedThrough != before[len(before)-1].Seq {
		t.Fatalf("sends indexed through %d, want the newest event %d", db.sendsIndexedThrough, before[len(before)-1].Seq)
	}
	send(msgs, "new-1", true)
	send(msgs, "", true)
	// A client id sent again: no message, no event.
	if _, created, err := msgs.SendMessage(alice, "c", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: "again"}}, ClientID: "new-1"}); err != nil || created {
		t.Fatalf("send again: created %v, %v", created, err)
	}
	if _, created, err := msgs.SendMessage(alice, "c", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: "again"}}, ClientID: "old-1"}); err != nil || created {
		t.Fatalf("send again: created %v, %v", created, err)
	}
	if _, err := msgs.EditMessage(alice, "c", sent[0], tidings.MessageEdit{Parts: []tidings.Part{{Type: "text/plain", Data: "edited"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := msgs.DeleteMessage(alice, "c", sent[len(sent)-1]); err != nil {
		t.Fatal(err)
	}
	if err := convs.RemoveParticipant(server, "c", "bob"); err != nil {
		t.Fatal(err)
	}
	send(msgs, "", false)
	send(msgs, "", false)
	if _, err := convs.AddParticipant(server, "c", tidings.NewParticipant{UserID: "bob"}); err != nil {
		t.Fatal(err)
	}
	send(msgs, "", true)
	if _, _, err := msgs.sendSystem(ctx, tidings.Caller{AppID: "a", Server: true}, "c", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: "system"}}}); err != nil {
		t.Fatal(err)
	}

	// What each one may see, from the log itself: every event of c within
	// their memberships.
	want := func(user string) []streamEvent {
		var out []streamEvent
		rows, err := db.read.Query(`SELECT e.seq, e.name, COALESCE(json_extract(e.payload, '$.id'), '') FROM events e
			WHERE e.app_id = 'a' AND e.conversation_id = 'c' AND EXISTS (SELECT 1 FROM memberships m
				WHERE m.app_id = 'a' AND m.user_id = ? AND m.conversation_id = 'c' AND e.seq >= m.from_seq AND (m.to_seq IS NULL OR e.seq <= m.to_seq))
			ORDER BY e.seq`, user)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var e streamEvent
			if err := rows.Scan(&e.Seq, &e.Name, &e.Msg); err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(e.Name, "conversationMessage.") {
				e.Msg = ""
			}
			out = append(out, e)
		}
		return out
	}
	var bobSent []string
	for _, e := range want("bob") {
		if e.Name == tidings.EventMessageSent && !slices.Contains(sent, e.Msg) {
			continue // the system message
		}
		if e.Name == tidings.EventMessageSent {
			bobSent = append(bobSent, e.Msg)
		}
	}
	if !slices.Equal(bobSent, seenByBob) {
		t.Fatalf("the log gives bob the sends %v, want %v", bobSent, seenByBob)
	}
	for _, user := range []string{"alice", "bob"} {
		all := want(user)
		last := all[len(all)-1].Seq
		for after := int64(0); after <= last; after++ {
			var w []streamEvent
			for _, e := range all {
				if e.Seq > after {
					w = append(w, e)
				}
			}
			if got := stream(t, db, user, after); !slices.Equal(got, w) {
				t.Fatalf("%s's stream after %d:\n%v\nwant\n%v", user, after, got, w)
			}
		}
	}

	// Erasing alice reaches the events of her sends on both sides.
	if err := NewUserService(db).DeleteUser(server, "alice", tidings.AnonymizeMessages); err != nil {
		t.Fatal(err)
	}
	var named int
	if err := db.read.QueryRow(`SELECT count(*) FROM events WHERE json_extract(actor, '$.id') = 'alice'
		OR json_extract(payload, '$.sender.id') = 'alice'`).Scan(&named); err != nil {
		t.Fatal(err)
	}
	if named != 0 {
		t.Fatalf("%d events still name alice", named)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}
