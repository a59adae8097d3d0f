package push

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tidings/tidings"
)

// APNs endpoints.
const (
	APNsProduction = "https://api.push.apple.com"
	APNsSandbox    = "https://api.sandbox.push.apple.com"
)

// APNs sends to Apple devices through the APNs provider API: HTTP/2, with
// token-based authentication (an ES256 JWT made from the team's .p8 key,
// renewed every 40 minutes as Apple asks: not more often than every 20,
// not less than every 60).
type APNs struct {
	TeamID string
	KeyID  string
	Key    *ecdsa.PrivateKey // from the .p8 file (LoadAPNsKey)
	// Topic is the app's bundle id (the apns-topic header).
	Topic string
	// BaseURL is APNsProduction unless set (APNsSandbox for development
	// builds; a local server in tests).
	BaseURL string
	// Client sends the requests; it must speak HTTP/2 (Go's default
	// transport does over TLS). Default: a client with a 30 s timeout.
	Client *http.Client
	Now    func() time.Time

	mu      sync.Mutex
	token   string
	tokenAt time.Time
}

// LoadAPNsKey reads the PKCS #8 PEM key (.p8 file) Apple gives for
// token-based authentication.
func LoadAPNsKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("push: APNs key: %w", err)
	}
	key, err := jwt.ParseECPrivateKeyFromPEM(b)
	if err != nil {
		return nil, fmt.Errorf("push: APNs key %s: %w", path, err)
	}
	return key, nil
}

const apnsTokenAge = 40 * time.Minute

// bearer returns the provider token, made anew when older than
// apnsTokenAge (or after APNs refused it).
func (a *APNs) bearer() (string, error) {
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token != "" && now().Sub(a.tokenAt) < apnsTokenAge {
		return a.token, nil
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": a.TeamID, "iat": now().Unix()})
	tok.Header["kid"] = a.KeyID
	s, err := tok.SignedString(a.Key)
	if err != nil {
		return "", fmt.Errorf("push: sign the APNs token: %w", err)
	}
	a.token, a.tokenAt = s, now()
	return s, nil
}

func (a *APNs) forgetToken(s string) {
	a.mu.Lock()
	if a.token == s {
		a.token = ""
	}
	a.mu.Unlock()
}

// apnsPayload is the JSON body of an APNs request.
type apnsPayload struct {
	APS struct {
		Alert struct {
			Title string `json:"title,omitempty"`
			Body  string `json:"body"`
		} `json:"alert"`
		Badge    int64  `json:"badge"`
		Sound    string `json:"sound"`
		ThreadID string `json:"thread-id,omitempty"`
	} `json:"aps"`
	AppID          string `json:"appId"`
	ConversationID string `json:"conversationId"`
	MessageID      string `json:"messageId"`
	Seq            int64  `json:"seq"`
	SenderID       string `json:"senderId"`
	Count          int    `json:"count"`
}

func (a *APNs) Send(ctx context.Context, _ *tidings.PushConfig, t *tidings.PushTarget, n *Notification) error {
	var p apnsPayload
	p.APS.Alert.Title, p.APS.Alert.Body = n.Title, n.Body
	p.APS.Badge, p.APS.Sound, p.APS.ThreadID = n.Badge, "default", n.ConversationID
	p.AppID, p.ConversationID, p.MessageID, p.Seq, p.SenderID, p.Count = n.AppID, n.ConversationID, n.MessageID, n.Seq, n.SenderID, n.Count
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	bearer, err := a.bearer()
	if err != nil {
		return err
	}
	base := a.BaseURL
	if base == "" {
		base = APNsProduction
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/3/device/"+url.PathEscape(t.Token), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "bearer "+bearer)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("apns-topic", a.Topic)
	req.Header.Set("apns-push-type", "alert")
	req.Header.Set("apns-priority", "10")
	req.Header.Set("apns-expiration", fmt.Sprint(time.Now().Add(24*time.Hour).Unix()))
	client := a.Client
	if client == nil {
		client = defaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("push: APNs: %w", err)
	}
	defer drain(resp)
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var reason struct {
		Reason string `json:"reason"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&reason)
	switch {
	case resp.StatusCode == http.StatusGone,
		resp.StatusCode == http.StatusBadRequest && (reason.Reason == "BadDeviceToken" || reason.Reason == "DeviceTokenNotForTopic"):
		return fmt.Errorf("%w: APNs answered %s %s", ErrGone, resp.Status, reason.Reason)
	case resp.StatusCode == http.StatusForbidden && reason.Reason == "ExpiredProviderToken":
		a.forgetToken(bearer)
	}
	return fmt.Errorf("push: APNs answered %s %s", resp.Status, reason.Reason)
}
