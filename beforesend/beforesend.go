// Package beforesend calls an app's before-send hook (issue #12): each
// new message of the app's users is POSTed, signed as webhooks are, to
// the app's backend before it is stored, and the backend answers whether
// to send it as it is, reject it, or replace its parts.
//
// Service wraps a store's tidings.MessageService: every transport (the
// REST API, the realtime socket) sends through it, and it hands the
// message to the store only once the hook has answered. The realtime
// socket's pipelining keeps its order: the socket starts a connection's
// next send once the store has queued the previous one (tidings.Queued),
// which comes after the hook.
//
// The call is one POST of a JSON body
//
//	{"type": "conversationMessage.beforeSend", "timestamp": "…", "data": {"app", "conversationId", "sender", "clientId", "parts", "metadata", "alert"}}
//
// with the headers of a webhook delivery (webhook-id, a new id per call;
// webhook-timestamp; webhook-signature, see webhook.Sign), so that
// webhook.Verify checks it. The answer, within the hook's timeout:
//
//	2xx, empty or {"action": "accept"}            the message is sent as it is
//	2xx, {"action": "reject", "reason": "…"}      the sender gets EForbidden with the reason
//	2xx, {"action": "replace", "parts": [...]}    the message is sent with these parts
//
// Anything else (no answer in time, another status, a body not
// understood, replacement parts a sender could not send) is a failure:
// the message is sent unchanged if the hook fails open, refused with
// EUnavailable if it fails closed (the default).
package beforesend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidings/tidings"
	"github.com/tidings/tidings/webhook"
)

// EventType is the type of the body of a call.
const EventType = "conversationMessage.beforeSend"

// Actions of an answer.
const (
	ActionAccept  = "accept"
	ActionReject  = "reject"
	ActionReplace = "replace"
)

// MaxReasonLen bounds the reason of a rejection given to the sender.
const MaxReasonLen = 500

// DefaultCacheTTL is how long an app's hook settings are remembered: a
// change made on another node (or by the command line) applies within it.
const DefaultCacheTTL = time.Second

// Message is the data of a call: the message about to be sent.
type Message struct {
	App            string          `json:"app"`
	ConversationID string          `json:"conversationId"`
	Sender         tidings.Profile `json:"sender"`
	ClientID       string          `json:"clientId,omitempty"`
	Parts          []tidings.Part  `json:"parts"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`
	Alert          string          `json:"alert,omitempty"`
}

// Answer is what a hook answers.
type Answer struct {
	Action string         `json:"action"`
	Reason string         `json:"reason,omitempty"`
	Parts  []tidings.Part `json:"parts,omitempty"`
}

// Service is a tidings.MessageService that calls the hook of the
// caller's app before the wrapped service sends a message. Its other
// methods are the wrapped service's.
type Service struct {
	tidings.MessageService
	// Store has the apps' hooks, finds a message already sent with a
	// client id, and reads the conversation before a call: a sender who
	// may not send is answered by the store without a call.
	Store tidings.BeforeSendStore
	// Users is read before a call: the call names the sender with their
	// profile.
	Users tidings.UserService
	// Client makes the calls; NewClient(false) when nil. Each call is
	// bounded by its hook's timeout.
	Client *http.Client
	// MaxMessageBytes is the store's message size limit (0: the default).
	MaxMessageBytes int
	Logger          *slog.Logger
	// CacheTTL is how long an app's settings are remembered
	// (DefaultCacheTTL when 0).
	CacheTTL time.Duration
	Now      func() time.Time

	mu      sync.Mutex
	cache   map[string]cached
	metrics *metrics
}

type cached struct {
	hook *tidings.BeforeSendHook
	at   time.Time
}

// Forget drops what the service remembers of an app's hook: the next
// send reads it again. The API calls it when it changes the hook.
func (s *Service) Forget(appID string) {
	s.mu.Lock()
	delete(s.cache, appID)
	s.mu.Unlock()
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// hookOf returns the hook of the app, nil when it has none.
func (s *Service) hookOf(ctx context.Context, appID string) (*tidings.BeforeSendHook, error) {
	ttl := s.CacheTTL
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	now := s.now()
	s.mu.Lock()
	c, ok := s.cache[appID]
	s.mu.Unlock()
	if ok && now.Sub(c.at) < ttl {
		return c.hook, nil
	}
	h, err := s.Store.AppBeforeSend(ctx, appID)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.cache == nil {
		s.cache = make(map[string]cached)
	}
	s.cache[appID] = cached{h, now}
	s.mu.Unlock()
	return h, nil
}

// SendMessage calls the hook of the caller's app, if it has one, then
// sends the message (as it is, or with the hook's parts), or refuses it.
// System messages (the app's server as itself) are sent without a call,
// and so is a message whose client id the sender already used in the
// conversation: the store answers with the message first sent.
func (s *Service) SendMessage(ctx context.Context, convID string, nm tidings.NewMessage) (*tidings.Message, bool, error) {
	c, ok := tidings.CallerFromContext(ctx)
	if !ok || !c.IsUser() {
		return s.MessageService.SendMessage(ctx, convID, nm)
	}
	hook, err := s.hookOf(ctx, c.AppID)
	if err != nil {
		return nil, false, err
	}
	if hook == nil {
		return s.MessageService.SendMessage(ctx, convID, nm)
	}
	// What the store would refuse, it refuses without a call: a bad
	// message, a sender who may not send, a retry of a message sent.
	if err := nm.Validate(s.maxBytes()); err != nil {
		return nil, false, err
	}
	if nm.ClientID != "" {
		sent, err := s.Store.FindSentMessage(ctx, convID, nm.ClientID)
		if err != nil {
			return nil, false, err
		}
		if sent != nil {
			return s.MessageService.SendMessage(ctx, convID, nm)
		}
	}
	conv, err := s.Store.ConversationForSend(ctx, convID)
	if err != nil && tidings.ErrorCode(err) != tidings.ENotFound {
		return nil, false, err
	}
	if err := tidings.CanSendMessage(convID, conv); err != nil {
		return nil, false, err
	}
	user, err := s.Users.FindUserByID(ctx, c.UserID)
	if err != nil {
		return s.MessageService.SendMessage(ctx, convID, nm) // the store says what is wrong
	}
	parts, err := s.call(ctx, hook, Message{App: c.AppID, ConversationID: convID, Sender: user.Summary(),
		ClientID: nm.ClientID, Parts: nm.Parts, Metadata: nm.Metadata, Alert: nm.Alert})
	if err != nil {
		return nil, false, err
	}
	if parts != nil {
		nm.Parts = parts
	}
	return s.MessageService.SendMessage(ctx, convID, nm)
}

func (s *Service) maxBytes() int {
	if s.MaxMessageBytes > 0 {
		return s.MaxMessageBytes
	}
	return tidings.DefaultMessageSize
}

// failure is a call that failed; reason labels the metric.
type failure struct {
	reason string
	err    error
}

func (f *failure) Error() string { return f.err.Error() }

// call calls the hook and returns the parts to send instead (nil: the
// message's own), or the error to answer the sender with.
func (s *Service) call(ctx context.Context, hook *tidings.BeforeSendHook, m Message) ([]tidings.Part, error) {
	met := s.metricsOf()
	start := time.Now()
	ans, err := s.post(ctx, hook, m)
	met.duration.Observe(time.Since(start).Seconds())
	if err == nil {
		switch ans.Action {
		case ActionAccept:
			met.calls.WithLabelValues("accept").Inc()
			return nil, nil
		case ActionReject:
			met.calls.WithLabelValues("reject").Inc()
			return nil, rejected(ans.Reason)
		case ActionReplace:
			check := tidings.NewMessage{Parts: ans.Parts, Metadata: m.Metadata, Alert: m.Alert}
			if verr := check.Validate(s.maxBytes()); verr != nil {
				err = &failure{"answer", fmt.Errorf("the replacement parts are not valid: %s", tidings.ErrorMessage(verr))}
				break
			}
			met.calls.WithLabelValues("replace").Inc()
			return ans.Parts, nil
		}
	}
	var f *failure
	if !errors.As(err, &f) {
		f = &failure{"network", err}
	}
	met.calls.WithLabelValues("failure").Inc()
	mode := "closed"
	if hook.FailOpen {
		mode = "open"
	}
	met.failures.WithLabelValues(f.reason, mode).Inc()
	s.logger().Warn("the before-send hook failed", "app", hook.AppID, "conversation", m.ConversationID,
		"reason", f.reason, "error", f.err, "failOpen", hook.FailOpen)
	if hook.FailOpen {
		return nil, nil
	}
	return nil, tidings.Errorf(tidings.EUnavailable, "the app's before-send hook did not answer: the message was not sent; try again later")
}

func rejected(reason string) error {
	reason = strings.TrimSpace(strings.ToValidUTF8(reason, "\uFFFD"))
	if len(reason) > MaxReasonLen {
		cut := MaxReasonLen
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut] + "…"
	}
	if reason == "" {
		return tidings.Errorf(tidings.EForbidden, "the message was rejected")
	}
	return tidings.Errorf(tidings.EForbidden, "the message was rejected: %s", reason)
}

// post makes the call and decodes its answer (an empty one accepts).
func (s *Service) post(ctx context.Context, hook *tidings.BeforeSendHook, m Message) (*Answer, error) {
	now := s.now()
	body, err := json.Marshal(struct {
		Type      string    `json:"type"`
		Timestamp time.Time `json:"timestamp"`
		Data      Message   `json:"data"`
	}{EventType, now.UTC(), m})
	if err != nil {
		return nil, err
	}
	id := tidings.NewID()
	ts := now.Unix()
	sig, err := webhook.Sign(hook.Secret, id, ts, body)
	if err != nil {
		return nil, &failure{"secret", err}
	}
	ctx, cancel := context.WithTimeout(ctx, hook.Timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.URL, bytes.NewReader(body))
	if err != nil {
		return nil, &failure{"network", err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tidings-before-send")
	req.Header.Set(webhook.HeaderID, id)
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(webhook.HeaderSignature, sig)
	resp, err := s.client().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &failure{"timeout", fmt.Errorf("no answer within %v: %w", hook.Timeout(), err)}
		}
		return nil, &failure{"network", err}
	}
	defer resp.Body.Close()
	limit := int64(2*s.maxBytes() + 64<<10)
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, &failure{"timeout", fmt.Errorf("no whole answer within %v: %w", hook.Timeout(), err)}
		}
		return nil, &failure{"network", err}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &failure{"status", fmt.Errorf("the hook answered %s", resp.Status)}
	}
	if int64(len(data)) > limit {
		return nil, &failure{"answer", fmt.Errorf("the answer is longer than %d bytes", limit)}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return &Answer{Action: ActionAccept}, nil
	}
	var ans Answer
	if err := json.Unmarshal(data, &ans); err != nil {
		return nil, &failure{"answer", fmt.Errorf("the answer is not JSON: %w", err)}
	}
	switch ans.Action {
	case "", ActionAccept:
		ans.Action = ActionAccept
	case ActionReject:
	case ActionReplace:
		if ans.Parts == nil {
			return nil, &failure{"answer", errors.New(`a "replace" answer without "parts"`)}
		}
	default:
		return nil, &failure{"answer", fmt.Errorf("unknown action %q", ans.Action)}
	}
	return &ans, nil
}

// NewClient returns the HTTP client of the calls: webhook.NewClient's
// (no redirect followed, no proxy from the environment, with
// denyPrivate no connection to a private address), keeping more idle
// connections to a host, as the senders of an app call its hook at once.
func NewClient(denyPrivate bool) *http.Client {
	c := webhook.NewClient(tidings.MaxBeforeSendTimeout, denyPrivate)
	if t, ok := c.Transport.(*http.Transport); ok {
		t.MaxIdleConnsPerHost = 64
	}
	return c
}

var defaultClient = sync.OnceValue(func() *http.Client { return NewClient(false) })

func (s *Service) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return defaultClient()
}

func (s *Service) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

type metrics struct {
	calls    *prometheus.CounterVec
	failures *prometheus.CounterVec
	duration prometheus.Histogram
}

func (s *Service) metricsOf() *metrics {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.metrics == nil {
		s.metrics = &metrics{
			calls: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "tidings_before_send_calls_total",
				Help: "Calls of apps' before-send hooks, by result: accept, reject, replace or failure.",
			}, []string{"result"}),
			failures: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "tidings_before_send_failures_total",
				Help: "Failed calls of before-send hooks, by reason (timeout, network, status, answer, secret) and mode: open (the message was sent unchanged) or closed (refused, unavailable).",
			}, []string{"reason", "mode"}),
			duration: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "tidings_before_send_call_duration_seconds",
				Help:    "Time from calling a before-send hook to its answer (or failure).",
				Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10),
			}),
		}
	}
	return s.metrics
}

// Collectors returns the service's Prometheus metrics, to be registered
// by the program that serves /metrics.
func (s *Service) Collectors() []prometheus.Collector {
	m := s.metricsOf()
	return []prometheus.Collector{m.calls, m.failures, m.duration}
}

// CallsCounter returns the counter of calls with the result, for tests.
func (s *Service) CallsCounter(result string) prometheus.Counter {
	return s.metricsOf().calls.WithLabelValues(result)
}

// FailuresCounter returns the counter of failures, for tests.
func (s *Service) FailuresCounter(reason, mode string) prometheus.Counter {
	return s.metricsOf().failures.WithLabelValues(reason, mode)
}
