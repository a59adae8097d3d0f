package main

import (
	"context"
	"strings"
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// TestUsersCommands: the users commands deactivate, reactivate, revoke the
// tokens of and delete a user of an app, in the data directory's database.
func TestUsersCommands(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, nil, "apps", "create", "--data", dir, "acme")
	db := openTestDB(t, dir)
	users := sqlite.NewUserService(db)
	server := tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: "acme", Server: true})
	if _, err := users.CreateUser(server, &tidings.User{ID: "zed"}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	find := func() *tidings.User {
		t.Helper()
		db := openTestDB(t, dir)
		defer db.Close()
		u, err := sqlite.NewUserService(db).FindUserByID(server, "zed")
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	if r := mustRun(t, nil, "users", "deactivate", "--data", dir, "--app", "acme", "zed"); !strings.Contains(r.stdout, "deactivated") {
		t.Errorf("users deactivate printed %q", r.stdout)
	}
	if u := find(); u.DeactivatedAt == nil {
		t.Error("zed is not deactivated")
	}
	mustRun(t, nil, "users", "reactivate", "--data", dir, "--app", "acme", "zed")
	if u := find(); u.DeactivatedAt != nil {
		t.Error("zed is still deactivated")
	}
	mustRun(t, nil, "users", "revoke-tokens", "--data", dir, "--app", "acme", "zed")
	if u := find(); u.TokensNotBefore == nil {
		t.Error("zed's tokens are not revoked")
	}
	if r := runCLI(t, nil, "users", "delete", "--data", dir, "--app", "acme", "zed"); r.code != exitUsage || !strings.Contains(r.stderr, "--messages") {
		t.Errorf("users delete without --messages: exit %d, %q", r.code, r.stderr)
	}
	if r := runCLI(t, nil, "users", "deactivate", "--data", dir, "zed"); r.code != exitFailure || !strings.Contains(r.stderr, `no app "default"`) {
		t.Errorf("users deactivate in an unknown app: exit %d, %q", r.code, r.stderr)
	}
	mustRun(t, nil, "users", "delete", "--data", dir, "--app", "acme", "--messages", "anonymize", "zed")
	if r := runCLI(t, nil, "users", "delete", "--data", dir, "--app", "acme", "--messages", "erase", "zed"); r.code != exitFailure || !strings.Contains(r.stderr, `no user "zed"`) {
		t.Errorf("users delete of a deleted user: exit %d, %q", r.code, r.stderr)
	}
}
