package push

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tidings/tidings"
)

// FCMBaseURL is where the FCM HTTP v1 API is.
const FCMBaseURL = "https://fcm.googleapis.com"

// FCM sends to Android (and other Firebase) devices through the FCM HTTP
// v1 API, authorized by an OAuth 2 access token.
type FCM struct {
	ProjectID string
	// Tokens gives the OAuth 2 access tokens (a ServiceAccount, or a
	// StaticToken).
	Tokens TokenSource
	// BaseURL is FCMBaseURL unless set (a local server in tests).
	BaseURL string
	Client  *http.Client
}

// TokenSource gives OAuth 2 access tokens.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// StaticToken is a TokenSource of one token that never changes (tests,
// or a token renewed by other means).
type StaticToken string

func (s StaticToken) Token(context.Context) (string, error) { return string(s), nil }

// fcmMessage is the body of messages:send.
type fcmMessage struct {
	Message struct {
		Token        string            `json:"token"`
		Notification fcmNotification   `json:"notification"`
		Data         map[string]string `json:"data"`
		Android      struct {
			Priority     string `json:"priority"`
			Notification struct {
				Tag               string `json:"tag,omitempty"`
				NotificationCount int64  `json:"notification_count"`
			} `json:"notification"`
		} `json:"android"`
		APNs struct {
			Payload struct {
				APS struct {
					Badge int64 `json:"badge"`
				} `json:"aps"`
			} `json:"payload"`
		} `json:"apns"`
	} `json:"message"`
}

type fcmNotification struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body"`
}

func (f *FCM) Send(ctx context.Context, _ *tidings.PushConfig, t *tidings.PushTarget, n *Notification) error {
	var m fcmMessage
	m.Message.Token = t.Token
	m.Message.Notification = fcmNotification{Title: n.Title, Body: n.Body}
	m.Message.Data = n.data()
	m.Message.Data["badge"] = fmt.Sprint(n.Badge)
	m.Message.Android.Priority = "high"
	m.Message.Android.Notification.Tag = n.ConversationID
	m.Message.Android.Notification.NotificationCount = n.Badge
	m.Message.APNs.Payload.APS.Badge = n.Badge
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	token, err := f.Tokens.Token(ctx)
	if err != nil {
		return fmt.Errorf("push: FCM access token: %w", err)
	}
	base := f.BaseURL
	if base == "" {
		base = FCMBaseURL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		base+"/v1/projects/"+url.PathEscape(f.ProjectID)+"/messages:send", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	client := f.Client
	if client == nil {
		client = defaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("push: FCM: %w", err)
	}
	defer drain(resp)
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var answer struct {
		Error struct {
			Status  string `json:"status"`
			Message string `json:"message"`
			Details []struct {
				ErrorCode string `json:"errorCode"`
			} `json:"details"`
		} `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&answer)
	unregistered := false
	for _, d := range answer.Error.Details {
		unregistered = unregistered || d.ErrorCode == "UNREGISTERED"
	}
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone || unregistered {
		return fmt.Errorf("%w: FCM answered %s %s", ErrGone, resp.Status, answer.Error.Status)
	}
	return fmt.Errorf("push: FCM answered %s %s: %s", resp.Status, answer.Error.Status, answer.Error.Message)
}

// ServiceAccount is a TokenSource for a Google service account: it signs
// a JWT with the account's key and exchanges it at the account's token
// URI for an access token (the OAuth 2 JWT bearer grant, RFC 7523),
// kept until five minutes before it expires.
type ServiceAccount struct {
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
	// Client sends the token requests (default: a 30 s timeout).
	Client *http.Client `json:"-"`

	mu      sync.Mutex
	token   string
	expires time.Time
}

// fcmScope is the OAuth 2 scope of the FCM API.
const fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

// LoadServiceAccount reads a service account's JSON key file, as the
// Firebase console gives it.
func LoadServiceAccount(path string) (*ServiceAccount, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("push: FCM credentials: %w", err)
	}
	var sa ServiceAccount
	if err := json.Unmarshal(b, &sa); err != nil {
		return nil, fmt.Errorf("push: FCM credentials %s: %w", path, err)
	}
	if sa.ClientEmail == "" || sa.PrivateKey == "" || sa.ProjectID == "" {
		return nil, fmt.Errorf("push: FCM credentials %s: not a service account key (client_email, private_key and project_id are needed)", path)
	}
	if sa.TokenURI == "" {
		sa.TokenURI = "https://oauth2.googleapis.com/token"
	}
	return &sa, nil
}

func (sa *ServiceAccount) Token(ctx context.Context) (string, error) {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.token != "" && time.Until(sa.expires) > 5*time.Minute {
		return sa.token, nil
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(sa.PrivateKey))
	if err != nil {
		return "", fmt.Errorf("service account key: %w", err)
	}
	now := time.Now()
	assertion := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": sa.ClientEmail, "scope": fcmScope, "aud": sa.TokenURI,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	assertion.Header["kid"] = sa.PrivateKeyID
	signed, err := assertion.SignedString(key)
	if err != nil {
		return "", err
	}
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {signed}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sa.TokenURI, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	client := sa.Client
	if client == nil {
		client = defaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return "", statusError("the token endpoint", resp)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("the token endpoint answered no access token (%v)", err)
	}
	sa.token, sa.expires = tok.AccessToken, now.Add(time.Duration(tok.ExpiresIn)*time.Second)
	return sa.token, nil
}
