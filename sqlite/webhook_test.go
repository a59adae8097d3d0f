package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// Retention keeps the events an endpoint in good standing has not
// received, and no longer waits for a failing or disabled one, which
// learns what it missed from WebhookEvents.
func TestPruneKeepsWebhookEvents(t *testing.T) {
	e, conv := pair(t)
	hooks := sqlite.NewWebhookService(e.db)
	log := sqlite.NewEventLog(e.db)
	ctx := context.Background()
	ep := must[*tidings.WebhookEndpoint](t)(hooks.CreateWebhook(server("a"), tidings.NewWebhook{URL: "https://example.com/hook"}))
	if _, err := hooks.CreateWebhook(server("b"), tidings.NewWebhook{URL: "https://example.com/b", Disabled: true}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		e.send(t, "alice", conv, "x")
	}
	// Nothing after the endpoint's position is pruned (what came before
	// its creation is).
	must[int64](t)(log.Prune(ctx, time.Now().Add(time.Hour)))
	evs, pruned, err := hooks.WebhookEvents(ctx, ep.LastSeq, 100)
	if err != nil || pruned != 0 || len(evs) != 5 {
		t.Fatalf("WebhookEvents: %d events, pruned %d, %v", len(evs), pruned, err)
	}
	// Once it has received three, the log is pruned up to them.
	p := tidings.WebhookProgress{EndpointID: ep.ID, Version: ep.Version, LastSeq: evs[2].Seq,
		Attempts: []tidings.WebhookAttempt{{EventID: evs[2].ID, EventSeq: evs[2].Seq, EventName: evs[2].Name, Time: time.Now(), Attempt: 1, Status: 204, LatencyMS: 1.5}}}
	if err := hooks.SaveWebhookProgress(ctx, []tidings.WebhookProgress{p}); err != nil {
		t.Fatal(err)
	}
	must[int64](t)(log.Prune(ctx, time.Now().Add(time.Hour)))
	evs2, pruned, err := hooks.WebhookEvents(ctx, evs[2].Seq, 100)
	if err != nil || pruned != 0 || len(evs2) != 2 {
		t.Fatalf("after a prune bound by the endpoint: %d events, pruned %d, %v", len(evs2), pruned, err)
	}
	attempts := must[[]*tidings.WebhookAttempt](t)(hooks.ListWebhookAttempts(server("a"), ep.ID, 10))
	if len(attempts) != 1 || attempts[0].Status != 204 || attempts[0].LatencyMS != 1.5 || attempts[0].EventSeq != evs[2].Seq {
		t.Fatalf("attempts: %+v", attempts)
	}
	// A stale version (the endpoint was replayed meanwhile) saves no
	// position.
	ep = must[*tidings.WebhookEndpoint](t)(hooks.ReplayWebhook(server("a"), ep.ID, tidings.WebhookReplay{FromSeq: evs[3].Seq}))
	p.LastSeq = evs[4].Seq
	if err := hooks.SaveWebhookProgress(ctx, []tidings.WebhookProgress{p}); err != nil {
		t.Fatal(err)
	}
	if got := must[*tidings.WebhookEndpoint](t)(hooks.FindWebhook(server("a"), ep.ID)); got.LastSeq != evs[2].Seq {
		t.Fatalf("position %d after a stale save, want %d (the replay's)", got.LastSeq, evs[2].Seq)
	}
	// Failing, it no longer holds retention, and learns what it missed.
	now := time.Now()
	if err := hooks.SaveWebhookProgress(ctx, []tidings.WebhookProgress{{EndpointID: ep.ID, Version: ep.Version,
		LastSeq: ep.LastSeq, Failing: true, FailingSince: &now}}); err != nil {
		t.Fatal(err)
	}
	if n := must[int64](t)(log.Prune(ctx, time.Now().Add(time.Hour))); n != 1 {
		t.Fatalf("pruned %d events with the endpoint failing, want 1: all but the newest", n)
	}
	evs3, pruned, err := hooks.WebhookEvents(ctx, ep.LastSeq, 100)
	if err != nil || pruned != evs[3].Seq || len(evs3) != 1 || evs3[0].Seq != evs[4].Seq {
		t.Fatalf("after a prune past a failing endpoint: %d events, pruned %d (want %d), %v", len(evs3), pruned, evs[3].Seq, err)
	}
	_, err = hooks.ReplayWebhook(server("a"), ep.ID, tidings.WebhookReplay{FromSeq: evs[3].Seq})
	wantCode(t, err, tidings.EResyncRequired)
	// An update makes it healthy again.
	on := false
	got := must[*tidings.WebhookEndpoint](t)(hooks.UpdateWebhook(server("a"), ep.ID, tidings.WebhookUpdate{Disabled: &on}))
	if got.Failing || got.FailingSince != nil || got.Version != ep.Version+1 {
		t.Fatalf("after an update: %+v", got)
	}
}

func TestWebhookServiceChecks(t *testing.T) {
	e := newEnv(t)
	hooks := sqlite.NewWebhookService(e.db)
	_, err := hooks.CreateWebhook(user("a", "alice"), tidings.NewWebhook{URL: "https://example.com"})
	wantCode(t, err, tidings.EForbidden)
	for _, nw := range []tidings.NewWebhook{
		{URL: "example.com/hook"},
		{URL: "https://user:pw@example.com/hook"},
		{URL: "https://example.com/hook", Events: []string{}},
		{URL: "https://example.com/hook", Events: []string{"presence.update"}},
		{URL: "https://example.com/hook", Events: []string{"nothing.*"}},
		{URL: "https://example.com/hook", Secret: "whsec_c2hvcnQ="},
	} {
		_, err := hooks.CreateWebhook(server("a"), nw)
		wantCode(t, err, tidings.EInvalid)
	}
	for range sqlite.MaxWebhooksPerApp {
		must[*tidings.WebhookEndpoint](t)(hooks.CreateWebhook(server("a"), tidings.NewWebhook{URL: "http://127.0.0.1:1/h", Events: []string{"conversation.*"}}))
	}
	_, err = hooks.CreateWebhook(server("a"), tidings.NewWebhook{URL: "https://example.com/hook"})
	wantCode(t, err, tidings.EConflict)
	// Apps do not see each other's endpoints.
	list := must[[]*tidings.WebhookEndpoint](t)(hooks.ListWebhooks(server("b")))
	if len(list) != 0 {
		t.Fatalf("app b sees %d endpoints", len(list))
	}
	a := must[[]*tidings.WebhookEndpoint](t)(hooks.ListWebhooks(server("a")))
	_, err = hooks.FindWebhook(server("b"), a[0].ID)
	wantCode(t, err, tidings.ENotFound)
	wantCode(t, hooks.DeleteWebhook(server("b"), a[0].ID), tidings.ENotFound)
	_, err = hooks.ReplayWebhook(server("a"), a[0].ID, tidings.WebhookReplay{})
	wantCode(t, err, tidings.EInvalid)
	if all := must[[]*tidings.WebhookEndpoint](t)(hooks.AllWebhooks(context.Background())); len(all) != sqlite.MaxWebhooksPerApp {
		t.Fatalf("AllWebhooks: %d", len(all))
	}
}
