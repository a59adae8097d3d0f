package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/token"
)

// parseApp reads the "label: value" lines printed by apps create, show and
// rotate-key.
func parseApp(t *testing.T, out string) map[string]string {
	t.Helper()
	fields := make(map[string]string)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		label, value, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("line %q is not label: value", line)
		}
		fields[label] = strings.TrimSpace(value)
	}
	for _, label := range []string{"id", "name", "created", "server key", "signing secret"} {
		if fields[label] == "" {
			t.Fatalf("no %s in:\n%s", label, out)
		}
	}
	return fields
}

// openTestDB opens the database of a data directory the commands used.
func openTestDB(t *testing.T, dir string) *sqlite.DB {
	t.Helper()
	db := sqlite.NewDB(filepath.Join(dir, "tidings.db"))
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestApps(t *testing.T) {
	dir := t.TempDir()

	// Without a database, the commands that read one say so.
	r := runCLI(t, nil, "apps", "list", "--data", dir)
	if r.code != exitFailure || !strings.Contains(r.stderr, "no database") {
		t.Errorf("apps list without a database: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "tidings.db")); err == nil {
		t.Errorf("apps list created a database")
	}

	acme := parseApp(t, mustRun(t, nil, "apps", "create", "--data", dir, "--name", "Acme Chat", "acme").stdout)
	if acme["id"] != "acme" || acme["name"] != "Acme Chat" || !strings.HasPrefix(acme["server key"], "tsk_") {
		t.Errorf("apps create printed %v", acme)
	}
	// Flags may follow the ID, and the environment names the data directory.
	env := map[string]string{"TIDINGS_DATA": dir}
	other := parseApp(t, mustRun(t, env, "apps", "create", "other", "--name", "Other").stdout)
	if other["id"] != "other" || other["name"] != "Other" {
		t.Errorf("apps create other --name Other printed %v", other)
	}
	generated := parseApp(t, mustRun(t, env, "apps", "create").stdout)
	if !tidings.ValidID(generated["id"]) {
		t.Errorf("generated app id %q", generated["id"])
	}
	if r := runCLI(t, env, "apps", "create", "acme"); r.code != exitFailure || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("apps create of a taken id: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runCLI(t, env, "apps", "create", "a", "b"); r.code != exitUsage {
		t.Errorf("apps create a b: exit %d, want %d", r.code, exitUsage)
	}

	list := mustRun(t, env, "apps", "list").stdout
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") ||
		!strings.HasPrefix(lines[1], "acme ") || !strings.Contains(lines[1], "Acme Chat") ||
		!strings.HasPrefix(lines[2], "other ") || !strings.HasPrefix(lines[3], generated["id"]+" ") {
		t.Errorf("apps list, oldest first:\n%s", list)
	}
	if strings.Contains(list, acme["server key"]) || strings.Contains(list, acme["signing secret"]) {
		t.Errorf("apps list prints credentials:\n%s", list)
	}

	shown := parseApp(t, mustRun(t, env, "apps", "show", "acme").stdout)
	if shown["signing secret"] != acme["signing secret"] || shown["user-editable fields"] != "displayName,avatarUrl,presenceHidden" {
		t.Errorf("apps show acme = %v, created %v", shown, acme)
	}
	// The server key is stored hashed: shown when made, never again.
	if strings.Contains(shown["server key"], "tsk_") || !strings.Contains(shown["server key"], "rotate-key acme") {
		t.Errorf("apps show prints the server key %q; want a note on rotate-key", shown["server key"])
	}
	if raw, err := os.ReadFile(filepath.Join(dir, "tidings.db")); err != nil || strings.Contains(string(raw), acme["server key"]) {
		t.Errorf("the database holds the server key in plain text (read error %v)", err)
	}
	if r := runCLI(t, env, "apps", "show", "nope"); r.code != exitFailure || !strings.Contains(r.stderr, `no app "nope"`) {
		t.Errorf("apps show nope: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runCLI(t, env, "apps", "show"); r.code != exitUsage || !strings.Contains(r.stderr, "missing app ID") {
		t.Errorf("apps show without ID: exit %d, stderr %q", r.code, r.stderr)
	}

	rotated := parseApp(t, mustRun(t, env, "apps", "rotate-key", "acme").stdout)
	if rotated["server key"] == acme["server key"] || rotated["signing secret"] != acme["signing secret"] {
		t.Errorf("rotate-key: key %q (was %q), secret changed: %v",
			rotated["server key"], acme["server key"], rotated["signing secret"] != acme["signing secret"])
	}
	apps := sqlite.NewAppService(openTestDB(t, dir))
	if _, err := apps.FindAppByServerKey(context.Background(), acme["server key"]); tidings.ErrorCode(err) != tidings.EUnauthenticated {
		t.Errorf("the old server key still works: %v", err)
	}
	if app, err := apps.FindAppByServerKey(context.Background(), rotated["server key"]); err != nil || app.ID != "acme" {
		t.Errorf("the new server key finds %v, %v", app, err)
	}
	if r := runCLI(t, env, "apps", "rotate-key", "nope"); r.code != exitFailure {
		t.Errorf("rotate-key nope: exit %d", r.code)
	}

	// apps set changes the settings it is given.
	set := parseApp(t, mustRun(t, env, "apps", "set", "--user-editable-fields", "displayName, metadata", "acme").stdout)
	if set["user-editable fields"] != "displayName,metadata" || set["name"] != "Acme Chat" {
		t.Errorf("apps set --user-editable-fields printed %v", set)
	}
	set = parseApp(t, mustRun(t, env, "apps", "set", "--user-editable-fields", "", "--name", "Acme", "acme").stdout)
	if set["user-editable fields"] != "" || set["name"] != "Acme" {
		t.Errorf("apps set --user-editable-fields '' --name Acme printed %v", set)
	}
	if r := runCLI(t, env, "apps", "set", "--user-editable-fields", "email", "acme"); r.code != exitFailure || !strings.Contains(r.stderr, `"email" is not a profile field`) {
		t.Errorf("apps set with an unknown field: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runCLI(t, env, "apps", "set", "--name", "X", "nope"); r.code != exitFailure || !strings.Contains(r.stderr, `no app "nope"`) {
		t.Errorf("apps set nope: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestToken(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"TIDINGS_DATA": dir}
	mustRun(t, env, "apps", "create", "default")
	mustRun(t, env, "apps", "create", "acme")

	r := mustRun(t, env, "token", "--user", "alice")
	tok := strings.TrimSuffix(r.stdout, "\n")
	if tok == "" || strings.ContainsAny(tok, " \n") {
		t.Fatalf("token printed %q, want only the token", r.stdout)
	}
	if !strings.Contains(r.stderr, `user "alice" does not exist`) {
		t.Errorf("no warning that alice does not exist; stderr %q", r.stderr)
	}

	db := openTestDB(t, dir)
	apps := sqlite.NewAppService(db)
	ctx := context.Background()
	caller, err := token.Verify(ctx, apps, tok, time.Now())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if caller != (tidings.Caller{AppID: "default", UserID: "alice"}) {
		t.Errorf("token is for %+v, want alice of app default", caller)
	}
	// The default lifetime is 24 hours.
	if _, err := token.Verify(ctx, apps, tok, time.Now().Add(23*time.Hour)); err != nil {
		t.Errorf("token expired before 24h: %v", err)
	}
	if _, err := token.Verify(ctx, apps, tok, time.Now().Add(25*time.Hour)); err == nil {
		t.Errorf("token still valid after 25h")
	}

	// With the user in place, no warning; --app and --ttl are obeyed.
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: "acme", Server: true})
	if _, err := sqlite.NewUserService(db).CreateUser(server, &tidings.User{ID: "bob"}); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, env, "token", "--app", "acme", "--user", "bob", "--ttl", "1h")
	if r.stderr != "" {
		t.Errorf("stderr %q, want nothing", r.stderr)
	}
	tok = strings.TrimSpace(r.stdout)
	caller, err = token.Verify(ctx, apps, tok, time.Now())
	if err != nil || caller != (tidings.Caller{AppID: "acme", UserID: "bob"}) {
		t.Errorf("Verify = %+v, %v; want bob of app acme", caller, err)
	}
	if _, err := token.Verify(ctx, apps, tok, time.Now().Add(2*time.Hour)); err == nil {
		t.Errorf("token minted with --ttl 1h still valid after 2h")
	}

	for _, tt := range []struct {
		args []string
		env  map[string]string
		code int
		want string
	}{
		{[]string{"token"}, env, exitUsage, "--user is required"},
		{[]string{"token", "--user", "no spaces"}, env, exitUsage, "not a valid user id"},
		{[]string{"token", "--user", "alice", "--ttl", "0s"}, env, exitUsage, "--ttl"},
		{[]string{"token", "--user", "alice", "--app", "nope"}, env, exitFailure, `no app "nope"`},
		{[]string{"token", "--user", "alice", "--data", t.TempDir()}, nil, exitFailure, "no database"},
		// --user is not a setting: it never comes from the environment.
		{[]string{"token"}, map[string]string{"TIDINGS_DATA": dir, "TIDINGS_USER": "alice"}, exitUsage, "--user is required"},
	} {
		r := runCLI(t, tt.env, tt.args...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("tidings %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.code, tt.want)
		}
		if r.stdout != "" {
			t.Errorf("tidings %s printed %q on stdout", strings.Join(tt.args, " "), r.stdout)
		}
	}
}

func TestDataDirFromConfigFile(t *testing.T) {
	dir := t.TempDir()
	// A config file written for serve also serves the apps commands, which
	// ignore the settings that are not theirs.
	file := writeFile(t, `{"data": "`+filepath.ToSlash(dir)+`", "addr": "127.0.0.1:0", "max-file-bytes": "1MiB"}`)
	mustRun(t, nil, "apps", "create", "--config", file, "fromfile")
	if r := mustRun(t, nil, "apps", "list", "--data", dir); !strings.Contains(r.stdout, "fromfile") {
		t.Errorf("app not created in the config file's data directory:\n%s", r.stdout)
	}
	bad := writeFile(t, `{"data": "x", "nonsense": 1}`)
	if r := runCLI(t, nil, "apps", "list", "--config", bad); r.code != exitUsage || !strings.Contains(r.stderr, "nonsense") {
		t.Errorf("unknown key: exit %d, stderr %q", r.code, r.stderr)
	}
}
