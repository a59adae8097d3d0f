package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"testing"

	"github.com/tidings/tidings"
)

func TestUserProfile(t *testing.T) {
	e := newEnv(t)
	meta := json.RawMessage(`{ "plan": "pro" }`)
	u := must[*tidings.User](t)(e.users.CreateUser(server("a"), &tidings.User{
		ID: "alice", DisplayName: " Alice ", AvatarURL: "https://example.com/a.png",
		Identifier: &tidings.Identifier{Value: "alice@example.com", Kind: "email"}, Metadata: meta,
	}))
	if u.DisplayName != "Alice" || string(u.Metadata) != `{"plan":"pro"}` {
		t.Fatalf("created %+v", u)
	}
	evs := e.events.take()
	if len(evs) != 1 || evs[0].Name != tidings.EventProfileUpdate || evs[0].UserID != "alice" || evs[0].Actor != nil {
		t.Fatalf("events = %+v, want one profile.update about alice by the server", evs)
	}

	got := must[*tidings.User](t)(e.users.FindUserByID(user("a", "alice"), "alice"))
	if got.Identifier == nil || got.Identifier.Value != "alice@example.com" || got.AvatarURL != u.AvatarURL {
		t.Fatalf("found %+v", got)
	}

	name := "Alice A."
	upd := must[*tidings.User](t)(e.users.UpdateUser(user("a", "alice"), "alice", tidings.UserUpdate{DisplayName: &name}))
	if upd.DisplayName != name || upd.AvatarURL != u.AvatarURL {
		t.Fatalf("updated %+v: want new name and the avatar kept", upd)
	}
	evs = e.events.take()
	if len(evs) != 1 || evs[0].Actor == nil || evs[0].Actor.DisplayName != name {
		t.Fatalf("update events = %+v, want one with alice as actor", evs)
	}
	var p tidings.ProfilePayload
	if err := json.Unmarshal(evs[0].Payload, &p); err != nil || p.ProfileID != "alice" || p.User.DisplayName != name {
		t.Fatalf("payload %s: %v", evs[0].Payload, err)
	}

	e.mkUsers(t, "a", "bob")
	_, err := e.users.UpdateUser(user("a", "bob"), "alice", tidings.UserUpdate{DisplayName: &name})
	wantCode(t, err, tidings.EForbidden)
	_, err = e.users.CreateUser(user("a", "alice"), &tidings.User{ID: "mallory"})
	wantCode(t, err, tidings.EForbidden)
	_, err = e.users.ListUsers(user("a", "alice"), tidings.UserFilter{})
	wantCode(t, err, tidings.EForbidden)
}

func TestUserBadInput(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice")
	for name, u := range map[string]*tidings.User{
		"empty id":        {ID: ""},
		"space in id":     {ID: "a b"},
		"path in id":      {ID: "../x"},
		"long name":       {ID: "x", DisplayName: string(make([]byte, 201))},
		"avatar not url":  {ID: "x", AvatarURL: "javascript:alert(1)"},
		"half identifier": {ID: "x", Identifier: &tidings.Identifier{Value: "x@example.com"}},
		"metadata array":  {ID: "x", Metadata: json.RawMessage(`[1]`)},
	} {
		_, err := e.users.CreateUser(server("a"), u)
		if code := tidings.ErrorCode(err); code != tidings.EInvalid {
			t.Errorf("%s: code %q (%v), want invalid_argument", name, code, err)
		}
	}
	_, err := e.users.CreateUser(server("a"), &tidings.User{ID: "alice"})
	wantCode(t, err, tidings.EConflict)
	_, err = e.users.FindUserByID(server("a"), "nobody")
	wantCode(t, err, tidings.ENotFound)
	empty := " "
	_, err = e.users.UpdateUser(server("a"), "alice", tidings.UserUpdate{DisplayName: &empty})
	wantCode(t, err, tidings.EInvalid)
	if evs := e.events.take(); len(evs) != 1 {
		t.Fatalf("failed writes emitted events: %v", names(evs))
	}
}

func TestUsersAreIsolatedByApp(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice")
	_, err := e.users.FindUserByID(server("b"), "alice")
	wantCode(t, err, tidings.ENotFound)
	// The same id can exist in both apps, as two people.
	e.mkUsers(t, "b", "alice")
	name := "B's Alice"
	must[*tidings.User](t)(e.users.UpdateUser(server("b"), "alice", tidings.UserUpdate{DisplayName: &name}))
	a := must[*tidings.User](t)(e.users.FindUserByID(server("a"), "alice"))
	if a.DisplayName != "alice" {
		t.Fatalf("app b's update changed app a's user: %+v", a)
	}
	list := must[[]*tidings.User](t)(e.users.ListUsers(server("a"), tidings.UserFilter{}))
	if len(list) != 1 {
		t.Fatalf("app a lists %d users, want 1", len(list))
	}
}

func TestListUsersPages(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "u1", "u2", "u3", "u4", "u5")
	var seen []string
	after := ""
	for {
		page := must[[]*tidings.User](t)(e.users.ListUsers(server("a"), tidings.UserFilter{After: after, Limit: 2}))
		for _, u := range page {
			seen = append(seen, u.ID)
		}
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].ID
	}
	if len(seen) != 5 || seen[0] != "u1" || seen[4] != "u5" {
		t.Fatalf("paged through %v", seen)
	}
}

// The access log keeps its newest 10,000 entries: once older ones went, a
// reader from before them learns that the log is no longer complete (and
// reads every user), one from after them still reads it all. Entries
// written by another connection to the database (a command that opened
// it) are read like the store's own.
func TestAccessLogKeepsItsNewest(t *testing.T) {
	e := newEnv(t)
	e.mkUsers(t, "a", "alice", "bob")
	ctx := context.Background()
	raw, err := sql.Open("sqlite", "file:"+e.path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`UPDATE users SET deactivated_at = 1 WHERE app_id = 'a' AND id = 'alice'`); err != nil {
		t.Fatal(err)
	}
	users, next, complete, err := e.users.AccessChangesSince(ctx, 0, 10)
	if err != nil || !complete || next != 1 || len(users) != 1 || users[0] != (tidings.UserRef{AppID: "a", UserID: "alice"}) {
		t.Fatalf("after another connection deactivated alice: %v, next %d, complete %v (%v)", users, next, complete, err)
	}
	if _, err := raw.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 9999)
		INSERT INTO access_changes (app_id, user_id) SELECT 'a', 'x' || i FROM n`); err != nil {
		t.Fatal(err)
	}
	// Entries 1 to 10,000: nothing went yet.
	if _, _, complete, err := e.users.AccessChangesSince(ctx, 0, 1); err != nil || !complete {
		t.Fatalf("10,000 entries: complete %v (%v)", complete, err)
	}
	if _, err := e.users.DeactivateUser(server("a"), "bob"); err != nil { // entry 10,001: entry 1 goes
		t.Fatal(err)
	}
	if _, _, complete, err := e.users.AccessChangesSince(ctx, 0, 1); err != nil || complete {
		t.Errorf("from before the oldest entry kept: complete %v (%v), want false", complete, err)
	}
	users, next, complete, err = e.users.AccessChangesSince(ctx, 10000, 10)
	if err != nil || !complete || next != 10001 || len(users) != 1 || users[0].UserID != "bob" {
		t.Errorf("from entry 10,000: %v, next %d, complete %v (%v)", users, next, complete, err)
	}
	if _, _, complete, err := e.users.AccessChangesSince(ctx, 1, 1); err != nil || !complete {
		t.Errorf("from the entry before the oldest kept: complete %v (%v), want true", complete, err)
	}
}
