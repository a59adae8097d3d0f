package postgres

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// gate holds the node's sends back: a send to conversation "gate" is
// committing (its batch waits for the conversation's lock, held here), so
// the sends queued meanwhile go together in the next batch once the gate
// opens. The conversation "gate" must exist, alice in it.
type gate struct {
	t    *testing.T
	db   *DB
	open func()
	done chan error
}

func closeGate(t *testing.T, db *DB) *gate {
	t.Helper()
	ctx := context.Background()
	holder, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Rollback(context.Background()) })
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('a/gate', 0))`); err != nil {
		t.Fatal(err)
	}
	g := &gate{t: t, db: db, done: make(chan error, 1)}
	g.open = sync.OnceFunc(func() {
		if err := holder.Commit(ctx); err != nil {
			t.Error(err)
		}
	})
	go func() {
		_, _, err := NewMessageService(db, 0).SendMessage(userCtx("a", "alice"), "gate", tidings.NewMessage{Parts: text("gate")})
		g.done <- err
	}()
	waitFor(t, "the gate's batch to wait for its lock", func() bool {
		var n int
		err := db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND wait_event = 'advisory'`).Scan(&n)
		return err == nil && n > 0
	})
	return g
}

// pass opens the gate and waits for the gate's send.
func (g *gate) pass() {
	g.t.Helper()
	g.open()
	select {
	case err := <-g.done:
		if err != nil {
			g.t.Fatalf("the gate's send: %v", err)
		}
	case <-time.After(30 * time.Second):
		g.t.Fatal("the gate's send never answered")
	}
}

func text(s string) []tidings.Part { return []tidings.Part{{Type: "text/plain", Data: s}} }

type sent struct {
	m       *tidings.Message
	created bool
	err     error
}

// queue starts a send and returns once it is queued (tidings.Queued), or
// answered; its outcome comes on the channel returned.
func queue(msgs *MessageService, user, conv string, nm tidings.NewMessage) <-chan sent {
	out := make(chan sent, 1)
	queued := make(chan struct{})
	once := sync.OnceFunc(func() { close(queued) })
	ctx := tidings.NewContextWithQueued(userCtx("a", user), once)
	go func() {
		m, created, err := msgs.SendMessage(ctx, conv, nm)
		once()
		out <- sent{m, created, err}
	}()
	<-queued
	return out
}

func answer(t *testing.T, ch <-chan sent) sent {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(30 * time.Second):
		t.Fatal("a send never answered")
		return sent{}
	}
}

// TestSendBatch: sends committed in one batch each get their outcome: a
// send to a conversation the sender does not see, or naming a file of
// another conversation, fails alone; two sends with one client id store
// one message, which both answer; a client id used before answers the
// earlier message; the others are stored, numbered in the order queued,
// with their events' positions in that order, and the file a send names
// is attached.
func TestSendBatch(t *testing.T) {
	db := fixture(t, nil, "alice", "bob", "carol")
	convs := NewConversationService(db)
	for _, nc := range []tidings.NewConversation{
		{ID: "gate"},
		{ID: "c", Participants: []tidings.NewParticipant{{UserID: "bob"}}},
		{ID: "d", Participants: []tidings.NewParticipant{{UserID: "bob"}}},
		{ID: "private"},
	} {
		if _, err := convs.CreateConversation(userCtx("a", "alice"), nc); err != nil {
			t.Fatal(err)
		}
	}
	msgs := NewMessageService(db, 0)
	if _, _, err := msgs.SendMessage(userCtx("a", "bob"), "c", tidings.NewMessage{ClientID: "old", Parts: text("old")}); err != nil {
		t.Fatal(err)
	}
	var fileC, fileD string
	for conv, id := range map[string]*string{"c": &fileC, "d": &fileD} {
		err := db.update(context.Background(), func(tx *Tx) error {
			*id = tidings.NewID()
			_, err := tx.exec(`INSERT INTO files (app_id, conversation_id, id, uploader_id, name, type, size, blob_key, created_at)
				VALUES ('a', $1, $2, 'alice', 'f.txt', 'text/plain', 3, $2, $3)`, conv, *id, tx.now)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	g := closeGate(t, db)
	a1 := queue(msgs, "alice", "c", tidings.NewMessage{ClientID: "x", Parts: text("a1")})
	b1 := queue(msgs, "bob", "d", tidings.NewMessage{Parts: text("b1")})
	carol := queue(msgs, "carol", "c", tidings.NewMessage{Parts: text("not mine")})
	wrongFile := queue(msgs, "alice", "c", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", FileID: fileD}}})
	a1again := queue(msgs, "alice", "c", tidings.NewMessage{ClientID: "x", Parts: text("a1, again")})
	old := queue(msgs, "bob", "c", tidings.NewMessage{ClientID: "old", Parts: text("old, again")})
	missing := queue(msgs, "alice", "nowhere", tidings.NewMessage{Parts: text("?")})
	withFile := queue(msgs, "alice", "c", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", FileID: fileC}}})
	b2 := queue(msgs, "bob", "d", tidings.NewMessage{Parts: text("b2")})
	g.pass()

	got := map[string]sent{}
	for name, ch := range map[string]<-chan sent{"a1": a1, "b1": b1, "carol": carol, "wrongFile": wrongFile,
		"a1again": a1again, "old": old, "missing": missing, "withFile": withFile, "b2": b2} {
		got[name] = answer(t, ch)
	}
	for name, code := range map[string]string{"carol": tidings.ENotFound, "wrongFile": tidings.EInvalid, "missing": tidings.ENotFound} {
		if c := tidings.ErrorCode(got[name].err); c != code {
			t.Errorf("%s: %v, want %s", name, got[name].err, code)
		}
	}
	for _, name := range []string{"a1", "b1", "a1again", "old", "withFile", "b2"} {
		if got[name].err != nil {
			t.Fatalf("%s: %v", name, got[name].err)
		}
	}
	// In c: old (1), then a1 (2), withFile (3); in d: b1 (1), b2 (2).
	for name, want := range map[string]int64{"a1": 2, "withFile": 3, "b1": 1, "b2": 2, "old": 1, "a1again": 2} {
		if s := got[name]; s.m.Seq != want {
			t.Errorf("%s: message %d, want %d", name, s.m.Seq, want)
		}
	}
	if !got["a1"].created || got["a1again"].created || got["a1again"].m.ID != got["a1"].m.ID || got["a1again"].m.Parts[0].Data != "a1" {
		t.Errorf("one client id twice in a batch: %+v then %+v; want the first stored, and answered to both", got["a1"], got["a1again"])
	}
	if got["old"].created || got["old"].m.Parts[0].Data != "old" {
		t.Errorf("a client id used before: %+v; want the earlier message", got["old"])
	}
	if p := got["withFile"].m.Parts[0]; p.Name != "f.txt" || p.Size != 3 {
		t.Errorf("the part naming a file: %+v", p)
	}
	var attached bool
	if err := db.queryRow(context.Background(), `SELECT attached FROM files WHERE id = $1`, fileC).Scan(&attached); err != nil || !attached {
		t.Errorf("the file sent is attached: %v, %v", attached, err)
	}
	if err := db.queryRow(context.Background(), `SELECT attached FROM files WHERE id = $1`, fileD).Scan(&attached); err != nil || attached {
		t.Errorf("the file of the refused send is not attached: %v, %v", attached, err)
	}
	// The events' positions follow the queue: a1, b1, withFile, b2.
	rows, err := db.query(context.Background(), `SELECT payload->>'id' FROM events WHERE name = $1 AND seq > (
		SELECT seq FROM events WHERE payload->>'id' = $2) ORDER BY seq`, tidings.EventMessageSent, got["old"].m.ID)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		order = append(order, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, name := range []string{"a1", "b1", "withFile", "b2"} {
		want = append(want, got[name].m.ID)
	}
	// The gate's message comes first, committed in the batch before.
	if len(order) != len(want)+1 || fmt.Sprint(order[1:]) != fmt.Sprint(want) {
		t.Errorf("messages in position order %v, want the gate's then %v", order, want)
	}
}

// TestSendBatchStatementRefused: a send whose insert PostgreSQL refuses
// (an alert with a NUL byte, which a text column cannot hold: valid
// UTF-8, so the validation lets it pass) fails alone; the sends of its
// batch are stored.
func TestSendBatchStatementRefused(t *testing.T) {
	db := fixture(t, nil, "alice")
	for _, id := range []string{"gate", "c"} {
		if _, err := NewConversationService(db).CreateConversation(userCtx("a", "alice"), tidings.NewConversation{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	msgs := NewMessageService(db, 0)
	g := closeGate(t, db)
	first := queue(msgs, "alice", "c", tidings.NewMessage{Parts: text("first")})
	bad := queue(msgs, "alice", "c", tidings.NewMessage{Parts: text("bad"), Alert: "nul \x00 byte"})
	last := queue(msgs, "alice", "c", tidings.NewMessage{Parts: text("last")})
	g.pass()
	f, b, l := answer(t, first), answer(t, bad), answer(t, last)
	if b.err == nil {
		t.Errorf("the refused send: %+v, no error", b.m)
	}
	if f.err != nil || l.err != nil || f.m.Seq != 1 || l.m.Seq != 2 {
		t.Fatalf("the others: %+v %v, %+v %v; want messages 1 and 2", f.m, f.err, l.m, l.err)
	}
	page, err := msgs.ListMessages(userCtx("a", "alice"), "c", tidings.MessageFilter{})
	if err != nil || len(page.Messages) != 2 || page.Messages[0].Parts[0].Data != "first" || page.Messages[1].Parts[0].Data != "last" {
		t.Errorf("history %+v, %v", page, err)
	}
}

// TestQueuedSendsKeepTheirOrder: a client that sends each message as soon
// as the last one is queued (as a WebSocket connection does) sees them
// numbered in the order it sent them, and a change it makes next (here,
// a participant leaving) comes after them, although none had committed
// when it was made.
func TestQueuedSendsKeepTheirOrder(t *testing.T) {
	db := fixture(t, nil, "alice", "bob")
	convs := NewConversationService(db)
	for _, nc := range []tidings.NewConversation{{ID: "gate"},
		{ID: "c", Participants: []tidings.NewParticipant{{UserID: "bob"}}}} {
		if _, err := convs.CreateConversation(userCtx("a", "alice"), nc); err != nil {
			t.Fatal(err)
		}
	}
	msgs := NewMessageService(db, 0)
	g := closeGate(t, db)
	const n = 10
	var answers []<-chan sent
	for i := range n {
		answers = append(answers, queue(msgs, "bob", "c", tidings.NewMessage{Parts: text(fmt.Sprint(i))}))
	}
	left := make(chan error, 1)
	go func() { left <- convs.Leave(userCtx("a", "bob"), "c") }()
	g.pass()
	for i, ch := range answers {
		s := answer(t, ch)
		if s.err != nil || s.m.Seq != int64(i+1) {
			t.Fatalf("send %d: %+v, %v; want message %d", i, s.m, s.err, i+1)
		}
	}
	select {
	case err := <-left:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("bob never left")
	}
	evs, err := NewEventLog(db).UserEvents(context.Background(), "a", "alice", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range evs {
		if e.ConversationID == "c" && (e.Name == tidings.EventMessageSent || e.Name == tidings.EventParticipantRemoved) {
			names = append(names, e.Name)
		}
	}
	if len(names) != n+1 || names[n] != tidings.EventParticipantRemoved {
		t.Errorf("alice's stream of c: %v; want the %d messages, then bob's leaving", names, n)
	}
}

// TestBatchesOnSeveralNodes: senders on three nodes send at once into
// five conversations, each sender moving from one to the next, so that
// the nodes' batches hold overlapping sets of conversations. No batch
// waits for another in a cycle (they all end), and in each conversation
// the messages are numbered without gap, their events' positions in the
// same order.
func TestBatchesOnSeveralNodes(t *testing.T) {
	dsn := freshDSN(t)
	const nodes, senders, each, conversations = 3, 12, 15, 5
	dbs := make([]*DB, nodes)
	for i := range dbs {
		db := NewDB(dsn)
		db.Logger = discard()
		db.MaxConns = 4
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
	var everyone []tidings.NewParticipant
	for i := range senders {
		u := fmt.Sprint("u", i)
		if _, err := NewUserService(dbs[0]).CreateUser(serverCtx("a"), &tidings.User{ID: u}); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			everyone = append(everyone, tidings.NewParticipant{UserID: u})
		}
	}
	for c := range conversations {
		if _, err := NewConversationService(dbs[0]).CreateConversation(userCtx("a", "u0"),
			tidings.NewConversation{ID: fmt.Sprint("c", c), Participants: everyone}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for i := range senders {
		msgs := NewMessageService(dbs[i%nodes], 0)
		wg.Go(func() {
			for k := range each {
				conv := fmt.Sprint("c", (i+k)%conversations)
				_, created, err := msgs.SendMessage(userCtx("a", fmt.Sprint("u", i)), conv, tidings.NewMessage{
					ClientID: fmt.Sprint(i, "-", k), Parts: text(fmt.Sprint(i, "-", k))})
				if err != nil || !created {
					t.Errorf("u%d sends %d to %s: created %v, %v", i, k, conv, created, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	total := 0
	for c := range conversations {
		rows, err := dbs[1].query(ctx, `SELECT (payload->>'seq')::bigint FROM events
			WHERE app_id = 'a' AND conversation_id = $1 AND name = $2 ORDER BY seq`, fmt.Sprint("c", c), tidings.EventMessageSent)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for rows.Next() {
			var seq int64
			if err := rows.Scan(&seq); err != nil {
				t.Fatal(err)
			}
			seqs = append(seqs, seq)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		for i, seq := range seqs {
			if seq != int64(i+1) {
				t.Fatalf("c%d: in position order, messages %v; want 1 to %d", c, seqs, len(seqs))
			}
		}
		total += len(seqs)
	}
	if total != senders*each {
		t.Errorf("%d messages, want %d", total, senders*each)
	}
}

// TestSendBatchCutWhileQueued: a batch of several sends whose connection
// is killed while it waits for a conversation's lock runs again on
// another connection, and stores each of its messages once.
func TestSendBatchCutWhileQueued(t *testing.T) {
	db := fixture(t, nil, "alice", "bob")
	convs := NewConversationService(db)
	for _, nc := range []tidings.NewConversation{{ID: "gate"},
		{ID: "c", Participants: []tidings.NewParticipant{{UserID: "bob"}}}, {ID: "d"}} {
		if _, err := convs.CreateConversation(userCtx("a", "alice"), nc); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	msgs := NewMessageService(db, 0)
	// Hold c, as a long change of it would.
	holder, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('a/c', 0))`); err != nil {
		t.Fatal(err)
	}
	g := closeGate(t, db)
	var holderPID int
	if err := holder.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&holderPID); err != nil {
		t.Fatal(err)
	}
	a := queue(msgs, "alice", "c", tidings.NewMessage{ClientID: "a", Parts: text("a")})
	d := queue(msgs, "alice", "d", tidings.NewMessage{ClientID: "d", Parts: text("d")})
	b := queue(msgs, "bob", "c", tidings.NewMessage{ClientID: "b", Parts: text("b")})
	g.pass()
	// The batch of the three waits for c: kill its connection.
	var pid int
	waitFor(t, "the batch to wait for c", func() bool {
		err := db.pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND wait_event = 'advisory' AND pid <> $1`, holderPID).Scan(&pid)
		return err == nil
	})
	if _, err := db.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the batch to wait again", func() bool {
		var again int
		err := db.pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND wait_event = 'advisory' AND pid <> $1`, holderPID).Scan(&again)
		return err == nil && again != pid
	})
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]struct {
		ch  <-chan sent
		seq int64
	}{"a": {a, 1}, "d": {d, 1}, "b": {b, 2}} {
		s := answer(t, want.ch)
		if s.err != nil || !s.created || s.m.Seq != want.seq {
			t.Errorf("send %s: %+v, %v, %v; want message %d, created", name, s.m, s.created, s.err, want.seq)
		}
	}
	for conv, n := range map[string]int{"c": 2, "d": 1} {
		page, err := msgs.ListMessages(userCtx("a", "alice"), conv, tidings.MessageFilter{})
		if err != nil || len(page.Messages) != n {
			t.Errorf("history of %s: %+v, %v; want %d messages, each once", conv, page, err, n)
		}
	}
}
