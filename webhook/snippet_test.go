package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// snippetVerify is the standalone check of docs/webhooks.md, as written
// there.
func snippetVerify(secret string, h http.Header, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	ts, terr := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
	if err != nil || terr != nil || time.Since(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(h.Get("webhook-id") + "." + h.Get("webhook-timestamp") + "."))
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return true
		}
	}
	return false
}

// The standalone check of the documentation accepts what Sign signs, and
// nothing altered.
func TestDocumentedSnippetVerifies(t *testing.T) {
	secret := tidings.NewWebhookSecret()
	body := []byte(`{"type":"conversationMessage.sent"}`)
	ts := time.Now().Unix()
	sig, err := Sign(secret, "ev1", ts, body)
	if err != nil {
		t.Fatal(err)
	}
	h := header("ev1", ts, sig)
	if !snippetVerify(secret, h, body) || Verify(secret, h, body) != nil {
		t.Fatal("a signed delivery does not verify")
	}
	if snippetVerify(secret, h, append(body, ' ')) || snippetVerify(tidings.NewWebhookSecret(), h, body) {
		t.Fatal("an altered delivery verifies")
	}
	old := header("ev1", ts-600, sig)
	if snippetVerify(secret, old, body) {
		t.Fatal("an old delivery verifies")
	}
}
