// Package webhook delivers an app's events to the URLs it registered
// (tidings.WebhookEndpoint), signed as Standard Webhooks sign them, and
// verifies such deliveries for receivers written in Go.
//
// Each delivery is one POST of a JSON body
//
//	{"type": "conversationMessage.sent", "timestamp": "2026-12-01T18:00:00.123456Z", "data": {event}}
//
// where data is the event (docs/protocol.md's event object, with its seq,
// its position in the log, and its app), with three headers:
//
//	webhook-id:        the event's id (the same on every attempt: dedupe by it)
//	webhook-timestamp: the attempt's time, in Unix seconds
//	webhook-signature: "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body))
//
// where key is the base64 after "whsec_" in the endpoint's secret.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tidings/tidings"
)

// Headers of a delivery.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Tolerance is how far from now the timestamp of a delivery Verify
// accepts may be, either way: an older delivery may be a replay.
const Tolerance = 5 * time.Minute

// Body returns the JSON body of the delivery of ev.
func Body(ev *tidings.Event) ([]byte, error) {
	return json.Marshal(struct {
		Type      string         `json:"type"`
		Timestamp time.Time      `json:"timestamp"`
		Data      *tidings.Event `json:"data"`
	}{ev.Name, ev.Time, ev})
}

// Sign returns the webhook-signature header of a delivery: "v1," and the
// base64 of the HMAC-SHA256, keyed by the secret's bytes, of the id, the
// timestamp (Unix seconds) and the body, separated by dots.
func Sign(secret, id string, timestamp int64, body []byte) (string, error) {
	key, err := tidings.WebhookSecretKey(secret)
	if err != nil {
		return "", err
	}
	return sign(key, id, timestamp, body), nil
}

func sign(key []byte, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, timestamp, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Errors of Verify.
var (
	ErrMissingHeaders = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature")
	ErrTimestamp      = errors.New("webhook: the timestamp is too old or too far in the future")
	ErrSignature      = errors.New("webhook: no valid signature")
)

// Verify checks that a delivery was signed with secret ("whsec_…") and
// made within Tolerance of now. header holds the request's headers, body
// its body as received (verify before decoding). Receivers then dedupe by
// the webhook-id header, the event's id.
func Verify(secret string, header http.Header, body []byte) error {
	return verifyAt(secret, header, body, time.Now())
}

func verifyAt(secret string, header http.Header, body []byte, now time.Time) error {
	key, err := tidings.WebhookSecretKey(secret)
	if err != nil {
		return err
	}
	id, ts, sigs := header.Get(HeaderID), header.Get(HeaderTimestamp), header.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook: bad timestamp %q", ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > Tolerance || d < -Tolerance {
		return ErrTimestamp
	}
	want := sign(key, id, sec, body)
	// Several signatures, separated by spaces, may come (during a
	// rotation of the secret): one valid is enough.
	for _, sig := range strings.Fields(sigs) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return ErrSignature
}
