package storetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// TestMembershipSpans: a user's stream holds a conversation's events from
// the event that added them to the one that removed them, both included;
// leaving and being added again opens a second span.
func TestMembershipSpans(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "bob")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c"})
	f.send("a", "alice", "c", "before bob")
	must[*tidings.Participant](t)(f.Conversations.AddParticipant(as("a", "alice"), "c", tidings.NewParticipant{UserID: "bob"}))
	f.send("a", "alice", "c", "with bob")
	if err := f.Conversations.RemoveParticipant(as("a", "alice"), "c", "bob"); err != nil {
		t.Fatal(err)
	}
	f.send("a", "alice", "c", "bob away")
	if ms := must[[]tidings.Membership](t)(f.EventLog.UserConversations(context.Background(), "a", "bob")); len(ms) != 0 {
		t.Errorf("bob's conversations after his removal: %+v, want none", ms)
	}
	// Removed from a private conversation, bob no longer sees it.
	_, err := f.Conversations.FindConversationByID(as("a", "bob"), "c")
	wantCode(t, "a removed participant finds the conversation", err, tidings.ENotFound)
	_, err = f.Messages.ListMessages(as("a", "bob"), "c", tidings.MessageFilter{})
	wantCode(t, "a removed participant reads the history", err, tidings.ENotFound)
	_, _, err = f.Messages.SendMessage(as("a", "bob"), "c", tidings.NewMessage{Parts: text("still here?")})
	wantCode(t, "a removed participant sends", err, tidings.ENotFound)
	if page := must[*tidings.ConversationPage](t)(f.Conversations.ListConversations(as("a", "bob"), tidings.ConversationFilter{})); len(page.Conversations) != 0 {
		t.Errorf("a removed participant lists %d conversations, want none", len(page.Conversations))
	}
	must[*tidings.Participant](t)(f.Conversations.AddParticipant(as("a", "alice"), "c", tidings.NewParticipant{UserID: "bob"}))
	f.send("a", "alice", "c", "bob back")

	evs := convEvents(f.stream("a", "bob", 0), "c")
	wantNames(t, "bob's stream of the conversation", evs,
		tidings.EventParticipantAdded+"/bob", tidings.EventMessageSent+":with bob", tidings.EventParticipantRemoved+"/bob",
		tidings.EventParticipantAdded+"/bob", tidings.EventMessageSent+":bob back")
	ms := must[[]tidings.Membership](t)(f.EventLog.UserConversations(context.Background(), "a", "bob"))
	if len(ms) != 1 || ms[0].ConversationID != "c" || len(evs) != 5 || ms[0].FromSeq != evs[3].Seq {
		t.Errorf("bob's conversations %+v: want c from the event that added him again (%s)", ms, seqs(evs))
	}
	// Resuming in the middle of the log gives the rest of the stream.
	if len(evs) == 5 {
		wantNames(t, "bob's stream after his removal", convEvents(f.stream("a", "bob", evs[2].Seq), "c"),
			tidings.EventParticipantAdded+"/bob", tidings.EventMessageSent+":bob back")
	}
	ms = must[[]tidings.Membership](t)(f.EventLog.UserConversations(context.Background(), "a", "alice"))
	all := convEvents(f.stream("a", "alice", 0), "c")
	if len(ms) != 1 || len(all) == 0 || ms[0].FromSeq != all[0].Seq || all[0].Name != tidings.EventConversationCreate {
		t.Errorf("alice's conversations %+v: want c from its creation (%s)", ms, seqs(all))
	}
}

// TestWhoReceivesWhat checks docs/protocol.md "Who receives what": for
// every durable event of a scenario, the users whose stream holds it are
// the conversation's participants at the time (the one added or removed
// included), or, for profile events, the user themself.
func TestWhoReceivesWhat(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	users := []string{"alice", "bob", "carol", "dave"}
	f.mkUsers("a", users...)
	// The scenario, and the participants after each step as the docs
	// define them.
	members := map[string]bool{"alice": true, "bob": true}
	var want []map[string]bool // receivers by event, in log order
	snapshot := func(extra ...string) map[string]bool {
		m := map[string]bool{}
		for u, in := range members {
			if in {
				m[u] = true
			}
		}
		for _, u := range extra {
			m[u] = true
		}
		return m
	}
	expect := func(n int, extra ...string) {
		for range n {
			want = append(want, snapshot(extra...))
		}
	}
	start := f.lastSeq()
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c"}, "bob")
	expect(3) // create, alice added, bob added
	f.send("a", "bob", "c", "1")
	expect(1)
	must[*tidings.Participant](t)(f.Conversations.AddParticipant(as("a", "alice"), "c", tidings.NewParticipant{UserID: "carol"}))
	members["carol"] = true
	expect(1)
	must[*tidings.MessageStatus](t)(f.Messages.MarkRead(as("a", "carol"), "c", 1))
	expect(1)
	must[*tidings.Participant](t)(f.Conversations.UpdateParticipant(as("a", "alice"), "c", "carol", tidings.RoleAdmin))
	expect(1)
	must[*tidings.Conversation](t)(f.Conversations.UpdateConversation(as("a", "carol"), "c", tidings.ConversationUpdate{Name: ptr("renamed")}))
	expect(1)
	if err := f.Conversations.RemoveParticipant(as("a", "carol"), "c", "bob"); err != nil {
		t.Fatal(err)
	}
	expect(1) // bob included: his last event of the conversation
	members["bob"] = false
	m := f.send("a", "alice", "c", "2")
	expect(1)
	must[*tidings.Message](t)(f.Messages.EditMessage(as("a", "alice"), "c", m.ID, tidings.MessageEdit{Parts: text("2!")}))
	expect(1)
	if err := f.Conversations.DeleteConversation(as("a", "alice"), "c"); err != nil {
		t.Fatal(err)
	}
	expect(1)
	must[*tidings.Conversation](t)(f.Conversations.UndeleteConversation(as("a", "alice"), "c"))
	expect(1)
	must[*tidings.Message](t)(f.Messages.DeleteMessage(as("a", "carol"), "c", m.ID))
	expect(1)
	if err := f.Conversations.Leave(as("a", "carol"), "c"); err != nil {
		t.Fatal(err)
	}
	expect(1)
	members["carol"] = false
	must[*tidings.User](t)(f.Users.UpdateUser(as("a", "bob"), "bob", tidings.UserUpdate{DisplayName: ptr("Bob")}))
	profileBob := len(want)
	want = append(want, map[string]bool{"bob": true})

	// Who has each event in their stream.
	got := map[int64]map[string]bool{}
	for _, u := range users {
		for _, e := range f.stream("a", u, start) {
			if got[e.Seq] == nil {
				got[e.Seq] = map[string]bool{}
			}
			got[e.Seq][u] = true
		}
	}
	var order []int64
	for seq := range got {
		order = append(order, seq)
	}
	slices.Sort(order)
	if len(order) != len(want) {
		t.Fatalf("the scenario emitted %d events that anyone received, want %d", len(order), len(want))
	}
	for i, seq := range order {
		if fmt.Sprint(got[seq]) != fmt.Sprint(want[i]) {
			t.Errorf("event %d (step %d): received by %v, want %v", seq, i, keys(got[seq]), keys(want[i]))
		}
	}
	if !got[order[profileBob]]["bob"] || len(got[order[profileBob]]) != 1 {
		t.Errorf("bob's profile change reached %v, want bob only", keys(got[order[profileBob]]))
	}
	// dave takes part in nothing: his stream is his own profile only.
	wantNames(t, "dave's stream", f.stream("a", "dave", 0), tidings.EventProfileUpdate+"/dave")
}

func keys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestPublishedInCommitOrder: every committed event is published once,
// after its commit, in log order, as the log holds it; realtime delivery
// relies on it to go live without a gap.
func TestPublishedInCommitOrder(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "bob")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c"}, "bob")
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 5 {
				if _, _, err := f.Messages.SendMessage(as("a", "bob"), "c", tidings.NewMessage{Parts: text(fmt.Sprint(i, j))}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	must[*tidings.MessageStatus](t)(f.Messages.MarkRead(as("a", "alice"), "c", 0))
	last := f.lastSeq()
	// Publishing follows the commit: wait for the newest event.
	deadline := time.Now().Add(10 * time.Second)
	var pub []*tidings.Event
	for {
		pub = f.pub.all()
		if len(pub) > 0 && pub[len(pub)-1].Seq >= last || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := 1; i < len(pub); i++ {
		if pub[i].Seq <= pub[i-1].Seq {
			t.Fatalf("published out of order: %d after %d", pub[i].Seq, pub[i-1].Seq)
		}
	}
	bySeq := map[int64]*tidings.Event{}
	for _, e := range pub {
		bySeq[e.Seq] = e
	}
	n := 0
	for _, u := range []string{"alice", "bob"} {
		for _, e := range f.stream("a", u, 0) {
			p := bySeq[e.Seq]
			if p == nil {
				t.Errorf("event %d (%s) in %s's stream was never published", e.Seq, e.Name, u)
				continue
			}
			n++
			if p.ID != e.ID || p.Name != e.Name || p.ConversationID != e.ConversationID || p.UserID != e.UserID ||
				!bytes.Equal(compact(t, p.Payload), compact(t, e.Payload)) || !p.Time.Equal(e.Time) {
				t.Errorf("event %d published as %+v, stored as %+v", e.Seq, p, e)
			}
		}
	}
	if n == 0 {
		t.Fatal("no event in the streams")
	}
}

func compact(t testing.TB, b []byte) []byte {
	var out bytes.Buffer
	if err := jsonCompact(&out, b); err != nil {
		t.Fatalf("payload %s: %v", b, err)
	}
	return out.Bytes()
}

// TestConcurrentSenders: senders racing into one conversation get every
// seq once, without gap, and every participant's stream carries the
// messages in one order, the order of their seqs.
func TestConcurrentSenders(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	const senders, each = 8, 10
	var names []string
	for i := range senders {
		names = append(names, fmt.Sprint("u", i))
	}
	f.mkUsers("a", names...)
	f.mkConv("a", names[0], tidings.NewConversation{ID: "c"}, names[1:]...)
	start := f.lastSeq()
	var wg sync.WaitGroup
	for _, u := range names {
		wg.Go(func() {
			for j := range each {
				if _, _, err := f.Messages.SendMessage(as("a", u), "c", tidings.NewMessage{ClientID: fmt.Sprint(u, "-", j), Parts: text(u)}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	var first []int64
	for i, u := range names {
		var got []int64
		for _, e := range f.stream("a", u, start) {
			if e.Name != tidings.EventMessageSent {
				continue
			}
			var p tidings.MessagePayload
			if err := unmarshal(e.Payload, &p); err != nil || p.Message == nil {
				t.Fatalf("payload %s: %v", e.Payload, err)
			}
			got = append(got, p.Seq)
		}
		if i == 0 {
			first = got
			for j, seq := range got {
				if seq != int64(j+1) {
					t.Fatalf("%s's stream carries message seqs %v: want 1 to %d in order, each once", u, got, senders*each)
				}
			}
			if len(got) != senders*each {
				t.Fatalf("%s received %d messages, want %d", u, len(got), senders*each)
			}
		} else if !slices.Equal(got, first) {
			t.Errorf("%s's order differs from %s's", u, names[0])
		}
	}
	c := must[*tidings.Conversation](t)(f.Conversations.FindConversationByID(as("a", names[1]), "c"))
	if c.LastSeq != senders*each {
		t.Errorf("lastSeq %d, want %d", c.LastSeq, senders*each)
	}
}

// TestCursors: a device's cursor starts at 0 and never moves back; each
// device of each user of each app has its own.
func TestCursors(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "bob")
	ctx := context.Background()
	cursor := func(app, user, device string) int64 {
		t.Helper()
		return must[int64](t)(f.EventLog.Cursor(ctx, app, user, device))
	}
	if c := cursor("a", "alice", "phone"); c != 0 {
		t.Errorf("a new device's cursor is %d, want 0", c)
	}
	save := func(cs ...tidings.Cursor) {
		t.Helper()
		if err := f.EventLog.SaveCursors(ctx, cs); err != nil {
			t.Fatal(err)
		}
	}
	save(tidings.Cursor{AppID: "a", UserID: "alice", Device: "phone", Seq: 5},
		tidings.Cursor{AppID: "a", UserID: "alice", Device: "laptop", Seq: 2})
	save(tidings.Cursor{AppID: "a", UserID: "alice", Device: "phone", Seq: 3})
	if c := cursor("a", "alice", "phone"); c != 5 {
		t.Errorf("cursor after saving 5 then 3: %d, want 5 (never back)", c)
	}
	save(tidings.Cursor{AppID: "a", UserID: "alice", Device: "phone", Seq: 9})
	for _, tc := range []struct {
		app, user, device string
		want              int64
	}{{"a", "alice", "phone", 9}, {"a", "alice", "laptop", 2}, {"a", "bob", "phone", 0}, {"b", "alice", "phone", 0}} {
		if c := cursor(tc.app, tc.user, tc.device); c != tc.want {
			t.Errorf("cursor of %s/%s/%s: %d, want %d", tc.app, tc.user, tc.device, c, tc.want)
		}
	}
	// One write that mixes a stored device moving back, a stored device
	// moving on, a new device, and the same device twice: each ends at the
	// highest it was given, never below what it had.
	save(tidings.Cursor{AppID: "a", UserID: "alice", Device: "phone", Seq: 7},
		tidings.Cursor{AppID: "a", UserID: "alice", Device: "laptop", Seq: 6},
		tidings.Cursor{AppID: "a", UserID: "bob", Device: "tablet", Seq: 8},
		tidings.Cursor{AppID: "a", UserID: "bob", Device: "tablet", Seq: 4},
		tidings.Cursor{AppID: "a", UserID: "alice", Device: "laptop", Seq: 11},
		tidings.Cursor{AppID: "a", UserID: "alice", Device: "laptop", Seq: 10})
	for _, tc := range []struct {
		device, user string
		want         int64
	}{{"phone", "alice", 9}, {"laptop", "alice", 11}, {"tablet", "bob", 8}} {
		if c := cursor("a", tc.user, tc.device); c != tc.want {
			t.Errorf("after a mixed write, cursor of %s/%s: %d, want %d", tc.user, tc.device, c, tc.want)
		}
	}
	save() // nothing to save is fine
	// A user who does not exist (deleted meanwhile) gets none.
	save(tidings.Cursor{AppID: "a", UserID: "ghost", Device: "phone", Seq: 4})
	if c := cursor("a", "ghost", "phone"); c != 0 {
		t.Errorf("the cursor of an unknown user: %d, want none (0)", c)
	}
}

// TestRetention: pruning removes old events but always keeps the newest;
// a reader resuming from before what is kept is told to resync.
func TestRetention(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c"})
	f.send("a", "alice", "c", "old")
	f.send("a", "alice", "c", "newest")
	last := f.lastSeq()
	ctx := context.Background()
	if n, err := f.EventLog.Prune(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("pruning events older than an hour ago: %d removed, %v; want none", n, err)
	}
	if len(f.stream("a", "alice", 0)) == 0 {
		t.Fatal("empty stream")
	}
	n, err := f.EventLog.Prune(ctx, time.Now().Add(time.Hour))
	if err != nil || n == 0 {
		t.Fatalf("pruning everything: %d removed, %v", n, err)
	}
	if got := f.lastSeq(); got != last {
		t.Errorf("last seq after pruning %d, want %d: the newest event is kept", got, last)
	}
	_, err = f.EventLog.UserEvents(ctx, "a", "alice", 0, 10)
	wantCode(t, "resume from before the pruned events", err, tidings.EResyncRequired)
	if want := fmt.Sprintf("kept from %d", last); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("resume from before the pruned events: %v, want it to say %q", err, want)
	}
	// The same check without the read (realtime.KeptChecker), where the
	// store has it.
	if k, ok := f.EventLog.(interface {
		Kept(ctx context.Context, after int64) error
	}); ok {
		wantCode(t, "Kept from before the pruned events", k.Kept(ctx, 0), tidings.EResyncRequired)
		for _, after := range []int64{last - 1, last} {
			if err := k.Kept(ctx, after); err != nil {
				t.Errorf("Kept(%d), the newest being %d: %v", after, last, err)
			}
		}
	}
	evs, err := f.EventLog.UserEvents(ctx, "a", "alice", last-1, 10)
	if err != nil || len(evs) != 1 || evs[0].Seq != last {
		t.Errorf("resume after the last pruned event: %q, %v; want the newest event", describe(evs), err)
	}
	if evs, err := f.EventLog.UserEvents(ctx, "a", "alice", last, 10); err != nil || len(evs) != 0 {
		t.Errorf("resume after the newest: %q, %v", describe(evs), err)
	}
	// The store goes on after a prune.
	f.send("a", "alice", "c", "after")
	if got := f.lastSeq(); got <= last {
		t.Errorf("last seq %d after a send following a prune, want more than %d", got, last)
	}
}

// TestTenantIsolation: apps share nothing, even with the same user and
// conversation ids.
func TestTenantIsolation(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	f.mkUsers("a", "alice", "bob")
	f.mkUsers("b", "alice", "mallory")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c", Name: "in a"}, "bob")
	f.send("a", "alice", "c", "for app a")
	f.mkConv("b", "alice", tidings.NewConversation{ID: "d", Name: "in b"}, "mallory")

	_, err := f.Conversations.FindConversationByID(as("b", "alice"), "c")
	wantCode(t, "b's alice finds a's conversation", err, tidings.ENotFound)
	_, err = f.Messages.ListMessages(as("b", "alice"), "c", tidings.MessageFilter{})
	wantCode(t, "b's alice reads a's history", err, tidings.ENotFound)
	_, err = f.Users.FindUserByID(as("b", "mallory"), "bob")
	wantCode(t, "b's user finds a's user", err, tidings.ENotFound)
	_, err = f.Conversations.AddParticipant(as("b", "alice"), "d", tidings.NewParticipant{UserID: "bob"})
	wantCode(t, "add a's user to b's conversation", err, tidings.ENotFound)
	_, err = f.Users.UpdateUser(server("b"), "bob", tidings.UserUpdate{DisplayName: ptr("x")})
	wantCode(t, "b's server updates a's user", err, tidings.ENotFound)
	for _, u := range must[[]*tidings.User](t)(f.Users.ListUsers(server("b"), tidings.UserFilter{})) {
		if u.ID == "bob" {
			t.Errorf("b lists a's user bob")
		}
	}
	for _, c := range must[*tidings.ConversationPage](t)(f.Conversations.ListConversations(as("b", "alice"), tidings.ConversationFilter{})).Conversations {
		if c.ID != "d" {
			t.Errorf("b's alice lists %s", c.ID)
		}
	}
	for _, e := range f.stream("b", "alice", 0) {
		if e.AppID != "b" || e.ConversationID == "c" {
			t.Errorf("b's alice received %s of app %s, conversation %s", e.Name, e.AppID, e.ConversationID)
		}
	}
	for _, e := range f.stream("a", "alice", 0) {
		if e.AppID != "a" {
			t.Errorf("a's alice received %s of app %s", e.Name, e.AppID)
		}
	}
	if ms := must[[]tidings.Membership](t)(f.EventLog.UserConversations(context.Background(), "b", "alice")); len(ms) != 1 || ms[0].ConversationID != "d" {
		t.Errorf("b's alice's conversations %+v, want d only", ms)
	}
}

// TestFiles: participants upload and fetch files; others cannot; files over
// the limit are refused.
func TestFiles(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	if f.Files == nil {
		t.Skip("the store has no file service")
	}
	f.mkUsers("a", "alice", "bob", "eve")
	f.mkUsers("b", "alice")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c"}, "bob")
	content := strings.Repeat("pixel", 100)
	file := must[*tidings.File](t)(f.Files.CreateFile(as("a", "alice"), "c", "cat.png", "image/png", strings.NewReader(content)))
	if file.ID == "" || file.Size != int64(len(content)) || file.Name != "cat.png" || file.UploaderID != "alice" || file.ConversationID != "c" {
		t.Errorf("uploaded %+v", file)
	}
	got, rc, err := f.Files.OpenFile(as("a", "bob"), "c", file.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != content || got.Type != "image/png" {
		t.Errorf("bob opens %+v: %d bytes, %v", got, len(b), err)
	}
	for what, ctx := range map[string]context.Context{"a non-participant": as("a", "eve"), "another app's alice": as("b", "alice")} {
		_, err := f.Files.FindFile(ctx, "c", file.ID)
		wantCode(t, what+" finds the file", err, tidings.ENotFound)
		_, _, err = f.Files.OpenFile(ctx, "c", file.ID)
		wantCode(t, what+" opens the file", err, tidings.ENotFound)
		_, err = f.Files.CreateFile(ctx, "c", "x", "text/plain", strings.NewReader("x"))
		wantCode(t, what+" uploads", err, tidings.ENotFound)
	}
	if f.MaxFileBytes > 0 {
		_, err = f.Files.CreateFile(as("a", "alice"), "c", "big", "application/octet-stream", io.LimitReader(zeros{}, f.MaxFileBytes+1))
		wantCode(t, "upload over the limit", err, tidings.ETooLarge)
	}
	// A part that names the file takes its name and size. (The Part type's
	// doc says its type defaults to the file's too, but the REST API
	// requires it: the suite gives it.)
	m, _, err := f.Messages.SendMessage(as("a", "bob"), "c", tidings.NewMessage{Parts: []tidings.Part{{Type: "image/png", FileID: file.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	if p := m.Parts[0]; p.Name != "cat.png" || p.Type != "image/png" || p.Size != int64(len(content)) {
		t.Errorf("file part %+v: want the file's name, type and size", p)
	}
	_, _, err = f.Messages.SendMessage(as("a", "bob"), "c", tidings.NewMessage{Parts: []tidings.Part{{Type: "image/png", FileID: "nope"}}})
	if err == nil {
		t.Errorf("a part naming an unknown file was accepted")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
