package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// A data directory made beforehand and open to everyone (a mounted volume):
// the database and its WAL files are still this user's only.
func TestDatabaseFilesArePrivateInAnOpenDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tidings.db")
	e := openDB(t, path)
	must[*tidings.App](t)(e.apps.CreateApp(context.Background(), "a", ""))
	for _, name := range []string{"tidings.db", "tidings.db-wal", "tidings.db-shm"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", name, mode)
		}
	}

	// A database made readable by others before is made private again.
	e.db.Close()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	openDB(t, path)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("reopened database: mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

// oldDatabase makes a database at schema version 1 (before hashed keys and
// unique identifiers) at path, and runs the statements in it.
func oldDatabase(t *testing.T, path string, stmts ...string) {
	t.Helper()
	init, err := os.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stmts = append([]string{string(init),
		`CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)`,
		`INSERT INTO schema_migrations VALUES ('0001_init', 1)`}, stmts...)
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestMigrationHashesServerKeysAndDeduplicatesIdentifiers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tidings.db")
	oldDatabase(t, path,
		`INSERT INTO apps VALUES ('a', 'A', 'tsk_oldkey', 'secret', 1)`,
		`INSERT INTO users (app_id, id, display_name, identifier_value, identifier_kind, created_at, updated_at) VALUES
			('a', 'alice', 'Alice', 'alice@corp.example', 'email', 10, 10),
			('a', 'mallory', 'Mallory', 'alice@corp.example', 'email', 20, 20),
			('a', 'bob', 'Bob', 'alice@corp.example', 'phone', 30, 30)`)
	var logs bytes.Buffer
	e := openDBWith(t, path, func(db *sqlite.DB) { db.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	ctx := context.Background()

	app, err := e.apps.FindAppByServerKey(ctx, "tsk_oldkey")
	if err != nil || app.ID != "a" {
		t.Fatalf("the old key after the migration: %v, %v", app, err)
	}
	// Gone from the files at once, not only once the database is closed.
	for _, suffix := range []string{"", "-wal"} {
		if b, _ := os.ReadFile(path + suffix); bytes.Contains(b, []byte("tsk_oldkey")) {
			t.Errorf("tidings.db%s still holds the server key in plain text while open", suffix)
		}
	}
	if !slicesEqual(app.UserEditableFields, tidings.DefaultUserEditableFields) {
		t.Errorf("user-editable fields %v, want the defaults", app.UserEditableFields)
	}
	e.db.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(path + "-wal")
	if bytes.Contains(raw, []byte("tsk_oldkey")) || bytes.Contains(wal, []byte("tsk_oldkey")) {
		t.Error("the server key is still stored in plain text")
	}

	e = openDB(t, path)
	alice := must[*tidings.User](t)(e.users.FindUserByID(server("a"), "alice"))
	mallory := must[*tidings.User](t)(e.users.FindUserByID(server("a"), "mallory"))
	bob := must[*tidings.User](t)(e.users.FindUserByID(server("a"), "bob"))
	if alice.Identifier == nil || mallory.Identifier != nil || bob.Identifier == nil {
		t.Errorf("after the migration: alice %v, mallory %v, bob %v; want the oldest to keep it, other kinds untouched",
			alice.Identifier, mallory.Identifier, bob.Identifier)
	}
	if !strings.Contains(logs.String(), "user=mallory") || !strings.Contains(logs.String(), "kept_by=alice") {
		t.Errorf("the cleared identifier is not logged:\n%s", logs.String())
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

func TestIdentifiersAreUniquePerAppAndKind(t *testing.T) {
	e := newEnv(t)
	ident := &tidings.Identifier{Value: "alice@corp.example", Kind: "email"}
	must[*tidings.User](t)(e.users.CreateUser(server("a"), &tidings.User{ID: "alice", Identifier: ident}))
	_, err := e.users.CreateUser(server("a"), &tidings.User{ID: "mallory", Identifier: ident})
	wantCode(t, err, tidings.EConflict)
	e.mkUsers(t, "a", "mallory")
	_, err = e.users.UpdateUser(server("a"), "mallory", tidings.UserUpdate{Identifier: ident})
	wantCode(t, err, tidings.EConflict)
	// Another kind, another app, and the owner setting it again are fine.
	must[*tidings.User](t)(e.users.UpdateUser(server("a"), "mallory", tidings.UserUpdate{Identifier: &tidings.Identifier{Value: ident.Value, Kind: "login"}}))
	must[*tidings.User](t)(e.users.CreateUser(server("b"), &tidings.User{ID: "x", Identifier: ident}))
	must[*tidings.User](t)(e.users.UpdateUser(server("a"), "alice", tidings.UserUpdate{Identifier: ident}))
	// Once alice lets it go, it is free.
	must[*tidings.User](t)(e.users.UpdateUser(server("a"), "alice", tidings.UserUpdate{Identifier: &tidings.Identifier{}}))
	must[*tidings.User](t)(e.users.UpdateUser(server("a"), "mallory", tidings.UserUpdate{Identifier: ident}))
}

func TestUsersEditOnlyTheFieldsTheirAppAllows(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.mkUsers(t, "a", "mallory")
	name, meta := "Mal", json.RawMessage(`{"verified":true}`)
	ident := &tidings.Identifier{Value: "alice@corp.example", Kind: "email"}
	must[*tidings.User](t)(e.users.UpdateUser(user("a", "mallory"), "mallory", tidings.UserUpdate{DisplayName: &name}))
	for field, upd := range map[string]tidings.UserUpdate{
		"identifier": {Identifier: ident},
		"metadata":   {DisplayName: &name, Metadata: &meta},
	} {
		_, err := e.users.UpdateUser(user("a", "mallory"), "mallory", upd)
		wantCode(t, err, tidings.EForbidden)
		if !strings.Contains(err.Error(), field) {
			t.Errorf("the error %q does not name %s", err, field)
		}
	}
	got := must[*tidings.User](t)(e.users.FindUserByID(server("a"), "mallory"))
	if got.Identifier != nil || got.Metadata != nil {
		t.Errorf("mallory set %v and %s", got.Identifier, got.Metadata)
	}
	// The server may; and the app may let users.
	must[*tidings.User](t)(e.users.UpdateUser(server("a"), "mallory", tidings.UserUpdate{Metadata: &meta}))
	fields := []string{"displayName", "metadata"}
	app := must[*tidings.App](t)(e.apps.UpdateApp(ctx, "a", tidings.AppUpdate{UserEditableFields: &fields}))
	if !slicesEqual(app.UserEditableFields, fields) {
		t.Errorf("UpdateApp returned fields %v", app.UserEditableFields)
	}
	must[*tidings.User](t)(e.users.UpdateUser(user("a", "mallory"), "mallory", tidings.UserUpdate{Metadata: &meta}))
	avatar := "https://example.com/a.png"
	_, err := e.users.UpdateUser(user("a", "mallory"), "mallory", tidings.UserUpdate{AvatarURL: &avatar})
	wantCode(t, err, tidings.EForbidden)
	bad := []string{"email"}
	_, err = e.apps.UpdateApp(ctx, "a", tidings.AppUpdate{UserEditableFields: &bad})
	wantCode(t, err, tidings.EInvalid)
	_, err = e.apps.UpdateApp(ctx, "nope", tidings.AppUpdate{UserEditableFields: &fields})
	wantCode(t, err, tidings.ENotFound)
}
