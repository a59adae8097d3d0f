package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/disk"
)

// queueAs is queue for any caller (ctx carries it).
func queueAs(msgs *MessageService, ctx context.Context, conv string, nm tidings.NewMessage) <-chan sent {
	out := make(chan sent, 1)
	queued := make(chan struct{})
	once := sync.OnceFunc(func() { close(queued) })
	ctx = tidings.NewContextWithQueued(ctx, once)
	go func() {
		m, created, err := msgs.SendMessage(ctx, conv, nm)
		once()
		out <- sent{m, created, err}
	}()
	<-queued
	return out
}

// TestSendBatchSystemAndMuted: in one batch of sends, the app's server's
// system messages are stored with no sender and events with no actor,
// once per client id (within the batch, and against one sent before);
// they move nobody's marks; a muted participant's send is refused alone.
// Sent again one at a time (a statement of the batch refused), the same.
func TestSendBatchSystemAndMuted(t *testing.T) {
	db := fixture(t, nil, "alice", "bob")
	convs := NewConversationService(db)
	for _, nc := range []tidings.NewConversation{{ID: "gate"},
		{ID: "c", Participants: []tidings.NewParticipant{{UserID: "bob"}}}} {
		if _, err := convs.CreateConversation(userCtx("a", "alice"), nc); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := convs.MuteParticipant(serverCtx("a"), "c", "bob", true); err != nil {
		t.Fatal(err)
	}
	msgs := NewMessageService(db, 0)
	srv := serverCtx("a")
	old, _, err := msgs.SendMessage(srv, "c", tidings.NewMessage{ClientID: "old", Parts: text("old")})
	if err != nil || !old.System || old.Seq != 1 {
		t.Fatalf("a system message alone: %+v, %v", old, err)
	}

	for _, refused := range []bool{false, true} {
		k := fmt.Sprint("k", refused)
		g := closeGate(t, db)
		first := queueAs(msgs, srv, "c", tidings.NewMessage{ClientID: k, Parts: text("first")})
		muted := queue(msgs, "bob", "c", tidings.NewMessage{Parts: text("let me speak")})
		again := queueAs(msgs, srv, "c", tidings.NewMessage{ClientID: k, Parts: text("again")})
		oldAgain := queueAs(msgs, srv, "c", tidings.NewMessage{ClientID: "old", Parts: text("old, again")})
		alice := queue(msgs, "alice", "c", tidings.NewMessage{Parts: text("hi")})
		if refused {
			// The server refuses this one's insert: each send runs alone.
			_ = queue(msgs, "alice", "c", tidings.NewMessage{Parts: text("bad"), Alert: "nul \x00 byte"})
		}
		g.pass()
		f, m, a, o, al := answer(t, first), answer(t, muted), answer(t, again), answer(t, oldAgain), answer(t, alice)
		if code := tidings.ErrorCode(m.err); code != tidings.EForbidden {
			t.Errorf("refused %v: the muted participant's send: %v, want forbidden", refused, m.err)
		}
		if f.err != nil || !f.created || !f.m.System || f.m.Sender.ID != "" {
			t.Fatalf("refused %v: the system message: %+v, created %v, %v", refused, f.m, f.created, f.err)
		}
		if a.err != nil || a.created || a.m.ID != f.m.ID || a.m.Parts[0].Data != "first" || !a.m.System {
			t.Errorf("refused %v: its client id again: %+v, created %v, %v", refused, a.m, a.created, a.err)
		}
		if o.err != nil || o.created || o.m.ID != old.ID || !o.m.System {
			t.Errorf("refused %v: a client id used before: %+v, created %v, %v", refused, o.m, o.created, o.err)
		}
		if al.err != nil || al.m.Seq != f.m.Seq+1 || al.m.System {
			t.Fatalf("refused %v: alice's message after it: %+v, %v", refused, al.m, al.err)
		}
		var actor *string
		if err := db.queryRow(context.Background(), `SELECT actor::text FROM events WHERE name = $1 AND payload->>'id' = $2`,
			tidings.EventMessageSent, f.m.ID).Scan(&actor); err != nil || actor != nil {
			t.Errorf("refused %v: the system message's event has actor %v (%v), want none", refused, actor, err)
		}
		got, err := msgs.FindMessage(userCtx("a", "bob"), "c", f.m.ID)
		if err != nil || !got.System || got.Sender.ID != "" || got.Sender.DisplayName != "" {
			t.Errorf("refused %v: bob reads the system message: %+v, %v", refused, got, err)
		}
		// Marks: alice's moved to her message, bob's nowhere.
		for user, want := range map[string]int64{"alice": al.m.Seq, "bob": 0} {
			p, err := convs.readParticipant(context.Background(), "a", "c", user)
			if err != nil || p.ReadSeq != want || p.DeliveredSeq != want {
				t.Errorf("refused %v: %s's marks: %+v, %v; want %d", refused, user, p, err, want)
			}
		}
	}
}

// TestServerUploadQuota: the app's server's uploads (no uploader) are
// bounded by the app's quota only, never by a user's; they count in the
// app's, and a muted participant cannot upload.
func TestServerUploadQuota(t *testing.T) {
	env := newFileEnv(t)
	files := NewFileService(env.db, disk.NewBlobStore(t.TempDir()), 0)
	files.UserQuota, files.AppQuota = 5, 20
	srv := serverCtx("a")
	f, err := files.CreateFile(srv, env.conv, "a.txt", "text/plain", strings.NewReader("0123456789"))
	if err != nil || f.UploaderID != "" || f.Size != 10 {
		t.Fatalf("the server uploads past a user's quota: %+v, %v", f, err)
	}
	if _, err := files.CreateFile(userCtx("a", "bob"), env.conv, "b.txt", "text/plain", strings.NewReader("01234")); err != nil {
		t.Fatalf("bob's upload within his quota: %v", err)
	}
	_, err = files.CreateFile(srv, env.conv, "c.txt", "text/plain", strings.NewReader("0123456789"))
	wantCode(t, err, tidings.ERateLimited) // 10 + 5 + 10 > 20

	if _, err := NewConversationService(env.db).MuteParticipant(srv, env.conv, "bob", true); err != nil {
		t.Fatal(err)
	}
	files.UserQuota, files.AppQuota = 0, 0
	_, err = files.CreateFile(userCtx("a", "bob"), env.conv, "d.txt", "text/plain", strings.NewReader("x"))
	wantCode(t, err, tidings.EForbidden)
}
