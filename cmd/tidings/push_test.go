package main

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

// TestServedPushAPIMatchesOpenAPI drives the push routes of a real
// server and checks every answer against the OpenAPI document.
func TestServedPushAPIMatchesOpenAPI(t *testing.T) {
	dir := t.TempDir()
	url, stop := startServe(t, dir)
	t.Cleanup(func() { stop() })
	c := &apiCaller{t: t, url: url, doc: fetchAPIDoc(t, url)}
	key := parseApp(t, mustRun(t, nil, "apps", "rotate-key", "--data", dir, "default").stdout)["server key"]
	c.call(201, "POST", "/v1/users", key, "", `{"id":"alice"}`)
	c.call(201, "POST", "/v1/users", key, "", `{"id":"bob"}`)
	alice := c.call(201, "POST", "/v1/users/alice/tokens", key, "", "").field(t, "token")
	bob := c.call(201, "POST", "/v1/users/bob/tokens", key, "", "").field(t, "token")
	c.call(201, "POST", "/v1/conversations", alice, "", `{"id":"lunch","participants":[{"userId":"bob"}]}`)

	pub := c.call(200, "GET", "/v1/push/vapid-public-key", alice, "", "").field(t, "publicKey")
	if again := c.call(200, "GET", "/v1/push/vapid-public-key", key, "", "").field(t, "publicKey"); again != pub {
		t.Errorf("the VAPID key changed: %s, then %s", pub, again)
	}
	c.call(200, "GET", "/v1/push/config", key, "", "")
	c.call(403, "GET", "/v1/push/config", alice, "", "")
	c.call(200, "PATCH", "/v1/push/config", key, "", `{"vapidSubject":"mailto:ops@example.com","burstTemplate":"{count} more"}`)
	c.call(400, "PATCH", "/v1/push/config", key, "", `{"vapidSubject":"ops@example.com"}`)

	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sub := fmt.Sprintf(`{"kind":"webpush","device":"laptop","endpoint":"https://push.example.com/send/abc","keys":{"p256dh":%q,"auth":%q}}`,
		base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()), base64.RawURLEncoding.EncodeToString(make([]byte, 16)))
	id := c.call(201, "POST", "/v1/push/targets", bob, "", sub).field(t, "id")
	c.call(201, "POST", "/v1/push/targets", bob, "", `{"kind":"apns","token":"a1b2c3"}`)
	c.call(201, "POST", "/v1/push/targets", bob, "", `{"kind":"fcm","token":"f1"}`)
	c.call(400, "POST", "/v1/push/targets", bob, "", `{"kind":"webpush","endpoint":"http://push.example.com/x"}`)
	c.call(400, "POST", "/v1/push/targets", bob, "", `{"kind":"sms","token":"x"}`)
	c.call(403, "POST", "/v1/push/targets", key, "", `{"kind":"fcm","token":"f2"}`)
	c.call(200, "GET", "/v1/push/targets", bob, "", "")
	c.call(404, "DELETE", "/v1/push/targets/"+id, alice, "", "")
	c.call(204, "DELETE", "/v1/push/targets/"+id, bob, "", "")
	c.call(404, "DELETE", "/v1/push/targets/"+id, bob, "", "")

	c.call(204, "PUT", "/v1/conversations/lunch/mute", bob, "", "")
	c.call(204, "PUT", "/v1/conversations/lunch/mute", bob, "", "")
	c.call(404, "PUT", "/v1/conversations/nope/mute", bob, "", "")
	if a := c.call(200, "PATCH", "/v1/push/settings", bob, "", `{"enabled":false}`); !strings.Contains(string(a.body), `"enabled":false`) {
		t.Errorf("settings after turning pushes off: %s", a.body)
	}
	c.call(200, "GET", "/v1/push/settings", bob, "", "")
	c.call(204, "DELETE", "/v1/conversations/lunch/mute", bob, "", "")
	c.call(400, "PATCH", "/v1/push/settings", bob, "", `{"enabled":"no"}`)
}
