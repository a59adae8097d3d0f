package main

import (
	"bufio"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// documentedSetting is a row of the table of settings in docs/config.md.
type documentedSetting struct {
	env      string
	def      string   // the default, as written ("" for none)
	alsoDefs []string // the same default written otherwise: "64KiB (65536)"
}

// configDocSettings reads the table of settings of docs/config.md.
func configDocSettings(t *testing.T) map[string]documentedSetting {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `--([a-z-]+)` \\| `([A-Z_]+)` \\| ([^|]+) \\|")
	code := regexp.MustCompile("^`([^`]*)`(?: \\(([0-9]+)\\))?")
	settings := make(map[string]documentedSetting)
	for line := range strings.Lines(string(doc)) {
		m := row.FindStringSubmatch(line)
		if m == nil {
			if strings.HasPrefix(line, "| `--") {
				t.Errorf("docs/config.md: a row of the settings table does not read as | `--flag` | `TIDINGS_...` | default | meaning |:\n%s", line)
			}
			continue
		}
		s := documentedSetting{env: m[2]}
		switch def := strings.TrimSpace(m[3]); {
		case def == "none":
		case code.MatchString(def):
			c := code.FindStringSubmatch(def)
			s.def = c[1]
			if c[2] != "" {
				s.alsoDefs = append(s.alsoDefs, c[2])
			}
		default:
			t.Errorf("docs/config.md: --%s: cannot read the default %q", m[1], def)
		}
		if _, dup := settings[m[1]]; dup {
			t.Errorf("docs/config.md documents --%s twice", m[1])
		}
		settings[m[1]] = s
	}
	return settings
}

// TestConfigDocMatchesFlags checks the table of settings of docs/config.md
// against the flags of serve: the same settings, each with its environment
// variable and its default, and the help of serve showing the same
// defaults.
func TestConfigDocMatchesFlags(t *testing.T) {
	documented := configDocSettings(t)
	help := mustRun(t, nil, "help", "serve").stdout
	for _, name := range settingNames() {
		doc, ok := documented[name]
		if !ok {
			t.Errorf("docs/config.md does not document --%s", name)
			continue
		}
		delete(documented, name)
		if doc.env != envName(name) {
			t.Errorf("docs/config.md: --%s reads %s, not %s", name, envName(name), doc.env)
		}

		// The documented default, given as the value, changes nothing.
		cfg := defaultConfig()
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		addServeFlags(fs, &cfg)
		f := fs.Lookup(name)
		for _, def := range append([]string{doc.def}, doc.alsoDefs...) {
			if err := f.Value.Set(def); err != nil {
				t.Errorf("docs/config.md: --%s: the documented default %q is not a valid value: %v", name, def, err)
			} else if got := f.Value.String(); got != f.DefValue {
				t.Errorf("docs/config.md: --%s: documented default %q, but the default is %q", name, def, f.DefValue)
			}
		}

		// help serve says the default too.
		_, entry, _ := strings.Cut(help, "  --"+name+" ")
		entry, _, _ = strings.Cut(entry, "\n  --")
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && !strings.Contains(entry, "default ") {
			t.Errorf("help serve does not say the default of --%s (%s):\n  --%s %s", name, f.DefValue, name, entry)
		}
	}
	for name := range documented {
		t.Errorf("docs/config.md documents --%s, which serve does not have", name)
	}
}

// TestConfigDocLimits checks each limit docs/config.md sets on a value:
// the bound is accepted, a value past it refused before the server starts.
func TestConfigDocLimits(t *testing.T) {
	for _, tc := range []struct {
		ok, bad []string
	}{
		{[]string{"--max-message-bytes", "1GiB", "--max-body-bytes", "2GiB", "--max-frame-bytes", "2GiB"},
			[]string{"--max-message-bytes", "1073741825", "--max-body-bytes", "2GiB", "--max-frame-bytes", "2GiB"}},
		{[]string{"--max-body-bytes", "65537"}, []string{"--max-body-bytes", "65536"}},
		{[]string{"--max-frame-bytes", "65537"}, []string{"--max-frame-bytes", "65536"}},
		{[]string{"--token-ttl", "1s"}, []string{"--token-ttl", "999ms"}},
		{[]string{"--ping-interval", "100ms"}, []string{"--ping-interval", "99ms"}},
		{[]string{"--pong-timeout", "100ms"}, []string{"--pong-timeout", "99ms"}},
		{[]string{"--auth-timeout", "1ms"}, []string{"--auth-timeout", "0s"}},
		{[]string{"--typing-timeout", "1ms"}, []string{"--typing-timeout", "0s"}},
		{[]string{"--shutdown-timeout", "1ms"}, []string{"--shutdown-timeout", "0s"}},
		{[]string{"--realtime-idle-timeout", "0s"}, []string{"--realtime-idle-timeout", "-1s"}},
		{[]string{"--presence-limit", "0"}, []string{"--presence-limit", "-1"}},
		{[]string{"--send-queue", "16"}, []string{"--send-queue", "15"}},
		{[]string{"--writers", "1024"}, []string{"--writers", "1025"}},
		{[]string{"--writers", "0"}, []string{"--writers", "-1"}},
		{[]string{"--max-conns-per-user", "1"}, []string{"--max-conns-per-user", "0"}},
		{[]string{"--command-rate", "0.5"}, []string{"--command-rate", "0"}},
		{[]string{"--retention", "1h"}, []string{"--retention", "59m"}},
		{[]string{"--webhook-fail-after", "1s", "--webhook-max-backoff", "1s", "--webhook-timeout", "1s"}, []string{"--webhook-fail-after", "999ms"}},
		{[]string{"--webhook-max-backoff", "1s"}, []string{"--webhook-max-backoff", "999ms"}},
		{[]string{"--webhook-timeout", "1s"}, []string{"--webhook-timeout", "999ms"}},
		{[]string{"--read-header-timeout", "0s", "--read-timeout", "0s", "--write-timeout", "0s", "--idle-timeout", "0s"},
			[]string{"--read-timeout", "-1s"}},
		{[]string{"--log-level", "warn", "--log-format", "json"}, []string{"--log-format", "yaml"}},
	} {
		if _, err := parseServeEnv(t, nil, tc.ok...); err != nil {
			t.Errorf("serve %s: %v", strings.Join(tc.ok, " "), err)
		}
		if _, err := parseServeEnv(t, nil, tc.bad...); err == nil {
			t.Errorf("serve %s: accepted", strings.Join(tc.bad, " "))
		}
	}
	if !slices.Contains(settingNames(), "config") {
		t.Error("no --config")
	}
}

// TestServeSettingsTakeEffect checks, on a running server, what
// docs/config.md says some settings do.
func TestServeSettingsTakeEffect(t *testing.T) {
	data := filepath.Join(t.TempDir(), "new", "data")
	url, stop := startServe(t, data, "--max-body-bytes", "4KiB", "--max-message-bytes", "2KiB", "--token-ttl", "1h",
		"--read-header-timeout", "0", "--read-timeout", "1s")
	t.Cleanup(func() { stop() })

	// --data: created, readable by its owner only.
	if fi, err := os.Stat(data); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory: %v, %v; want it created with mode 0700", fi.Mode(), err)
	}

	doc := fetchAPIDoc(t, url)
	c := &apiCaller{t: t, url: url, doc: doc}
	key := parseApp(t, mustRun(t, nil, "apps", "rotate-key", "--data", data, "default").stdout)["server key"]
	c.call(201, "POST", "/v1/users", key, "", `{"id":"alice"}`)

	// --token-ttl: the default and longest lifetime of minted tokens.
	var exp time.Time
	a := c.call(201, "POST", "/v1/users/alice/tokens", key, "", "")
	if err := exp.UnmarshalText([]byte(a.field(t, "expiresAt"))); err != nil || time.Until(exp) > time.Hour || time.Until(exp) < 59*time.Minute {
		t.Errorf("a token minted without ttlSeconds expires at %s (%v), want in 1h", a.field(t, "expiresAt"), err)
	}
	c.call(201, "POST", "/v1/users/alice/tokens", key, "", `{"ttlSeconds":3600}`)
	c.call(400, "POST", "/v1/users/alice/tokens", key, "", `{"ttlSeconds":3601}`)
	alice := a.field(t, "token")

	// --max-message-bytes and --max-body-bytes: too_large past them.
	c.call(201, "POST", "/v1/conversations", alice, "", `{"id":"notes"}`)
	msg := func(n int) string { return `{"parts":[{"type":"text/plain","data":"` + strings.Repeat("x", n) + `"}]}` }
	c.call(201, "POST", "/v1/conversations/notes/messages", alice, "", msg(1500))
	if a := c.call(413, "POST", "/v1/conversations/notes/messages", alice, "", msg(3000)); a.errorCode() != "too_large" {
		t.Errorf("a message past --max-message-bytes: %s", a.body)
	}
	if a := c.call(413, "POST", "/v1/conversations/notes/messages", alice, "", msg(5000)); a.errorCode() != "too_large" {
		t.Errorf("a body past --max-body-bytes: %s", a.body)
	}

	// --read-header-timeout 0: the read timeout bounds the headers.
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := bufio.NewReader(conn).ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a request whose headers never end: %v; want the connection closed after the read timeout (1s)", err)
	}
}
