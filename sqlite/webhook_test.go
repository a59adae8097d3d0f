package sqlite_test

import (
	"testing"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/sqlite"
)

// The rest of the webhook store is tested by the conformance suite
// (storetest.TestWebhooks).

func TestWebhooksPerApp(t *testing.T) {
	e := newEnv(t)
	hooks := sqlite.NewWebhookService(e.db)
	for range sqlite.MaxWebhooksPerApp {
		must[*tidings.WebhookEndpoint](t)(hooks.CreateWebhook(server("a"), tidings.NewWebhook{URL: "http://127.0.0.1:1/h"}))
	}
	_, err := hooks.CreateWebhook(server("a"), tidings.NewWebhook{URL: "https://example.com/hook"})
	wantCode(t, err, tidings.EConflict)
	// Another app has its own.
	must[*tidings.WebhookEndpoint](t)(hooks.CreateWebhook(server("b"), tidings.NewWebhook{URL: "https://example.com/hook"}))
}
