package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// TestSendersOnSeveralNodes: senders on several nodes (each its own DB,
// its own pool of connections, as separate processes would have) send
// into one conversation at once, each message twice with the same client
// id from two nodes (a retry racing the first try). Every message is
// stored once, the conversation's messages are numbered 1 to n without
// gap, and their events' positions increase with their numbers: one
// order, the same for every reader.
func TestSendersOnSeveralNodes(t *testing.T) {
	dsn := freshDSN(t)
	const nodes, sendersPerNode, each = 3, 3, 8
	dbs := make([]*DB, nodes)
	for i := range dbs {
		db := NewDB(dsn)
		db.Logger = slog.New(slog.DiscardHandler)
		db.MaxConns = 8
		if err := db.Open(); err != nil {
			t.Fatalf("node %d: open: %v", i, err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	ctx := context.Background()
	if _, err := NewAppService(dbs[0]).CreateApp(ctx, "a", "app"); err != nil {
		t.Fatal(err)
	}
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "a", Server: true})
	var users []string
	var others []tidings.NewParticipant
	for i := range nodes * sendersPerNode {
		u := fmt.Sprint("u", i)
		if _, err := NewUserService(dbs[i%nodes]).CreateUser(server, &tidings.User{ID: u}); err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
		if i > 0 {
			others = append(others, tidings.NewParticipant{UserID: u})
		}
	}
	if _, err := NewConversationService(dbs[1]).CreateConversation(userCtx("a", users[0]),
		tidings.NewConversation{ID: "c", Participants: others}); err != nil {
		t.Fatal(err)
	}

	// Sender i sends from node i%nodes; the retry of each message goes
	// through the next node, at the same time.
	type result struct {
		sender  string
		id      string
		seq     int64
		created bool
	}
	results := make(map[string][]result)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, u := range users {
		for try := range 2 {
			msgs := NewMessageService(dbs[(i+try)%nodes], 0)
			wg.Go(func() {
				for j := range each {
					clientID := fmt.Sprint(u, "-", j)
					m, created, err := msgs.SendMessage(userCtx("a", u), "c", tidings.NewMessage{
						ClientID: clientID, Parts: []tidings.Part{{Type: "text/plain", Data: clientID}}})
					if err != nil {
						t.Errorf("%s sends %s (try %d): %v", u, clientID, try, err)
						return
					}
					mu.Lock()
					results[clientID] = append(results[clientID], result{u, m.ID, m.Seq, created})
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	n := len(users) * each
	if len(results) != n {
		t.Fatalf("%d client ids answered, want %d", len(results), n)
	}
	for clientID, rs := range results {
		if len(rs) != 2 || rs[0].id != rs[1].id || rs[0].seq != rs[1].seq || rs[0].created == rs[1].created {
			t.Errorf("the two tries of %s: %+v; want one message, created by one try only", clientID, rs)
		}
	}

	// The log, as any node reads it.
	rows, err := dbs[2].query(ctx, `SELECT e.seq, (e.payload->>'seq')::bigint, m.id
		FROM events e JOIN messages m ON m.app_id = e.app_id AND m.conversation_id = e.conversation_id AND m.id = e.payload->>'id'
		WHERE e.app_id = 'a' AND e.conversation_id = 'c' AND e.name = $1 ORDER BY e.seq`, tidings.EventMessageSent)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	var last int64
	for rows.Next() {
		var pos, seq int64
		var id string
		if err := rows.Scan(&pos, &seq, &id); err != nil {
			t.Fatal(err)
		}
		if pos <= last {
			t.Fatalf("event positions do not increase: %d after %d", pos, last)
		}
		last = pos
		got = append(got, seq)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d messages sent events, want %d (one per message)", len(got), n)
	}
	for i, seq := range got {
		if seq != int64(i+1) {
			t.Fatalf("in position order the events carry message seqs %v: want 1 to %d, in order", got, n)
		}
	}
	conv, err := NewConversationService(dbs[0]).FindConversationByID(userCtx("a", users[1]), "c")
	if err != nil {
		t.Fatal(err)
	}
	if conv.LastSeq != int64(n) {
		t.Errorf("lastSeq %d, want %d", conv.LastSeq, n)
	}
	// Each sender's own marks are at their last message at least.
	page, err := NewConversationService(dbs[1]).ListParticipants(userCtx("a", users[0]), "c", tidings.ParticipantFilter{})
	if err != nil {
		t.Fatal(err)
	}
	lastOf := map[string]int64{}
	for _, rs := range results {
		lastOf[rs[0].sender] = max(lastOf[rs[0].sender], rs[0].seq)
	}
	for _, p := range page.Participants {
		if p.ReadSeq != lastOf[p.UserID] || p.DeliveredSeq != lastOf[p.UserID] {
			t.Errorf("%s's marks %d/%d, want their last message %d", p.UserID, p.DeliveredSeq, p.ReadSeq, lastOf[p.UserID])
		}
	}
}

// TestMarksOnSeveralNodes: devices of one user on several nodes mark
// messages read and delivered at once, in any order. The marks end at the
// highest seq marked, and never moved back: in position order, the read
// events of the user carry increasing seqs, and so do the delivered ones.
func TestMarksOnSeveralNodes(t *testing.T) {
	dsn := freshDSN(t)
	const nodes, devices, marks, messages = 3, 4, 10, 20
	dbs := make([]*DB, nodes)
	for i := range dbs {
		db := NewDB(dsn)
		db.Logger = slog.New(slog.DiscardHandler)
		db.MaxConns = 8
		if err := db.Open(); err != nil {
			t.Fatalf("node %d: open: %v", i, err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	ctx := context.Background()
	if _, err := NewAppService(dbs[0]).CreateApp(ctx, "a", "app"); err != nil {
		t.Fatal(err)
	}
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "a", Server: true})
	for _, u := range []string{"alice", "bob"} {
		if _, err := NewUserService(dbs[0]).CreateUser(server, &tidings.User{ID: u}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewConversationService(dbs[0]).CreateConversation(userCtx("a", "alice"),
		tidings.NewConversation{ID: "c", Participants: []tidings.NewParticipant{{UserID: "bob"}}}); err != nil {
		t.Fatal(err)
	}
	for i := range messages {
		if _, _, err := NewMessageService(dbs[i%nodes], 0).SendMessage(userCtx("a", "alice"), "c",
			tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: fmt.Sprint(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var highest, highestRead int64
	for d := range devices {
		msgs := NewMessageService(dbs[d%nodes], 0)
		wg.Go(func() {
			for k := range marks {
				// Each device walks the seqs its own way: some forward,
				// some back.
				seq := int64((d*7+k*(d+3))%messages + 1)
				read := (d+k)%2 == 0
				mark := msgs.MarkDelivered
				if read {
					mark = msgs.MarkRead
				}
				st, err := mark(userCtx("a", "bob"), "c", seq)
				if err != nil {
					t.Errorf("device %d marks %d: %v", d, seq, err)
					return
				}
				if st.DeliveredSeq < seq || (read && st.ReadSeq < seq) || st.ReadSeq > st.DeliveredSeq {
					t.Errorf("device %d marks %d (read %v): status %+v", d, seq, read, st)
				}
				mu.Lock()
				highest = max(highest, seq)
				if read {
					highestRead = max(highestRead, seq)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	page, err := NewConversationService(dbs[0]).ListParticipants(userCtx("a", "alice"), "c", tidings.ParticipantFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range page.Participants {
		if p.UserID == "bob" && (p.DeliveredSeq != highest || p.ReadSeq != highestRead) {
			t.Errorf("bob's marks %d/%d, want the highest marked %d/%d", p.DeliveredSeq, p.ReadSeq, highest, highestRead)
		}
	}
	rows, err := dbs[1].query(ctx, `SELECT name, (payload->>'seq')::bigint FROM events
		WHERE app_id = 'a' AND conversation_id = 'c' AND user_id = 'bob' AND name IN ($1, $2) ORDER BY seq`,
		tidings.EventMessageRead, tidings.EventMessageDelivered)
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]int64{}
	for rows.Next() {
		var name string
		var seq int64
		if err := rows.Scan(&name, &seq); err != nil {
			t.Fatal(err)
		}
		if seq <= last[name] {
			t.Errorf("%s events in position order: %d after %d (a mark moved back)", name, seq, last[name])
		}
		last[name] = seq
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if last[tidings.EventMessageRead] != highestRead {
		t.Errorf("the last read event says %d, want %d", last[tidings.EventMessageRead], highestRead)
	}
}

// TestSendCutWhileQueued: a send whose connection is killed while it
// waits for its conversation (another transaction holds the lock) runs
// again on another connection, and its message is stored once, numbered
// after the one before it.
func TestSendCutWhileQueued(t *testing.T) {
	db := fixture(t, nil, "alice")
	ctx := context.Background()
	if _, err := NewConversationService(db).CreateConversation(userCtx("a", "alice"), tidings.NewConversation{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	msgs := NewMessageService(db, 0)
	send := func(clientID string) (*tidings.Message, bool, error) {
		return msgs.SendMessage(userCtx("a", "alice"), "c", tidings.NewMessage{ClientID: clientID,
			Parts: []tidings.Part{{Type: "text/plain", Data: clientID}}})
	}
	if _, _, err := send("first"); err != nil {
		t.Fatal(err)
	}
	// Hold the conversation's lock, as a long send would.
	holder, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('a/c', 0))`); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		m       *tidings.Message
		created bool
		err     error
	}
	done := make(chan answer, 1)
	go func() {
		m, created, err := send("second")
		done <- answer{m, created, err}
	}()
	// Kill the connection of the waiting send.
	var pid int
	waitFor(t, "the send to queue", func() bool {
		err := db.pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND wait_event = 'advisory'`).Scan(&pid)
		return err == nil
	})
	if _, err := db.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	// It queues again, on another connection, and goes once the lock is
	// released.
	waitFor(t, "the send to queue again", func() bool {
		var again int
		err := db.pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND wait_event = 'advisory'`).Scan(&again)
		return err == nil && again != pid
	})
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var a answer
	select {
	case a = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the send never answered")
	}
	if a.err != nil || !a.created || a.m.Seq != 2 {
		t.Fatalf("the send cut while queued: %+v, %v, %v; want message 2, created", a.m, a.created, a.err)
	}
	page, err := msgs.ListMessages(userCtx("a", "alice"), "c", tidings.MessageFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 2 || page.Messages[1].ClientID != "second" {
		t.Errorf("history %+v: want the two messages, each once", page.Messages)
	}
}

// TestSendInsertClientIDTaken: the unique index on client ids has the
// last word: a send that did not see an earlier message with its client
// id (which the conversation's lock prevents) stores nothing, moves
// nothing, and answers the earlier message.
func TestSendInsertClientIDTaken(t *testing.T) {
	db := fixture(t, nil, "alice")
	if _, err := NewConversationService(db).CreateConversation(userCtx("a", "alice"), tidings.NewConversation{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	c := tidings.Caller{AppID: "a", UserID: "alice"}
	var earlier *tidings.Message
	err := db.update(context.Background(), func(tx *Tx) error {
		var seqs []int64
		for i, id := range []string{tidings.NewID(), tidings.NewID()} {
			var seq int64
			err := tx.queryRow(sendInsert, "a", "c", int64(i+1), id, "alice", "retry", `[{"type":"text/plain","data":"x"}]`, nil, "", tx.now, false).Scan(&seq)
			if isNoRows(err) {
				continue
			}
			if err != nil {
				return err
			}
			seqs = append(seqs, seq)
		}
		if len(seqs) != 1 || seqs[0] != 1 {
			return fmt.Errorf("stored seqs %v, want the first insert only", seqs)
		}
		var err error
		earlier, err = findClientMessage(tx, c, "c", "retry")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if earlier.Seq != 1 || earlier.ClientID != "retry" {
		t.Errorf("the earlier message %+v", earlier)
	}
	conv, err := NewConversationService(db).FindConversationByID(userCtx("a", "alice"), "c")
	if err != nil || conv.LastSeq != 1 || conv.ReadSeq != 1 {
		t.Errorf("conversation %+v, %v: want lastSeq 1 (moved once), alice's read mark 1", conv, err)
	}
}

// TestRemovalAmidSendsOnAnotherNode: a participant removed on one node
// while messages are sent on another receives every message sent before
// the removal and none after it: the removal takes its place among the
// sends, in the order of message seqs.
func TestRemovalAmidSendsOnAnotherNode(t *testing.T) {
	dsn := freshDSN(t)
	dbs := make([]*DB, 2)
	for i := range dbs {
		db := NewDB(dsn)
		db.Logger = discard()
		if err := db.Open(); err != nil {
			t.Fatalf("node %d: open: %v", i, err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	ctx := context.Background()
	if _, err := NewAppService(dbs[0]).CreateApp(ctx, "a", "app"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		if _, err := NewUserService(dbs[0]).CreateUser(serverCtx("a"), &tidings.User{ID: u}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewConversationService(dbs[0]).CreateConversation(userCtx("a", "alice"),
		tidings.NewConversation{ID: "c", Participants: []tidings.NewParticipant{{UserID: "bob"}}}); err != nil {
		t.Fatal(err)
	}
	const n = 40
	msgs := NewMessageService(dbs[0], 0)
	var wg sync.WaitGroup
	sent := make(chan int64, n)
	wg.Go(func() {
		for i := range n {
			m, _, err := msgs.SendMessage(userCtx("a", "alice"), "c", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: fmt.Sprint(i)}}})
			if err != nil {
				t.Error(err)
				return
			}
			sent <- m.Seq
		}
	})
	// Remove bob on the other node once a few messages are in.
	for range n / 4 {
		<-sent
	}
	if err := NewConversationService(dbs[1]).RemoveParticipant(userCtx("a", "alice"), "c", "bob"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	evs, err := NewEventLog(dbs[1]).UserEvents(ctx, "a", "bob", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	removed := false
	for _, e := range evs {
		switch e.Name {
		case tidings.EventParticipantRemoved:
			removed = true
		case tidings.EventMessageSent:
			if removed {
				t.Fatalf("bob received a message after his removal")
			}
			var p tidings.MessagePayload
			if err := json.Unmarshal(e.Payload, &p); err != nil || p.Message == nil {
				t.Fatalf("payload %s: %v", e.Payload, err)
			}
			got = append(got, p.Seq)
		}
	}
	if !removed {
		t.Fatal("bob's stream lacks his removal")
	}
	if len(got) < n/4 || len(got) > n {
		t.Fatalf("bob received messages %v", got)
	}
	for i, seq := range got {
		if seq != int64(i+1) {
			t.Fatalf("bob received messages %v: want 1 to %d, each once, in order", got, len(got))
		}
	}
	// Alice's stream has the rest, after the removal.
	evs, err = NewEventLog(dbs[0]).UserEvents(ctx, "a", "alice", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	removed = false
	var after []int64
	for _, e := range evs {
		if e.Name == tidings.EventParticipantRemoved {
			removed = true
		}
		if e.Name == tidings.EventMessageSent && removed {
			var p tidings.MessagePayload
			if err := json.Unmarshal(e.Payload, &p); err != nil || p.Message == nil {
				t.Fatalf("payload %s: %v", e.Payload, err)
			}
			after = append(after, p.Seq)
		}
	}
	for i, seq := range after {
		if seq != int64(len(got)+i+1) {
			t.Fatalf("after the removal alice's stream carries messages %v; want %d to %d", after, len(got)+1, n)
		}
	}
	if len(got)+len(after) != n {
		t.Errorf("bob received %d messages and %d came after his removal: want %d in all", len(got), len(after), n)
	}
}
