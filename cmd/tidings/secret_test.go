package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/token"
)

// TestAppsRotateSecret: after apps rotate-secret, tokens signed with the
// old secret verify during the overlap, and not once a rotation without
// overlap replaced it; tokens minted with the new one verify.
func TestAppsRotateSecret(t *testing.T) {
	dir := t.TempDir()
	old := parseApp(t, mustRun(t, nil, "apps", "create", "--data", dir, "acme").stdout)
	db := openTestDB(t, dir)
	server := tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: "acme", Server: true})
	if _, err := sqlite.NewUserService(db).CreateUser(server, &tidings.User{ID: "alice"}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	oldTok := strings.TrimSpace(mustRun(t, nil, "token", "--data", dir, "--app", "acme", "--user", "alice").stdout)

	r := mustRun(t, nil, "apps", "rotate-secret", "--data", dir, "--overlap", "1h", "acme")
	rotated := parseApp(t, r.stdout)
	if rotated["signing secret"] == old["signing secret"] || !strings.Contains(r.stdout, "previous secret:") {
		t.Fatalf("apps rotate-secret printed:\n%s", r.stdout)
	}
	newTok := strings.TrimSpace(mustRun(t, nil, "token", "--data", dir, "--app", "acme", "--user", "alice").stdout)
	verify := func(tok string) error {
		t.Helper()
		db := openTestDB(t, dir)
		defer db.Close()
		_, err := token.Verify(context.Background(), sqlite.NewAppService(db), tok, time.Now())
		return err
	}
	if err := verify(oldTok); err != nil {
		t.Errorf("a token of the old secret during the overlap: %v", err)
	}
	if err := verify(newTok); err != nil {
		t.Errorf("a token of the new secret: %v", err)
	}
	mustRun(t, nil, "apps", "rotate-secret", "--data", dir, "--overlap", "0s", "acme")
	if err := verify(oldTok); tidings.ErrorCode(err) != tidings.EUnauthenticated {
		t.Errorf("a token of a secret two rotations old: %v, want unauthenticated", err)
	}
	if err := verify(newTok); tidings.ErrorCode(err) != tidings.EUnauthenticated {
		t.Errorf("a token of the secret rotated without overlap: %v, want unauthenticated", err)
	}
}
