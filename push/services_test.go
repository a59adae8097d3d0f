package push_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/push/pushtest"
)

// quietLog drops the local services' connection errors.
var quietLog = log.New(io.Discard, "", 0)

// received is a push a local service took; inbox, the pushes of one.
type (
	received = pushtest.Push
	inbox    = pushtest.Inbox
)

func newInbox() *inbox { return pushtest.NewInbox() }

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
	s.box.Add(received{Target: token, Payload: payload})
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
	s.box.Add(received{Target: token, Payload: body.Message})
	fmt.Fprintf(w, `{"name":"projects/%s/messages/%s"}`, s.project, tidings.NewID())
}
