package sqlite_test

import (
	"context"
	"database/sql"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// sendEach sends "hi" to conversation conv of app, once from each user
// of from, in turn.
func (e *env) sendEach(t *testing.T, app, conv string, from ...string) {
	t.Helper()
	for _, u := range from {
		if _, _, err := e.messages.SendMessage(user(app, u), conv, tidings.NewMessage{Parts: text("hi")}); err != nil {
			t.Fatal(err)
		}
	}
}

// rawMarks reads, straight from the file, conversation conv's last seq and
// the read marks of its participants.
func rawMarks(t *testing.T, path, conv string) (int64, map[string]int64) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var last int64
	if err := db.QueryRow(`SELECT last_seq FROM conversations WHERE id = ?`, conv).Scan(&last); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(`SELECT user_id, read_seq FROM participants WHERE conversation_id = ?`, conv)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	read := map[string]int64{}
	for rows.Next() {
		var u string
		var seq int64
		if err := rows.Scan(&u, &seq); err != nil {
			t.Fatal(err)
		}
		read[u] = seq
	}
	return last, read
}

// A send's marks (the conversation's last seq, the sender's read mark) are
// written after its commit, but whoever reads the conversation or its
// participants reads them, and they reach the file by themselves soon
// after, without any read.
func TestMarksOfSendsAreReadBackAndWrittenSoon(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	for i, from := range []string{"alice", "bob", "alice"} {
		m, _, err := e.messages.SendMessage(user("a", from), c.ID, tidings.NewMessage{Parts: text("hi")})
		if err != nil || m.Seq != int64(i+1) {
			t.Fatalf("send %d: %+v, %v", i+1, m, err)
		}
	}
	conv := must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", "bob"), c.ID))
	if conv.LastSeq != 3 || conv.UnreadCount != 1 {
		t.Fatalf("bob sees last seq %d and %d unread, want 3 and 1", conv.LastSeq, conv.UnreadCount)
	}
	page := must[*tidings.ConversationPage](t)(e.convs.ListConversations(user("a", "alice"), tidings.ConversationFilter{}))
	if len(page.Conversations) != 1 || page.Conversations[0].LastSeq != 3 || page.Conversations[0].UnreadCount != 0 {
		t.Fatalf("alice's list: %+v, want her conversation at last seq 3 with nothing unread", page.Conversations)
	}

	m, _, err := e.messages.SendMessage(user("a", "bob"), c.ID, tidings.NewMessage{Parts: text("later")})
	if err != nil || m.Seq != 4 {
		t.Fatalf("send 4: %+v, %v", m, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for sqlite.MarksPending(e.db) {
		if time.Now().After(deadline) {
			t.Fatal("the marks of the last send were still not written after 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	last, read := rawMarks(t, e.path, c.ID)
	if last != 4 || read["alice"] != 3 || read["bob"] != 4 {
		t.Fatalf("in the file: last seq %d, read marks %v; want 4, alice 3, bob 4", last, read)
	}
}

// copyDB copies a database's files as a crash would leave them.
func copyDB(t *testing.T, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal"} {
		src, err := os.Open(from + suffix)
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(to + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// copyAsCrashed copies the database's files to to as a crash would leave
// them while waiting holds: it calls send, and copies the files once
// waiting holds, until it still holds after the copy. No transaction runs
// while the files are copied (nothing is sent, nothing read), so what
// waited before the copy ended if it still waits after it. It gives up
// after five tries (what: what ended the wait each time).
func copyAsCrashed(t *testing.T, e *env, to, what string, send func(), waiting func() bool) {
	t.Helper()
	for try := 0; ; try++ {
		if try == 5 {
			t.Fatalf("%s before the files could be copied, five times", what)
		}
		send()
		if !waiting() {
			continue
		}
		copyDB(t, e.path, to)
		if waiting() {
			return
		}
	}
}

// A crash after sends committed but before their marks were written loses
// neither: the next start writes them from the messages, and sending goes
// on from the right seq.
func TestMarksOfSendsSurviveACrash(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob", "carol")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}, {UserID: "carol"}}})
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	copyAsCrashed(t, e, crashed, "the marks were written", func() {
		e.sendEach(t, "a", c.ID, "alice", "bob", "bob", "alice", "bob")
	}, func() bool { return sqlite.MarksPending(e.db) })
	want := must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", "alice"), c.ID)).LastSeq
	if last, _ := rawMarks(t, crashed, c.ID); last >= want {
		t.Fatalf("the copy already has last seq %d: it shows no crash before the marks were written", last)
	}

	r := openDB(t, crashed)
	conv := must[*tidings.Conversation](t)(r.convs.FindConversationByID(user("a", "carol"), c.ID))
	if conv.LastSeq != want || conv.UnreadCount != want {
		t.Fatalf("after the crash carol sees last seq %d and %d unread, want %d and %d", conv.LastSeq, conv.UnreadCount, want, want)
	}
	_, read := rawMarks(t, crashed, c.ID)
	if read["bob"] != want || read["alice"] != want-1 {
		t.Fatalf("after the crash the read marks are %v, want bob %d (he sent last) and alice %d", read, want, want-1)
	}
	r.sendsAfterCrash(t, "carol", c.ID, want+1)
}

// sendsAfterCrash checks that who's first send to conversation conv of
// app "a", after a crash, gets seq want.
func (e *env) sendsAfterCrash(t *testing.T, who, conv string, want int64) {
	t.Helper()
	m, _, err := e.messages.SendMessage(user("a", who), conv, tidings.NewMessage{Parts: text("after the crash")})
	if err != nil || m.Seq != want {
		t.Fatalf("the first send after the crash: %+v, %v; want seq %d", m, err, want)
	}
}

// Read receipts come about as often as messages: marking messages read or
// delivered reads the sends' marks but leaves the senders cached for
// sending, and sees the newest message.
func TestReadReceiptsKeepTheSendCache(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.sendEach(t, "a", c.ID, "alice", "bob", "alice")
	st, err := e.messages.MarkRead(user("a", "bob"), c.ID, 0)
	if err != nil || st.ReadSeq != 3 || st.UnreadCount != 0 {
		t.Fatalf("bob marks all read: %+v, %v; want read seq 3 and nothing unread", st, err)
	}
	if st, err := e.messages.MarkDelivered(user("a", "alice"), c.ID, 3); err != nil || st.DeliveredSeq != 3 {
		t.Fatalf("alice marks delivered: %+v, %v", st, err)
	}
	if n, err := sqlite.CachedSenders(e.db); err != nil || n != 2 {
		t.Fatalf("the send cache holds %d senders after the receipts (err %v), want the 2 who sent", n, err)
	}
	if m, _, err := e.messages.SendMessage(user("a", "bob"), c.ID, tidings.NewMessage{Parts: text("again")}); err != nil || m.Seq != 4 {
		t.Fatalf("the send after the receipts: %+v, %v; want seq 4", m, err)
	}
}

// With a commit interval, sends that come one after the other while the
// writer waits for it commit together (each would commit alone without
// it), and none is lost or answered before its commit.
func TestCommitIntervalGathersSends(t *testing.T) {
	setup := newEnv(t)
	setup.mkUsers(t, "a", "alice", "bob")
	c := setup.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	setup.db.Close()
	e := openDBWith(t, setup.path, func(db *sqlite.DB) { db.CommitInterval = 2 * time.Second })
	if _, _, err := e.messages.SendMessage(user("a", "alice"), c.ID, tidings.NewMessage{Parts: text("first")}); err != nil {
		t.Fatal(err)
	}
	// Ten sends 20 ms apart, within 2 s of the last commit's start.
	before := sqlite.Commits(e.db)
	var wg sync.WaitGroup
	seqs := make(chan int64, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from := []string{"alice", "bob"}[i%2]
			m, _, err := e.messages.SendMessage(user("a", from), c.ID, tidings.NewMessage{Parts: text("hi")})
			if err != nil {
				t.Error(err)
				return
			}
			seqs <- m.Seq
		}()
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	close(seqs)
	seen := map[int64]bool{}
	for s := range seqs {
		seen[s] = true
	}
	if len(seen) != 10 {
		t.Fatalf("%d distinct seqs for 10 sends", len(seen))
	}
	// A machine slow enough to spread them past the interval makes a
	// second commit; without the interval most commit alone.
	if n := sqlite.Commits(e.db) - before; n > 2 {
		t.Fatalf("10 sends made %d commits, want them gathered in at most 2", n)
	}
	conv := must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", "bob"), c.ID))
	if conv.LastSeq != 11 {
		t.Fatalf("last seq %d, want 11", conv.LastSeq)
	}
}

// Closing the database writes the marks still waiting.
func TestCloseWritesTheMarks(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.sendEach(t, "a", c.ID, "alice", "bob")
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	last, read := rawMarks(t, e.path, c.ID)
	if last != 2 || read["alice"] != 1 || read["bob"] != 2 {
		t.Fatalf("in the file after Close: last seq %d, read marks %v; want 2, alice 1, bob 2", last, read)
	}
}

// An app with a before-send hook reads the conversation before each send
// (ConversationForSend): that read leaves the sends' marks to their
// flush, where FindConversationByID would write them first, a commit per
// send.
func TestConversationForSendLeavesTheMarks(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	hooks := sqlite.NewBeforeSendService(e.db)
	for i := range 3 {
		e.sendEach(t, "a", c.ID, "alice")
		commits := sqlite.Commits(e.db)
		if !sqlite.MarksPending(e.db) {
			t.Fatalf("send %d: no marks pending; the test needs them", i+1)
		}
		conv, err := hooks.ConversationForSend(user("a", "bob"), c.ID)
		if err != nil || conv.Role != tidings.RoleMember || tidings.CanSendMessage(c.ID, conv) != nil {
			t.Fatalf("bob's conversation before send %d: %+v, %v; want one he may send to", i+2, conv, err)
		}
		if got := sqlite.Commits(e.db); got != commits || !sqlite.MarksPending(e.db) {
			t.Fatalf("ConversationForSend committed %d times and left marks pending %v; want no commit, marks pending",
				got-commits, sqlite.MarksPending(e.db))
		}
	}
	// The exact read still writes them first.
	conv := must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", "bob"), c.ID))
	if conv.LastSeq != 3 || conv.UnreadCount != 3 {
		t.Fatalf("bob sees last seq %d and %d unread, want 3 and 3", conv.LastSeq, conv.UnreadCount)
	}
}

// Under load the marks that are due are written a few conversations per
// commit, in key order, with their senders' marks, so that no commit
// holds the sends behind it for a whole flush; a crash in the middle of
// that, or after it with newer sends waiting, loses none of them.
func TestMarksAreWrittenAChunkPerCommit(t *testing.T) {
	e := openDBWith(t, filepath.Join(t.TempDir(), "tidings.db"), func(db *sqlite.DB) {
		// Due at once, two conversations per commit, never written for
		// an idle writer (the test commits one job at a time).
		sqlite.SetMarkFlush(db, 0, time.Hour, 2)
	})
	if _, err := e.apps.CreateApp(context.Background(), "a", ""); err != nil {
		t.Fatal(err)
	}
	e.mkUsers(t, "a", "alice", "bob")
	convs := []string{"c0", "c1", "c2", "c3", "c4", "c5"}
	for _, id := range convs {
		e.mkConv(t, "a", "alice", tidings.NewConversation{ID: id, Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	}
	// Alice's six sends commit together: six conversations wait.
	release := sqlite.HoldWriter(e.db)
	var wg sync.WaitGroup
	for _, id := range convs {
		wg.Go(func() { e.sendEach(t, "a", id, "alice") })
	}
	for sqlite.QueuedJobs(e.db) < len(convs) {
		time.Sleep(time.Millisecond)
	}
	release()
	wg.Wait()
	want := func(when string, last map[string]int64, read map[string]map[string]int64, path string) {
		t.Helper()
		for _, id := range convs {
			l, r := rawMarks(t, path, id)
			if l != last[id] || r["alice"] != read[id]["alice"] || r["bob"] != read[id]["bob"] {
				t.Errorf("%s: %s has last seq %d and read marks %v in the file, want %d and %v", when, id, l, r, last[id], read[id])
			}
		}
	}
	none := map[string]int64{}
	alice1 := map[string]int64{"alice": 1}
	want("after alice's sends", map[string]int64{}, map[string]map[string]int64{}, e.path)

	// Each of bob's sends commits with the next chunk of the plan.
	e.sendEach(t, "a", "c0", "bob")
	want("after the first chunk", map[string]int64{"c0": 1, "c1": 1},
		map[string]map[string]int64{"c0": alice1, "c1": alice1, "c2": none}, e.path)
	mid := filepath.Join(t.TempDir(), "mid.db")
	copyDB(t, e.path, mid) // a crash in the middle of the plan
	e.sendEach(t, "a", "c1", "bob")
	e.sendEach(t, "a", "c2", "bob")
	done := map[string]int64{"c0": 1, "c1": 1, "c2": 1, "c3": 1, "c4": 1, "c5": 1}
	all := map[string]map[string]int64{"c0": alice1, "c1": alice1, "c2": alice1, "c3": alice1, "c4": alice1, "c5": alice1}
	want("after the plan", done, all, e.path)

	// A crash now: bob's three sends have no marks in the file, and the
	// next start writes them.
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	copyDB(t, e.path, crashed)
	r := openDB(t, crashed)
	for _, id := range convs {
		if _, err := r.convs.FindConversationByID(user("a", "alice"), id); err != nil {
			t.Fatal(err)
		}
	}
	bob2 := map[string]int64{"alice": 1, "bob": 2}
	want("after the crash", map[string]int64{"c0": 2, "c1": 2, "c2": 2, "c3": 1, "c4": 1, "c5": 1},
		map[string]map[string]int64{"c0": bob2, "c1": bob2, "c2": bob2, "c3": alice1, "c4": alice1, "c5": alice1}, crashed)
	m := openDB(t, mid)
	if _, err := m.convs.FindConversationByID(user("a", "alice"), "c0"); err != nil {
		t.Fatal(err)
	}
	want("after a crash in the middle of the plan", map[string]int64{"c0": 2, "c1": 1, "c2": 1, "c3": 1, "c4": 1, "c5": 1},
		map[string]map[string]int64{"c0": bob2, "c1": alice1, "c2": alice1, "c3": alice1, "c4": alice1, "c5": alice1}, mid)
}

// A plan writes as many conversations a commit as the commit has jobs
// when they are more than its chunk: under load, where a commit holds
// hundreds of sends, a plan still ends within about a second, and at low
// rates each commit carries a small chunk.
func TestMarksChunkGrowsWithTheCommit(t *testing.T) {
	e := openDBWith(t, filepath.Join(t.TempDir(), "tidings.db"), func(db *sqlite.DB) {
		sqlite.SetMarkFlush(db, 0, time.Hour, 1) // due at once, one conversation a commit
	})
	if _, err := e.apps.CreateApp(context.Background(), "a", ""); err != nil {
		t.Fatal(err)
	}
	e.mkUsers(t, "a", "alice", "bob")
	convs := []string{"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"}
	for _, id := range append(convs, "x") {
		e.mkConv(t, "a", "alice", tidings.NewConversation{ID: id, Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	}
	together := func(conv string, n int) {
		t.Helper()
		release := sqlite.HoldWriter(e.db) // a commit of its own (one job)
		var wg sync.WaitGroup
		for _, id := range convs[:n] {
			if conv != "" {
				id = conv
			}
			wg.Go(func() { e.sendEach(t, "a", id, "alice") })
		}
		for sqlite.QueuedJobs(e.db) < n {
			time.Sleep(time.Millisecond)
		}
		release()
		wg.Wait()
	}
	together("", len(convs)) // eight conversations wait
	// The held job's commit writes one, the five sends' commit five more.
	together("x", 5)
	for i, id := range convs {
		want := int64(0)
		if i < 6 {
			want = 1
		}
		if last, _ := rawMarks(t, e.path, id); last != want {
			t.Errorf("%s has last seq %d in the file, want %d", id, last, want)
		}
	}
}

// A second process may open the database while a server writes to it
// (the CLI's commands that open the store directly): the repair of marks
// at Open waits for the server's commit instead of failing with
// "database is locked".
func TestOpenWhileAnotherWrites(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := e.messages.SendMessage(user("a", "alice"), c.ID, tidings.NewMessage{Parts: text("hi")}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer wg.Wait()
	defer close(stop)
	for i := range 3 {
		db := sqlite.NewDB(e.path)
		db.Beside = true
		if err := db.Open(); err != nil {
			t.Fatalf("open %d while another writes: %v", i+1, err)
		}
		if err := db.Close(); err != nil {
			t.Fatalf("close %d: %v", i+1, err)
		}
	}
}

// The unread counts of a push, a conversation read by one of its
// participants and its list of participants count the sends whose marks
// are not written yet, without having them written (which would cost a
// write of every waiting mark per read): with marks never due, written by
// plans a conversation per commit, and written all at once by a read that
// asks for them (the list of conversations), in any order.
func TestReadsCountMarksNotWrittenYet(t *testing.T) {
	for _, tc := range []struct {
		name string
		due  time.Duration
	}{{"never due", time.Hour}, {"due at once", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			e := openDBWith(t, filepath.Join(t.TempDir(), "tidings.db"), func(db *sqlite.DB) {
				sqlite.SetMarkFlush(db, tc.due, time.Hour, 1)
			})
			if _, err := e.apps.CreateApp(context.Background(), "a", ""); err != nil {
				t.Fatal(err)
			}
			e.mkUsers(t, "a", "alice", "bob")
			convs := []string{"c0", "c1", "c2", "c3"}
			for _, id := range convs {
				e.mkConv(t, "a", "alice", tidings.NewConversation{ID: id, Participants: []tidings.NewParticipant{{UserID: "bob"}}})
			}
			ps := sqlite.NewPushService(e.db)
			last := map[string]int64{}
			sent := map[string]time.Time{} // just before the last send to each
			read := map[string]map[string]int64{"alice": {}, "bob": {}}
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range 120 {
				if i%7 == 6 {
					// A send to each conversation, in one commit: plans
					// then write them over the next commits.
					release := sqlite.HoldWriter(e.db)
					var wg sync.WaitGroup
					for _, conv := range convs {
						from := []string{"alice", "bob"}[rng.IntN(2)]
						sent[conv] = time.Now().Add(-time.Millisecond)
						last[conv]++
						read[from][conv] = last[conv]
						wg.Go(func() { e.sendEach(t, "a", conv, from) })
					}
					for sqlite.QueuedJobs(e.db) < len(convs) {
						time.Sleep(time.Millisecond)
					}
					release()
					wg.Wait()
				} else {
					from, conv := []string{"alice", "bob"}[rng.IntN(2)], convs[rng.IntN(len(convs))]
					sent[conv] = time.Now().Add(-time.Millisecond)
					e.sendEach(t, "a", conv, from)
					last[conv]++
					read[from][conv] = last[conv]
				}
				if i%29 == 28 { // a read that has every mark written
					if _, err := e.convs.ListConversations(user("a", "bob"), tidings.ConversationFilter{}); err != nil {
						t.Fatal(err)
					}
				}
				commits, pending := sqlite.Commits(e.db), sqlite.MarksPending(e.db)
				for _, u := range []string{"alice", "bob"} {
					for _, c := range convs {
						var badge int64
						for _, c := range convs {
							badge += last[c] - read[u][c]
						}
						r := must[*tidings.PushRecipient](t)(ps.PushRecipient(context.Background(), "a", u, c))
						if r.Unread != last[c]-read[u][c] || r.Badge != badge {
							t.Fatalf("after send %d: %s in %s: %d unread, badge %d; want %d and %d", i+1, u, c, r.Unread, r.Badge, last[c]-read[u][c], badge)
						}
						conv := must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", u), c))
						if conv.LastSeq != last[c] || conv.ReadSeq != read[u][c] || conv.UnreadCount != last[c]-read[u][c] {
							t.Fatalf("after send %d: %s reads %s at last seq %d, read seq %d, %d unread; want %d, %d, %d",
								i+1, u, c, conv.LastSeq, conv.ReadSeq, conv.UnreadCount, last[c], read[u][c], last[c]-read[u][c])
						}
						if u == "alice" { // once per conversation
							page := must[*tidings.ParticipantPage](t)(e.convs.ListParticipants(user("a", u), c, tidings.ParticipantFilter{}))
							for _, p := range page.Participants {
								if p.ReadSeq != read[p.UserID][c] || p.DeliveredSeq != read[p.UserID][c] {
									t.Fatalf("after send %d: %s lists %s at read seq %d, delivered seq %d; want %d", i+1, c, p.UserID, p.ReadSeq, p.DeliveredSeq, read[p.UserID][c])
								}
							}
						}
						if last[c] > 0 && !conv.LastActivityAt.After(sent[c]) {
							t.Fatalf("after send %d: %s reads %s active last at %v, before its last send (%v)", i+1, u, c, conv.LastActivityAt, sent[c])
						}
					}
				}
				if sqlite.Commits(e.db) != commits || pending && !sqlite.MarksPending(e.db) {
					t.Fatalf("after send %d: counting for pushes and conversation reads wrote the marks", i+1)
				}
			}
		})
	}
}

// A write to one conversation (a participant added, a message edited...)
// writes that conversation's waiting marks and moves its messages, and
// leaves the other conversations' waiting, cached senders included; so
// does a user created: under load, each such write used to write every
// mark and move the whole journal first, and the sends behind it waited
// 100 to 200 ms. What waits is read back all the same, and survives a
// crash.
func TestAWriteToOneConversationWritesItsMarksAlone(t *testing.T) {
	e := newQuietEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	d := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.sendEach(t, "a", c.ID, "alice")
	e.sendEach(t, "a", d.ID, "alice", "bob")
	marks := func(when, conv string, last int64, read map[string]int64) {
		t.Helper()
		l, r := rawMarks(t, e.path, conv)
		if l != last || r["alice"] != read["alice"] || r["bob"] != read["bob"] {
			t.Fatalf("%s: the file has last seq %d and read marks %v for %s, want %d and %v", when, l, r, conv, last, read)
		}
	}
	cached := func(when string, want int) {
		t.Helper()
		if n, err := sqlite.CachedSenders(e.db); err != nil || n != want {
			t.Fatalf("%s: the send cache holds %d senders (err %v), want %d", when, n, err, want)
		}
	}
	cached("after the sends", 3)

	name := "renamed"
	must[*tidings.Conversation](t)(e.convs.UpdateConversation(user("a", "alice"), c.ID, tidings.ConversationUpdate{Name: &name}))
	marks("after c is renamed", c.ID, 1, map[string]int64{"alice": 1})
	marks("after c is renamed", d.ID, 0, nil)
	cached("after c is renamed", 2) // alice and bob in d
	if j, m := rawStored(t, e.path, c.ID); j != 0 || m != 1 {
		t.Fatalf("after c is renamed: %d of c's messages in the journal, %d in messages; want 0 and 1", j, m)
	}
	if j, m := rawStored(t, e.path, d.ID); j != 2 || m != 0 {
		t.Fatalf("after c is renamed: %d of d's messages in the journal, %d in messages; want 2 and 0", j, m)
	}

	e.mkUsers(t, "a", "carol")
	marks("after a user is created", d.ID, 0, nil)
	cached("after a user is created", 2)
	if got := must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", "alice"), d.ID)); got.LastSeq != 2 {
		t.Fatalf("d read back with last seq %d, want 2", got.LastSeq)
	}
	if got := e.history(t, "a", "bob", d.ID); len(got) != 2 {
		t.Fatalf("d's history has %d messages, want 2", len(got))
	}

	crashed := filepath.Join(t.TempDir(), "crashed.db")
	copyDB(t, e.path, crashed) // nothing runs: no job is in flight
	r := openDB(t, crashed)
	if got := must[*tidings.Conversation](t)(r.convs.FindConversationByID(user("a", "alice"), d.ID)); got.LastSeq != 2 || got.ReadSeq != 1 {
		t.Fatalf("d after a crash: last seq %d, alice's read seq %d; want 2 and 1", got.LastSeq, got.ReadSeq)
	}
	r.sendsAfterCrash(t, "bob", d.ID, 3)

	// A read receipt in d writes d's marks (it reads them), and keeps
	// the senders cached.
	if st, err := e.messages.MarkRead(user("a", "alice"), d.ID, 0); err != nil || st.ReadSeq != 2 {
		t.Fatalf("alice marks d read: %+v, %v; want read seq 2", st, err)
	}
	marks("after alice's receipt", d.ID, 2, map[string]int64{"alice": 2, "bob": 2})
	cached("after alice's receipt", 2)
}

// A participant removed and added again starts where one added for the
// first time does: the marks their sends left waiting before the removal
// are not written over the new participant's, nor read back for them.
func TestAParticipantAddedAgainStartsAfresh(t *testing.T) {
	e := newQuietEnv(t)
	e.mkUsers(t, "a", "alice", "carol", "dave")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "carol"}}})
	e.sendEach(t, "a", c.ID, "carol", "carol", "carol") // carol's read mark, 3, waits
	if err := e.convs.RemoveParticipant(user("a", "alice"), c.ID, "carol"); err != nil {
		t.Fatal(err)
	}
	e.sendEach(t, "a", c.ID, "alice")
	for _, u := range []string{"carol", "dave"} {
		must[*tidings.Participant](t)(e.convs.AddParticipant(user("a", "alice"), c.ID, tidings.NewParticipant{UserID: u}))
	}
	e.sendEach(t, "a", c.ID, "alice")
	check := func(when string) {
		t.Helper()
		ps := must[*tidings.ParticipantPage](t)(e.convs.ListParticipants(user("a", "alice"), c.ID, tidings.ParticipantFilter{})).Participants
		read := map[string]int64{}
		for _, p := range ps {
			read[p.UserID] = p.ReadSeq
		}
		if read["carol"] != read["dave"] || read["alice"] != 5 {
			t.Fatalf("%s: read marks %v; want carol's the same as dave's, who was never in, and alice's 5", when, read)
		}
	}
	check("read back")
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	_, read := rawMarks(t, e.path, c.ID)
	if read["carol"] != read["dave"] || read["alice"] != 5 {
		t.Fatalf("in the file after Close: read marks %v; want carol's the same as dave's, and alice's 5", read)
	}
}

// A sender's profile changed (a user-only write) is the one their next
// message carries, while the senders of others stay cached.
func TestASendAfterAProfileChangeCarriesTheNewProfile(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.sendEach(t, "a", c.ID, "alice", "bob")
	for i, name := range []string{"Robert", "Bobby", "Rob"} {
		must[*tidings.User](t)(e.users.UpdateUser(server("a"), "bob", tidings.UserUpdate{DisplayName: &name}))
		if n, err := sqlite.CachedSenders(e.db); err != nil || n != 1 {
			t.Fatalf("after bob's profile changed, the send cache holds %d senders (err %v), want alice alone", n, err)
		}
		m, _, err := e.messages.SendMessage(user("a", "bob"), c.ID, tidings.NewMessage{Parts: text("hi")})
		if want := int64(3 + i); err != nil || m.Sender.DisplayName != name || m.Seq != want {
			t.Fatalf("bob's send after the change: %+v, %v; want seq %d from %s", m, err, want, name)
		}
	}
	// Read again after each change, bob is listed once in the cached
	// conversation: the list does not grow with the changes.
	if n, err := sqlite.ListedSenders(e.db, "a", c.ID); err != nil || n != 2 {
		t.Fatalf("the cached conversation lists %d senders (err %v), want 2", n, err)
	}
}

// A user's list of conversations, ordered by last activity, sees the
// newest sends of their conversations, and has those conversations'
// marks written alone: a list each time an app opens no longer writes
// every conversation's waiting marks.
func TestAUsersListWritesTheMarksOfTheirConversationsAlone(t *testing.T) {
	e := newQuietEnv(t)
	e.mkUsers(t, "a", "alice", "bob", "carol")
	older := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	newer := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	theirs := e.mkConv(t, "a", "carol", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.sendEach(t, "a", newer.ID, "alice")
	time.Sleep(2 * time.Millisecond) // activity times are microseconds apart at least
	e.sendEach(t, "a", older.ID, "bob", "bob")
	e.sendEach(t, "a", theirs.ID, "carol")
	page := must[*tidings.ConversationPage](t)(e.convs.ListConversations(user("a", "alice"), tidings.ConversationFilter{}))
	if len(page.Conversations) != 2 || page.Conversations[0].ID != older.ID || page.Conversations[0].UnreadCount != 2 ||
		page.Conversations[1].ID != newer.ID || page.Conversations[1].UnreadCount != 0 {
		t.Fatalf("alice's list: %+v; want %s (2 unread) then %s (none)", page.Conversations, older.ID, newer.ID)
	}
	if l, _ := rawMarks(t, e.path, older.ID); l != 2 {
		t.Fatalf("after alice's list, the file has last seq %d for one of her conversations, want 2", l)
	}
	if l, _ := rawMarks(t, e.path, theirs.ID); l != 0 {
		t.Fatalf("after alice's list, the file has last seq %d for a conversation she is not in, want 0 (still waiting)", l)
	}
	// The app's server lists them all, each with its newest message.
	all := must[*tidings.ConversationPage](t)(e.convs.ListConversations(server("a"), tidings.ConversationFilter{}))
	if len(all.Conversations) != 3 || all.Conversations[0].ID != theirs.ID || all.Conversations[0].LastSeq != 1 {
		t.Fatalf("the server's list: %+v; want 3, %s first with last seq 1", all.Conversations, theirs.ID)
	}
}

// The app's server's list of conversations writes the marks of its app's
// conversations alone: another app's sends go on as they were.
func TestAServersListWritesTheMarksOfItsAppAlone(t *testing.T) {
	e := newQuietEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	e.mkUsers(t, "b", "carol", "dave")
	mine := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	other := e.mkConv(t, "b", "carol", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "dave"}}})
	e.sendEach(t, "a", mine.ID, "alice", "bob")
	e.sendEach(t, "b", other.ID, "carol")
	page := must[*tidings.ConversationPage](t)(e.convs.ListConversations(server("a"), tidings.ConversationFilter{}))
	if len(page.Conversations) != 1 || page.Conversations[0].ID != mine.ID || page.Conversations[0].LastSeq != 2 {
		t.Fatalf("app a's server lists %+v; want %s with last seq 2", page.Conversations, mine.ID)
	}
	if l, r := rawMarks(t, e.path, mine.ID); l != 2 || r["alice"] != 1 || r["bob"] != 2 {
		t.Fatalf("after a's list, the file has last seq %d and read marks %v for a's conversation, want 2, alice 1, bob 2", l, r)
	}
	if l, r := rawMarks(t, e.path, other.ID); l != 0 || r["carol"] != 0 {
		t.Fatalf("after a's list, the file has last seq %d and read marks %v for b's conversation, want none written yet", l, r)
	}
	if n, err := sqlite.CachedSenders(e.db); err != nil || n != 3 {
		t.Fatalf("after a's list the send cache holds %d senders (err %v), want 3", n, err)
	}
	page = must[*tidings.ConversationPage](t)(e.convs.ListConversations(server("b"), tidings.ConversationFilter{}))
	if len(page.Conversations) != 1 || page.Conversations[0].ID != other.ID || page.Conversations[0].LastSeq != 1 {
		t.Fatalf("app b's server lists %+v; want %s with last seq 1", page.Conversations, other.ID)
	}
}

// A read of one conversation, or of its participants, that cannot count
// the marks not written yet (they moved under each of its reads) has its
// conversation's marks written, and those alone, then reads again; a
// push's unread counts, those of the recipient's conversations.
func TestAReadThatGivesUpWritesItsConversationsMarksAlone(t *testing.T) {
	e := newQuietEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	d := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	other := e.mkConv(t, "a", "bob", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "alice"}}})
	e.sendEach(t, "a", c.ID, "alice", "bob")
	e.sendEach(t, "a", d.ID, "bob")
	e.sendEach(t, "a", other.ID, "bob")
	sqlite.SetUnwrittenTries(e.db, 0)

	got := must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", "alice"), c.ID))
	if got.LastSeq != 2 || got.ReadSeq != 1 || got.UnreadCount != 1 {
		t.Fatalf("alice reads c: last seq %d, read seq %d, %d unread; want 2, 1, 1", got.LastSeq, got.ReadSeq, got.UnreadCount)
	}
	if l, r := rawMarks(t, e.path, c.ID); l != 2 || r["alice"] != 1 || r["bob"] != 2 {
		t.Fatalf("after alice's read of c, the file has last seq %d and read marks %v for c, want 2, alice 1, bob 2", l, r)
	}
	if l, r := rawMarks(t, e.path, d.ID); l != 0 || r["bob"] != 0 {
		t.Fatalf("after alice's read of c, the file has last seq %d and read marks %v for d, want none written yet", l, r)
	}

	ps := must[*tidings.ParticipantPage](t)(e.convs.ListParticipants(user("a", "alice"), d.ID, tidings.ParticipantFilter{})).Participants
	read := map[string]int64{}
	for _, p := range ps {
		read[p.UserID] = p.ReadSeq
	}
	if len(ps) != 2 || read["bob"] != 1 || read["alice"] != 0 {
		t.Fatalf("d's participants: %+v; want bob at read seq 1, alice at 0", ps)
	}
	if l, r := rawMarks(t, e.path, d.ID); l != 1 || r["bob"] != 1 {
		t.Fatalf("after the list of d's participants, the file has last seq %d and read marks %v for d, want 1 and bob's 1", l, r)
	}
	if l, r := rawMarks(t, e.path, other.ID); l != 0 || r["bob"] != 0 {
		t.Fatalf("after both reads, the file has last seq %d and read marks %v for a third conversation, want none written yet", l, r)
	}

	// A push's unread counts, likewise: those of the recipient's
	// conversations.
	e.mkUsers(t, "a", "carol", "dave")
	theirs := e.mkConv(t, "a", "carol", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "dave"}}})
	e.sendEach(t, "a", theirs.ID, "carol")
	e.sendEach(t, "a", other.ID, "bob")
	r := must[*tidings.PushRecipient](t)(sqlite.NewPushService(e.db).PushRecipient(context.Background(), "a", "alice", other.ID))
	if r.Unread != 2 || r.Badge != 4 {
		t.Fatalf("alice's push: %d unread, badge %d; want 2 and 4 (c's 1, d's 1 and other's 2)", r.Unread, r.Badge)
	}
	if l, _ := rawMarks(t, e.path, other.ID); l != 2 {
		t.Fatalf("after alice's push, the file has last seq %d for one of her conversations, want 2", l)
	}
	if l, r := rawMarks(t, e.path, theirs.ID); l != 0 || r["carol"] != 0 {
		t.Fatalf("after alice's push, the file has last seq %d and read marks %v for a conversation she is not in, want none written yet", l, r)
	}
}

// A read receipt takes the conversation, the caller's role and profile
// from the send cache, as a send does: what a write changed since is what
// it sees. The receipt's event names the reader's new profile, a reader
// removed is refused, and a deleted conversation can still be marked read.
func TestReadReceiptsSeeWhatWritesChanged(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.sendEach(t, "a", c.ID, "alice")
	must[*tidings.MessageStatus](t)(e.messages.MarkRead(user("a", "bob"), c.ID, 0)) // bob cached
	name := "Robert"
	must[*tidings.User](t)(e.users.UpdateUser(server("a"), "bob", tidings.UserUpdate{DisplayName: &name}))
	e.sendEach(t, "a", c.ID, "alice")
	e.events.take()
	if st, err := e.messages.MarkRead(user("a", "bob"), c.ID, 0); err != nil || st.ReadSeq != 2 || st.UnreadCount != 0 {
		t.Fatalf("bob's second receipt: %+v, %v; want read seq 2", st, err)
	}
	evs := e.events.take()
	if len(evs) != 1 || evs[0].Name != tidings.EventMessageRead || evs[0].Actor == nil || evs[0].Actor.DisplayName != "Robert" {
		t.Fatalf("the receipt's events: %v; want one %s by Robert", evs, tidings.EventMessageRead)
	}

	must[*tidings.Conversation](t)(e.convs.UndeleteConversation(user("a", "alice"), c.ID)) // not deleted: nothing changes
	if err := e.convs.DeleteConversation(user("a", "alice"), c.ID); err != nil {
		t.Fatal(err)
	}
	if st, err := e.messages.MarkDelivered(user("a", "alice"), c.ID, 2); err != nil || st.DeliveredSeq != 2 {
		t.Fatalf("alice marks the deleted conversation delivered: %+v, %v", st, err)
	}
	must[*tidings.Conversation](t)(e.convs.UndeleteConversation(user("a", "alice"), c.ID))

	if err := e.convs.RemoveParticipant(user("a", "alice"), c.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	e.sendEach(t, "a", c.ID, "alice")
	_, err := e.messages.MarkRead(user("a", "bob"), c.ID, 0)
	wantCode(t, err, tidings.ENotFound)
	if st, err := e.messages.MarkRead(user("a", "alice"), c.ID, 7); tidings.ErrorCode(err) != tidings.EInvalid {
		t.Fatalf("alice marks seq 7 of 3 read: %+v, %v; want %s", st, err, tidings.EInvalid)
	}
}

// A participant removed and added again starts afresh even when the marks
// of their sends were written by a plan while newer ones came: the marks
// kept for readers after such a plan (until the next plan ends) are
// forgotten with the removal too.
func TestAParticipantAddedAgainAfterAPlanStartsAfresh(t *testing.T) {
	e := newEnvWith(t, func(db *sqlite.DB) {
		// Due at once, one conversation per commit of one job, never
		// written for an idle writer (the test commits one job at a time).
		sqlite.SetMarkFlush(db, 0, time.Hour, 1)
		sqlite.SetMoveDelay(db, time.Hour)
	})
	e.mkUsers(t, "a", "alice", "carol", "dave")
	convs := []string{"c0", "c1", "c2", "c3", "c4", "c5"}
	for i, id := range convs {
		with := "carol"
		if i > 1 {
			with = "dave"
		}
		e.mkConv(t, "a", "alice", tidings.NewConversation{ID: id, Participants: []tidings.NewParticipant{{UserID: with}}})
	}
	together := func(sends map[string]string) {
		release := sqlite.HoldWriter(e.db)
		var wg sync.WaitGroup
		for conv, who := range sends {
			wg.Go(func() { e.sendEach(t, "a", conv, who) })
		}
		for sqlite.QueuedJobs(e.db) < len(sends) {
			time.Sleep(time.Millisecond)
		}
		release()
		wg.Wait()
	}
	together(map[string]string{"c0": "alice", "c1": "carol"})
	e.sendEach(t, "a", "c1", "carol") // a plan of c0 and c1 starts, and writes c0
	// The plan writes c1, carol's second send included, and ends; her
	// second mark is kept for readers until the next plan (of these five)
	// ends.
	together(map[string]string{"c0": "alice", "c2": "alice", "c3": "alice", "c4": "alice", "c5": "alice"})
	if err := e.convs.RemoveParticipant(user("a", "alice"), "c1", "carol"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"carol", "dave"} {
		must[*tidings.Participant](t)(e.convs.AddParticipant(user("a", "alice"), "c1", tidings.NewParticipant{UserID: u}))
	}
	ps := must[*tidings.ParticipantPage](t)(e.convs.ListParticipants(user("a", "alice"), "c1", tidings.ParticipantFilter{})).Participants
	read := map[string]int64{}
	for _, p := range ps {
		read[p.UserID] = p.ReadSeq
	}
	if read["carol"] != read["dave"] {
		t.Fatalf("read marks %v: carol, added again, should start where dave, never in, does", read)
	}
}

// A prune of old events (hourly, a chunk of 2,000 a write) reads and
// changes nothing of what the send cache holds or the journal keeps: it
// neither writes the marks waiting nor empties the cache nor moves the
// journal, which under load stalled the sends once a chunk. What it
// leaves is read back whole, and kept through a crash.
func TestAPruneLeavesTheSendCacheAndTheJournalAlone(t *testing.T) {
	e := newQuietEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	d := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.sendEach(t, "a", d.ID, "alice", "bob")
	log := sqlite.NewEventLog(e.db)
	log.PruneChunk = 1
	// Every event but the newest is older than the bound.
	n, err := log.Prune(context.Background(), time.Now().Add(time.Hour))
	if err != nil || n == 0 {
		t.Fatalf("prune: %d events, %v; want some", n, err)
	}
	if l, r := rawMarks(t, e.path, d.ID); l != 0 || r["alice"] != 0 || r["bob"] != 0 {
		t.Fatalf("after the prune the file has last seq %d and read marks %v, want none written yet", l, r)
	}
	if n, err := sqlite.CachedSenders(e.db); err != nil || n != 2 {
		t.Fatalf("after the prune the send cache holds %d senders (err %v), want 2", n, err)
	}
	if j, m := rawStored(t, e.path, d.ID); j != 2 || m != 0 {
		t.Fatalf("after the prune: %d messages in the journal, %d in messages; want 2 and 0", j, m)
	}
	if got := must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", "alice"), d.ID)); got.LastSeq != 2 {
		t.Fatalf("d read back with last seq %d, want 2", got.LastSeq)
	}
	if got := e.history(t, "a", "bob", d.ID); len(got) != 2 {
		t.Fatalf("d's history has %d messages, want 2", len(got))
	}

	crashed := filepath.Join(t.TempDir(), "crashed.db")
	copyDB(t, e.path, crashed)
	r := openDB(t, crashed)
	if got := must[*tidings.Conversation](t)(r.convs.FindConversationByID(user("a", "alice"), d.ID)); got.LastSeq != 2 || got.ReadSeq != 1 {
		t.Fatalf("d after a crash: last seq %d, alice's read seq %d; want 2 and 1", got.LastSeq, got.ReadSeq)
	}
	if got := r.history(t, "a", "bob", d.ID); len(got) != 2 {
		t.Fatalf("d's history after a crash has %d messages, want 2", len(got))
	}
	r.sendsAfterCrash(t, "bob", d.ID, 3)
}

// A user's deletion writes the marks, forgets the cached senders and
// moves the journal of the conversations they took part in alone: the
// others' sends go on as they were (before, it wrote every mark and moved
// the whole journal, which under load held the sends for 100–200 ms).
// Their messages still waiting in the journal are moved before they are
// anonymized, and stay so after a crash.
func TestDeletingAUserWritesTheirConversationsAlone(t *testing.T) {
	e := newQuietEnv(t)
	e.mkUsers(t, "a", "alice", "bob", "carol")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "carol"}}})
	d := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.sendEach(t, "a", c.ID, "carol", "alice")
	e.sendEach(t, "a", d.ID, "alice", "bob")
	if n, err := sqlite.CachedSenders(e.db); err != nil || n != 4 {
		t.Fatalf("after the sends the send cache holds %d senders (err %v), want 4", n, err)
	}

	if err := e.users.DeleteUser(server("a"), "carol", tidings.AnonymizeMessages); err != nil {
		t.Fatal(err)
	}
	if l, r := rawMarks(t, e.path, c.ID); l != 2 || r["alice"] != 2 {
		t.Fatalf("after carol's deletion c has last seq %d and read marks %v in the file, want 2 and alice's 2", l, r)
	}
	if j, m := rawStored(t, e.path, c.ID); j != 0 || m != 2 {
		t.Fatalf("after carol's deletion: %d of c's messages in the journal, %d in messages; want 0 and 2", j, m)
	}
	if l, r := rawMarks(t, e.path, d.ID); l != 0 || r["alice"] != 0 || r["bob"] != 0 {
		t.Fatalf("after carol's deletion d has last seq %d and read marks %v in the file, want none written yet", l, r)
	}
	if j, m := rawStored(t, e.path, d.ID); j != 2 || m != 0 {
		t.Fatalf("after carol's deletion: %d of d's messages in the journal, %d in messages; want 2 and 0", j, m)
	}
	if n, err := sqlite.CachedSenders(e.db); err != nil || n != 2 {
		t.Fatalf("after carol's deletion the send cache holds %d senders (err %v), want d's 2", n, err)
	}
	anonymized := func(when string, e *env) {
		t.Helper()
		got := e.history(t, "a", "alice", c.ID)
		if len(got) != 2 || got[0].Sender.ID != "" || got[0].ClientID != "" || got[1].Sender.ID != "alice" {
			t.Fatalf("%s: c's history is %+v, want carol's message without its sender, then alice's", when, got)
		}
	}
	anonymized("after carol's deletion", e)
	if got := must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", "bob"), d.ID)); got.LastSeq != 2 || got.ReadSeq != 2 {
		t.Fatalf("d read back by bob with last seq %d and read seq %d, want 2 and 2", got.LastSeq, got.ReadSeq)
	}

	crashed := filepath.Join(t.TempDir(), "crashed.db")
	copyDB(t, e.path, crashed)
	r := openDB(t, crashed)
	anonymized("after a crash", r)
	if got := r.history(t, "a", "bob", d.ID); len(got) != 2 {
		t.Fatalf("d's history after a crash has %d messages, want 2", len(got))
	}
	r.sendsAfterCrash(t, "bob", d.ID, 3)
}
