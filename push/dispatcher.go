package push

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidings/tidings"
)

// Presence tells whether a user has a live connection, which then gets
// their messages: they get no push. realtime.Node implements it for its
// own connections; ClusterPresence, for the whole cluster.
type Presence interface {
	Online(appID, userID string) bool
}

// PresenceOfMany is a Presence that also answers for many users at once,
// which the dispatcher then asks once per conversation of each batch of
// messages (before it locks anything), rather than once per user and
// message: the cluster's presence, which costs a round trip.
type PresenceOfMany interface {
	Presence
	// OnlineOf returns those of userIDs who have a live connection.
	OnlineOf(ctx context.Context, appID string, userIDs []string) ([]string, error)
}

// TargetIndex is a tidings.PushStore that knows, without a query,
// whether an app has any push target at all: the dispatcher then skips
// the messages of an app without one (most messages, when an app does
// not use push) instead of reading each conversation's candidates. The
// answer must be exact once a change of targets has committed: a target
// registered gets the messages sent after its registration returned.
// The SQLite store implements it (it is the only writer of its
// database); a store of many nodes, which would have to learn of the
// others' writes, does not, and is asked per conversation.
type TargetIndex interface {
	HasPushTargets(appID string) bool
}

// LeaseName is the lease the node that sends pushes holds, when the
// Dispatcher has Leases (a cluster).
const LeaseName = "push"

// DefaultLeaseTTL is the lease of the node that sends pushes in a
// cluster: when it dies, another takes over after it.
const DefaultLeaseTTL = 6 * time.Second

// Dispatcher turns the messages sent into pushes. It is a
// tidings.EventPublisher: give it the store's events (beside the realtime
// node). For each conversationMessage.sent, every participant but the
// sender who may get pushes (a target, pushes on, the conversation not
// muted) and has no live connection gets one, Window after the first
// message: the messages of that conversation that came meanwhile are
// told together ("3 new messages"). When the window ends, the user is
// checked again: online by then, or having read the conversation, they
// get none.
type Dispatcher struct {
	Store    tidings.PushStore
	Presence Presence // nil: every user is offline
	// Leases, when set, elect the one node of a cluster that sends the
	// pushes (lease LeaseName, held by Node for LeaseTTL, default
	// DefaultLeaseTTL): every node's dispatcher is given every message
	// sent (the events its realtime node delivers), and only the holder's
	// takes them. Nil: this dispatcher takes every message it is given.
	Leases    tidings.Leases
	Node      string
	LeaseTTL  time.Duration
	Providers map[string]Provider
	// Window is how long messages are gathered before a push (default
	// 2 s).
	Window time.Duration
	// Workers bounds the pushes sent at once (default 16); Timeout, one
	// push (default 30 s).
	Workers int
	Timeout time.Duration
	Logger  *slog.Logger

	messages, pushes, sent, failed, removed, dropped atomic.Int64

	mu        sync.Mutex
	index     TargetIndex // Store's, from Open on (nil if it is none)
	heldUntil time.Time   // with Leases: until when this node surely holds the lease
	queue     []*tidings.Event
	pending   map[pendingKey]*pending
	closed    bool
	wake      chan struct{}
	sem       chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// Stats counts what a dispatcher did since it was made.
type Stats struct {
	Messages int64 // messages sent that were looked at
	Pushes   int64 // notifications made (one per user, for one or more messages)
	Sent     int64 // deliveries to targets that succeeded
	Failed   int64 // deliveries that failed
	Removed  int64 // targets removed as gone
	Dropped  int64 // messages not looked at: maxQueue were waiting
}

// Stats returns the dispatcher's counters.
func (d *Dispatcher) Stats() Stats {
	return Stats{Messages: d.messages.Load(), Pushes: d.pushes.Load(), Sent: d.sent.Load(),
		Failed: d.failed.Load(), Removed: d.removed.Load(), Dropped: d.dropped.Load()}
}

// maxQueue bounds the messages waiting for the dispatcher's goroutine.
const maxQueue = 100_000

type pendingKey struct{ app, user, conv string }

// pending is a push being gathered: the messages so far.
type pending struct {
	count int
	last  tidings.MessagePayload
	timer *time.Timer
}

// Open starts the dispatcher's goroutine.
func (d *Dispatcher) Open() error {
	if d.Window <= 0 {
		d.Window = 2 * time.Second
	}
	if d.Workers <= 0 {
		d.Workers = 16
	}
	if d.Timeout <= 0 {
		d.Timeout = 30 * time.Second
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	d.mu.Lock()
	if d.wake == nil {
		d.wake = make(chan struct{}, 1)
	}
	d.pending = make(map[pendingKey]*pending)
	d.index, _ = d.Store.(TargetIndex)
	d.sem = make(chan struct{}, d.Workers)
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.mu.Unlock()
	d.wg.Add(1)
	go d.run()
	if d.Leases != nil {
		if d.LeaseTTL <= 0 {
			d.LeaseTTL = DefaultLeaseTTL
		}
		d.wg.Add(1)
		go d.holdLease()
	}
	return nil
}

// holdLease runs while the dispatcher is open, in a cluster: it takes the
// lease LeaseName when no node holds it, and renews it every third of
// its ttl while it holds it; Close releases it. The dispatcher takes
// messages only until the lease surely ends, counted from before each
// renewal: never after another node may have taken it.
func (d *Dispatcher) holdLease() {
	defer d.wg.Done()
	held := false
	defer func() {
		if held {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			d.mu.Lock()
			d.heldUntil = time.Time{}
			d.mu.Unlock()
			if err := d.Leases.Release(ctx, LeaseName, d.Node); err != nil {
				d.Logger.Warn("push: release the lease", "err", err)
			}
		}
	}()
	t := time.NewTicker(d.LeaseTTL / 3)
	defer t.Stop()
	for {
		start := time.Now()
		ctx, cancel := context.WithTimeout(d.ctx, d.LeaseTTL/3)
		ok, err := d.Leases.Hold(ctx, LeaseName, d.Node, d.LeaseTTL)
		cancel()
		if d.ctx.Err() != nil {
			return
		}
		if err != nil {
			d.Logger.Warn("push: hold the lease", "err", err)
			ok = false
		}
		d.mu.Lock()
		if ok {
			d.heldUntil = start.Add(d.LeaseTTL)
		} else {
			d.heldUntil = time.Time{}
		}
		d.mu.Unlock()
		if ok && !held {
			d.Logger.Info("push: this node sends the push notifications", "node", d.Node)
		} else if !ok && held {
			d.Logger.Info("push: this node no longer sends the push notifications", "node", d.Node)
		}
		held = ok
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Holding reports whether the dispatcher takes the messages it is given:
// always without Leases, while it holds the lease with them.
func (d *Dispatcher) Holding() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.holdingLocked()
}

func (d *Dispatcher) holdingLocked() bool {
	return d.Leases == nil || time.Now().Before(d.heldUntil)
}

// Close stops the dispatcher: the pushes being gathered are dropped, those
// being sent are cut short.
func (d *Dispatcher) Close() error {
	d.mu.Lock()
	d.closed = true
	for k, p := range d.pending {
		p.timer.Stop()
		delete(d.pending, k)
	}
	cancel := d.cancel
	d.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	d.wg.Wait()
	return nil
}

// Publish takes the messages sent among events. It never blocks: they are
// queued for the dispatcher's goroutine. With Leases, a dispatcher that
// does not hold the lease drops them: the holder takes them. (The
// messages it took before it lost the lease are still pushed, as no
// other node took them.) Once open, with a Store that is a TargetIndex,
// it looks at the messages of apps without push targets here, and its
// goroutine is not woken for them: an app that does not use push costs
// no wake-up per commit.
func (d *Dispatcher) Publish(events ...*tidings.Event) {
	var sent []*tidings.Event
	for _, ev := range events {
		if ev.Name == tidings.EventMessageSent {
			sent = append(sent, ev)
		}
	}
	if len(sent) == 0 {
		return
	}
	d.mu.Lock()
	if d.closed || !d.holdingLocked() {
		d.mu.Unlock()
		return
	}
	if d.index != nil {
		kept := sent[:0]
		for _, ev := range sent {
			if d.index.HasPushTargets(ev.AppID) {
				kept = append(kept, ev)
			}
		}
		d.messages.Add(int64(len(sent) - len(kept))) // looked at: nobody of their app may get a push
		if sent = kept; len(sent) == 0 {
			d.mu.Unlock()
			return
		}
	}
	if len(d.queue)+len(sent) > maxQueue {
		// The store is too slow to answer: drop rather than grow without
		// bound (pushes are best effort).
		d.dropped.Add(int64(len(sent)))
		d.mu.Unlock()
		return
	}
	d.queue = append(d.queue, sent...)
	if d.wake == nil {
		d.wake = make(chan struct{}, 1)
	}
	wake := d.wake
	d.mu.Unlock()
	select {
	case wake <- struct{}{}:
	default:
	}
}

func (d *Dispatcher) run() {
	defer d.wg.Done()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.wake:
		}
		d.mu.Lock()
		batch := d.queue
		d.queue = nil
		d.mu.Unlock()
		d.gatherBatch(batch)
	}
}

// gatherBatch gathers the messages of a batch, reading the candidates of
// each conversation once for the whole batch: under load, batches are
// large and many of their messages share conversations.
func (d *Dispatcher) gatherBatch(batch []*tidings.Event) {
	type convKey struct{ app, conv string }
	candidates := make(map[convKey][]string)
	online := make(map[convKey]map[string]bool)
	many, _ := d.Presence.(PresenceOfMany)
	index, _ := d.Store.(TargetIndex)
	for _, ev := range batch {
		k := convKey{ev.AppID, ev.ConversationID}
		users, ok := candidates[k]
		if !ok && index != nil && !index.HasPushTargets(ev.AppID) {
			candidates[k], ok = nil, true // nobody of the app may get a push
		}
		if !ok {
			ctx, cancel := context.WithTimeout(d.ctx, d.Timeout)
			var err error
			users, err = d.Store.PushCandidates(ctx, ev.AppID, ev.ConversationID, "")
			if err != nil && d.ctx.Err() == nil {
				d.Logger.Warn("push: read who may get a push", "err", err, "conversation", ev.ConversationID)
			}
			candidates[k] = users
			if many != nil && len(users) > 0 {
				online[k] = d.onlineOf(ctx, many, ev.AppID, users)
			}
			cancel()
		}
		d.gather(ev, users, online[k])
	}
}

// onlineOf returns which of users are online, by asking p. When p cannot
// tell, they count as offline: a push to a user who had the message
// already is better than none to one who did not.
func (d *Dispatcher) onlineOf(ctx context.Context, p PresenceOfMany, app string, users []string) map[string]bool {
	list, err := p.OnlineOf(ctx, app, users)
	if err != nil && d.ctx.Err() == nil {
		d.Logger.Warn("push: ask who is online; pushing to all", "err", err, "app", app)
	}
	online := make(map[string]bool, len(list))
	for _, u := range list {
		online[u] = true
	}
	return online
}

// gather adds a message to the pushes of users, its conversation's
// candidates, but its sender and those online: those in online when it is
// not nil (the presence of many, asked already), else those Presence
// says.
func (d *Dispatcher) gather(ev *tidings.Event, users []string, online map[string]bool) {
	defer d.messages.Add(1) // after the pushes are gathered
	if len(users) == 0 {
		return
	}
	var m tidings.Message
	if err := json.Unmarshal(ev.Payload, &m); err != nil {
		d.Logger.Error("push: decode a message event", "err", err, "event", ev.ID)
		return
	}
	msg := tidings.NewMessagePayload(&m, "")
	msg.Complete(ev)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	for _, u := range users {
		if u == m.Sender.ID || online != nil && online[u] || online == nil && d.Presence != nil && d.Presence.Online(ev.AppID, u) {
			continue
		}
		k := pendingKey{ev.AppID, u, ev.ConversationID}
		p := d.pending[k]
		if p == nil {
			p = &pending{}
			d.pending[k] = p
			p.timer = time.AfterFunc(d.Window, func() { d.flush(k) })
		}
		p.count++
		p.last = msg
	}
}

// flush sends the push gathered under k.
func (d *Dispatcher) flush(k pendingKey) {
	d.mu.Lock()
	p := d.pending[k]
	delete(d.pending, k)
	if p == nil || d.closed {
		d.mu.Unlock()
		return
	}
	d.wg.Add(1)
	d.mu.Unlock()
	defer d.wg.Done()
	select {
	case d.sem <- struct{}{}:
		defer func() { <-d.sem }()
	case <-d.ctx.Done():
		return
	}
	if d.Presence != nil && d.Presence.Online(k.app, k.user) {
		return
	}
	ctx, cancel := context.WithTimeout(d.ctx, d.Timeout)
	defer cancel()
	if err := d.send(ctx, k, p); err != nil && d.ctx.Err() == nil {
		d.Logger.Warn("push: not sent", "err", err, "app", k.app, "user", k.user, "conversation", k.conv)
	}
}

func (d *Dispatcher) send(ctx context.Context, k pendingKey, p *pending) error {
	r, err := d.Store.PushRecipient(ctx, k.app, k.user, k.conv)
	if err != nil {
		return err
	}
	if r.Disabled || r.Muted || r.Unread == 0 || len(r.Targets) == 0 {
		return nil
	}
	cfg, err := d.Store.AppPushConfig(ctx, k.app)
	if err != nil {
		return err
	}
	m := p.last.Message
	n := &Notification{AppID: k.app, UserID: k.user, ConversationID: k.conv, MessageID: m.ID, Seq: m.Seq,
		SenderID: m.Sender.ID, Title: m.Sender.DisplayName, Badge: r.Badge, Count: p.count}
	n.Body = Alert(cfg, m, p.count)
	d.pushes.Add(1)
	var gone []string
	for _, t := range r.Targets {
		prov := d.Providers[t.Kind]
		if prov == nil {
			continue // this server sends no pushes of that kind
		}
		err := prov.Send(ctx, cfg, t, n)
		switch {
		case errors.Is(err, ErrGone):
			gone = append(gone, t.ID)
			d.removed.Add(1)
			d.Logger.Info("push: target gone, removed", "app", k.app, "user", k.user, "target", t.ID, "kind", t.Kind, "err", err)
		case err != nil:
			d.failed.Add(1)
			d.Logger.Warn("push: send failed", "app", k.app, "user", k.user, "target", t.ID, "kind", t.Kind, "err", err)
		default:
			d.sent.Add(1)
		}
	}
	return d.Store.RemovePushTargets(ctx, k.app, gone)
}

// maxText bounds the message text quoted in a push.
const maxText = 200

// Alert returns the text of a push about m, the newest of count messages:
// its alert if it has one and is alone, else the app's template.
func Alert(cfg *tidings.PushConfig, m *tidings.Message, count int) string {
	if count <= 1 && m.Alert != "" {
		return m.Alert
	}
	tmpl := cfg.AlertTemplate
	if count > 1 {
		tmpl = cfg.BurstTemplate
	}
	return strings.NewReplacer("{sender}", m.Sender.DisplayName, "{text}", messageText(m),
		"{count}", strconv.Itoa(count)).Replace(tmpl)
}

// messageText is what a push quotes of a message: its first text part
// (other types, such as end-to-end encrypted data, are never shown), else
// its first part's name.
func messageText(m *tidings.Message) string {
	for _, p := range m.Parts {
		if strings.HasPrefix(p.Type, "text/") && p.Data != "" {
			return truncate(p.Data, maxText)
		}
	}
	for _, p := range m.Parts {
		if p.Name != "" {
			return truncate(p.Name, maxText)
		}
	}
	return "New message"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Collectors returns the dispatcher's counters as Prometheus metrics.
func (d *Dispatcher) Collectors() []prometheus.Collector {
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	return []prometheus.Collector{
		counter("tidings_push_messages_total", "Messages sent that the push dispatcher looked at.", &d.messages),
		counter("tidings_push_notifications_total", "Push notifications made (one per user, for one or more messages).", &d.pushes),
		counter("tidings_push_sent_total", "Pushes the push services accepted (one per target).", &d.sent),
		counter("tidings_push_failed_total", "Pushes that failed (the target kept).", &d.failed),
		counter("tidings_push_targets_removed_total", "Push targets removed because their service said they are gone.", &d.removed),
		counter("tidings_push_dropped_total", "Messages not looked at because too many were waiting.", &d.dropped),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tidings_push_sending",
			Help: "1 when this node sends the push notifications (in a cluster, while it holds the push lease), else 0."},
			func() float64 {
				if d.Holding() {
					return 1
				}
				return 0
			}),
	}
}
