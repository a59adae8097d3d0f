package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// The rest of the webhook store is tested by the conformance suite
// (storetest.TestWebhooks).

func TestWebhooksPerApp(t *testing.T) {
	e := newEnv(t)
	hooks := sqlite.NewWebhookService(e.db)
	for range tidings.MaxWebhooksPerApp {
		must[*tidings.WebhookEndpoint](t)(hooks.CreateWebhook(server("a"), tidings.NewWebhook{URL: "http://127.0.0.1:1/h"}))
	}
	_, err := hooks.CreateWebhook(server("a"), tidings.NewWebhook{URL: "https://example.com/hook"})
	wantCode(t, err, tidings.EConflict)
	// Another app has its own.
	must[*tidings.WebhookEndpoint](t)(hooks.CreateWebhook(server("b"), tidings.NewWebhook{URL: "https://example.com/hook"}))
}

// TestPruneKeepsWhatAReplayAskedFor: a replay accepted while a prune runs
// (after the prune read the endpoints' positions) keeps the events it
// asked for; the dispatcher must not find them gone.
func TestPruneKeepsWhatAReplayAskedFor(t *testing.T) {
	e, conv := pair(t)
	hooks := sqlite.NewWebhookService(e.db)
	log := sqlite.NewEventLog(e.db)
	ep := must[*tidings.WebhookEndpoint](t)(hooks.CreateWebhook(server("a"), tidings.NewWebhook{URL: "http://127.0.0.1:1/h"}))
	var seqs []int64
	for _, s := range []string{"one", "two", "three", "four", "five", "six"} {
		e.send(t, "alice", conv, s)
		evs, _, err := hooks.WebhookEvents(context.Background(), 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, evs[len(evs)-1].Seq)
	}
	if err := hooks.SaveWebhookProgress(context.Background(), []tidings.WebhookProgress{
		{EndpointID: ep.ID, Version: ep.Version, LastSeq: seqs[5]}}); err != nil {
		t.Fatal(err)
	}
	log.PruneChunk = 2
	replayed := false
	sqlite.SetBeforePruneChunk(log, func() {
		if replayed {
			return
		}
		replayed = true
		if _, err := hooks.ReplayWebhook(server("a"), ep.ID, tidings.WebhookReplay{FromSeq: seqs[2]}); err != nil {
			t.Errorf("replay during the prune: %v", err)
		}
	})
	if _, err := log.Prune(context.Background(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	evs, missed, err := hooks.WebhookEvents(context.Background(), seqs[1], 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, ev := range evs {
		if ev.Seq <= seqs[5] {
			got = append(got, ev.Seq)
		}
	}
	if missed != 0 || len(got) != 4 || got[0] != seqs[2] {
		t.Errorf("after the prune, the replay finds %v (pruned up to %d); want %v", got, missed, seqs[2:])
	}
}
