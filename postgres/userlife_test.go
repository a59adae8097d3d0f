package postgres

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidings/tidings"
	"github.com/tidings/tidings/disk"
)

// TestDeleteUserLeavesNoRow: once a user is deleted, no row of any table
// of the database names them (their id, display name or identifier), nor,
// when their messages are erased, holds what they wrote or uploaded; the
// contents of their files go with the next removal of unattached files.
// As sqlite's test of the same name.
func TestDeleteUserLeavesNoRow(t *testing.T) {
	for _, mode := range []tidings.MessagesOfDeleted{tidings.EraseMessages, tidings.AnonymizeMessages} {
		t.Run(string(mode), func(t *testing.T) {
			const zed = "zed-9q"
			db := fixture(t, nil, "alice", "bob", zed)
			users, convs, msgs := NewUserService(db), NewConversationService(db), NewMessageService(db, 0)
			blobs := filepath.Join(t.TempDir(), "files")
			files := NewFileService(db, disk.NewBlobStore(blobs), 1<<20)
			push := NewPushService(db)
			ctx := context.Background()
			z, alice := userCtx("a", zed), userCtx("a", "alice")
			check := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			_, err := convs.CreateConversation(z, tidings.NewConversation{ID: "c",
				Participants: []tidings.NewParticipant{{UserID: "alice"}, {UserID: "bob"}}})
			check(err)
			_, err = convs.CreateConversation(alice, tidings.NewConversation{ID: "d",
				Participants: []tidings.NewParticipant{{UserID: zed, Role: tidings.RoleAdmin}}})
			check(err)
			_, err = users.UpdateUser(serverCtx("a"), zed, tidings.UserUpdate{DisplayName: ptr("Zed Q"),
				Identifier: &tidings.Identifier{Value: "zq@example.com", Kind: "email"}})
			check(err)
			m, _, err := msgs.SendMessage(z, "c", tidings.NewMessage{ClientID: "z1", Parts: text("secret from Z")})
			check(err)
			_, err = msgs.EditMessage(z, "c", m.ID, tidings.MessageEdit{Parts: text("secret from Z, edited")})
			check(err)
			f, err := files.CreateFile(z, "c", "z.txt", "text/plain", strings.NewReader("file from Z"))
			check(err)
			_, _, err = msgs.SendMessage(z, "c", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", FileID: f.ID}}})
			check(err)
			_, _, err = msgs.SendMessage(z, "d", tidings.NewMessage{Parts: text("more from Z")})
			check(err)
			_, _, err = msgs.SendMessage(alice, "c", tidings.NewMessage{Parts: text("hi")})
			check(err)
			_, err = msgs.MarkRead(z, "c", 0)
			check(err)
			_, err = msgs.MarkDelivered(alice, "c", 0)
			check(err)
			_, err = convs.UpdateParticipant(z, "c", "bob", tidings.RoleAdmin)
			check(err)
			check(convs.RemoveParticipant(z, "c", "bob"))
			check(convs.Leave(z, "d"))
			_, err = convs.AddParticipant(alice, "d", tidings.NewParticipant{UserID: zed})
			check(err)
			check(NewEventLog(db).SaveCursors(ctx, []tidings.Cursor{{AppID: "a", UserID: zed, Device: "phone", Seq: 3}}))
			check(users.SaveLastSeen(ctx, []tidings.LastSeen{{AppID: "a", UserID: zed, At: time.Now()}}))
			_, err = push.RegisterPushTarget(z, tidings.NewPushTarget{Kind: tidings.PushFCM, Token: "token-of-" + zed})
			check(err)
			_, err = push.UpdatePushSettings(z, tidings.PushSettingsUpdate{Enabled: new(bool)})
			check(err)
			check(push.MuteConversation(z, "c", true))
			_, err = users.DeactivateUser(serverCtx("a"), zed)
			check(err)
			_, err = users.RevokeTokens(serverCtx("a"), zed)
			check(err)
			// Before: the scan finds them in the tables that name them, so
			// that it is known to look.
			found := strings.Join(scanTables(t, db, zed), "\n")
			for _, table := range []string{"users", "participants", "memberships", "cursors", "events", "profile_shares",
				"messages", "files", "conversations", "push_targets", "push_settings", "push_mutes"} {
				if !strings.Contains(found, table+": ") {
					t.Errorf("before the deletion, the scan finds the user in no row of %s", table)
				}
			}

			check(users.DeleteUser(serverCtx("a"), zed, mode))
			_, err = files.RemoveUnattached(ctx, 0)
			check(err)
			traces := []string{zed, "Zed Q", "zq@example.com"}
			if mode == tidings.EraseMessages {
				traces = append(traces, "from Z", "z.txt")
			}
			for _, s := range traces {
				for _, row := range scanTables(t, db, s) {
					t.Errorf("after the deletion, %q is in %s", s, row)
				}
			}
			var blobsLeft []string
			filepath.WalkDir(blobs, func(path string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					blobsLeft = append(blobsLeft, path)
				}
				return nil
			})
			if mode == tidings.EraseMessages && len(blobsLeft) != 0 {
				t.Errorf("the erased user's file contents stay: %v", blobsLeft)
			}
			if mode == tidings.AnonymizeMessages && len(blobsLeft) != 1 {
				t.Errorf("the anonymized user's file contents: %v, want the one file kept", blobsLeft)
			}
		})
	}
}

// scanTables returns the rows of every table of the database that hold s
// in any column, as "table: row" (the row in JSON).
func scanTables(t *testing.T, db *DB, s string) []string {
	t.Helper()
	ctx := context.Background()
	rows, err := db.pool.Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) < 15 {
		t.Fatalf("only tables %v", tables)
	}
	var found []string
	for _, table := range tables {
		rows, err := db.pool.Query(ctx, `SELECT row_to_json(t)::text FROM `+pgx.Identifier{table}.Sanitize()+` AS t`)
		if err != nil {
			t.Fatal(err)
		}
		all, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range all {
			if strings.Contains(row, s) {
				found = append(found, table+": "+row)
			}
		}
	}
	return found
}

// TestDeleteUserWhileOthersWrite: a user is deleted on one node while, on
// others, the participants of their conversations send to them (and the
// user sends and uploads too), and the user's cursors, pushes and
// participations change.
// The deletion neither deadlocks nor fails; every other send is stored;
// each conversation's messages stay numbered without gap, in the order
// of their events' positions; and no row names the user afterwards.
func TestDeleteUserWhileOthersWrite(t *testing.T) {
	dbs := openNodes(t, 3, "")
	ctx := context.Background()
	if _, err := NewAppService(dbs[0]).CreateApp(ctx, "a", "app"); err != nil {
		t.Fatal(err)
	}
	const zed = "zed-9q"
	for _, u := range []string{"alice", "bob", zed} {
		if _, err := NewUserService(dbs[0]).CreateUser(serverCtx("a"), &tidings.User{ID: u}); err != nil {
			t.Fatal(err)
		}
	}
	conversations := []string{"c1", "c2", "c3", "c4"}
	for _, id := range conversations {
		if _, err := NewConversationService(dbs[1]).CreateConversation(userCtx("a", "alice"), tidings.NewConversation{ID: id,
			Participants: []tidings.NewParticipant{{UserID: "bob"}, {UserID: zed}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewConversationService(dbs[1]).CreateConversation(userCtx("a", "alice"), tidings.NewConversation{ID: "later"}); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	// tolerated says whether an error is one the deletion may cause to a
	// change by or about the deleted user.
	tolerated := func(err error) bool {
		switch tidings.ErrorCode(err) {
		case tidings.ENotFound, tidings.EForbidden, tidings.EUnauthenticated:
			return true
		}
		return false
	}
	for i, u := range []string{"alice", "bob", zed} {
		msgs := NewMessageService(dbs[1+i%2], 0)
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				conv := conversations[n%len(conversations)]
				_, _, err := msgs.SendMessage(userCtx("a", u), conv, tidings.NewMessage{Parts: text(fmt.Sprint(u, " ", n))})
				if err != nil && (u != zed || !tolerated(err)) {
					t.Errorf("%s sends to %s: %v", u, conv, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		log, push := NewEventLog(dbs[2]), NewPushService(dbs[2])
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := log.SaveCursors(ctx, []tidings.Cursor{{AppID: "a", UserID: zed, Device: "phone", Seq: int64(n)},
				{AppID: "a", UserID: "alice", Device: "phone", Seq: int64(n)}}); err != nil {
				t.Errorf("save cursors: %v", err)
				return
			}
			_, err := push.RegisterPushTarget(userCtx("a", zed), tidings.NewPushTarget{Kind: tidings.PushFCM, Token: fmt.Sprint("t", n%3)})
			if err == nil {
				_, err = push.UpdatePushSettings(userCtx("a", zed), tidings.PushSettingsUpdate{Enabled: ptr(n%2 == 0)})
			}
			if err == nil {
				err = push.MuteConversation(userCtx("a", zed), conversations[n%len(conversations)], n%2 == 0)
			}
			if err != nil && !tolerated(err) {
				t.Errorf("zed's pushes: %v", err)
				return
			}
		}
	})
	wg.Go(func() {
		files := NewFileService(dbs[2], disk.NewBlobStore(t.TempDir()), 1<<20)
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			_, err := files.CreateFile(userCtx("a", zed), conversations[n%len(conversations)], "z.txt", "text/plain", strings.NewReader("from Z"))
			if err != nil && !tolerated(err) {
				t.Errorf("zed uploads: %v", err)
				return
			}
		}
	})
	// Someone adds zed to a conversation of theirs while the deletion
	// runs: either comes first.
	wg.Go(func() {
		_, err := NewConversationService(dbs[2]).AddParticipant(userCtx("a", "alice"), "later", tidings.NewParticipant{UserID: zed})
		if err != nil && !tolerated(err) {
			t.Errorf("add zed to a conversation: %v", err)
		}
	})

	// Let the writers get going, then delete zed.
	waitFor(t, "messages from every sender", func() bool {
		var n int
		dbs[0].pool.QueryRow(ctx, `SELECT count(DISTINCT sender_id) FROM messages`).Scan(&n)
		return n == 3
	})
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := NewUserService(dbs[0]).DeleteUser(tidings.NewContextWithCaller(dctx, tidings.Caller{AppID: "a", Server: true}), zed, tidings.EraseMessages)
	cancel()
	// A little more of the others' writing after it.
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("delete zed while others write: %v", err)
	}
	for _, row := range scanTables(t, dbs[0], zed) {
		t.Errorf("after the deletion, zed is in %s", row)
	}
	// Each conversation: messages 1..n, their sent events' positions in
	// the order of their seqs, the deletion's events after them all.
	for _, conv := range conversations {
		rows, err := dbs[0].pool.Query(ctx, `SELECT name, coalesce((payload->>'seq')::bigint, 0) FROM events
			WHERE app_id = 'a' AND conversation_id = $1 ORDER BY seq`, conv)
		if err != nil {
			t.Fatal(err)
		}
		var last int64
		removed := false
		for rows.Next() {
			var name string
			var seq int64
			if err := rows.Scan(&name, &seq); err != nil {
				t.Fatal(err)
			}
			switch name {
			case tidings.EventMessageSent:
				if seq != last+1 {
					t.Errorf("%s: message %d sent after message %d", conv, seq, last)
				}
				last = seq
			case tidings.EventParticipantRemoved:
				removed = true
			}
		}
		rows.Close()
		if !removed {
			t.Errorf("%s: no participantRemoved for the deleted user", conv)
		}
		var count, top int64
		if err := dbs[0].pool.QueryRow(ctx, `SELECT count(*), coalesce(max(seq), 0) FROM messages WHERE app_id = 'a' AND conversation_id = $1`,
			conv).Scan(&count, &top); err != nil {
			t.Fatal(err)
		}
		if count != top || top != last {
			t.Errorf("%s: %d messages up to seq %d, the last sent event %d", conv, count, top, last)
		}
		var participants, counted int64
		if err := dbs[0].pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM participants WHERE app_id = 'a' AND conversation_id = $1),
			participant_count FROM conversations WHERE app_id = 'a' AND id = $1`, conv).Scan(&participants, &counted); err != nil {
			t.Fatal(err)
		}
		if participants != 2 || counted != 2 {
			t.Errorf("%s: %d participants, counted %d; want alice and bob", conv, participants, counted)
		}
	}
}

// TestDeleteUserJoinedMeanwhile: a user added to a conversation after the
// deletion read their conversations, and before it locked the user, is
// removed from it too, the deletion queued for that conversation as well
// (it runs again).
func TestDeleteUserJoinedMeanwhile(t *testing.T) {
	const zed = "zed-9q"
	db := fixture(t, nil, "alice", zed)
	ctx := context.Background()
	for _, id := range []string{"c", "e"} {
		var ps []tidings.NewParticipant
		if id == "c" {
			ps = append(ps, tidings.NewParticipant{UserID: zed})
		}
		if _, err := NewConversationService(db).CreateConversation(userCtx("a", "alice"), tidings.NewConversation{ID: id, Participants: ps}); err != nil {
			t.Fatal(err)
		}
	}
	// A transaction adding zed to e holds zed's row (the participant's
	// foreign key) while the deletion starts.
	holder, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx)
	if _, err := holder.Exec(ctx, `INSERT INTO participants (app_id, conversation_id, user_id, role, joined_at)
		VALUES ('a', 'e', $1, 'member', now())`, zed); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- NewUserService(db).DeleteUser(serverCtx("a"), zed, tidings.AnonymizeMessages) }()
	waitFor(t, "the deletion to wait for zed's row", func() bool {
		var n int
		db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event IN ('transactionid', 'tuple')`).Scan(&n)
		return n == 1
	})
	if _, err := holder.Exec(ctx, `UPDATE conversations SET participant_count = participant_count + 1 WHERE app_id = 'a' AND id = 'e'`); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, `INSERT INTO memberships (app_id, conversation_id, user_id, from_seq) VALUES ('a', 'e', $1, 0)`, zed); err != nil {
		t.Fatal(err)
	}
	// A change of e (another node's send) is under way: the deletion,
	// now that it knows of e, queues for it.
	sender, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Rollback(ctx)
	if _, err := sender.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('a/e', 0))`); err != nil {
		t.Fatal(err)
	}
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deletion to queue for e", func() bool {
		var n int
		db.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'`).Scan(&n)
		return n == 1
	})
	if err := sender.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("delete: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the deletion does not end")
	}
	for _, row := range scanTables(t, db, zed) {
		t.Errorf("after the deletion, zed is in %s", row)
	}
	var count int
	if err := db.pool.QueryRow(ctx, `SELECT participant_count FROM conversations WHERE app_id = 'a' AND id = 'e'`).Scan(&count); err != nil || count != 1 {
		t.Errorf("e counts %d participants (%v), want alice alone", count, err)
	}
}
