package sqlite_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// Every send retried with its client id finds its first message, wherever
// the client-id filter learned of it: stored before the database opened
// (read at start-up), sent and moved while that read waited, sent after
// it, still in the journal or moved. New client ids are known new
// without a look in the database, but for the filter's few false
// positives.
func TestRetriedSendsFoundWithTheClientFilter(t *testing.T) {
	e, conv := pair(t)
	first := map[[2]string]*tidings.Message{} // by sender and client id
	send := func(e *env, who, clientID string) (*tidings.Message, bool) {
		t.Helper()
		m, created, err := e.messages.SendMessage(user("a", who), conv, tidings.NewMessage{ClientID: clientID, Parts: text(who + " " + clientID)})
		if err != nil {
			t.Fatal(err)
		}
		return m, created
	}
	sendNew := func(e *env, prefix string, n int) {
		t.Helper()
		for i := range n {
			for _, who := range []string{"alice", "bob"} {
				id := fmt.Sprintf("%s-%d", prefix, i)
				m, created := send(e, who, id)
				if !created {
					t.Fatalf("%s's first send of %s was not created: %+v", who, id, m)
				}
				first[[2]string{who, id}] = m
			}
		}
	}
	sendNew(e, "before", 50)
	e.history(t, "a", "alice", conv) // moved into messages
	e.db.Close()

	// Open again, the filter's read of messages held: sends come and move
	// meanwhile, and more stay in the journal.
	var release func()
	e = openDBWith(t, e.path, func(db *sqlite.DB) { release = sqlite.HoldClientFilter(db) })
	sendNew(e, "held", 50)
	if _, looked := sqlite.ClientIDChecks(e.db); looked != 100 {
		t.Fatalf("before the filter's read: %d client ids looked for in messages, want all 100", looked)
	}
	e.history(t, "a", "alice", conv)
	sendNew(e, "journal", 20)
	release()
	if !sqlite.WaitClientFilter(e.db) {
		t.Fatal("the client-id filter's read failed")
	}
	f0, l0 := sqlite.ClientIDChecks(e.db)
	sendNew(e, "after", 100)
	f1, l1 := sqlite.ClientIDChecks(e.db)
	if f1-f0 < 190 || f1-f0+l1-l0 != 200 {
		t.Fatalf("200 new client ids once the filter read messages: %d known new from it, %d looked for; want at least 190 known new", f1-f0, l1-l0)
	}
	// Some retried while in the journal, then all once moved.
	for pass, move := range []bool{false, true} {
		if move {
			e.history(t, "a", "alice", conv)
		}
		for key, want := range first {
			who, id := key[0], key[1]
			got, created := send(e, who, id)
			if created || got.ID != want.ID || got.Seq != want.Seq {
				t.Fatalf("pass %d: %s retried %s: %+v, created %v; want its first message %s (seq %d)", pass, who, id, got, created, want.ID, want.Seq)
			}
		}
	}
	if j, m := rawStored(t, e.path, conv); j+m != len(first) {
		t.Fatalf("%d messages stored (%d in the journal), want %d: retries stored more", j+m, j, len(first))
	}
	// The same client id from another conversation is new.
	d := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	if _, created, err := e.messages.SendMessage(user("a", "alice"), d.ID, tidings.NewMessage{ClientID: "before-1", Parts: text("again")}); err != nil || !created {
		t.Fatalf("alice's before-1 in another conversation: created %v, %v; want a new message", created, err)
	}
}

// Once the sends since its last read outgrow it, the client-id filter
// reads messages again and drops what it held: its memory follows the
// messages stored, not the sends since start-up. Every retry is still
// found, those of messages in the journal when the read started and
// moved after it read past them included.
func TestClientFilterIsReadAgainWhenItsSendsOutgrowIt(t *testing.T) {
	e := newEnvWith(t, func(db *sqlite.DB) {
		sqlite.SetClientFilterRebuild(db, 100)
		// Nothing moves but when the test reads: not when the writer is
		// idle for a second on a busy machine.
		sqlite.SetMarkFlush(db, time.Hour, time.Hour, 128)
		sqlite.SetMoveDelay(db, time.Hour)
	})
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	if !sqlite.WaitClientFilter(e.db) {
		t.Fatal("the client-id filter's first read failed")
	}
	first := map[string]*tidings.Message{}
	send := func(clientID string) (*tidings.Message, bool) {
		t.Helper()
		m, created, err := e.messages.SendMessage(user("a", "alice"), c.ID, tidings.NewMessage{ClientID: clientID, Parts: text(clientID)})
		if err != nil {
			t.Fatal(err)
		}
		return m, created
	}
	sendNew := func(prefix string, n int) {
		t.Helper()
		for i := range n {
			id := fmt.Sprintf("%s-%d", prefix, i)
			m, created := send(id)
			if !created {
				t.Fatalf("the first send of %s was not created", id)
			}
			first[id] = m
		}
	}
	sendNew("moved", 60)
	e.history(t, "a", "alice", c.ID)
	// The 100th client id starts a read, held: the 20 of "journal" before
	// it wait in the journal, and stay there until the read is done.
	release := sqlite.HoldClientFilter(e.db)
	sendNew("journal", 60)
	if reads, _, err := sqlite.ClientFilterState(e.db); err != nil || reads != 1 {
		t.Fatalf("after 120 client ids: %d reads again started (%v), want 1", reads, err)
	}
	release()
	sqlite.WaitClientFilter(e.db)
	if j, _ := rawStored(t, e.path, c.ID); j != 60 {
		t.Fatalf("%d messages in the journal, want the 60 of journal", j)
	}
	e.history(t, "a", "alice", c.ID) // moved after the read
	sendNew("after", 10)
	reads, recent, err := sqlite.ClientFilterState(e.db)
	if err != nil || reads != 1 || recent != 60+10 {
		t.Fatalf("after the read: %d reads, %d client ids in recent (%v); want 1, and the 60 of journal and the 10 after, no more", reads, recent, err)
	}
	e.history(t, "a", "alice", c.ID)
	for id, want := range first {
		if got, created := send(id); created || got.ID != want.ID {
			t.Fatalf("%s retried: %+v, created %v; want its first message %s", id, got, created, want.ID)
		}
	}
	if j, m := rawStored(t, e.path, c.ID); j+m != len(first) {
		t.Fatalf("%d messages stored, want %d: retries stored more", j+m, len(first))
	}
}
