package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/disk"
	"github.com/tidings/tidings/sqlite"
)

// TestDeleteUserLeavesNoRow: once a user is deleted, no row of any table
// of the database names them (their id, display name or identifier), nor,
// when their messages are erased, holds what they wrote or uploaded; the
// contents of their files go with the next removal of unattached files.
func TestDeleteUserLeavesNoRow(t *testing.T) {
	for _, mode := range []tidings.MessagesOfDeleted{tidings.EraseMessages, tidings.AnonymizeMessages} {
		t.Run(string(mode), func(t *testing.T) {
			e := newEnv(t)
			blobs := filepath.Join(t.TempDir(), "files")
			files := sqlite.NewFileService(e.db, disk.NewBlobStore(blobs), 1<<20)
			log := sqlite.NewEventLog(e.db)
			const zed = "zed-9q"
			e.mkUsers(t, "a", "alice", "bob", zed)
			z := user("a", zed)
			must[*tidings.Conversation](t)(e.convs.CreateConversation(z, tidings.NewConversation{ID: "c",
				Participants: []tidings.NewParticipant{{UserID: "alice"}, {UserID: "bob"}}}))
			must[*tidings.Conversation](t)(e.convs.CreateConversation(user("a", "alice"), tidings.NewConversation{ID: "d",
				Participants: []tidings.NewParticipant{{UserID: zed, Role: tidings.RoleAdmin}}}))
			must[*tidings.User](t)(e.users.UpdateUser(server("a"), zed, tidings.UserUpdate{DisplayName: strPtr("Zed Q"),
				Identifier: &tidings.Identifier{Value: "zq@example.com", Kind: "email"}}))
			m, _, err := e.messages.SendMessage(z, "c", tidings.NewMessage{ClientID: "z1", Parts: text("secret from Z")})
			if err != nil {
				t.Fatal(err)
			}
			must[*tidings.Message](t)(e.messages.EditMessage(z, "c", m.ID, tidings.MessageEdit{Parts: text("secret from Z, edited")}))
			f := must[*tidings.File](t)(files.CreateFile(z, "c", "z.txt", "text/plain", strings.NewReader("file from Z")))
			if _, _, err := e.messages.SendMessage(z, "c", tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", FileID: f.ID}}}); err != nil {
				t.Fatal(err)
			}
			if _, _, err := e.messages.SendMessage(z, "d", tidings.NewMessage{Parts: text("more from Z")}); err != nil {
				t.Fatal(err)
			}
			if _, _, err := e.messages.SendMessage(user("a", "alice"), "c", tidings.NewMessage{Parts: text("hi")}); err != nil {
				t.Fatal(err)
			}
			must[*tidings.MessageStatus](t)(e.messages.MarkRead(z, "c", 0))
			must[*tidings.MessageStatus](t)(e.messages.MarkDelivered(user("a", "alice"), "c", 0))
			must[*tidings.Participant](t)(e.convs.UpdateParticipant(z, "c", "bob", tidings.RoleAdmin))
			if err := e.convs.RemoveParticipant(z, "c", "bob"); err != nil {
				t.Fatal(err)
			}
			if err := e.convs.Leave(z, "d"); err != nil {
				t.Fatal(err)
			}
			must[*tidings.Participant](t)(e.convs.AddParticipant(user("a", "alice"), "d", tidings.NewParticipant{UserID: zed}))
			if err := log.SaveCursors(context.Background(), []tidings.Cursor{{AppID: "a", UserID: zed, Device: "phone", Seq: 3}}); err != nil {
				t.Fatal(err)
			}
			if err := e.users.SaveLastSeen(context.Background(), []tidings.LastSeen{{AppID: "a", UserID: zed, At: time.Now()}}); err != nil {
				t.Fatal(err)
			}
			push := sqlite.NewPushService(e.db)
			must[*tidings.PushTarget](t)(push.RegisterPushTarget(z, tidings.NewPushTarget{Kind: tidings.PushFCM, Token: "token-of-" + zed}))
			must[*tidings.PushSettings](t)(push.UpdatePushSettings(z, tidings.PushSettingsUpdate{Enabled: new(bool)}))
			if err := push.MuteConversation(z, "c", true); err != nil {
				t.Fatal(err)
			}
			must[*tidings.User](t)(e.users.DeactivateUser(server("a"), zed))
			must[*tidings.User](t)(e.users.RevokeTokens(server("a"), zed))
			// Before: the scan finds them, so that it is known to look.
			if found := scanFor(t, e.path, zed); len(found) == 0 {
				t.Fatal("the scan finds no row naming the user before the deletion")
			}

			if err := e.users.DeleteUser(server("a"), zed, mode); err != nil {
				t.Fatal(err)
			}
			if _, err := files.RemoveUnattached(context.Background(), 0); err != nil {
				t.Fatal(err)
			}
			traces := []string{zed, "Zed Q", "zq@example.com"}
			if mode == tidings.EraseMessages {
				traces = append(traces, "from Z", "z.txt")
			}
			for _, s := range traces {
				for _, row := range scanFor(t, e.path, s) {
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

// scanFor returns the rows of every table of the database at path that
// hold s in any column, as "table: row".
func scanFor(t *testing.T, path, s string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=query_only(1)&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	if len(tables) < 10 {
		t.Fatalf("only tables %v", tables)
	}
	var found []string
	for _, table := range tables {
		rows, err := db.Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for i, v := range vals {
				if bs, ok := v.([]byte); ok {
					v = string(bs)
				}
				fmt.Fprintf(&b, "%s=%v ", cols[i], v)
			}
			if strings.Contains(b.String(), s) {
				found = append(found, table+": "+b.String())
			}
		}
		rows.Close()
	}
	return found
}

func strPtr(s string) *string { return &s }
