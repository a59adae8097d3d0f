package push_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tidings/tidings"
)

// quietLog drops the local services' connection errors.
var quietLog = log.New(io.Discard, "", 0)

// received is a push a local service took.
type received struct {
	Target  string // the subscription's name, or the device token
	Payload map[string]any
}

// inbox collects the pushes of a local service.
type inbox struct {
	mu   sync.Mutex
	got  []received
	more chan struct{}
}

func newInbox() *inbox { return &inbox{more: make(chan struct{}, 1)} }

func (b *inbox) add(r received) {
	b.mu.Lock()
	b.got = append(b.got, r)
	b.mu.Unlock()
	select {
	case b.more <- struct{}{}:
	default:
	}
}

func (b *inbox) all() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.got...)
}

// waitFor waits until the inbox holds n pushes (30 s at most).
func (b *inbox) waitFor(t testing.TB, n int) []received {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if got := b.all(); len(got) >= n {
			return got
		}
		select {
		case <-b.more:
		case <-deadline:
			t.Fatalf("%d pushes after 30 s, want %d: %+v", len(b.all()), n, b.all())
		}
	}
}

// webPushService is a local Web Push service (RFC 8030): it takes pushes
// at https://127.0.0.1:port/push/{name}, checks their VAPID signature
// (RFC 8292) against the app's public key and decrypts them (RFC 8291)
// with the subscription's private key, as a browser would. Subscriptions
// named gone-* answer 410 Gone, as expired ones do.
type webPushService struct {
	t    testing.TB
	srv  *httptest.Server
	box  *inbox
	mu   sync.Mutex
	subs map[string]*subscription
	// vapidKey is the public key pushes must be signed with.
	vapidKey string
}

type subscription struct {
	key  *ecdh.PrivateKey
	auth []byte
}

func newWebPushService(t testing.TB) *webPushService {
	s := &webPushService{t: t, box: newInbox(), subs: make(map[string]*subscription)}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Config.ErrorLog = quietLog // connections cut when a test ends
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

// subscribe makes a subscription, as a browser's pushManager.subscribe.
func (s *webPushService) subscribe(name string) tidings.NewPushTarget {
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	auth := make([]byte, 16)
	_, _ = rand.Read(auth)
	s.mu.Lock()
	s.subs[name] = &subscription{key: key, auth: auth}
	s.mu.Unlock()
	return tidings.NewPushTarget{Kind: tidings.PushWebPush, Device: name, Endpoint: s.srv.URL + "/push/" + name,
		Keys: &tidings.PushKeys{P256dh: base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()),
			Auth: base64.RawURLEncoding.EncodeToString(auth)}}
}

func (s *webPushService) serve(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/push/")
	s.mu.Lock()
	sub, known := s.subs[name]
	vapidKey := s.vapidKey
	s.mu.Unlock()
	if r.Method != http.MethodPost || !ok || !known {
		http.Error(w, "no such subscription", http.StatusNotFound)
		return
	}
	if err := s.checkVAPID(r, vapidKey); err != nil {
		s.t.Errorf("web push service: VAPID: %v", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if r.Header.Get("Content-Encoding") != "aes128gcm" || r.Header.Get("TTL") == "" {
		s.t.Errorf("web push service: Content-Encoding %q, TTL %q", r.Header.Get("Content-Encoding"), r.Header.Get("TTL"))
		http.Error(w, "bad headers", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if len(body) > 4096 {
		s.t.Errorf("web push service: a body of %d bytes (push services take 4096 at most)", len(body))
	}
	plain, err := decryptAES128GCM(body, sub.key, sub.auth)
	if err != nil {
		s.t.Errorf("web push service: decrypt: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var payload map[string]any
	if err := json.Unmarshal(plain, &payload); err != nil {
		s.t.Errorf("web push service: payload %q: %v", plain, err)
	}
	if strings.HasPrefix(name, "gone-") {
		http.Error(w, "subscription expired", http.StatusGone)
		return
	}
	s.box.add(received{Target: name, Payload: payload})
	w.WriteHeader(http.StatusCreated)
}

// checkVAPID checks the request's "vapid t=JWT, k=KEY" authorization: k
// is the app's key, and t an ES256 JWT signed with it, for this origin,
// expiring within 24 h, with a mailto: or https: subject.
func (s *webPushService) checkVAPID(r *http.Request, want string) error {
	rest, ok := strings.CutPrefix(r.Header.Get("Authorization"), "vapid ")
	if !ok {
		return fmt.Errorf("authorization %q is not vapid", r.Header.Get("Authorization"))
	}
	params := map[string]string{}
	for _, p := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		params[k] = v
	}
	if params["k"] != want {
		return fmt.Errorf("k = %q, want the app's key %q", params["k"], want)
	}
	raw, err := base64.RawURLEncoding.DecodeString(params["k"])
	if err != nil {
		return err
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return err
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(params["t"], claims, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(s.srv.URL), jwt.WithExpirationRequired())
	if err != nil {
		return err
	}
	exp, _ := claims.GetExpirationTime()
	if exp.After(time.Now().Add(24 * time.Hour)) {
		return fmt.Errorf("exp %v is more than 24 h away", exp)
	}
	if sub, _ := claims["sub"].(string); !strings.HasPrefix(sub, "mailto:") && !strings.HasPrefix(sub, "https:") {
		return fmt.Errorf("sub %q", sub)
	}
	return nil
}

// decryptAES128GCM decrypts a push message (RFC 8291, one aes128gcm
// record of RFC 8188) with the subscription's private key and
// authentication secret.
func decryptAES128GCM(body []byte, key *ecdh.PrivateKey, auth []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("shorter than its header")
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if len(body) < 21+idlen || idlen != 65 {
		return nil, fmt.Errorf("key id of %d bytes, want the sender's 65-byte public key", idlen)
	}
	keyID, ciphertext := body[21:21+idlen], body[21+idlen:]
	if uint32(len(ciphertext)) > rs {
		return nil, fmt.Errorf("%d bytes of ciphertext in records of %d: more than one record", len(ciphertext), rs)
	}
	senderKey, err := ecdh.P256().NewPublicKey(keyID)
	if err != nil {
		return nil, err
	}
	shared, err := key.ECDH(senderKey)
	if err != nil {
		return nil, err
	}
	info := "WebPush: info\x00" + string(key.PublicKey().Bytes()) + string(keyID)
	ikm, err := hkdf.Key(sha256.New, shared, auth, info, 32)
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, nonce, ciphertext, nil)
	if err != nil {
		return nil, err
	}
	// Padding: zeros after a delimiter, 2 for the last record.
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 || plain[i] != 2 {
		return nil, errors.New("no last-record delimiter")
	}
	return plain[:i], nil
}

// apnsService is a local APNs provider API: HTTP/2 over TLS, requests
// checked as APNs does (token auth, topic, push type). Tokens starting
// with "gone" answer 410 Unregistered; "bad", 400 BadDeviceToken.
type apnsService struct {
	t      testing.TB
	srv    *httptest.Server
	box    *inbox
	key    *ecdsa.PrivateKey
	keyID  string
	teamID string
	topic  string
	p8     string // the key's file
}

func newAPNsService(t testing.TB) *apnsService {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p8 := filepath.Join(t.TempDir(), "AuthKey_KEY1234567.p8")
	if err := os.WriteFile(p8, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &apnsService{t: t, box: newInbox(), key: key, keyID: "KEY1234567", teamID: "TEAM123456", topic: "com.example.chat", p8: p8}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.EnableHTTP2 = true
	s.srv.Config.ErrorLog = quietLog
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

func (s *apnsService) answer(w http.ResponseWriter, status int, reason string) {
	w.Header().Set("apns-id", "00000000-0000-0000-0000-000000000000")
	w.WriteHeader(status)
	if reason != "" {
		fmt.Fprintf(w, `{"reason":%q}`, reason)
	}
}

func (s *apnsService) serve(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	switch {
	case r.ProtoMajor != 2:
		s.t.Errorf("APNs: %s, want HTTP/2", r.Proto)
		s.answer(w, http.StatusBadRequest, "BadProtocol")
		return
	case r.Method != http.MethodPost || !ok:
		s.answer(w, http.StatusMethodNotAllowed, "MethodNotAllowed")
		return
	case r.Header.Get("apns-topic") != s.topic:
		s.t.Errorf("APNs: apns-topic %q", r.Header.Get("apns-topic"))
		s.answer(w, http.StatusBadRequest, "BadTopic")
		return
	case r.Header.Get("apns-push-type") != "alert":
		s.t.Errorf("APNs: apns-push-type %q", r.Header.Get("apns-push-type"))
		s.answer(w, http.StatusBadRequest, "InvalidPushType")
		return
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "bearer ")
	tok, err := jwt.Parse(bearer, func(*jwt.Token) (any, error) { return &s.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(s.teamID), jwt.WithIssuedAt())
	if !ok || err != nil || tok.Header["kid"] != s.keyID {
		s.t.Errorf("APNs: provider token %q: %v", bearer, err)
		s.answer(w, http.StatusForbidden, "InvalidProviderToken")
		return
	}
	var payload map[string]any
	if err := json.NewDecoder(r.Body).Decode(&payload); err != nil {
		s.answer(w, http.StatusBadRequest, "PayloadEmpty")
		return
	}
	aps, _ := payload["aps"].(map[string]any)
	if _, ok := aps["alert"].(map[string]any); !ok {
		s.t.Errorf("APNs: payload without aps.alert: %v", payload)
	}
	switch {
	case strings.HasPrefix(token, "gone"):
		w.Header().Set("apns-id", "x")
		w.WriteHeader(http.StatusGone)
		fmt.Fprintf(w, `{"reason":"Unregistered","timestamp":%d}`, time.Now().UnixMilli())
		return
	case strings.HasPrefix(token, "bad"):
		s.answer(w, http.StatusBadRequest, "BadDeviceToken")
		return
	}
	s.box.add(received{Target: token, Payload: payload})
	s.answer(w, http.StatusOK, "")
}

// fcmService is a local FCM HTTP v1 API with its OAuth 2 token endpoint
// (HTTP/2 over TLS): the token endpoint checks the service account's
// signed assertion and gives an access token, which messages:send
// requires. Tokens starting with "gone" answer 404 UNREGISTERED.
type fcmService struct {
	t       testing.TB
	srv     *httptest.Server
	box     *inbox
	key     *rsa.PrivateKey
	project string
	access  string
	creds   string // the service account's JSON key file
}

func newFCMService(t testing.TB) *fcmService {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s := &fcmService{t: t, box: newInbox(), key: key, project: "chat-12345", access: "ya29.local-" + tidings.NewID()}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.EnableHTTP2 = true
	s.srv.Config.ErrorLog = quietLog
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	creds, _ := json.Marshal(map[string]string{
		"type": "service_account", "project_id": s.project, "private_key_id": "kid1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "push@chat-12345.iam.gserviceaccount.com", "token_uri": s.srv.URL + "/token",
	})
	s.creds = filepath.Join(t.TempDir(), "service-account.json")
	if err := os.WriteFile(s.creds, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *fcmService) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		if r.FormValue("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
			http.Error(w, `{"error":"unsupported_grant_type"}`, http.StatusBadRequest)
			return
		}
		claims := jwt.MapClaims{}
		_, err := jwt.ParseWithClaims(r.FormValue("assertion"), claims, func(*jwt.Token) (any, error) { return &s.key.PublicKey, nil },
			jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(s.srv.URL+"/token"), jwt.WithExpirationRequired())
		if err != nil || claims["scope"] != "https://www.googleapis.com/auth/firebase.messaging" {
			s.t.Errorf("FCM token endpoint: assertion %v: %v", claims, err)
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"expires_in":3599,"token_type":"Bearer"}`, s.access)
		return
	}
	if r.ProtoMajor != 2 {
		s.t.Errorf("FCM: %s", r.Proto)
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/projects/"+s.project+"/messages:send" {
		http.Error(w, `{"error":{"code":404,"status":"NOT_FOUND"}}`, http.StatusNotFound)
		s.t.Errorf("FCM: %s %s", r.Method, r.URL.Path)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.access {
		s.t.Errorf("FCM: authorization %q", r.Header.Get("Authorization"))
		http.Error(w, `{"error":{"code":401,"status":"UNAUTHENTICATED"}}`, http.StatusUnauthorized)
		return
	}
	var body struct {
		Message map[string]any `json:"message"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Message == nil {
		http.Error(w, `{"error":{"code":400,"status":"INVALID_ARGUMENT"}}`, http.StatusBadRequest)
		return
	}
	token, _ := body.Message["token"].(string)
	if _, ok := body.Message["notification"].(map[string]any); !ok {
		s.t.Errorf("FCM: message without notification: %v", body.Message)
	}
	if _, ok := body.Message["data"].(map[string]any); !ok {
		s.t.Errorf("FCM: message without data: %v", body.Message)
	}
	if strings.HasPrefix(token, "gone") {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND",
			"details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`)
		return
	}
	s.box.add(received{Target: token, Payload: body.Message})
	fmt.Fprintf(w, `{"name":"projects/%s/messages/%s"}`, s.project, tidings.NewID())
}
