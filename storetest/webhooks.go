package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// TestWebhooks: endpoints (tidings.WebhookService) and the dispatcher's
// side (tidings.WebhookStore): each app sees its own endpoints; a new one
// stands at the end of the log; WebhookEvents reads the log of every app
// in order; progress is saved only for the endpoint's version; a replay
// moves the position; retention never removes what an endpoint in good
// standing has not received, and a failing one is told what it missed.
// Skipped when the store has no webhooks.
func TestWebhooks(t *testing.T, newStores Factory) {
	f := newFixture(t, newStores)
	if f.Webhooks == nil || f.WebhookStore == nil {
		t.Skip("the store has no webhooks")
	}
	hooks, store := f.Webhooks, f.WebhookStore
	ctx := context.Background()
	f.mkUsers("a", "alice", "bob")
	f.mkConv("a", "alice", tidings.NewConversation{ID: "c"}, "bob")

	// Only the server key; bad input is refused.
	_, err := hooks.CreateWebhook(as("a", "alice"), tidings.NewWebhook{URL: "https://example.com/hook"})
	wantCode(t, "a user creates an endpoint", err, tidings.EForbidden)
	for _, nw := range []tidings.NewWebhook{
		{URL: "example.com/hook"},
		{URL: "ftp://example.com/hook"},
		{URL: "https://user:pw@example.com/hook"},
		{URL: "https://example.com/hook", Events: []string{}},
		{URL: "https://example.com/hook", Events: []string{"presence.update"}},
		{URL: "https://example.com/hook", Events: []string{"nothing.*"}},
		{URL: "https://example.com/hook", Secret: "whsec_c2hvcnQ="},
	} {
		_, err := hooks.CreateWebhook(server("a"), nw)
		wantCode(t, "create "+nw.URL, err, tidings.EInvalid)
	}

	// A new endpoint stands at the end of the log, with a secret and
	// every event by default.
	last := f.lastSeq()
	ep := must[*tidings.WebhookEndpoint](t)(hooks.CreateWebhook(server("a"), tidings.NewWebhook{URL: "https://example.com/hook"}))
	if ep.ID == "" || ep.AppID != "a" || ep.LastSeq != last || len(ep.Events) != 1 || ep.Events[0] != "*" || ep.Disabled || ep.Failing {
		t.Fatalf("a new endpoint: %+v; want at the end of the log (%d), events [*]", ep, last)
	}
	if _, err := tidings.WebhookSecretKey(ep.Secret); err != nil {
		t.Errorf("the generated secret %q: %v", ep.Secret, err)
	}
	own := tidings.NewWebhookSecret()
	epB := must[*tidings.WebhookEndpoint](t)(hooks.CreateWebhook(server("b"), tidings.NewWebhook{URL: "https://example.com/b",
		Events: []string{"conversationMessage.*"}, Secret: own, Disabled: true}))
	if epB.Secret != own || !epB.Disabled {
		t.Errorf("an endpoint with its own secret, disabled: %+v", epB)
	}

	// Apps see their own endpoints only; the dispatcher sees them all.
	if l := must[[]*tidings.WebhookEndpoint](t)(hooks.ListWebhooks(server("a"))); len(l) != 1 || l[0].ID != ep.ID || l[0].Secret != ep.Secret {
		t.Errorf("app a lists %d endpoints", len(l))
	}
	_, err = hooks.FindWebhook(server("b"), ep.ID)
	wantCode(t, "b finds a's endpoint", err, tidings.ENotFound)
	wantCode(t, "b deletes a's endpoint", hooks.DeleteWebhook(server("b"), ep.ID), tidings.ENotFound)
	_, err = hooks.UpdateWebhook(server("b"), ep.ID, tidings.WebhookUpdate{})
	wantCode(t, "b updates a's endpoint", err, tidings.ENotFound)
	_, err = hooks.ListWebhookAttempts(server("b"), ep.ID, 10)
	wantCode(t, "b reads a's attempts", err, tidings.ENotFound)
	if all := must[[]*tidings.WebhookEndpoint](t)(store.AllWebhooks(ctx)); len(all) != 2 {
		t.Errorf("AllWebhooks: %d endpoints, want 2", len(all))
	}

	// The events after the position, of every app, in order.
	for range 5 {
		f.send("a", "alice", "c", "x")
	}
	evs, pruned, err := store.WebhookEvents(ctx, ep.LastSeq, 100)
	if err != nil || pruned != 0 || len(evs) != 5 {
		t.Fatalf("WebhookEvents after the endpoint's position: %d events, pruned %d, %v; want the 5 sends", len(evs), pruned, err)
	}
	for i, e := range evs {
		if e.Name != tidings.EventMessageSent || e.AppID != "a" || (i > 0 && e.Seq <= evs[i-1].Seq) {
			t.Fatalf("event %d: %d %s of %s", i, e.Seq, e.Name, e.AppID)
		}
	}
	if two, _, err := store.WebhookEvents(ctx, ep.LastSeq, 2); err != nil || len(two) != 2 || two[0].Seq != evs[0].Seq {
		t.Errorf("WebhookEvents with limit 2: %d, %v", len(two), err)
	}

	// Progress: position, attempts (newest first), state.
	now := time.Now().UTC().Truncate(time.Millisecond)
	p := tidings.WebhookProgress{EndpointID: ep.ID, Version: ep.Version, LastSeq: evs[2].Seq, FailingSince: &now}
	for i := range 3 {
		p.Attempts = append(p.Attempts, tidings.WebhookAttempt{EndpointID: ep.ID, EventID: evs[2].ID, EventSeq: evs[2].Seq,
			EventName: evs[2].Name, Time: now, Attempt: i + 1, Status: 500 + i, LatencyMS: 1.5})
	}
	p.Attempts[2].Status, p.FailingSince = 204, nil
	if err := store.SaveWebhookProgress(ctx, []tidings.WebhookProgress{p}); err != nil {
		t.Fatal(err)
	}
	got := must[*tidings.WebhookEndpoint](t)(hooks.FindWebhook(server("a"), ep.ID))
	if got.LastSeq != evs[2].Seq || got.FailingSince != nil || got.Failing {
		t.Errorf("after progress: %+v", got)
	}
	attempts := must[[]*tidings.WebhookAttempt](t)(hooks.ListWebhookAttempts(server("a"), ep.ID, 2))
	if len(attempts) != 2 || attempts[0].Attempt != 3 || attempts[0].Status != 204 || attempts[1].Status != 501 ||
		attempts[0].LatencyMS != 1.5 || attempts[0].EventID != evs[2].ID || !attempts[0].Time.Equal(now) {
		t.Errorf("attempts, newest first, limit 2: %+v", attempts)
	}

	// Retention keeps what the endpoint has not received.
	must[int64](t)(f.EventLog.Prune(ctx, time.Now().Add(time.Hour)))
	if rest, pruned, err := store.WebhookEvents(ctx, evs[2].Seq, 100); err != nil || pruned != 0 || len(rest) != 2 {
		t.Errorf("after a prune bound by the endpoint: %d events, pruned %d, %v; want the 2 it has not received", len(rest), pruned, err)
	}

	// A replay moves the position and the version: progress saved for
	// the old version is not applied.
	_, err = hooks.ReplayWebhook(server("a"), ep.ID, tidings.WebhookReplay{})
	wantCode(t, "replay from nowhere", err, tidings.EInvalid)
	_, err = hooks.ReplayWebhook(server("a"), ep.ID, tidings.WebhookReplay{FromEventID: "nope"})
	wantCode(t, "replay from an unknown event", err, tidings.ENotFound)
	_, err = hooks.ReplayWebhook(server("a"), ep.ID, tidings.WebhookReplay{FromSeq: evs[4].Seq + 2})
	wantCode(t, "replay from past the log", err, tidings.EInvalid)
	_, err = hooks.ReplayWebhook(server("a"), ep.ID, tidings.WebhookReplay{FromSeq: evs[2].Seq})
	wantCode(t, "replay from a pruned event", err, tidings.EResyncRequired)
	ep2 := must[*tidings.WebhookEndpoint](t)(hooks.ReplayWebhook(server("a"), ep.ID, tidings.WebhookReplay{FromEventID: evs[4].ID}))
	if ep2.LastSeq != evs[4].Seq-1 || ep2.Version == ep.Version {
		t.Fatalf("after a replay from the last event: %+v", ep2)
	}
	p = tidings.WebhookProgress{EndpointID: ep.ID, Version: ep.Version, LastSeq: evs[4].Seq}
	if err := store.SaveWebhookProgress(ctx, []tidings.WebhookProgress{p}); err != nil {
		t.Fatal(err)
	}
	if got := must[*tidings.WebhookEndpoint](t)(hooks.FindWebhook(server("a"), ep.ID)); got.LastSeq != ep2.LastSeq {
		t.Errorf("a stale version's progress moved the position to %d (the replay's is %d)", got.LastSeq, ep2.LastSeq)
	}

	// Failing, it no longer holds retention back, and WebhookEvents says
	// what it missed.
	ep3 := must[*tidings.WebhookEndpoint](t)(hooks.ReplayWebhook(server("a"), ep.ID, tidings.WebhookReplay{FromSeq: evs[3].Seq}))
	p = tidings.WebhookProgress{EndpointID: ep.ID, Version: ep3.Version, LastSeq: ep3.LastSeq, Failing: true, FailingSince: &now}
	if err := store.SaveWebhookProgress(ctx, []tidings.WebhookProgress{p}); err != nil {
		t.Fatal(err)
	}
	if got := must[*tidings.WebhookEndpoint](t)(hooks.FindWebhook(server("a"), ep.ID)); !got.Failing || got.FailingSince == nil {
		t.Errorf("after saving it failing: %+v", got)
	}
	must[int64](t)(f.EventLog.Prune(ctx, time.Now().Add(time.Hour)))
	rest, pruned, err := store.WebhookEvents(ctx, ep3.LastSeq, 100)
	if err != nil || pruned < evs[3].Seq || len(rest) != 1 || rest[0].Seq != evs[4].Seq {
		t.Errorf("after a prune past a failing endpoint: %d events, pruned up to %d, %v; want the newest kept, pruned up to %d",
			len(rest), pruned, err, evs[3].Seq)
	}
	p = tidings.WebhookProgress{EndpointID: ep.ID, Version: ep3.Version, LastSeq: pruned, Failing: true, FailingSince: &now,
		MissedUpTo: pruned, MissedAt: &now}
	if err := store.SaveWebhookProgress(ctx, []tidings.WebhookProgress{p}); err != nil {
		t.Fatal(err)
	}
	if got := must[*tidings.WebhookEndpoint](t)(hooks.FindWebhook(server("a"), ep.ID)); got.MissedUpTo != pruned || got.MissedAt == nil {
		t.Errorf("missed events: %+v", got)
	}

	// An update changes the settings, makes it healthy again, and a new
	// version.
	url, events, off := "https://example.com/v2", []string{"conversation.*"}, true
	got = must[*tidings.WebhookEndpoint](t)(hooks.UpdateWebhook(server("a"), ep.ID, tidings.WebhookUpdate{URL: &url, Events: &events, Disabled: &off}))
	if got.URL != url || got.Events[0] != "conversation.*" || !got.Disabled || got.Failing || got.FailingSince != nil || got.Version == ep3.Version {
		t.Errorf("after an update: %+v", got)
	}
	bad := "nope"
	_, err = hooks.UpdateWebhook(server("a"), ep.ID, tidings.WebhookUpdate{URL: &bad})
	wantCode(t, "update to a bad URL", err, tidings.EInvalid)

	// Deleted, it is gone, with its attempts; progress for it is dropped.
	if err := hooks.DeleteWebhook(server("a"), ep.ID); err != nil {
		t.Fatal(err)
	}
	_, err = hooks.FindWebhook(server("a"), ep.ID)
	wantCode(t, "find a deleted endpoint", err, tidings.ENotFound)
	p = tidings.WebhookProgress{EndpointID: ep.ID, Version: got.Version, LastSeq: 1,
		Attempts: []tidings.WebhookAttempt{{EndpointID: ep.ID, EventID: "x", Time: now, Attempt: 1}}}
	if err := store.SaveWebhookProgress(ctx, []tidings.WebhookProgress{p}); err != nil {
		t.Errorf("progress of a deleted endpoint: %v", err)
	}
	if all := must[[]*tidings.WebhookEndpoint](t)(store.AllWebhooks(ctx)); len(all) != 1 || all[0].ID != epB.ID {
		t.Errorf("AllWebhooks after a deletion: %d", len(all))
	}
}
