package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// pair makes alice and bob in app a with a conversation between them.
func pair(t testing.TB) (*env, string) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob", "eve")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.events.take()
	return e, c.ID
}

func (e *env) send(t testing.TB, from, conv, body string) *tidings.Message {
	t.Helper()
	m, _, err := e.messages.SendMessage(user("a", from), conv, tidings.NewMessage{Parts: text(body)})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return m
}

func TestSendNumbersMessagesAndEmits(t *testing.T) {
	e, conv := pair(t)
	m1 := e.send(t, "alice", conv, "one")
	m2 := e.send(t, "bob", conv, "two")
	if m1.Seq != 1 || m2.Seq != 2 || m2.Sender.ID != "bob" || m2.Sender.DisplayName != "bob" {
		t.Fatalf("sent %+v then %+v", m1, m2)
	}
	evs := e.events.take()
	if len(evs) != 2 || evs[0].Name != tidings.EventMessageSent || evs[0].ConversationID != conv || evs[0].Actor.ID != "alice" {
		t.Fatalf("events %+v", evs)
	}
	var p tidings.MessagePayload
	if err := json.Unmarshal(evs[1].Payload, &p); err != nil || p.Message.ID != m2.ID || p.Parts[0].Data != "two" {
		t.Fatalf("payload %s (%v)", evs[1].Payload, err)
	}
	if evs[0].Seq >= evs[1].Seq {
		t.Fatalf("event log not in commit order: %d then %d", evs[0].Seq, evs[1].Seq)
	}
	got := must[*tidings.Message](t)(e.messages.FindMessage(user("a", "bob"), conv, m1.ID))
	if got.Parts[0].Data != "one" || !got.SentAt.Equal(m1.SentAt) {
		t.Fatalf("found %+v", got)
	}
}

func TestSendIsIdempotentWithClientID(t *testing.T) {
	e, conv := pair(t)
	nm := tidings.NewMessage{ClientID: "c-1", Parts: text("once")}
	m1, created1, err := e.messages.SendMessage(user("a", "alice"), conv, nm)
	if err != nil || !created1 {
		t.Fatalf("first send: created=%v err=%v", created1, err)
	}
	m2, created2, err := e.messages.SendMessage(user("a", "alice"), conv, nm)
	if err != nil || created2 || m2.ID != m1.ID || m2.Seq != 1 {
		t.Fatalf("retry: %+v created=%v err=%v; want the first message", m2, created2, err)
	}
	// The same client id from another sender is another message.
	m3, created3, err := e.messages.SendMessage(user("a", "bob"), conv, nm)
	if err != nil || !created3 || m3.Seq != 2 {
		t.Fatalf("bob's send: %+v created=%v err=%v", m3, created3, err)
	}
	if evs := e.events.take(); len(evs) != 2 {
		t.Fatalf("%d events for two messages", len(evs))
	}
}

func TestConcurrentSendsGetDistinctSeqs(t *testing.T) {
	e, conv := pair(t)
	const n = 200
	var wg sync.WaitGroup
	seqs := make([]int64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from := []string{"alice", "bob"}[i%2]
			m, _, err := e.messages.SendMessage(user("a", from), conv, tidings.NewMessage{ClientID: fmt.Sprint("m", i), Parts: text("x")})
			if err == nil {
				seqs[i] = m.Seq
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(seqs)
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("seqs not 1..%d without gaps: %v", n, seqs)
		}
	}
	if evs := e.events.take(); len(evs) != n {
		t.Fatalf("%d events for %d messages", len(evs), n)
	}
}

func TestFailingWriteDoesNotDisturbItsBatch(t *testing.T) {
	e, conv := pair(t)
	var wg sync.WaitGroup
	var okCount, badCount int
	var mu sync.Mutex
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from := "alice"
			if i%3 == 0 {
				from = "eve" // not a participant: fails inside the batch
			}
			_, _, err := e.messages.SendMessage(user("a", from), conv, tidings.NewMessage{Parts: text("x")})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				okCount++
			} else if tidings.ErrorCode(err) == tidings.ENotFound {
				badCount++
			} else {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	c := must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", "alice"), conv))
	if okCount != 66 || badCount != 34 || c.LastSeq != 66 {
		t.Fatalf("ok=%d bad=%d lastSeq=%d; want 66, 34, 66", okCount, badCount, c.LastSeq)
	}
	if evs := e.events.take(); len(evs) != 66 {
		t.Fatalf("%d events for 66 messages", len(evs))
	}
}

func ptr(n int64) *int64 { return &n }

func TestHistoryPagination(t *testing.T) {
	e, conv := pair(t)
	for i := 1; i <= 7; i++ {
		e.send(t, "alice", conv, fmt.Sprint(i))
	}
	seqs := func(p *tidings.MessagePage) []int64 {
		var s []int64
		for _, m := range p.Messages {
			s = append(s, m.Seq)
		}
		return s
	}
	list := func(f tidings.MessageFilter) *tidings.MessagePage {
		return must[*tidings.MessagePage](t)(e.messages.ListMessages(user("a", "bob"), conv, f))
	}
	// Backwards from the newest.
	p := list(tidings.MessageFilter{Limit: 3})
	if !slices.Equal(seqs(p), []int64{5, 6, 7}) || !p.HasMore {
		t.Fatalf("newest page %v more=%v", seqs(p), p.HasMore)
	}
	p = list(tidings.MessageFilter{Before: ptr(5), Limit: 3})
	if !slices.Equal(seqs(p), []int64{2, 3, 4}) || !p.HasMore {
		t.Fatalf("before 5: %v more=%v", seqs(p), p.HasMore)
	}
	p = list(tidings.MessageFilter{Before: ptr(2), Limit: 3})
	if !slices.Equal(seqs(p), []int64{1}) || p.HasMore {
		t.Fatalf("before 2: %v more=%v", seqs(p), p.HasMore)
	}
	// Forwards.
	p = list(tidings.MessageFilter{After: ptr(2), Limit: 3})
	if !slices.Equal(seqs(p), []int64{3, 4, 5}) || !p.HasMore {
		t.Fatalf("after 2: %v more=%v", seqs(p), p.HasMore)
	}
	p = list(tidings.MessageFilter{After: ptr(0), Limit: 3})
	if !slices.Equal(seqs(p), []int64{1, 2, 3}) || !p.HasMore {
		t.Fatalf("after 0: %v more=%v", seqs(p), p.HasMore)
	}
	p = list(tidings.MessageFilter{After: ptr(5), Limit: 3})
	if !slices.Equal(seqs(p), []int64{6, 7}) || p.HasMore {
		t.Fatalf("after 5: %v more=%v", seqs(p), p.HasMore)
	}
	_, err := e.messages.ListMessages(user("a", "bob"), conv, tidings.MessageFilter{Before: ptr(3), After: ptr(1)})
	wantCode(t, err, tidings.EInvalid)
}

func TestEditAndDeleteKeepReferrer(t *testing.T) {
	e, conv := pair(t)
	m := e.send(t, "alice", conv, "helo")
	e.events.take()
	_, err := e.messages.EditMessage(user("a", "bob"), conv, m.ID, tidings.MessageEdit{Parts: text("hacked")})
	wantCode(t, err, tidings.EForbidden)
	ed := must[*tidings.Message](t)(e.messages.EditMessage(user("a", "alice"), conv, m.ID, tidings.MessageEdit{Parts: text("hello")}))
	if ed.Parts[0].Data != "hello" || ed.EditedAt == nil || ed.Seq != m.Seq {
		t.Fatalf("edited %+v", ed)
	}
	_, err = e.messages.DeleteMessage(user("a", "bob"), conv, m.ID)
	wantCode(t, err, tidings.EForbidden)
	del := must[*tidings.Message](t)(e.messages.DeleteMessage(user("a", "alice"), conv, m.ID))
	if del.DeletedAt == nil || len(del.Parts) != 0 {
		t.Fatalf("deleted %+v", del)
	}
	must[*tidings.Message](t)(e.messages.DeleteMessage(user("a", "alice"), conv, m.ID)) // twice: fine
	_, err = e.messages.EditMessage(user("a", "alice"), conv, m.ID, tidings.MessageEdit{Parts: text("back")})
	wantCode(t, err, tidings.EConflict)
	got := must[*tidings.Message](t)(e.messages.FindMessage(user("a", "bob"), conv, m.ID))
	if got.DeletedAt == nil || len(got.Parts) != 0 {
		t.Fatalf("history shows %+v after delete", got)
	}
	evs := e.events.take()
	if !slices.Equal(names(evs), []string{tidings.EventMessageEdited, tidings.EventMessageDeleted}) {
		t.Fatalf("events %v", names(evs))
	}
	for _, ev := range evs {
		var p tidings.MessagePayload
		json.Unmarshal(ev.Payload, &p)
		if p.ReferrerID != m.ID {
			t.Fatalf("%s payload has referrerId %q, want %q", ev.Name, p.ReferrerID, m.ID)
		}
	}
	// A moderator (the owner) can delete someone else's message.
	b := e.send(t, "bob", conv, "spam")
	must[*tidings.Message](t)(e.messages.DeleteMessage(user("a", "alice"), conv, b.ID))
}

func TestReadMarksAndUnreadCounts(t *testing.T) {
	e, conv := pair(t)
	for i := range 3 {
		e.send(t, "alice", conv, fmt.Sprint(i))
	}
	unread := func(who string) int64 {
		c := must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", who), conv))
		return c.UnreadCount
	}
	if unread("bob") != 3 || unread("alice") != 0 {
		t.Fatalf("unread bob=%d alice=%d; want 3 and 0 (own messages are read)", unread("bob"), unread("alice"))
	}
	e.events.take()
	st := must[*tidings.MessageStatus](t)(e.messages.MarkDelivered(user("a", "bob"), conv, 3))
	if st.DeliveredSeq != 3 || st.ReadSeq != 0 || st.UnreadCount != 3 {
		t.Fatalf("after delivered: %+v", st)
	}
	st = must[*tidings.MessageStatus](t)(e.messages.MarkRead(user("a", "bob"), conv, 2))
	if st.ReadSeq != 2 || st.UnreadCount != 1 || unread("bob") != 1 {
		t.Fatalf("after read 2: %+v", st)
	}
	// Marks never move back; a read mark past the newest is refused.
	st = must[*tidings.MessageStatus](t)(e.messages.MarkRead(user("a", "bob"), conv, 1))
	if st.ReadSeq != 2 {
		t.Fatalf("read mark moved back to %d", st.ReadSeq)
	}
	_, err := e.messages.MarkRead(user("a", "bob"), conv, 4)
	wantCode(t, err, tidings.EInvalid)
	_, err = e.messages.MarkRead(user("a", "eve"), conv, 1)
	wantCode(t, err, tidings.ENotFound)
	st = must[*tidings.MessageStatus](t)(e.messages.MarkRead(user("a", "bob"), conv, 0)) // 0: everything
	if st.ReadSeq != 3 || unread("bob") != 0 {
		t.Fatalf("after read all: %+v", st)
	}
	evs := e.events.take()
	if !slices.Equal(names(evs), []string{tidings.EventMessageDelivered, tidings.EventMessageRead, tidings.EventMessageRead}) {
		t.Fatalf("events %v: one per forward move", names(evs))
	}
	var p tidings.StatusPayload
	json.Unmarshal(evs[2].Payload, &p)
	if p.ProfileID != "bob" || p.Seq != 3 || p.MessageID == "" {
		t.Fatalf("read payload %s", evs[2].Payload)
	}
	ps := must[*tidings.ParticipantPage](t)(e.convs.ListParticipants(user("a", "alice"), conv, tidings.ParticipantFilter{})).Participants
	for _, p := range ps {
		if p.ReadSeq != 3 || p.DeliveredSeq != 3 {
			t.Fatalf("participant %s marks %d/%d, want 3/3", p.UserID, p.DeliveredSeq, p.ReadSeq)
		}
	}
}

func TestMessageBadInput(t *testing.T) {
	e, conv := pair(t)
	small := e.messages
	for name, nm := range map[string]tidings.NewMessage{
		"no parts":       {},
		"part no type":   {Parts: []tidings.Part{{Data: "x"}}},
		"bad type":       {Parts: []tidings.Part{{Type: "text", Data: "x"}}},
		"bad client id":  {ClientID: "a b", Parts: text("x")},
		"metadata array": {Parts: text("x"), Metadata: json.RawMessage(`[]`)},
		"unknown file":   {Parts: []tidings.Part{{Type: "image/png", FileID: "nope"}}},
	} {
		_, _, err := small.SendMessage(user("a", "alice"), conv, nm)
		if code := tidings.ErrorCode(err); code != tidings.EInvalid {
			t.Errorf("%s: %q (%v), want invalid_argument", name, code, err)
		}
	}
	_, _, err := small.SendMessage(user("a", "alice"), conv, tidings.NewMessage{Parts: text(strings.Repeat("x", tidings.DefaultMessageSize+1))})
	wantCode(t, err, tidings.ETooLarge)
	_, _, err = small.SendMessage(user("a", "alice"), "nope", tidings.NewMessage{Parts: text("x")})
	wantCode(t, err, tidings.ENotFound)
	_, err = small.FindMessage(user("a", "alice"), conv, "nope")
	wantCode(t, err, tidings.ENotFound)
}

// Sends share per-batch state (see sendcache.go); other writes committed in
// the same batches must see and keep it right.
func TestSendsMixedWithOtherWrites(t *testing.T) {
	e, conv := pair(t)
	var wg sync.WaitGroup
	for _, who := range []string{"alice", "bob"} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 100 {
				e.send(t, who, conv, "x")
			}
		}()
		go func() {
			defer wg.Done()
			for i := range 30 {
				if who == "bob" {
					if _, err := e.messages.MarkRead(user("a", "bob"), conv, 0); err != nil {
						t.Error(err)
					}
				} else {
					name := fmt.Sprint("name ", i)
					if _, err := e.convs.UpdateConversation(user("a", "alice"), conv, tidings.ConversationUpdate{Name: &name}); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	c := must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", "alice"), conv))
	if c.LastSeq != 200 || c.Name != "name 29" {
		t.Fatalf("lastSeq %d name %q; want 200 and the last name", c.LastSeq, c.Name)
	}
	all := must[*tidings.MessagePage](t)(e.messages.ListMessages(user("a", "bob"), conv, tidings.MessageFilter{After: ptr(0), Limit: 200}))
	last := map[string]int64{}
	for i, m := range all.Messages {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
		last[m.Sender.ID] = m.Seq
	}
	for _, p := range must[*tidings.ParticipantPage](t)(e.convs.ListParticipants(user("a", "alice"), conv, tidings.ParticipantFilter{})).Participants {
		if p.ReadSeq < last[p.UserID] {
			t.Fatalf("%s read mark %d is before their own last message %d", p.UserID, p.ReadSeq, last[p.UserID])
		}
	}
	// A send after the change of roles sees it at once.
	roles := tidings.DefaultRoles()
	roles.Member.Send = false
	must[*tidings.Conversation](t)(e.convs.UpdateConversation(user("a", "alice"), conv, tidings.ConversationUpdate{Roles: &roles}))
	_, _, err := e.messages.SendMessage(user("a", "bob"), conv, tidings.NewMessage{Parts: text("x")})
	wantCode(t, err, tidings.EForbidden)
}

// The writer keeps what a send read (the conversation, the sender's role
// and profile, the last seq) from one commit to the next while only sends
// commit: every other write in between must be seen by the next send.
func TestSendSeesTheChangesMadeBetweenSends(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	send := func(from string) (*tidings.Message, error) {
		m, _, err := e.messages.SendMessage(user("a", from), c.ID, tidings.NewMessage{Parts: text("hi")})
		return m, err
	}
	mustSend := func(from string, seq int64) *tidings.Message {
		t.Helper()
		m, err := send(from)
		if err != nil {
			t.Fatalf("%s's send: %v", from, err)
		}
		if m.Seq != seq {
			t.Fatalf("%s's send got seq %d, want %d", from, m.Seq, seq)
		}
		return m
	}
	mustSend("bob", 1)
	mustSend("bob", 2)

	// A profile change.
	name := "Robert"
	must[*tidings.User](t)(e.users.UpdateUser(server("a"), "bob", tidings.UserUpdate{DisplayName: &name}))
	if m := mustSend("bob", 3); m.Sender.DisplayName != "Robert" {
		t.Fatalf("sent as %q after the profile change, want Robert", m.Sender.DisplayName)
	}

	// A message of the app's server moves the last seq.
	if _, _, err := e.messages.SendMessage(server("a"), c.ID, tidings.NewMessage{Parts: text("system")}); err != nil {
		t.Fatal(err)
	}
	mustSend("bob", 5)

	// A role that may not send; then the role back, and a mute.
	roles := tidings.DefaultRoles()
	roles.Admin.Send = false
	must[*tidings.Conversation](t)(e.convs.UpdateConversation(user("a", "alice"), c.ID, tidings.ConversationUpdate{Roles: &roles}))
	mustSend("bob", 6)
	must[*tidings.Participant](t)(e.convs.UpdateParticipant(user("a", "alice"), c.ID, "bob", tidings.RoleAdmin))
	_, err := send("bob")
	wantCode(t, err, tidings.EForbidden)
	must[*tidings.Participant](t)(e.convs.UpdateParticipant(user("a", "alice"), c.ID, "bob", tidings.RoleMember))
	mustSend("bob", 7)
	must[*tidings.Participant](t)(e.convs.MuteParticipant(user("a", "alice"), c.ID, "bob", true))
	_, err = send("bob")
	wantCode(t, err, tidings.EForbidden)
	must[*tidings.Participant](t)(e.convs.MuteParticipant(user("a", "alice"), c.ID, "bob", false))
	mustSend("bob", 8)

	// A removal.
	if err := e.convs.RemoveParticipant(user("a", "alice"), c.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err = send("bob"); err == nil {
		t.Fatal("bob sent after his removal")
	}
	mustSend("alice", 9)

	// Reopened, the conversation goes on from the seq committed.
	path := e.path
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	e = openDB(t, path)
	mustSend("alice", 10)
	conv := must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", "alice"), c.ID))
	if conv.LastSeq != 10 {
		t.Fatalf("last seq %d, want 10", conv.LastSeq)
	}

	// A deletion of the conversation.
	if err := e.convs.DeleteConversation(user("a", "alice"), c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err = send("alice"); err == nil {
		t.Fatal("alice sent to a deleted conversation")
	}
}

// The once-a-second saves of cursors and last seen times leave the send
// cache as it is (job.aside): under load they come between most sends,
// and each would otherwise have every sender read again. What the cache
// had yet to write is still written.
func TestCursorSavesKeepTheSendCache(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	c := e.mkConv(t, "a", "alice", tidings.NewConversation{Participants: []tidings.NewParticipant{{UserID: "bob"}}})
	e.sendEach(t, "a", c.ID, "alice", "bob")
	ctx := context.Background()
	log := sqlite.NewEventLog(e.db)
	if err := log.SaveCursors(ctx, []tidings.Cursor{{AppID: "a", UserID: "bob", Device: "d", Seq: 3}}); err != nil {
		t.Fatal(err)
	}
	if err := e.users.SaveLastSeen(ctx, []tidings.LastSeen{{AppID: "a", UserID: "bob", At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if n, err := sqlite.CachedSenders(e.db); err != nil || n != 2 {
		t.Fatalf("the send cache holds %d senders after the saves (err %v), want the 2 who sent", n, err)
	}
	m, _, err := e.messages.SendMessage(user("a", "bob"), c.ID, tidings.NewMessage{Parts: text("again")})
	if err != nil || m.Seq != 3 {
		t.Fatalf("the send after the saves: %+v, %v; want seq 3", m, err)
	}
	if seq, err := log.Cursor(ctx, "a", "bob", "d"); err != nil || seq != 3 {
		t.Fatalf("bob's cursor is %d (err %v), want 3", seq, err)
	}
	// What the cache wrote: the conversation's last seq and bob's marks.
	conv := must[*tidings.Conversation](t)(e.convs.FindConversationByID(user("a", "bob"), c.ID))
	if conv.LastSeq != 3 || conv.UnreadCount != 0 {
		t.Fatalf("bob sees last seq %d and %d unread, want 3 and 0 (his own messages are read)", conv.LastSeq, conv.UnreadCount)
	}
}

// A send's event names its sender as they were when it was sent, on
// replay too: a sender's profile changed between two sends shows in the
// second only.
func TestSentEventsActorFollowsTheSendersProfile(t *testing.T) {
	e, conv := pair(t)
	e.send(t, "alice", conv, "one")
	e.send(t, "alice", conv, "two")
	name := "Alice A."
	must[*tidings.User](t)(e.users.UpdateUser(user("a", "alice"), "alice", tidings.UserUpdate{DisplayName: &name}))
	e.send(t, "alice", conv, "three")
	evs := must[[]*tidings.Event](t)(sqlite.NewEventLog(e.db).UserEvents(context.Background(), "a", "bob", 0, 100))
	var names []string
	for _, ev := range evs {
		if ev.Name == tidings.EventMessageSent {
			names = append(names, ev.Actor.DisplayName)
		}
	}
	if want := []string{"alice", "alice", name}; !slices.Equal(names, want) {
		t.Fatalf("the sends' actors on replay: %q, want %q", names, want)
	}
}
