package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/disk"
)

// Migration 0003 marks the files that messages already refer to as
// attached, so that on an existing database only the files no message
// refers to are ever removed.
func TestMigration0003MarksAttachedFiles(t *testing.T) {
	db := NewDB(filepath.Join(t.TempDir(), "tidings.db"))
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := NewAppService(db).CreateApp(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "a", Server: true})
	if _, err := NewUserService(db).CreateUser(server, &tidings.User{ID: "alice"}); err != nil {
		t.Fatal(err)
	}
	alice := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "a", UserID: "alice"})
	conv, err := NewConversationService(db).CreateConversation(alice, tidings.NewConversation{ID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	files := NewFileService(db, disk.NewBlobStore(t.TempDir()), 100)
	var ids []string
	for range 2 {
		f, err := files.CreateFile(alice, conv.ID, "f.txt", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, f.ID)
	}
	if _, _, err := NewMessageService(db, 0).SendMessage(alice, conv.ID, tidings.NewMessage{Parts: []tidings.Part{
		{Type: "text/plain", Data: "see"}, {Type: "text/plain", FileID: ids[0]}}}); err != nil {
		t.Fatal(err)
	}
	// As a database from before the migration: its messages in messages
	// (not in the journal, which came later), nothing marked.
	if err := db.syncMessages(ctx, "a", conv.ID); err != nil {
		t.Fatal(err)
	}
	body, err := migrationFS.ReadFile("migrations/0003_file_quotas.sql")
	if err != nil {
		t.Fatal(err)
	}
	update := string(body)[strings.Index(string(body), "UPDATE files"):]
	update = update[:strings.Index(update, ";")]
	if _, err := db.wconn.ExecContext(ctx, `UPDATE files SET attached = 0`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.wconn.ExecContext(ctx, update); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{1, 0} {
		var attached int
		if err := db.wconn.QueryRowContext(ctx, `SELECT attached FROM files WHERE id = ?`, ids[i]).Scan(&attached); err != nil || attached != want {
			t.Errorf("file %d: attached = %d (%v); want %d", i, attached, err, want)
		}
	}
}
