package webhook_test

import (
	"encoding/json"
	"io"
	"log"
	"net/http"

	"github.com/tidings/tidings/webhook"
)

// A receiver verifies each delivery before it trusts it, and dedupes by
// the webhook-id header (deliveries are at least once).
func ExampleVerify() {
	secret := "whsec_…"       // the endpoint's secret, from POST /v1/webhooks
	seen := map[string]bool{} // keep it in your database in real life
	http.HandleFunc("POST /hooks/tidings", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil || webhook.Verify(secret, r.Header, body) != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if id := r.Header.Get("webhook-id"); !seen[id] {
			seen[id] = true
			var d struct {
				Type string          `json:"type"` // the event's name
				Data json.RawMessage `json:"data"` // the event
			}
			_ = json.Unmarshal(body, &d)
			log.Printf("%s: %s", d.Type, d.Data)
		}
		w.WriteHeader(http.StatusNoContent) // any 2xx: delivered
	})
}
