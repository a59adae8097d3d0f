package main

import (
	"context"
	"strings"
	"testing"

	"github.com/tidings/tidings/sqlite"
)

// TestAppsBeforeSend: apps before-send shows, sets and removes an app's
// hook in the data directory, as /v1/app/before-send does.
func TestAppsBeforeSend(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"TIDINGS_DATA": dir}
	mustRun(t, env, "apps", "create", "acme")

	if out := mustRun(t, env, "apps", "before-send", "acme").stdout; !strings.Contains(out, "none") {
		t.Errorf("apps before-send of an app without a hook printed %q", out)
	}
	out := mustRun(t, env, "apps", "before-send", "--url", "https://backend.example.com/before-send", "--timeout", "1500ms", "--fail-open", "acme").stdout
	if !strings.Contains(out, "url:     https://backend.example.com/before-send") || !strings.Contains(out, "timeout: 1.5s") ||
		!strings.Contains(out, "fails:   open") || !strings.Contains(out, "secret:  whsec_") {
		t.Errorf("apps before-send --url printed:\n%s", out)
	}
	hooks := sqlite.NewBeforeSendService(openTestDB(t, dir))
	h, err := hooks.AppBeforeSend(context.Background(), "acme")
	if err != nil || h == nil || h.URL != "https://backend.example.com/before-send" || h.TimeoutMS != 1500 || !h.FailOpen {
		t.Fatalf("the hook stored: %+v, %v", h, err)
	}
	// Set again without --secret: the secret is kept; fail-closed.
	out = mustRun(t, env, "apps", "before-send", "--url", "https://backend.example.com/v2", "acme").stdout
	if !strings.Contains(out, "secret:  "+h.Secret) || !strings.Contains(out, "fails:   closed") || !strings.Contains(out, "timeout: 2s") {
		t.Errorf("apps before-send again printed:\n%s", out)
	}
	if out := mustRun(t, env, "apps", "before-send", "acme").stdout; !strings.Contains(out, "https://backend.example.com/v2") {
		t.Errorf("apps before-send printed:\n%s", out)
	}
	if r := runCLI(t, env, "apps", "before-send", "--url", "https://x.example", "--timeout", "11s", "acme"); r.code != exitFailure || !strings.Contains(r.stderr, "timeoutMs") {
		t.Errorf("a timeout of 11s: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runCLI(t, env, "apps", "before-send", "--url", "https://x.example", "--off", "acme"); r.code != exitUsage {
		t.Errorf("--url with --off: exit %d", r.code)
	}
	if r := runCLI(t, env, "apps", "before-send", "nope"); r.code != exitFailure || !strings.Contains(r.stderr, `no app "nope"`) {
		t.Errorf("apps before-send nope: exit %d, stderr %q", r.code, r.stderr)
	}
	if out := mustRun(t, env, "apps", "before-send", "--off", "acme").stdout; !strings.Contains(out, "none") {
		t.Errorf("apps before-send --off printed %q", out)
	}
	if h, err := hooks.AppBeforeSend(context.Background(), "acme"); err != nil || h != nil {
		t.Errorf("the hook after --off: %+v, %v", h, err)
	}
}
