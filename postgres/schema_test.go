package postgres

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tidings/tidings/sqlite"
)

// TestSchemaAsSQLite: PostgreSQL's schema has every table and column the
// SQLite store has after all its migrations, so that the stores hold the
// same data. (PostgreSQL may hold more.)
func TestSchemaAsSQLite(t *testing.T) {
	// How SQLite stores, not what: message_journal holds the newest
	// messages for a while (sqlite/journal.go), PostgreSQL stores them
	// straight into messages.
	sqliteOnly := map[string]bool{"message_journal": true}
	path := filepath.Join(t.TempDir(), "tidings.db")
	lite := sqlite.NewDB(path)
	lite.Logger = discard()
	if err := lite.Open(); err != nil {
		t.Fatal(err)
	}
	lite.Close()
	conn, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	want := map[string][]string{}
	rows, err := conn.Query(`SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
		WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var table, col string
		if err := rows.Scan(&table, &col); err != nil {
			t.Fatal(err)
		}
		want[table] = append(want[table], col)
	}
	rows.Close()

	db := openDB(t, nil)
	got := map[string][]string{}
	prows, err := db.query(context.Background(), `SELECT table_name::text, column_name::text FROM information_schema.columns
		WHERE table_schema = 'public' ORDER BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	for prows.Next() {
		var table, col string
		if err := prows.Scan(&table, &col); err != nil {
			t.Fatal(err)
		}
		got[table] = append(got[table], col)
	}
	prows.Close()
	for table, cols := range want {
		if sqliteOnly[table] {
			continue
		}
		if got[table] == nil {
			t.Errorf("table %s is missing in PostgreSQL", table)
			continue
		}
		for _, c := range cols {
			if !slices.Contains(got[table], c) {
				t.Errorf("table %s: column %s is missing in PostgreSQL (has %v)", table, c, got[table])
			}
		}
	}
}
