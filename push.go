package tidings

import (
	"context"
	"encoding/base64"
	"net/url"
	"strings"
	"time"
)

// Kinds of push targets.
const (
	PushWebPush = "webpush" // a browser's Web Push subscription (RFC 8030, VAPID)
	PushAPNs    = "apns"    // an Apple Push Notification service device token
	PushFCM     = "fcm"     // a Firebase Cloud Messaging registration token
)

// PushTarget is where pushes for one device of a user go: a Web Push
// subscription (Endpoint and Keys) or an APNs or FCM device token (Token).
type PushTarget struct {
	ID     string `json:"id"`
	AppID  string `json:"-"`
	UserID string `json:"userId"`
	// Device is the client's name for the device (as in realtime
	// connections), free text; optional.
	Device    string    `json:"device,omitempty"`
	Kind      string    `json:"kind"`
	Endpoint  string    `json:"endpoint,omitempty"`
	Keys      *PushKeys `json:"keys,omitempty"`
	Token     string    `json:"token,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// PushKeys are the keys of a Web Push subscription, as the browser's
// PushSubscription.toJSON() gives them (base64url): the user agent's
// P-256 public key and the authentication secret.
type PushKeys struct {
	P256dh string `json:"p256dh"`
	Auth   string `json:"auth"`
}

// NewPushTarget is what a device registers.
type NewPushTarget struct {
	Device   string    `json:"device"`
	Kind     string    `json:"kind"`
	Endpoint string    `json:"endpoint"`
	Keys     *PushKeys `json:"keys"`
	Token    string    `json:"token"`
}

// Limits on push targets.
const (
	// MaxPushTargets is the number of targets one user may have:
	// registering one more removes their oldest.
	MaxPushTargets = 20
	MaxPushToken   = 4096
)

// Validate checks a new target: a Web Push subscription needs an https
// endpoint and its two keys, a device token its token.
func (t *NewPushTarget) Validate() error {
	if err := validText("device", t.Device, 128); err != nil {
		return err
	}
	switch t.Kind {
	case PushWebPush:
		if t.Token != "" {
			return invalid("token is for apns and fcm targets; a webpush target has an endpoint and keys")
		}
		if err := validText("endpoint", t.Endpoint, MaxURLLen); err != nil {
			return err
		}
		u, err := url.Parse(t.Endpoint)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return invalid("endpoint must be an absolute https URL")
		}
		if t.Keys == nil {
			return invalid("keys (p256dh and auth) are required for a webpush target")
		}
		if b, err := decodeB64URL(t.Keys.P256dh); err != nil || len(b) != 65 || b[0] != 4 {
			return invalid("keys.p256dh must be an uncompressed P-256 public key (65 bytes), base64url")
		}
		if b, err := decodeB64URL(t.Keys.Auth); err != nil || len(b) != 16 {
			return invalid("keys.auth must be a 16-byte secret, base64url")
		}
	case PushAPNs, PushFCM:
		if t.Endpoint != "" || t.Keys != nil {
			return invalid("endpoint and keys are for webpush targets; an %s target has a token", t.Kind)
		}
		if strings.TrimSpace(t.Token) == "" {
			return invalid("token is required for an %s target", t.Kind)
		}
		if err := validText("token", t.Token, MaxPushToken); err != nil {
			return err
		}
	default:
		return invalid("kind must be webpush, apns or fcm")
	}
	return nil
}

// decodeB64URL decodes base64url with or without padding.
func decodeB64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// PushSettings are a user's own push settings: whether pushes are on, and
// the conversations they muted (no push for their messages).
type PushSettings struct {
	Enabled            bool     `json:"enabled"`
	MutedConversations []string `json:"mutedConversations"`
}

// PushSettingsUpdate holds the settings to change; nil is left alone.
type PushSettingsUpdate struct {
	Enabled *bool `json:"enabled"`
}

// PushConfig is an app's push configuration. Its VAPID key pair, made on
// first use, signs its Web Push requests; browsers subscribe with the
// public key.
type PushConfig struct {
	VAPIDPublicKey  string `json:"vapidPublicKey"`
	VAPIDPrivateKey string `json:"-"`
	// VAPIDSubject is the contact push services may use about the app's
	// pushes: a mailto: or https: URL.
	VAPIDSubject string `json:"vapidSubject"`
	// A push's title is the sender's display name; its text is the
	// message's alert, else AlertTemplate for one message, BurstTemplate
	// for several coalesced. Placeholders: {sender} (the display name),
	// {text} (the message's text, or its first part's name), {count} (the
	// messages coalesced).
	AlertTemplate string `json:"alertTemplate"`
	BurstTemplate string `json:"burstTemplate"`
}

// Defaults of a PushConfig.
const (
	DefaultVAPIDSubject      = "mailto:push@tidings.invalid"
	DefaultPushAlertTemplate = "{text}"
	DefaultPushBurstTemplate = "{count} new messages"
)

// PushConfigUpdate holds the settings to change; nil is left alone (an
// empty template goes back to the default).
type PushConfigUpdate struct {
	VAPIDSubject  *string `json:"vapidSubject"`
	AlertTemplate *string `json:"alertTemplate"`
	BurstTemplate *string `json:"burstTemplate"`
}

// Apply validates upd and applies it to c.
func (upd PushConfigUpdate) Apply(c *PushConfig) error {
	if upd.VAPIDSubject != nil {
		s := *upd.VAPIDSubject
		if !strings.HasPrefix(s, "mailto:") && !strings.HasPrefix(s, "https://") {
			return invalid("vapidSubject must be a mailto: or https: URL")
		}
		if err := validText("vapidSubject", s, MaxURLLen); err != nil {
			return err
		}
		c.VAPIDSubject = s
	}
	for _, f := range []struct {
		name string
		v    *string
		dst  *string
		def  string
	}{{"alertTemplate", upd.AlertTemplate, &c.AlertTemplate, DefaultPushAlertTemplate},
		{"burstTemplate", upd.BurstTemplate, &c.BurstTemplate, DefaultPushBurstTemplate}} {
		if f.v == nil {
			continue
		}
		if err := validText(f.name, *f.v, MaxAlertLen); err != nil {
			return err
		}
		*f.dst = *f.v
		if *f.v == "" {
			*f.dst = f.def
		}
	}
	return nil
}

// PushService is the push side of the API. Targets and settings are the
// caller's own (a user caller); the configuration is the app's (its
// server key), but for its VAPID public key, which any caller of the app
// may read.
type PushService interface {
	// RegisterPushTarget adds a target for the caller. Registering the
	// same endpoint or token again (the same subscription, a device that
	// changed hands) replaces the earlier registration in the app.
	// Past MaxPushTargets the caller's oldest target is removed.
	RegisterPushTarget(ctx context.Context, t NewPushTarget) (*PushTarget, error)
	// ListPushTargets returns the caller's targets, oldest first.
	ListPushTargets(ctx context.Context) ([]*PushTarget, error)
	// DeletePushTarget removes one of the caller's targets (ENotFound
	// otherwise).
	DeletePushTarget(ctx context.Context, id string) error
	PushSettings(ctx context.Context) (*PushSettings, error)
	UpdatePushSettings(ctx context.Context, upd PushSettingsUpdate) (*PushSettings, error)
	// MuteConversation mutes (or unmutes) a conversation the caller takes
	// part in (ENotFound otherwise) for the caller's pushes.
	MuteConversation(ctx context.Context, conversationID string, muted bool) error
	// VAPIDPublicKey returns the public key of the caller's app, making
	// the app's key pair on first use.
	VAPIDPublicKey(ctx context.Context) (string, error)
	// PushConfig and UpdatePushConfig need the app's server key.
	PushConfig(ctx context.Context) (*PushConfig, error)
	UpdatePushConfig(ctx context.Context, upd PushConfigUpdate) (*PushConfig, error)
}

// PushRecipient is what a push to one user about one conversation needs,
// read when it is sent.
type PushRecipient struct {
	Targets  []*PushTarget
	Disabled bool // the user turned pushes off
	Muted    bool // the user muted the conversation
	// Unread is the user's unread count in the conversation (0: nothing
	// to tell any more); Badge, over all their conversations.
	Unread int64
	Badge  int64
}

// PushStore is the store's side of push delivery (no caller in the
// context: the dispatcher calls it).
type PushStore interface {
	// PushCandidates returns the participants of the conversation but
	// exclude ("": none) who may get a push for its messages: with a
	// target, pushes on and the conversation not muted.
	PushCandidates(ctx context.Context, appID, conversationID, exclude string) ([]string, error)
	// PushRecipient returns the user's targets, settings and unread
	// counts. A user who left the conversation has Unread 0.
	PushRecipient(ctx context.Context, appID, userID, conversationID string) (*PushRecipient, error)
	// RemovePushTargets removes targets the push services said are gone.
	RemovePushTargets(ctx context.Context, appID string, ids []string) error
	// AppPushConfig returns the app's configuration with its VAPID
	// private key, making the key pair on first use.
	AppPushConfig(ctx context.Context, appID string) (*PushConfig, error)
}
