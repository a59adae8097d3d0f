package main

import (
	"strings"
	"testing"
)

func TestParseStore(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind storeKind
		ok   bool
	}{
		{"", storeSQLite, true},
		{"sqlite", storeSQLite, true},
		{" SQLite ", storeSQLite, true},
		{"postgres://tidings@db/tidings", storePostgres, true},
		{"postgresql://tidings:pw@db:5432/tidings?sslmode=disable", storePostgres, true},
		{"POSTGRES://db/tidings", storePostgres, true},
		{"mysql://db/tidings", 0, false},
		{"/var/lib/tidings/tidings.db", 0, false},
		{"postgres://u:pw@db/%zz", 0, false},
	} {
		spec, err := parseStore(tc.in)
		if (err == nil) != tc.ok || tc.ok && spec.kind != tc.kind {
			t.Errorf("parseStore(%q) = %v, %v; want kind %v, ok %v", tc.in, spec.kind, err, tc.kind, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("parseStore(%q): the error repeats the password: %v", tc.in, err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://tidings@db/tidings":                        "postgres://tidings@db/tidings",
		"postgres://tidings:s3cret@db:5432/tidings":            "postgres://tidings:xxxxx@db:5432/tidings",
		"postgres://db/tidings?user=t&password=s3cret":         "postgres://db/tidings?password=xxxxx&user=t",
		"nats://n1:4222":                                       "nats://n1:4222",
		"nats://me:s3cret@n1:4222":                             "nats://me:xxxxx@n1:4222",
		"postgresql://db/t?sslmode=require&sslpassword=s3cret": "postgresql://db/t?sslmode=require&sslpassword=xxxxx",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := redactList("nats://a:s3cret@n1:4222, nats://n2:4222"); got != "nats://a:xxxxx@n1:4222,nats://n2:4222" {
		t.Errorf("redactList: %q", got)
	}
}

// A broker joins nodes sharing a PostgreSQL store: with SQLite, serve
// refuses it as a usage error, whether it comes from the flag, the
// environment or the configuration file.
func TestBrokerNeedsPostgres(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		env  map[string]string
		args []string
	}{
		{nil, []string{"serve", "--data", dir, "--broker", "nats://127.0.0.1:4222"}},
		{map[string]string{"TIDINGS_BROKER": "nats://127.0.0.1:4222"}, []string{"serve", "--data", dir}},
		{map[string]string{"TIDINGS_BROKER": "nats://127.0.0.1:4222", "TIDINGS_STORE": "sqlite"}, []string{"serve", "--data", dir}},
	} {
		r := runCLI(t, tc.env, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "--broker joins nodes that share a PostgreSQL store") {
			t.Errorf("tidings %s with %v: exit code %d, want %d with a message saying why; stderr:\n%s",
				strings.Join(tc.args, " "), tc.env, r.code, exitUsage, r.stderr)
		}
	}
	r := runCLI(t, nil, "serve", "--data", dir, "--store", "postgres://db/t", "--broker", "http://n1:4222")
	if r.code != exitUsage || !strings.Contains(r.stderr, "not a NATS server URL") {
		t.Errorf("serve --broker http://…: exit code %d, stderr:\n%s", r.code, r.stderr)
	}
	r = runCLI(t, nil, "serve", "--data", dir, "--store", "mysql://db/t")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--store must be empty") {
		t.Errorf("serve --store mysql://…: exit code %d, stderr:\n%s", r.code, r.stderr)
	}
}

// The password of a PostgreSQL --store is never printed: not in the
// messages of a store that cannot be opened, nor of a URL that cannot be
// read, by serve or by the admin commands.
func TestStorePasswordNeverShown(t *testing.T) {
	const secret = "s3cret-Pa55"
	dir := t.TempDir()
	// Port 1 of the loopback interface: nothing listens there.
	dsn := "postgres://tidings:" + secret + "@127.0.0.1:1/tidings?connect_timeout=5"
	for _, args := range [][]string{
		{"serve", "--addr", "127.0.0.1:0", "--data", dir, "--store", dsn},
		{"apps", "list", "--data", dir, "--store", dsn},
		{"apps", "create", "--data", dir, "--store", dsn, "shop"},
		{"token", "--data", dir, "--store", dsn, "--user", "alice"},
		{"serve", "--addr", "127.0.0.1:0", "--data", dir, "--store", "postgres://tidings:" + secret + "@127.0.0.1:1/%zz"},
	} {
		r := runCLI(t, nil, args...)
		if r.code == exitOK {
			t.Errorf("tidings %s: exit code 0, want a failure", args[0])
		}
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("tidings %s printed the password of --store:\n%s%s", args[0], r.stdout, r.stderr)
		}
	}
	r := runCLI(t, map[string]string{"TIDINGS_STORE": dsn}, "apps", "list", "--data", dir)
	if r.code == exitOK || strings.Contains(r.stdout+r.stderr, secret) {
		t.Errorf("apps list with TIDINGS_STORE: exit code %d, output:\n%s%s", r.code, r.stdout, r.stderr)
	}
}
