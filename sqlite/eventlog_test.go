package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// Prune removes the log's oldest events, up to the first one not older
// than its bound, a chunk a write, and keeps the rest: those after a
// newer one too (a clock set back), and the stream goes on from the
// newest removed.
func TestPruneRemovesTheOldestEventsOnly(t *testing.T) {
	e, conv := pair(t)
	log := sqlite.NewEventLog(e.db)
	log.PruneChunk = 2
	ctx := context.Background()
	var clock atomic.Int64
	e.db.Now = func() time.Time { return time.UnixMicro(clock.Load()) }
	old := time.Now().Add(time.Hour)
	clock.Store(old.UnixMicro())
	for range 5 {
		e.send(t, "alice", conv, "old")
	}
	lastOld := must[int64](t)(log.LastEventSeq(ctx))
	clock.Store(old.Add(2 * time.Hour).UnixMicro())
	for range 3 {
		e.send(t, "alice", conv, "new")
	}
	clock.Store(old.UnixMicro()) // set back: an old time after new ones
	e.send(t, "alice", conv, "old again")
	clock.Store(old.Add(2 * time.Hour).UnixMicro())
	e.send(t, "alice", conv, "new again")
	n, err := log.Prune(ctx, old.Add(time.Hour))
	if err != nil || n != lastOld {
		t.Fatalf("pruned %d events (%v), want the %d before the first newer one", n, err, lastOld)
	}
	_, err = log.UserEvents(ctx, "a", "bob", lastOld-1, 10)
	wantCode(t, err, tidings.EResyncRequired)
	if names, _ := stream(t, log, "a", "bob", lastOld); len(names) != 5 {
		t.Fatalf("after the newest pruned: %v, want the 5 sends after it", names)
	}
	if n, err := log.Prune(ctx, old.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("pruned again: %d, %v; want none", n, err)
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

// A profile change reaches, once each, the users who share a conversation
// with its user at the time of the change: not those removed before it,
// not those added after it (they get the changes from then on), not those
// who share nothing, and not another app's user of the same id.
func TestProfileChangesReachThoseWhoShareAConversation(t *testing.T) {
	e := newEnv(t)
	log := sqlite.NewEventLog(e.db)
	e.mkUsers(t, "a", "alice", "bob", "carol", "dave", "erin")
	e.mkUsers(t, "b", "bob")
	ctx := context.Background()
	start := must[int64](t)(log.LastEventSeq(ctx))
	with := func(ids ...string) tidings.NewConversation {
		var ps []tidings.NewParticipant
		for _, id := range ids {
			ps = append(ps, tidings.NewParticipant{UserID: id})
		}
		return tidings.NewConversation{Participants: ps}
	}
	c1 := e.mkConv(t, "a", "alice", with("bob", "dave"))
	c2 := e.mkConv(t, "a", "alice", with("bob"))
	e.mkConv(t, "a", "carol", with("erin")) // carol shares nothing with alice
	if err := e.convs.RemoveParticipant(user("a", "alice"), c1.ID, "dave"); err != nil {
		t.Fatal(err)
	}
	e.events.take()
	name := "Alice Smith"
	must[*tidings.User](t)(e.users.UpdateUser(user("a", "alice"), "alice", tidings.UserUpdate{DisplayName: &name}))
	published := e.events.take()
	if len(published) != 1 || published[0].Name != tidings.EventProfileUpdate {
		t.Fatalf("published %v", names(published))
	}
	rename := published[0]
	if got := slices.Sorted(slices.Values(rename.Conversations)); !slices.Equal(got, slices.Sorted(slices.Values([]string{c1.ID, c2.ID}))) {
		t.Fatalf("the event goes through %v, want alice's conversations %s and %s", got, c1.ID, c2.ID)
	}
	profiles := func(app, id string) []int64 {
		t.Helper()
		evs := must[[]*tidings.Event](t)(log.UserEvents(ctx, app, id, start, 1000))
		var seqs []int64
		for _, ev := range evs {
			if ev.Name == tidings.EventProfileUpdate && ev.UserID == "alice" {
				seqs = append(seqs, ev.Seq)
			}
		}
		return seqs
	}
	for _, who := range []string{"alice", "bob"} {
		if got := profiles("a", who); !slices.Equal(got, []int64{rename.Seq}) {
			t.Errorf("%s gets alice's profile changes %v, want once: %d", who, got, rename.Seq)
		}
	}
	for _, who := range []string{"carol", "dave", "erin"} {
		if got := profiles("a", who); len(got) != 0 {
			t.Errorf("%s, who shares no conversation with alice, gets her profile changes %v", who, got)
		}
	}
	if got := profiles("b", "bob"); len(got) != 0 {
		t.Errorf("app b's bob gets app a's alice's profile %v", got)
	}
	// Resuming after the change gives nothing more; right before it, the
	// change.
	if got := must[[]*tidings.Event](t)(log.UserEvents(ctx, "a", "bob", rename.Seq, 10)); len(got) != 0 {
		t.Fatalf("after ref %d bob gets %v", rename.Seq, names(got))
	}
	if got := must[[]*tidings.Event](t)(log.UserEvents(ctx, "a", "bob", rename.Seq-1, 10)); len(got) != 1 || got[0].Seq != rename.Seq {
		t.Fatalf("after ref %d bob gets %v", rename.Seq-1, names(got))
	}
	// Carol, added later, gets the changes from then on; dave, removed, none.
	must[*tidings.Participant](t)(e.convs.AddParticipant(user("a", "alice"), c2.ID, tidings.NewParticipant{UserID: "carol"}))
	avatar := "https://example.com/alice.png"
	must[*tidings.User](t)(e.users.UpdateUser(user("a", "alice"), "alice", tidings.UserUpdate{AvatarURL: &avatar}))
	evs := e.events.take()
	again := evs[len(evs)-1]
	if got := profiles("a", "carol"); !slices.Equal(got, []int64{again.Seq}) {
		t.Errorf("carol gets %v, want only the change after she was added (%d)", got, again.Seq)
	}
	if got := profiles("a", "bob"); !slices.Equal(got, []int64{rename.Seq, again.Seq}) {
		t.Errorf("bob gets %v, want %d and %d", got, rename.Seq, again.Seq)
	}
	if got := profiles("a", "dave"); len(got) != 0 {
		t.Errorf("dave, removed, gets %v", got)
	}
	// Bob's own change does not come to him twice.
	bobName := "Bobby"
	must[*tidings.User](t)(e.users.UpdateUser(user("a", "bob"), "bob", tidings.UserUpdate{DisplayName: &bobName}))
	n := 0
	for _, ev := range must[[]*tidings.Event](t)(log.UserEvents(ctx, "a", "bob", again.Seq, 10)) {
		if ev.Name == tidings.EventProfileUpdate {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("bob gets his own change %d times", n)
	}
	// Retention removes the shares with their events.
	if _, err := log.Prune(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", "file:"+e.path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var left int
	if err := raw.QueryRow(`SELECT COUNT(*) FROM profile_shares`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 2 {
		t.Fatalf("%d profile shares left after pruning all but the newest event, bob's change (shared through his 2 conversations)", left)
	}
}

// A profile event, which everyone sharing a conversation receives, never
// carries when the user was last seen: that is presence, which the
// privacy switch may hide, and would be stale when replayed.
func TestProfileEventsDoNotCarryLastSeen(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	ctx := context.Background()
	seen := time.Now().Add(-time.Hour)
	if err := e.users.SaveLastSeen(ctx, []tidings.LastSeen{{AppID: "a", UserID: "alice", At: seen}}); err != nil {
		t.Fatal(err)
	}
	if u := must[*tidings.User](t)(e.users.FindUserByID(server("a"), "alice")); u.LastSeenAt == nil {
		t.Fatal("alice's last seen was not stored")
	}
	e.events.take()
	hidden, name := true, "Alice"
	must[*tidings.User](t)(e.users.UpdateUser(user("a", "alice"), "alice", tidings.UserUpdate{DisplayName: &name, PresenceHidden: &hidden}))
	published := e.events.take()
	if len(published) != 1 || published[0].Name != tidings.EventProfileUpdate {
		t.Fatalf("published %v", names(published))
	}
	var p tidings.ProfilePayload
	if err := json.Unmarshal(published[0].Payload, &p); err != nil || p.User == nil {
		t.Fatalf("payload %s: %v", published[0].Payload, err)
	}
	if p.User.DisplayName != name || p.User.LastSeenAt != nil {
		t.Errorf("profile.update payload %s: want the new name and no lastSeenAt", published[0].Payload)
	}
}

// SaveCursors stores many cursors at once, in statements of many: each
// moves forward only, one given twice keeps the larger seq, and a user
// who does not exist (deleted meanwhile) gets none.
func TestSaveManyCursors(t *testing.T) {
	e, _ := pair(t)
	log := sqlite.NewEventLog(e.db)
	ctx := context.Background()
	if err := log.SaveCursors(ctx, []tidings.Cursor{{AppID: "a", UserID: "bob", Device: "d5", Seq: 100}}); err != nil {
		t.Fatal(err)
	}
	var cs []tidings.Cursor
	for i := range 2500 { // more than one statement's worth
		cs = append(cs, tidings.Cursor{AppID: "a", UserID: "bob", Device: fmt.Sprint("d", i), Seq: int64(i + 1)})
	}
	cs = append(cs,
		tidings.Cursor{AppID: "a", UserID: "bob", Device: "d1", Seq: 50},
		tidings.Cursor{AppID: "a", UserID: "bob", Device: "d2", Seq: 1},
		tidings.Cursor{AppID: "a", UserID: "nobody", Device: "phone", Seq: 9},
		tidings.Cursor{AppID: "b", UserID: "bob", Device: "phone", Seq: 9})
	if err := log.SaveCursors(ctx, cs); err != nil {
		t.Fatal(err)
	}
	for device, want := range map[string]int64{"d0": 1, "d1": 50, "d2": 3, "d5": 100, "d2499": 2500} {
		if seq := must[int64](t)(log.Cursor(ctx, "a", "bob", device)); seq != want {
			t.Fatalf("cursor of %s: %d, want %d", device, seq, want)
		}
	}
	if seq := must[int64](t)(log.Cursor(ctx, "a", "nobody", "phone")); seq != 0 {
		t.Fatalf("a user who does not exist has cursor %d", seq)
	}
	if seq := must[int64](t)(log.Cursor(ctx, "b", "bob", "phone")); seq != 0 {
		t.Fatalf("bob of app b, who does not exist, has cursor %d", seq)
	}
	raw, err := sql.Open("sqlite", "file:"+e.path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var rows int
	if err := raw.QueryRow(`SELECT COUNT(*) FROM cursors WHERE user_id = 'nobody' OR app_id = 'b'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Fatalf("%d cursors of users who do not exist", rows)
	}
}

// UserConversationsAndPresence answers, in one read, what
// UserConversations and UsersPresence do for one user.
func TestUserConversationsAndPresence(t *testing.T) {
	e, conv := pair(t)
	log := sqlite.NewEventLog(e.db)
	ctx := context.Background()
	other := e.mkConv(t, "a", "bob", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "eve"}}})
	hidden := true
	must[*tidings.User](t)(e.users.UpdateUser(server("a"), "bob", tidings.UserUpdate{PresenceHidden: &hidden}))
	seen := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	if err := e.users.SaveLastSeen(ctx, []tidings.LastSeen{{AppID: "a", UserID: "bob", At: seen}}); err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"bob", "eve", "nobody"} {
		ms, p, err := log.UserConversationsAndPresence(ctx, "a", who)
		if err != nil {
			t.Fatal(err)
		}
		wantMs := must[[]tidings.Membership](t)(log.UserConversations(ctx, "a", who))
		sortMs := func(ms []tidings.Membership) {
			slices.SortFunc(ms, func(a, b tidings.Membership) int { return strings.Compare(a.ConversationID, b.ConversationID) })
		}
		sortMs(ms)
		sortMs(wantMs)
		if !slices.Equal(ms, wantMs) {
			t.Fatalf("%s: conversations %v, want %v", who, ms, wantMs)
		}
		wantP := must[[]tidings.UserPresence](t)(e.users.UsersPresence(ctx, "a", []string{who}))
		switch {
		case len(wantP) == 0 && p != nil:
			t.Fatalf("%s: presence %+v of no user", who, p)
		case len(wantP) == 1 && (p == nil || *p != wantP[0]):
			t.Fatalf("%s: presence %+v, want %+v", who, p, wantP[0])
		}
	}
	if ms, _, _ := log.UserConversationsAndPresence(ctx, "a", "bob"); len(ms) != 2 {
		t.Fatalf("bob is in %d conversations, want 2 (%s and %s)", len(ms), conv, other.ID)
	}
	if _, p, _ := log.UserConversationsAndPresence(ctx, "a", "bob"); p == nil || !p.Hidden || !p.LastSeenAt.Equal(seen) {
		t.Fatalf("bob's presence %+v, want hidden, last seen %v", p, seen)
	}
}
