package tidings

import (
	"context"
	"strings"
	"time"
)

// The before-send hook (issue #12): an app may have each new message of
// its users POSTed, signed as webhooks are, to a URL of its backend
// before it is stored. The backend answers whether to send it as it is,
// reject it (the sender gets EForbidden with the backend's reason) or
// replace its parts. See docs/webhooks.md.

// BeforeSendHook is an app's before-send hook.
type BeforeSendHook struct {
	AppID string `json:"-"`
	URL   string `json:"url"`
	// Secret signs the calls as webhooks' deliveries are signed
	// ("whsec_…"). The server key may read it at any time.
	Secret string `json:"secret"`
	// TimeoutMS bounds a call, from DefaultBeforeSendTimeout up to
	// MaxBeforeSendTimeout.
	TimeoutMS int `json:"timeoutMs"`
	// FailOpen says what a call that fails (no answer within the
	// timeout, a status other than 2xx, an answer not understood) does:
	// true sends the message unchanged; false (the default) refuses it
	// with EUnavailable.
	FailOpen  bool      `json:"failOpen"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Timeout returns the hook's timeout as a duration.
func (h *BeforeSendHook) Timeout() time.Duration {
	return time.Duration(h.TimeoutMS) * time.Millisecond
}

// Bounds of a before-send hook's timeout.
const (
	DefaultBeforeSendTimeout = 2 * time.Second
	MinBeforeSendTimeout     = 100 * time.Millisecond
	MaxBeforeSendTimeout     = 10 * time.Second
)

// BeforeSendConfig is what an app gives to set its hook.
type BeforeSendConfig struct {
	URL string `json:"url"`
	// Secret, if empty, is the hook's current one, or a new one.
	Secret string `json:"secret"`
	// TimeoutMS 0 means DefaultBeforeSendTimeout.
	TimeoutMS int  `json:"timeoutMs"`
	FailOpen  bool `json:"failOpen"`
}

// Check trims the URL and returns EInvalid for a bad URL, secret or
// timeout; it sets the default timeout.
func (c *BeforeSendConfig) Check() error {
	c.URL = strings.TrimSpace(c.URL)
	if err := CheckWebhookURL(c.URL); err != nil {
		return err
	}
	if c.Secret != "" {
		if _, err := WebhookSecretKey(c.Secret); err != nil {
			return err
		}
	}
	if c.TimeoutMS == 0 {
		c.TimeoutMS = int(DefaultBeforeSendTimeout / time.Millisecond)
	}
	if t := time.Duration(c.TimeoutMS) * time.Millisecond; t < MinBeforeSendTimeout || t > MaxBeforeSendTimeout {
		return Errorf(EInvalid, "timeoutMs must be from %d to %d", MinBeforeSendTimeout/time.Millisecond, MaxBeforeSendTimeout/time.Millisecond)
	}
	return nil
}

// BeforeSendService manages the hook of the caller's app (the server
// key's API). Every method needs the app's server as the caller.
type BeforeSendService interface {
	// FindBeforeSend returns the app's hook; ENotFound when it has none.
	FindBeforeSend(ctx context.Context) (*BeforeSendHook, error)
	// SetBeforeSend creates or replaces the app's hook (see
	// BeforeSendConfig). EInvalid for a bad setting.
	SetBeforeSend(ctx context.Context, cfg BeforeSendConfig) (*BeforeSendHook, error)
	// DeleteBeforeSend removes the app's hook; none is not an error.
	DeleteBeforeSend(ctx context.Context) error
}

// BeforeSendStore is the sending side of hooks.
type BeforeSendStore interface {
	// AppBeforeSend returns the app's hook, or nil when it has none.
	AppBeforeSend(ctx context.Context, appID string) (*BeforeSendHook, error)
	// FindSentMessage returns the message that the caller of ctx (a user)
	// sent earlier to the conversation with that client id, or nil when
	// there is none; it checks no access (the send does).
	FindSentMessage(ctx context.Context, conversationID, clientID string) (*Message, error)
	// ConversationForSend returns the conversation as the caller of ctx
	// (a user) sees it, as FindConversationByID does, for the check made
	// before a hook is called: the caller's role, the roles' permissions,
	// whether it is deleted or the caller muted. What sends change (its
	// last seq and activity time, read marks) may be behind: reading
	// them exactly would cost the store a write per send.
	ConversationForSend(ctx context.Context, conversationID string) (*Conversation, error)
}
