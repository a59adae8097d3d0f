package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// rawStored counts, straight from the file, conversation conv's messages
// in the message journal (not moved yet: past the newest in messages) and
// in messages.
func rawStored(t *testing.T, path, conv string) (journal, moved int) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT (SELECT COUNT(*) FROM message_journal WHERE conversation_id = ?1
			AND seq > (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE conversation_id = ?1)),
		(SELECT COUNT(*) FROM messages WHERE conversation_id = ?1)`, conv).Scan(&journal, &moved); err != nil {
		t.Fatal(err)
	}
	return journal, moved
}

// history lists conversation conv's messages as user sees them, oldest
// first, and checks their seqs run from 1.
func (e *env) history(t *testing.T, app, who, conv string) []*tidings.Message {
	t.Helper()
	page := must[*tidings.MessagePage](t)(e.messages.ListMessages(user(app, who), conv, tidings.MessageFilter{After: new(int64)}))
	for i, m := range page.Messages {
		if m.Seq != int64(i+1) {
			t.Fatalf("%s's history of %s: message %d has seq %d", who, conv, i, m.Seq)
		}
	}
	return page.Messages
}

// A send stores its message in the journal; a reader of the conversation's
// messages has them moved first and reads them all, and the other
// conversations' messages stay where they are.
func TestSentMessagesAreJournaledAndMovedForTheirReaders(t *testing.T) {
	e, conv := pair(t)
	d := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.sendEach(t, "a", conv, "alice", "bob", "alice")
	e.sendEach(t, "a", d.ID, "bob", "alice")
	if j, m := rawStored(t, e.path, conv); j != 3 || m != 0 {
		t.Fatalf("after the sends: %d in the journal, %d in messages; want 3 and 0", j, m)
	}
	if got := e.history(t, "a", "bob", conv); len(got) != 3 || got[1].Sender.ID != "bob" {
		t.Fatalf("bob's history: %d messages (%+v), want 3, the second his", len(got), got)
	}
	if j, m := rawStored(t, e.path, conv); j != 0 || m != 3 {
		t.Fatalf("after the read: %d in the journal, %d in messages; want 0 and 3", j, m)
	}
	if j, m := rawStored(t, e.path, d.ID); j != 2 || m != 0 {
		t.Fatalf("the other conversation: %d in the journal, %d in messages; want 2 and 0", j, m)
	}
	// Sends after the move go on from the right seq, to the journal again.
	e.sendEach(t, "a", conv, "bob")
	if got := e.history(t, "a", "alice", conv); len(got) != 4 {
		t.Fatalf("alice's history after one more: %d messages, want 4", len(got))
	}
	m := must[*tidings.Message](t)(e.messages.FindMessage(user("a", "alice"), d.ID, e.history(t, "a", "alice", d.ID)[1].ID))
	if m.Seq != 2 || m.Sender.ID != "alice" {
		t.Fatalf("found %+v, want d's second message, alice's", m)
	}
}

// A send retried with its client id gets its first message back, whether
// that one is still in the journal (committed or in the same commit) or
// moved, and stores nothing more.
func TestRetriedSendFindsItsMessageInTheJournalOrMoved(t *testing.T) {
	e, conv := pair(t)
	send := func(who, clientID string) (*tidings.Message, bool) {
		t.Helper()
		m, created, err := e.messages.SendMessage(user("a", who), conv, tidings.NewMessage{ClientID: clientID, Parts: text("once " + clientID)})
		if err != nil {
			t.Fatal(err)
		}
		return m, created
	}
	first, created := send("alice", "x")
	if !created {
		t.Fatal("the first send was not created")
	}
	if again, created := send("alice", "x"); created || again.ID != first.ID || again.Seq != 1 || again.Parts[0].Data != "once x" {
		t.Fatalf("retried from the journal: %+v, created %v; want message %s", again, created, first.ID)
	}
	// Another sender may use the same client id.
	if other, created := send("bob", "x"); !created || other.Seq != 2 {
		t.Fatalf("bob's send with alice's client id: %+v, created %v; want a new message, seq 2", other, created)
	}
	// Both sends of one commit: the writer held while they queue.
	release := sqlite.HoldWriter(e.db)
	type result struct {
		m       *tidings.Message
		created bool
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			m, created, err := e.messages.SendMessage(user("a", "alice"), conv, tidings.NewMessage{ClientID: "y", Parts: text("once y")})
			if err != nil {
				t.Error(err)
			}
			results <- result{m, created}
		}()
	}
	for sqlite.QueuedJobs(e.db) < 2 {
		time.Sleep(time.Millisecond)
	}
	release()
	r1, r2 := <-results, <-results
	if r1.m == nil || r2.m == nil || r1.m.ID != r2.m.ID || r1.created == r2.created {
		t.Fatalf("two sends of client id y in one commit: %+v and %+v; want one message, created once", r1, r2)
	}
	if got := e.history(t, "a", "alice", conv); len(got) != 3 {
		t.Fatalf("history: %d messages, want 3", len(got))
	}
	// Moved by the read above.
	if again, created := send("alice", "x"); created || again.ID != first.ID {
		t.Fatalf("retried once moved: %+v, created %v; want message %s", again, created, first.ID)
	}
	if j, m := rawStored(t, e.path, conv); j != 0 || m != 3 {
		t.Fatalf("stored: %d in the journal, %d in messages; want 0 and 3", j, m)
	}
}

// Under a steady load, a conversation's messages move by themselves once
// the first of them has waited the move delay, and those of a
// conversation that has just begun to wait stay.
func TestJournaledMessagesMoveWhenDue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tidings.db")
	e := openDBWith(t, path, func(db *sqlite.DB) {
		sqlite.SetMoveDelay(db, 200*time.Millisecond)
		sqlite.SetMarkFlush(db, time.Second, time.Hour, 128) // no idle flush
	})
	must[*tidings.App](t)(e.apps.CreateApp(server("a"), "a", ""))
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	d := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.sendEach(t, "a", c.ID, "alice", "bob")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatal("the messages of c still waited after 30 s of sends to d")
		}
		e.sendEach(t, "a", d.ID, "alice")
		if j, _ := rawStored(t, path, c.ID); j == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, m := rawStored(t, path, c.ID); m != 2 {
		t.Fatalf("c has %d messages in messages, want 2", m)
	}
	f := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.sendEach(t, "a", f.ID, "bob")
	if j, _ := rawStored(t, path, f.ID); j != 1 {
		t.Fatal("a new conversation's first message moved at once")
	}
}

// A crash with messages in the journal loses none: the next start moves
// them, replay and history read them, and sending goes on from the right
// seq.
func TestJournaledMessagesSurviveACrash(t *testing.T) {
	e, conv := pair(t)
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	copyAsCrashed(t, e, crashed, "the journal was moved", func() {
		e.sendEach(t, "a", conv, "alice", "bob", "alice")
	}, func() bool { return sqlite.JournalWaiting(e.db) > 0 })
	want := int64(len(e.history(t, "a", "alice", conv)))
	if j, _ := rawStored(t, crashed, conv); j == 0 {
		t.Fatal("the copy has no message in the journal: it shows no crash before the move")
	}
	r := openDB(t, crashed)
	if j, m := rawStored(t, crashed, conv); j != 0 || int64(m) != want {
		t.Fatalf("after the start: %d in the journal, %d in messages; want 0 and %d", j, m, want)
	}
	if got := r.history(t, "a", "bob", conv); int64(len(got)) != want {
		t.Fatalf("bob's history after the crash: %d messages, want %d", len(got), want)
	}
	r.sendsAfterCrash(t, "bob", conv, want+1)
}

// Closing the database moves the messages still in the journal, and
// empties it.
func TestCloseMovesTheJournal(t *testing.T) {
	e, conv := pair(t)
	e.sendEach(t, "a", conv, "alice", "bob")
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	if j, m := rawStored(t, e.path, conv); j != 0 || m != 2 {
		t.Fatalf("in the file after Close: %d in the journal, %d in messages; want 0 and 2", j, m)
	}
	db, err := sql.Open("sqlite", "file:"+e.path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows int
	if err := db.QueryRow(`SELECT COUNT(*) FROM message_journal`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("the journal keeps %d rows (%v) after Close, want none: moved messages are deleted from it", rows, err)
	}
}

// Replay reads a conversation's sends from both places, the older moved
// into messages and the newer still in the journal, in order, from any
// resume point.
func TestReplayReadsMovedAndJournaledSends(t *testing.T) {
	e, conv := pair(t)
	e.sendEach(t, "a", conv, "alice", "bob", "alice")
	e.history(t, "a", "alice", conv) // moves them
	e.sendEach(t, "a", conv, "bob", "alice", "bob")
	if j, m := rawStored(t, e.path, conv); j != 3 || m != 3 {
		t.Fatalf("stored: %d in the journal, %d in messages; want 3 and 3", j, m)
	}
	log := sqlite.NewEventLog(e.db)
	sends := func(after int64) []int64 {
		names, seqs := stream(t, log, "a", "bob", after)
		var sent []int64
		for i, n := range names {
			if n == tidings.EventMessageSent {
				sent = append(sent, seqs[i])
			}
		}
		return sent
	}
	all := sends(0)
	if len(all) != 6 {
		t.Fatalf("bob's stream has %d sends, want 6", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i] <= all[i-1] {
			t.Fatalf("sends out of order: %v", all)
		}
	}
	for from := range all {
		if got := sends(all[from]); len(got) != 5-from {
			t.Fatalf("after send %d: %d sends (%v), want %d", from+1, len(got), got, 5-from)
		}
	}
}

// In one commit, each write that is not a send moves what the sends
// before it left in the journal, those of the same commit included: all
// of it before a write without a scope, only its conversations' before
// a write with one (a rename of c; the deletion of a user who took part
// in c alone).
func TestWritesInOneCommitMoveTheSendsBeforeThem(t *testing.T) {
	for _, tc := range []struct {
		name    string
		other   string // the write that is not a send: "unscoped", "rename" or "delete"
		waiting int    // d's messages left in the journal
	}{
		{name: "without a scope", other: "unscoped", waiting: 0},
		{name: "to one conversation", other: "rename", waiting: 2},
		{name: "a user of one conversation deleted", other: "delete", waiting: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newQuietEnv(t)
			e.mkUsers(t, "a", "alice", "bob", "carol", "dave")
			c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}, {UserID: "carol"}, {UserID: "dave"}}})
			d := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
			e.sendEach(t, "a", c.ID, "bob") // committed before, waiting
			e.sendEach(t, "a", d.ID, "bob")
			release := sqlite.HoldWriter(e.db)
			errs := make(chan error, 5)
			queue := func(write func() error) {
				n := sqlite.QueuedJobs(e.db)
				go func() { errs <- write() }()
				for sqlite.QueuedJobs(e.db) == n {
					time.Sleep(time.Millisecond)
				}
			}
			send := func(conv string) func() error {
				return func() error {
					_, _, err := e.messages.SendMessage(user("a", "alice"), conv, tidings.NewMessage{Parts: text("hi")})
					return err
				}
			}
			// other is the write that is not a send: a write without a
			// scope, the rename of c, or the deletion of user u, who takes
			// part in c.
			other := func(u string) func() error {
				return func() error {
					switch tc.other {
					case "rename":
						name := "renamed"
						_, err := e.convs.UpdateConversation(user("a", "alice"), c.ID, tidings.ConversationUpdate{Name: &name})
						return err
					case "delete":
						return e.users.DeleteUser(server("a"), u, tidings.EraseMessages)
					}
					return sqlite.WriteUnscoped(e.db)
				}
			}
			queue(send(c.ID))
			queue(other("carol"))
			queue(send(c.ID))
			queue(send(d.ID))
			queue(other("dave"))
			commits := sqlite.Commits(e.db)
			release()
			for range 5 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if n := sqlite.Commits(e.db) - commits; n != 2 {
				t.Fatalf("%d commits, want 2: the held job's and one for the five", n)
			}
			for conv, want := range map[string][2]int{c.ID: {0, 3}, d.ID: {tc.waiting, 2 - tc.waiting}} {
				if j, m := rawStored(t, e.path, conv); j != want[0] || m != want[1] {
					t.Fatalf("conversation %s: %d in the journal, %d in messages; want %d and %d", conv, j, m, want[0], want[1])
				}
			}
		})
	}
}

// A replay from a resume point far back, while the journal holds many
// messages, reads its user's messages there by their key (journal.go,
// replayRows) rather than scanning it: the same events, in the same
// order, as a replay of the same database with every message moved into
// messages, over conversations with messages in the journal, moved, in
// both, left and joined meanwhile, and others' conversations.
func TestAReplayFarBackFindsItsMessagesInABusyJournal(t *testing.T) {
	e := newQuietEnv(t)
	e.mkUsers(t, "a", "alice", "bob", "carol", "dave")
	mk := func(owner string, others ...string) string {
		var ps []tidings.NewParticipant
		for _, o := range others {
			ps = append(ps, tidings.NewParticipant{UserID: o})
		}
		return e.mkConv(t, "a", owner, tidings.NewConversation{Participants: ps}).ID
	}
	both, left, others, joined := mk("alice", "bob"), mk("carol", "alice"), mk("bob", "carol"), mk("bob", "dave")
	log := sqlite.NewEventLog(e.db)
	ctx := context.Background()
	from := must[int64](t)(log.LastEventSeq(ctx))
	busy := func(n int) { // others' sends, many: the journal is busy
		t.Helper()
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < n; i += 8 {
					if _, _, err := e.messages.SendMessage(user("a", []string{"bob", "carol"}[i%2]), others,
						tidings.NewMessage{Parts: text(fmt.Sprint("busy ", i))}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	for i := range 3 {
		e.send(t, "alice", both, fmt.Sprint("both ", i))
		e.send(t, "carol", left, fmt.Sprint("left ", i))
		e.send(t, "dave", joined, fmt.Sprint("before the join ", i))
	}
	busy(600)
	name := "moved"
	must[*tidings.Conversation](t)(e.convs.UpdateConversation(user("a", "alice"), both, tidings.ConversationUpdate{Name: &name}))
	e.send(t, "bob", both, "both after the move")
	must[*tidings.Participant](t)(e.convs.AddParticipant(user("a", "bob"), joined, tidings.NewParticipant{UserID: "alice"}))
	if err := e.convs.Leave(user("a", "alice"), left); err != nil {
		t.Fatal(err)
	}
	busy(600)
	e.send(t, "carol", left, "after alice left")
	e.send(t, "dave", joined, "after the join")
	e.send(t, "bob", both, "both, last")
	if n := must[int](t)(sqlite.JournalCount(e.db)); n < 1200 {
		t.Fatalf("the journal holds %d messages, want the busy ones at least", n)
	}

	replay := func(log *sqlite.EventLog) (seqs []int64, texts []string) {
		t.Helper()
		for _, ev := range replayPages(t, log, "alice", from) {
			seqs = append(seqs, ev.Seq)
			if ev.Name == tidings.EventMessageSent {
				var m struct{ Parts []tidings.Part }
				if err := json.Unmarshal(ev.Payload, &m); err != nil || len(m.Parts) != 1 {
					t.Fatalf("event %d: payload %s (%v)", ev.Seq, ev.Payload, err)
				}
				texts = append(texts, m.Parts[0].Data)
			}
		}
		return seqs, texts
	}
	seqs, texts := replay(log)
	want := []string{"both 0", "left 0", "both 1", "left 1", "both 2", "left 2", "both after the move", "after the join", "both, last"}
	if !slices.Equal(texts, want) {
		t.Fatalf("alice's replay has the messages %q, want %q", texts, want)
	}

	moved := filepath.Join(t.TempDir(), "moved.db")
	copyDB(t, e.path, moved) // nothing runs: no job is in flight
	r := openDB(t, moved)    // Open moves the journal
	if n := must[int](t)(sqlite.JournalCount(r.db)); n != 0 {
		t.Fatalf("reopened, the journal holds %d messages, want none", n)
	}
	wantSeqs, _ := replay(sqlite.NewEventLog(r.db))
	if !slices.Equal(seqs, wantSeqs) {
		t.Fatalf("alice's replay beside the journal has the events %v, want those of the replay with none in it: %v", seqs, wantSeqs)
	}
}

// The journal's rows a far-back replay looks up are the first of its
// user's, as many as the replay may return, within their memberships: a
// conversation they left, busy since, neither takes the others' place
// nor hides them, and one of their own conversations busier than a page
// comes a page at a time, all of it in the end.
func TestAReplayFarBackPagesThroughABusyConversation(t *testing.T) {
	e := newQuietEnv(t)
	e.mkUsers(t, "a", "alice", "bob", "carol")
	left := e.mkConv(t, "a", "carol", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "alice"}}}).ID
	mine := e.mkConv(t, "a", "bob", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "alice"}}}).ID
	log := sqlite.NewEventLog(e.db)
	ctx := context.Background()
	from := must[int64](t)(log.LastEventSeq(ctx))
	sends := func(conv, who string, n int) {
		t.Helper()
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := w; i < n; i += 4 {
					if _, _, err := e.messages.SendMessage(user("a", who), conv, tidings.NewMessage{Parts: text(fmt.Sprint(conv, " ", i))}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	sends(left, "carol", 5)
	if err := e.convs.Leave(user("a", "alice"), left); err != nil {
		t.Fatal(err)
	}
	sends(left, "carol", 300) // after alice left, in the journal
	sends(mine, "bob", 230)   // alice's, in the journal
	if n := must[int](t)(sqlite.JournalCount(e.db)); n < 530 {
		t.Fatalf("the journal holds %d messages, want 530", n)
	}
	replay := func(log *sqlite.EventLog) (seqs []int64, sent int) {
		t.Helper()
		for _, ev := range replayPages(t, log, "alice", from) {
			seqs = append(seqs, ev.Seq)
			if ev.Name == tidings.EventMessageSent {
				sent++
			}
		}
		return seqs, sent
	}
	seqs, sent := replay(log)
	if sent != 235 {
		t.Fatalf("alice's replay has %d messages, want 235 (5 before she left, 230 of her own conversation)", sent)
	}
	moved := filepath.Join(t.TempDir(), "moved.db")
	copyDB(t, e.path, moved)
	r := openDB(t, moved)
	if wantSeqs, _ := replay(sqlite.NewEventLog(r.db)); !slices.Equal(seqs, wantSeqs) {
		t.Fatalf("alice's replay beside the journal has the events %v, want those of the replay with none in it: %v", seqs, wantSeqs)
	}
}

// replayPages reads the stream of who in app "a" after seq from in pages
// of 50, as the node reads it: a page short of the limit is the end.
func replayPages(t *testing.T, log *sqlite.EventLog, who string, from int64) []*tidings.Event {
	t.Helper()
	var all []*tidings.Event
	for after := from; ; {
		evs := must[[]*tidings.Event](t)(log.UserEvents(context.Background(), "a", who, after, 50))
		all = append(all, evs...)
		if len(evs) < 50 {
			return all
		}
		after = evs[len(evs)-1].Seq
	}
}
