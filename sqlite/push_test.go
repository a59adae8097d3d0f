package sqlite_test

import (
	"context"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// HasPushTargets follows every change of targets that commits, and no
// change that does not; it is read again from the file on Open.
func TestHasPushTargets(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	e.mkUsers(t, "b", "carol")
	ps := sqlite.NewPushService(e.db)
	has := func(want map[string]bool) {
		t.Helper()
		for app, w := range want {
			if got := ps.HasPushTargets(app); got != w {
				t.Fatalf("HasPushTargets(%q) = %v, want %v", app, got, w)
			}
		}
	}
	has(map[string]bool{"a": false, "b": false})
	alice, err := ps.RegisterPushTarget(user("a", "alice"), tidings.NewPushTarget{Kind: tidings.PushAPNs, Token: "alice-phone"})
	if err != nil {
		t.Fatal(err)
	}
	has(map[string]bool{"a": true, "b": false})
	if _, err := ps.RegisterPushTarget(user("a", "bob"), tidings.NewPushTarget{Kind: tidings.PushFCM, Token: "bob-phone"}); err != nil {
		t.Fatal(err)
	}
	if err := ps.DeletePushTarget(user("a", "alice"), alice.ID); err != nil {
		t.Fatal(err)
	}
	has(map[string]bool{"a": true, "b": false}) // bob's is left

	// A write that adds a target and then fails, rolled back, changes
	// nothing.
	if err := sqlite.InsertPushTargetThenFail(e.db, "b", "carol"); err == nil {
		t.Fatal("the failing write did not fail")
	}
	has(map[string]bool{"a": true, "b": false})

	// Read again on Open.
	path := e.path
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	e = openDB(t, path)
	ps = sqlite.NewPushService(e.db)
	has(map[string]bool{"a": true, "b": false})

	// Deleting the user deletes their targets.
	if err := e.users.DeleteUser(server("a"), "bob", tidings.AnonymizeMessages); err != nil {
		t.Fatal(err)
	}
	has(map[string]bool{"a": false, "b": false})
	if _, err := ps.RegisterPushTarget(user("b", "carol"), tidings.NewPushTarget{Kind: tidings.PushFCM, Token: "carol-phone"}); err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	list, err := ps.ListPushTargets(user("b", "carol"))
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range list {
		ids = append(ids, pt.ID)
	}
	has(map[string]bool{"a": false, "b": true})
	if err := ps.RemovePushTargets(context.Background(), "b", ids); err != nil {
		t.Fatal(err)
	}
	has(map[string]bool{"a": false, "b": false})
}
