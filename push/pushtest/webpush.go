// Package pushtest is a local Web Push service for tests: it takes
// pushes as a browser's push service does, checks their VAPID signature
// (RFC 8292) and decrypts them (RFC 8291) with the subscription's keys,
// so that the encryption is verified end to end. Package push's tests
// and the cluster tests of cmd/tidings use it.
package pushtest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tidings/tidings"
)

// quietLog drops the service's connection errors (connections cut when a
// test ends).
var quietLog = log.New(io.Discard, "", 0)

// Push is a push a local service took.
type Push struct {
	Target  string // the subscription's name, or the device token
	Payload map[string]any
}

// Inbox collects the pushes of a local service.
type Inbox struct {
	mu   sync.Mutex
	got  []Push
	more chan struct{}
}

// NewInbox returns an empty inbox.
func NewInbox() *Inbox { return &Inbox{more: make(chan struct{}, 1)} }

// Add adds a push.
func (b *Inbox) Add(r Push) {
	b.mu.Lock()
	b.got = append(b.got, r)
	b.mu.Unlock()
	select {
	case b.more <- struct{}{}:
	default:
	}
}

// All returns the pushes so far.
func (b *Inbox) All() []Push {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Push(nil), b.got...)
}

// WaitFor waits until the inbox holds n pushes (30 s at most).
func (b *Inbox) WaitFor(t testing.TB, n int) []Push {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if got := b.All(); len(got) >= n {
			return got
		}
		select {
		case <-b.more:
		case <-deadline:
			t.Fatalf("%d pushes after 30 s, want %d: %+v", len(b.All()), n, b.All())
		}
	}
}

// WebPushService is a local Web Push service (RFC 8030): it takes pushes
// at https://127.0.0.1:port/push/{name}, checks their VAPID signature
// (RFC 8292) against the app's public key and decrypts them (RFC 8291)
// with the subscription's private key, as a browser would. Subscriptions
// named gone-* answer 410 Gone, as expired ones do.
type WebPushService struct {
	// Server is the service (its Client trusts its certificate); Box,
	// the pushes it took.
	Server *httptest.Server
	Box    *Inbox

	t    testing.TB
	mu   sync.Mutex
	subs map[string]*subscription
	// vapidKey is the public key pushes must be signed with.
	vapidKey string
}

type subscription struct {
	key  *ecdh.PrivateKey
	auth []byte
}

// NewWebPushService starts a service, closed when t ends.
func NewWebPushService(t testing.TB) *WebPushService {
	s := &WebPushService{t: t, Box: NewInbox(), subs: make(map[string]*subscription)}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.Server.Config.ErrorLog = quietLog // connections cut when a test ends
	s.Server.StartTLS()
	t.Cleanup(s.Server.Close)
	return s
}

// SetVAPIDKey sets the public key pushes must be signed with (the app's).
func (s *WebPushService) SetVAPIDKey(key string) {
	s.mu.Lock()
	s.vapidKey = key
	s.mu.Unlock()
}

// Subscribe makes a subscription named name, as a browser's
// pushManager.subscribe.
func (s *WebPushService) Subscribe(name string) tidings.NewPushTarget {
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		s.t.Fatal(err)
	}
	auth := make([]byte, 16)
	_, _ = rand.Read(auth)
	s.mu.Lock()
	s.subs[name] = &subscription{key: key, auth: auth}
	s.mu.Unlock()
	return tidings.NewPushTarget{Kind: tidings.PushWebPush, Device: name, Endpoint: s.Server.URL + "/push/" + name,
		Keys: &tidings.PushKeys{P256dh: base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()),
			Auth: base64.RawURLEncoding.EncodeToString(auth)}}
}

func (s *WebPushService) serve(w http.ResponseWriter, r *http.Request) {
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
	s.Box.Add(Push{Target: name, Payload: payload})
	w.WriteHeader(http.StatusCreated)
}

// checkVAPID checks the request's "vapid t=JWT, k=KEY" authorization: k
// is the app's key, and t an ES256 JWT signed with it, for this origin,
// expiring within 24 h, with a mailto: or https: subject.
func (s *WebPushService) checkVAPID(r *http.Request, want string) error {
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
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(s.Server.URL), jwt.WithExpirationRequired())
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
