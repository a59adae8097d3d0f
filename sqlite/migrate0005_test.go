package sqlite

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Migration 0005 lets the users of existing apps change their presence
// privacy switch, whatever fields the app chose before it existed, once.
func TestMigration0005MakesThePrivacySwitchEditable(t *testing.T) {
	db := NewDB(filepath.Join(t.TempDir(), "tidings.db"))
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	apps := NewAppService(db)
	for _, id := range []string{"narrow", "none", "again"} {
		if _, err := apps.CreateApp(ctx, id, ""); err != nil {
			t.Fatal(err)
		}
	}
	// As apps from before the migration.
	for id, fields := range map[string]string{"narrow": `["displayName"]`, "none": `[]`, "again": `["presenceHidden","metadata"]`} {
		if _, err := db.wconn.ExecContext(ctx, `UPDATE apps SET user_editable_fields = ? WHERE id = ?`, fields, id); err != nil {
			t.Fatal(err)
		}
	}
	body, err := migrationFS.ReadFile("migrations/0005_presence.sql")
	if err != nil {
		t.Fatal(err)
	}
	update := string(body)[strings.Index(string(body), "UPDATE apps"):]
	update = update[:strings.Index(update, ";")]
	if _, err := db.wconn.ExecContext(ctx, update); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string][]string{
		"narrow": {"displayName", "presenceHidden"},
		"none":   {"presenceHidden"},
		"again":  {"presenceHidden", "metadata"},
	} {
		a, err := apps.FindAppByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.UserEditableFields, want) {
			t.Errorf("app %s: %v, want %v", id, a.UserEditableFields, want)
		}
	}
}
