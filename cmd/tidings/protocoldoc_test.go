package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
)

// The defaults docs/protocol.md states are the server's: each sentence of
// the document that names a setting's default, with the value that
// defaultConfig has.
func TestProtocolDocumentStatesTheDefaults(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(doc)), " ") // sentences across lines
	cfg := defaultConfig()
	kib := func(n int64) string { return fmt.Sprintf("%d KiB", n>>10) }
	secs := func(d time.Duration) string { return fmt.Sprintf("%d s", int(d.Seconds())) }
	for _, c := range []struct{ says, value, want string }{
		{"`max-frame-bytes` (%s)", kib(cfg.MaxFrameBytes), "256 KiB"},
		{"`max-message-bytes` (%s)", kib(defaultMaxMessageBytes), "64 KiB"},
		{"`command-rate` (%s per second", fmt.Sprint(cfg.CommandRate), "50"},
		{"bursts of %s)", fmt.Sprint(2 * cfg.CommandRate), "100"},
		{"`send-queue` (%s)", fmt.Sprint(cfg.SendQueue), "4096"},
		{"`max-conns-per-user` (%s)", fmt.Sprint(cfg.MaxConnsPerUser), "32"},
		{"`typing-timeout` (%s)", secs(cfg.TypingTimeout), "5 s"},
		{"`auth-timeout` (%s)", secs(cfg.AuthTimeout), "10 s"},
		{"`auth-timeout` (%s by default)", secs(cfg.AuthTimeout), "10 s"},
		{"`retention` (%s days)", fmt.Sprint(int(cfg.Retention.Hours() / 24)), "30"},
		{"`ping-interval` (%s by default)", secs(cfg.PingInterval), "25 s"},
		{"`pong-timeout` (%s by default)", secs(cfg.PingInterval + cfg.PongTimeout), "35 s"},
		{"at most %s connections online (`presence-limit`)", fmt.Sprint(cfg.PresenceLimit), "100"},
	} {
		if c.value != c.want {
			t.Errorf("the default is %s, the test expects %s: update docs/protocol.md (%q) and this test", c.value, c.want, c.says)
		}
		if s := fmt.Sprintf(c.says, c.value); !strings.Contains(text, s) {
			t.Errorf("docs/protocol.md does not say %q", s)
		}
	}
}

// Every link of docs/protocol.md to a part of itself (](#anchor)), such as
// those of the contents and of the table for teams coming from hosted chat
// SDKs, leads to one of its headings, with the anchor GitHub gives it.
func TestProtocolDocumentLinksLeadToItsHeadings(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteByte('-')
			}
		}
		anchors[b.String()] = true
	}
	links := regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(string(doc), -1)
	if len(links) < 20 {
		t.Fatalf("found %d links to parts of the document: the pattern no longer matches", len(links))
	}
	for _, l := range links {
		if !anchors[l[1]] {
			t.Errorf("docs/protocol.md links to #%s, which is none of its headings", l[1])
		}
	}
}
