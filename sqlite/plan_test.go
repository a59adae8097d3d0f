package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// plan returns the query plan of query, one line per step.
func plan(t *testing.T, db *DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.wconn.QueryContext(context.Background(), `EXPLAIN QUERY PLAN `+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var steps []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		steps = append(steps, detail)
	}
	return steps
}

// The replay of a stream seeks each membership's events: through
// events_by_conversation, despite its condition, and the sends through
// their messages by primary key, and those of the message journal from
// the resume point on or by the keys listed (json_each: the list given,
// read through), never scanning a table.
func TestReplaySeeksEachConversation(t *testing.T) {
	db := NewDB(filepath.Join(t.TempDir(), "tidings.db"))
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	check := func(k int64) {
		t.Helper()
		steps := plan(t, db, userStreamQuery(k), 1, "a", "u", 1, 1, 1, "a", "u", 1, 1, "a", "u", 1, "a", "u", "u", 1, 1, "u", 1, "a", "u", "[2,3]", "a", 100)
		all := strings.Join(steps, "\n")
		for _, want := range []string{
			"SEARCH e USING INDEX events_by_conversation (app_id=? AND conversation_id=? AND seq>?)",
			"SEARCH s USING PRIMARY KEY (app_id=? AND conversation_id=? AND seq>?)",
			"SEARCH x USING PRIMARY KEY (app_id=? AND conversation_id=?)",
			"SEARCH e USING INTEGER PRIMARY KEY (rowid=?)",
			"SEARCH j USING INTEGER PRIMARY KEY (rowid>?)",
			"SEARCH j USING INTEGER PRIMARY KEY (rowid=?)",
			"SEARCH m USING PRIMARY KEY (app_id=? AND user_id=? AND conversation_id=? AND from_seq<?)",
		} {
			if !strings.Contains(all, want) {
				t.Errorf("sends indexed through %d: no %q in the plan:\n%s", k, want, all)
			}
		}
		for _, s := range steps {
			if strings.HasPrefix(s, "SCAN") && !strings.HasPrefix(s, "SCAN json_each VIRTUAL TABLE") {
				t.Errorf("sends indexed through %d: the plan scans: %q in\n%s", k, s, all)
			}
		}
	}
	check(db.sendsIndexedThrough) // a new database: 0
	// As a migrated database.
	for _, q := range []string{`DROP INDEX events_by_conversation`,
		`CREATE INDEX events_by_conversation ON events (app_id, conversation_id, seq) WHERE ` + eventIndexed(1234)} {
		if _, err := db.wconn.ExecContext(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	check(1234)
}

// Erasing a user updates each conversation's events through
// events_by_conversation and the messages' primary key, never scanning
// the events.
func TestErasureSeeksEachConversation(t *testing.T) {
	db := NewDB(filepath.Join(t.TempDir(), "tidings.db"))
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, events := range eventsOfConversation(db.sendsIndexedThrough) {
		steps := plan(t, db, `UPDATE events SET actor = NULL WHERE `+events+` AND actor IS NOT NULL AND json_extract(actor, '$.id') = ?3`, "a", "c", "u")
		all := strings.Join(steps, "\n")
		if !strings.Contains(all, "events_by_conversation") && !strings.Contains(all, "SEARCH messages USING PRIMARY KEY (app_id=? AND conversation_id=?)") {
			t.Errorf("%s: neither index in the plan:\n%s", events, all)
		}
		for _, s := range steps {
			if strings.HasPrefix(s, "SCAN") && !strings.HasPrefix(s, "SCAN json_each VIRTUAL TABLE") {
				t.Errorf("%s: the plan scans: %q in\n%s", events, s, all)
			}
		}
	}
}

// The client-id filter's start-up read takes each chunk from the
// client-id index, from where the last ended (the first from before any
// key): no table read, no sort, no scan from the index's start.
func TestClientIDsReadTheIndex(t *testing.T) {
	db := NewDB(filepath.Join(t.TempDir(), "tidings.db"))
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	after := strings.Join(plan(t, db, clientIDsAfter, "a", "c", "u", "m", 10), "\n")
	t.Logf("%s", after)
	if !strings.Contains(after, "SEARCH messages USING COVERING INDEX messages_by_client_id") || strings.Contains(after, "TEMP B-TREE") {
		t.Errorf("a chunk's plan does not seek the client-id index past the last key, in its order:\n%s", after)
	}
}

// A message is found by id through messages_by_id, whose entries are
// grouped by conversation (migration 0014): the messages a move brings
// into messages share their conversation's page of the index.
func TestMessagesByIDAreGroupedByConversation(t *testing.T) {
	db := NewDB(filepath.Join(t.TempDir(), "tidings.db"))
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	all := strings.Join(plan(t, db, `SELECT `+messageColumns+messageFrom+`
		WHERE m.app_id = ? AND m.conversation_id = ? AND m.id = ?`, "a", "c", "m"), "\n")
	if want := "SEARCH m USING INDEX messages_by_id (app_id=? AND conversation_id=? AND id=?)"; !strings.Contains(all, want) {
		t.Errorf("no %q in the plan:\n%s", want, all)
	}
}

// The start's warm-up seeks each recent conversation's last entry in
// messages and in messages_by_id: the pages a move writes, and no more.
func TestWarmUpSeeksTheLastEntries(t *testing.T) {
	db := NewDB(filepath.Join(t.TempDir(), "tidings.db"))
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	all := strings.Join(plan(t, db, warmLast, "a", "c"), "\n")
	t.Logf("%s", all)
	for _, want := range []string{
		"SEARCH messages USING PRIMARY KEY (app_id=? AND conversation_id=?)",
		"SEARCH messages USING COVERING INDEX messages_by_id (app_id=? AND conversation_id=?)",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no %q in the plan:\n%s", want, all)
		}
	}
	if strings.Contains(all, "SCAN messages") || strings.Contains(all, "TEMP B-TREE") {
		t.Errorf("the warm-up reads more than the last entries:\n%s", all)
	}
}
