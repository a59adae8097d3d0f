package main

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/push"
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

	// The dispatcher's counters are among the metrics.
	if m := c.call(200, "GET", "/metrics", "", "", ""); !strings.Contains(string(m.body), "tidings_push_sent_total") {
		t.Errorf("/metrics has no tidings_push_sent_total")
	}
}

// TestPushSettings: APNs needs its key's id, team and topic; the
// providers are those whose credentials are given, read at start.
func TestPushSettings(t *testing.T) {
	if _, err := parseServeEnv(t, nil, "--apns-key-file", "/keys/k.p8", "--apns-key-id", "K", "--apns-team-id", "T"); err == nil {
		t.Error("--apns-key-file without --apns-topic: accepted")
	}
	if _, err := parseServeEnv(t, nil, "--push-window", "-1s"); err == nil {
		t.Error("a negative --push-window: accepted")
	}
	dir := t.TempDir()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	p8 := filepath.Join(dir, "AuthKey_K.p8")
	os.WriteFile(p8, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ = x509.MarshalPKCS8PrivateKey(rsaKey)
	sa, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "p1", "client_email": "x@p1.iam.gserviceaccount.com",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))})
	creds := filepath.Join(dir, "sa.json")
	os.WriteFile(creds, sa, 0o600)

	log := slog.New(slog.DiscardHandler)
	cfg := defaultPushConfig()
	d, err := newPushDispatcher(cfg, nil, nil, log)
	if err != nil || len(d.Providers) != 1 || d.Providers[tidings.PushWebPush] == nil || d.Window != 2*time.Second {
		t.Fatalf("by default: %v, %v", d, err)
	}
	cfg.NoWebPush = true
	cfg.APNsKeyFile, cfg.APNsKeyID, cfg.APNsTeamID, cfg.APNsTopic = p8, "K", "T", "com.example.chat"
	cfg.FCMCredentials = creds
	d, err = newPushDispatcher(cfg, nil, nil, log)
	if err != nil || len(d.Providers) != 2 || d.Providers[tidings.PushAPNs] == nil || d.Providers[tidings.PushFCM] == nil {
		t.Fatalf("with APNs and FCM: %v, %v", d, err)
	}
	if fcm := d.Providers[tidings.PushFCM].(*push.FCM); fcm.ProjectID != "p1" || fcm.BaseURL != push.FCMBaseURL {
		t.Fatalf("FCM %+v", fcm)
	}
	cfg.APNsKeyFile = creds // not a .p8 key
	if _, err := newPushDispatcher(cfg, nil, nil, log); err == nil {
		t.Error("a bad APNs key: no error")
	}
	cfg.APNsKeyFile, cfg.FCMCredentials = p8, p8 // not a service account
	if _, err := newPushDispatcher(cfg, nil, nil, log); err == nil {
		t.Error("bad FCM credentials: no error")
	}
}

// testWebPushCA is the environment variable that gives a node run by a
// test (the test binary as the tidings command) the certificate of the
// test's local Web Push service, in PEM: the node then sends its Web
// Pushes to it (on the loopback interface, which push.WebPush's own
// client refuses).
const testWebPushCA = "TIDINGS_TEST_WEBPUSH_CA"

// useTestWebPush sets webPushClient as testWebPushCA says, if set.
func useTestWebPush() {
	pemCert := os.Getenv(testWebPushCA)
	if pemCert == "" {
		return
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(pemCert)) {
		fmt.Fprintf(os.Stderr, "%s holds no certificate\n", testWebPushCA)
		os.Exit(exitFailure)
	}
	webPushClient = &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
}
