package tidings

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Webhooks: each app may register endpoints (URLs) to which the durable
// events of the catalogue (WebhookEventNames) are POSTed, signed, in log
// order, at least once. The event log is the outbox: an endpoint has a
// position in it (LastSeq), and a dispatcher delivers the events after
// that position one at a time (docs/webhooks.md).

// WebhookEndpoint is a URL to which an app's events are POSTed.
type WebhookEndpoint struct {
	ID    string `json:"id"`
	AppID string `json:"-"`
	URL   string `json:"url"`
	// Secret signs the deliveries (Standard Webhooks: "whsec_" and the
	// base64 of the key's bytes). The server key may read it at any time,
	// as it may the app's signing secret.
	Secret string `json:"secret"`
	// Events filters the events delivered: event names, "*" for all, or
	// a prefix ending in ".*" such as "conversationMessage.*".
	Events []string `json:"events"`
	// Disabled endpoints get nothing until enabled again; they then
	// resume after LastSeq.
	Disabled bool `json:"disabled"`
	// Failing is set once deliveries have failed for the dispatcher's
	// FailAfter (24 hours by default) without a success. Deliveries go on
	// (at the longest backoff), but retention no longer keeps the events
	// the endpoint has not received.
	Failing bool `json:"failing"`
	// FailingSince is the first failed attempt since the last success;
	// nil while deliveries succeed.
	FailingSince *time.Time `json:"failingSince,omitempty"`
	// LastSeq is the endpoint's position in the event log: every event up
	// to it was delivered (or did not match the filter).
	LastSeq int64 `json:"lastSeq"`
	// MissedUpTo, when set, says that events up to this position were
	// removed by retention before the endpoint received them (a failing
	// or disabled endpoint): they will never be delivered. MissedAt is
	// when the dispatcher found out.
	MissedUpTo int64      `json:"missedUpTo,omitempty"`
	MissedAt   *time.Time `json:"missedAt,omitempty"`
	CreatedAt  time.Time  `json:"createdAt"`
	UpdatedAt  time.Time  `json:"updatedAt"`
	// Version changes with every change made through the API (an update,
	// a replay): the dispatcher then starts again from the stored state,
	// and its progress made before is not saved over it.
	Version int64 `json:"-"`
}

// NewWebhook is what an app gives to create an endpoint.
type NewWebhook struct {
	URL string `json:"url"`
	// Events defaults to ["*"].
	Events []string `json:"events"`
	// Secret, if empty, is generated.
	Secret   string `json:"secret"`
	Disabled bool   `json:"disabled"`
}

// WebhookUpdate holds the fields of an endpoint to change; nil fields are
// left alone.
type WebhookUpdate struct {
	URL      *string   `json:"url"`
	Events   *[]string `json:"events"`
	Disabled *bool     `json:"disabled"`
}

// MaxWebhooksPerApp bounds the endpoints of one app.
const MaxWebhooksPerApp = 20

// CheckWebhookCount returns EConflict if an app that has n endpoints may
// not make another.
func CheckWebhookCount(n int) error {
	if n >= MaxWebhooksPerApp {
		return Errorf(EConflict, "an app may have at most %d webhook endpoints", MaxWebhooksPerApp)
	}
	return nil
}

// Validate checks nw and fills in its defaults: the URL without
// surrounding spaces, every event ("*") if Events is nil, a new secret if
// Secret is empty.
func (nw *NewWebhook) Validate() error {
	nw.URL = strings.TrimSpace(nw.URL)
	if err := CheckWebhookURL(nw.URL); err != nil {
		return err
	}
	if nw.Events == nil {
		nw.Events = []string{"*"}
	}
	if err := CheckWebhookEvents(nw.Events); err != nil {
		return err
	}
	if nw.Secret == "" {
		nw.Secret = NewWebhookSecret()
	} else if _, err := WebhookSecretKey(nw.Secret); err != nil {
		return err
	}
	return nil
}

// Validate checks upd, its URL without surrounding spaces.
func (upd *WebhookUpdate) Validate() error {
	if upd.URL != nil {
		u := strings.TrimSpace(*upd.URL)
		if err := CheckWebhookURL(u); err != nil {
			return err
		}
		upd.URL = &u
	}
	if upd.Events != nil {
		if err := CheckWebhookEvents(*upd.Events); err != nil {
			return err
		}
	}
	return nil
}

// Apply sets the fields upd holds on w; upd was validated.
func (upd WebhookUpdate) Apply(w *WebhookEndpoint) {
	if upd.URL != nil {
		w.URL = *upd.URL
	}
	if upd.Events != nil {
		w.Events = *upd.Events
	}
	if upd.Disabled != nil {
		w.Disabled = *upd.Disabled
	}
}

// WebhookReplay moves an endpoint's position so that delivery resumes at
// an event: FromEventID names it, or FromSeq gives its position. Earlier
// than where the endpoint stands, the events from there are delivered
// again; later, the events between are skipped (to get past an event the
// receiver cannot take).
type WebhookReplay struct {
	FromSeq     int64  `json:"fromSeq"`
	FromEventID string `json:"fromEventId"`
}

// WebhookAttempt is one delivery attempt of an event to an endpoint.
type WebhookAttempt struct {
	EndpointID string    `json:"endpointId"`
	EventID    string    `json:"eventId"`
	EventSeq   int64     `json:"eventSeq"`
	EventName  string    `json:"eventName"`
	Time       time.Time `json:"time"`
	// Attempt counts the attempts of this event to this endpoint, from 1.
	Attempt int `json:"attempt"`
	// Status is the receiver's HTTP status; 0 when there was no answer
	// (Error says why).
	Status    int     `json:"status"`
	Error     string  `json:"error,omitempty"`
	LatencyMS float64 `json:"latencyMs"`
}

// Success reports whether the receiver took the event (a 2xx answer).
func (a *WebhookAttempt) Success() bool { return a.Status >= 200 && a.Status < 300 }

// WebhookService manages the endpoints of the caller's app (the server
// key's API). Every method needs the app's server as the caller.
type WebhookService interface {
	// CreateWebhook creates an endpoint; it receives the events committed
	// from now on. EInvalid for a bad URL, filter or secret.
	CreateWebhook(ctx context.Context, nw NewWebhook) (*WebhookEndpoint, error)
	// ListWebhooks returns the app's endpoints, oldest first.
	ListWebhooks(ctx context.Context) ([]*WebhookEndpoint, error)
	// FindWebhook returns ENotFound if the app has no such endpoint.
	FindWebhook(ctx context.Context, id string) (*WebhookEndpoint, error)
	// UpdateWebhook changes an endpoint; the dispatcher then tries again
	// at once whatever its backoff.
	UpdateWebhook(ctx context.Context, id string, upd WebhookUpdate) (*WebhookEndpoint, error)
	// DeleteWebhook removes an endpoint and its attempts.
	DeleteWebhook(ctx context.Context, id string) error
	// ListWebhookAttempts returns the endpoint's most recent attempts,
	// newest first (at most limit, and at most WebhookAttemptsKept).
	ListWebhookAttempts(ctx context.Context, id string, limit int) ([]*WebhookAttempt, error)
	// ReplayWebhook moves the endpoint's position (see WebhookReplay).
	// ENotFound for an event id not in the log, EResyncRequired for a
	// position removed by retention.
	ReplayWebhook(ctx context.Context, id string, r WebhookReplay) (*WebhookEndpoint, error)
}

// WebhookAttemptsKept is how many attempts a store keeps per endpoint.
const WebhookAttemptsKept = 100

// WebhookStore is the dispatcher's side of webhooks.
type WebhookStore interface {
	// AllWebhooks returns the endpoints of every app.
	AllWebhooks(ctx context.Context) ([]*WebhookEndpoint, error)
	// WebhookEvents returns up to limit events of every app with seq >
	// after, in seq order, only final ones: no event can later appear
	// with a seq below the last one returned. When events after `after`
	// were removed by retention, prunedUpTo is the newest removed (>
	// after) and the events returned are those kept after it.
	WebhookEvents(ctx context.Context, after int64, limit int) (events []*Event, prunedUpTo int64, err error)
	// SaveWebhookProgress stores what the dispatcher did. An endpoint's
	// state (LastSeq, failing, missed) is saved only if its Version is
	// still the one given; attempts are kept in any case while the
	// endpoint exists (the newest WebhookAttemptsKept of each).
	SaveWebhookProgress(ctx context.Context, progress []WebhookProgress) error
}

// WebhookProgress is what the dispatcher did for one endpoint since it
// last saved.
type WebhookProgress struct {
	EndpointID   string
	Version      int64
	LastSeq      int64
	Failing      bool
	FailingSince *time.Time
	MissedUpTo   int64
	MissedAt     *time.Time
	Attempts     []WebhookAttempt
}

// WebhookEventNames are the events webhooks deliver: every durable event
// of the catalogue. Live-only updates (typing, presence) are not.
var WebhookEventNames = []string{
	EventProfileUpdate,
	EventConversationCreate, EventConversationUpdate, EventConversationDelete, EventConversationUndelete,
	EventParticipantAdded, EventParticipantUpdated, EventParticipantRemoved,
	EventMessageSent, EventMessageEdited, EventMessageDeleted, EventMessageDelivered, EventMessageRead,
}

// WebhookMatches reports whether an event named name passes the filter.
func WebhookMatches(filter []string, name string) bool {
	for _, f := range filter {
		if f == "*" || f == name || (strings.HasSuffix(f, ".*") && strings.HasPrefix(name, f[:len(f)-1])) {
			return true
		}
	}
	return false
}

// MaxWebhookURLLen bounds an endpoint's URL.
const MaxWebhookURLLen = 2048

// CheckWebhookURL returns EInvalid unless u is an absolute http or https
// URL with a host and without credentials or fragment.
func CheckWebhookURL(u string) error {
	if len(u) > MaxWebhookURLLen {
		return Errorf(EInvalid, "the webhook URL is longer than %d bytes", MaxWebhookURLLen)
	}
	p, err := url.Parse(u)
	switch {
	case err != nil:
		return Errorf(EInvalid, "the webhook URL is not a URL: %v", err)
	case p.Scheme != "http" && p.Scheme != "https":
		return Errorf(EInvalid, "the webhook URL must be http or https, not %q", p.Scheme)
	case p.Host == "" || p.Hostname() == "":
		return Errorf(EInvalid, "the webhook URL has no host")
	case p.User != nil:
		return Errorf(EInvalid, "the webhook URL must not hold credentials: the signature authenticates the server")
	case p.Fragment != "":
		return Errorf(EInvalid, "the webhook URL must not have a fragment")
	}
	return nil
}

// CheckWebhookEvents returns EInvalid unless every item of the filter is
// "*", an event of WebhookEventNames, or a prefix ending in ".*" that
// matches at least one of them; and there are 1 to 50 items.
func CheckWebhookEvents(filter []string) error {
	if len(filter) == 0 || len(filter) > 50 {
		return Errorf(EInvalid, "events must list 1 to 50 event names, \"*\" or prefixes such as \"conversationMessage.*\"")
	}
	for _, f := range filter {
		if f == "*" || slices.Contains(WebhookEventNames, f) {
			continue
		}
		ok := false
		if strings.HasSuffix(f, ".*") {
			for _, n := range WebhookEventNames {
				ok = ok || WebhookMatches([]string{f}, n)
			}
		}
		if !ok {
			return Errorf(EInvalid, "events: %q is not an event webhooks deliver (durable events of the catalogue), \"*\" or a prefix such as \"conversationMessage.*\"", f)
		}
	}
	return nil
}

// webhookSecretPrefix starts every webhook secret (Standard Webhooks).
const webhookSecretPrefix = "whsec_"

// NewWebhookSecret returns a new secret: "whsec_" and the base64 of 32
// random bytes.
func NewWebhookSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return webhookSecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// WebhookSecretKey returns the key bytes of a secret: the base64 after
// "whsec_". EInvalid unless it decodes to 24 to 64 bytes.
func WebhookSecretKey(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, webhookSecretPrefix)
	if !ok {
		return nil, Errorf(EInvalid, "a webhook secret starts with %q", webhookSecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) < 24 || len(key) > 64 {
		return nil, Errorf(EInvalid, "a webhook secret is %q and the base64 of 24 to 64 random bytes", webhookSecretPrefix)
	}
	return key, nil
}
