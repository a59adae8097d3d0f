package sqlite_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// stream returns the names of userID's events after seq, and their seqs.
func stream(t *testing.T, log *sqlite.EventLog, app, userID string, after int64) ([]string, []int64) {
	t.Helper()
	evs, err := log.UserEvents(context.Background(), app, userID, after, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	var seqs []int64
	for _, e := range evs {
		ns = append(ns, e.Name)
		seqs = append(seqs, e.Seq)
	}
	return ns, seqs
}

func TestUserStreamFollowsMembership(t *testing.T) {
	e := newEnv(t)
	log := sqlite.NewEventLog(e.db)
	e.mkUsers(t, "a", "alice", "bob", "carol")
	e.mkUsers(t, "b", "bob")
	ctx := context.Background()
	start, _ := log.LastEventSeq(ctx)

	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.send(t, "alice", c.ID, "m1")
	if err := e.convs.RemoveParticipant(user("a", "alice"), c.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	e.send(t, "alice", c.ID, "m2")
	must[*tidings.Participant](t)(e.convs.AddParticipant(user("a", "alice"), c.ID, tidings.NewParticipant{UserID: "carol"}))
	e.send(t, "carol", c.ID, "m3")
	name := "Bobby"
	must[*tidings.User](t)(e.users.UpdateUser(user("a", "bob"), "bob", tidings.UserUpdate{DisplayName: &name}))

	const (
		create  = tidings.EventConversationCreate
		added   = tidings.EventParticipantAdded
		removed = tidings.EventParticipantRemoved
		sent    = tidings.EventMessageSent
		profile = tidings.EventProfileUpdate
	)
	bob, _ := stream(t, log, "a", "bob", start)
	if want := []string{create, added, added, sent, removed, profile}; !slices.Equal(bob, want) {
		t.Fatalf("bob's stream %v, want %v: nothing after his removal but his own profile", bob, want)
	}
	carol, _ := stream(t, log, "a", "carol", start)
	if want := []string{added, sent}; !slices.Equal(carol, want) {
		t.Fatalf("carol's stream %v, want %v: nothing before she was added", carol, want)
	}
	alice, seqs := stream(t, log, "a", "alice", start)
	if want := []string{create, added, added, sent, removed, sent, added, sent}; !slices.Equal(alice, want) {
		t.Fatalf("alice's stream %v, want %v", alice, want)
	}
	if !slices.IsSorted(seqs) {
		t.Fatalf("stream not in seq order: %v", seqs)
	}
	// Resuming after a ref gives exactly what follows it.
	rest, _ := stream(t, log, "a", "alice", seqs[4])
	if !slices.Equal(rest, alice[5:]) {
		t.Fatalf("after ref %d: %v, want %v", seqs[4], rest, alice[5:])
	}
	// Another app's bob sees none of it.
	if other, _ := stream(t, log, "b", "bob", start); len(other) != 0 {
		t.Fatalf("app b's bob sees %v", other)
	}
	// Re-added, bob sees again from that point.
	must[*tidings.Participant](t)(e.convs.AddParticipant(user("a", "alice"), c.ID, tidings.NewParticipant{UserID: "bob"}))
	e.send(t, "alice", c.ID, "m4")
	bob2, _ := stream(t, log, "a", "bob", start)
	if want := []string{create, added, added, sent, removed, profile, added, sent}; !slices.Equal(bob2, want) {
		t.Fatalf("bob's stream after re-adding %v, want %v", bob2, want)
	}
	convs := must[[]tidings.Membership](t)(log.UserConversations(ctx, "a", "bob"))
	_, bobSeqs := stream(t, log, "a", "bob", start)
	if len(convs) != 1 || convs[0].ConversationID != c.ID || convs[0].FromSeq != bobSeqs[6] {
		t.Fatalf("bob's memberships %+v, want %s from his re-adding (seq %d)", convs, c.ID, bobSeqs[6])
	}
}

func TestCursorsAndRetention(t *testing.T) {
	e, conv := pair(t)
	log := sqlite.NewEventLog(e.db)
	ctx := context.Background()
	if err := log.SaveCursors(ctx, []tidings.Cursor{{AppID: "a", UserID: "bob", Device: "phone", Seq: 7}}); err != nil {
		t.Fatal(err)
	}
	log.SaveCursors(ctx, []tidings.Cursor{{AppID: "a", UserID: "bob", Device: "phone", Seq: 3}})
	if seq := must[int64](t)(log.Cursor(ctx, "a", "bob", "phone")); seq != 7 {
		t.Fatalf("cursor %d, want 7: a cursor never moves back", seq)
	}
	if seq := must[int64](t)(log.Cursor(ctx, "a", "bob", "laptop")); seq != 0 {
		t.Fatalf("unknown device cursor %d", seq)
	}

	e.send(t, "alice", conv, "old")
	_, seqs := stream(t, log, "a", "bob", 0)
	n := must[int64](t)(log.Prune(ctx, time.Now().Add(time.Hour)))
	if n != int64(len(seqs)-1) && n < 1 {
		t.Fatalf("pruned %d events", n)
	}
	last := must[int64](t)(log.LastEventSeq(ctx))
	if last != seqs[len(seqs)-1] {
		t.Fatalf("the newest event was pruned: last seq %d, want %d", last, seqs[len(seqs)-1])
	}
	_, err := log.UserEvents(ctx, "a", "bob", 0, 10)
	wantCode(t, err, tidings.EResyncRequired)
	// From the newest ref on, the stream goes on.
	e.send(t, "alice", conv, "new")
	names, _ := stream(t, log, "a", "bob", last)
	if !slices.Equal(names, []string{tidings.EventMessageSent}) {
		t.Fatalf("after the newest ref: %v", names)
	}
}

// A prune of a long log is many short writes: a send made while it runs
// is answered long before the prune ends, and the prune still removes
// every event older than the cut but the newest.
func TestPruneInChunksLetsSendsThrough(t *testing.T) {
	e, conv := pair(t)
	log := sqlite.NewEventLog(e.db)
	log.PruneChunk = 1 // one event a write: hundreds of writes
	ctx := context.Background()
	const events = 1000
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range events / 8 {
				nm := tidings.NewMessage{Parts: text(fmt.Sprintf("old %d %d", w, i))}
				if _, _, err := e.messages.SendMessage(user("a", "alice"), conv, nm); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	last := must[int64](t)(log.LastEventSeq(ctx))

	type outcome struct {
		n   int64
		err error
	}
	pruned := make(chan outcome, 1)
	go func() {
		n, err := log.Prune(ctx, time.Now().Add(time.Hour))
		pruned <- outcome{n, err}
	}()
	// Once the prune has begun (the oldest events are gone), a send goes
	// through while it runs.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := log.UserEvents(ctx, "a", "bob", 0, 1); tidings.ErrorCode(err) == tidings.EResyncRequired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the prune did not begin")
		}
		runtime.Gosched()
	}
	e.send(t, "bob", conv, "during the prune")
	select {
	case o := <-pruned:
		t.Fatalf("the send was answered only after the whole prune (%d events, %v)", o.n, o.err)
	default:
	}
	o := <-pruned
	if o.err != nil {
		t.Fatal(o.err)
	}
	if o.n < events {
		t.Fatalf("pruned %d events, want at least %d", o.n, events)
	}
	// The newest event before the prune is kept, and so is the send made
	// during it: the stream goes on from the newest ref before the prune.
	names, _ := stream(t, log, "a", "bob", last)
	if len(names) != 1 || names[0] != tidings.EventMessageSent {
		t.Fatalf("after the newest ref before the prune: %v", names)
	}
}
