package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/tidings/tidings"
)

// Defaults of the Dispatcher.
const (
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 10 * time.Minute
	DefaultFailAfter  = 24 * time.Hour
	DefaultTimeout    = 10 * time.Second
	DefaultPoll       = time.Second
	DefaultBatch      = 500
)

// LeaseName is the lease a node holds while it dispatches, when the
// Dispatcher has Leases (a cluster).
const LeaseName = "webhooks"

// maxResponseRead bounds what is read of a receiver's answer (to reuse
// the connection); the rest is dropped.
const maxResponseRead = 64 << 10

// Dispatcher delivers the events of the log to the webhook endpoints of
// every app. Each endpoint gets its matching events one at a time, in the
// log's order, each until the receiver answers 2xx (retrying with
// exponential backoff and jitter); its position then moves past it. The
// positions are saved every Poll, with the attempts, in one write: a
// crash delivers again what was delivered since (at least once).
//
// Set the fields, then call Run. Publish (or Notify) wakes it when
// events are committed; without, it looks every Poll.
type Dispatcher struct {
	Store tidings.WebhookStore
	// Leases, when set, elect the one node of a cluster that dispatches
	// (lease LeaseName, held by Node). Nil: this node dispatches.
	Leases tidings.Leases
	Node   string
	// Client sends the deliveries; NewClient(Timeout, DenyPrivate) by
	// default.
	Client *http.Client
	// DenyPrivate refuses to connect to loopback, private and link-local
	// addresses (with the default Client).
	DenyPrivate bool
	Logger      *slog.Logger
	// MinBackoff is the wait after a first failure; it doubles with
	// each failure up to MaxBackoff, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// FailAfter is how long an endpoint fails without a success before it
	// is marked failing.
	FailAfter time.Duration
	// Timeout bounds one attempt.
	Timeout time.Duration
	// Poll is how often the endpoints are read again, progress saved,
	// and the log looked at without a Notify.
	Poll time.Duration
	// Batch is how many events one read of the log returns at most.
	Batch int
	Now   func() time.Time

	metrics *metrics

	mu       sync.Mutex
	wake     chan struct{}                       // closed and replaced by Notify
	reload   chan struct{}                       // NotifyEndpoints
	progress map[string]*tidings.WebhookProgress // unsaved, by endpoint
	lag      map[string]time.Time                // time of the event each endpoint is delivering
	apps     map[string]string                   // endpoint → app, for metrics
	failing  map[string]bool                     // endpoint → failing, for metrics
	reported map[string]bool                     // apps with gauges
	workers  map[string]*worker                  // Run's goroutine only
	cache    logCache
}

type worker struct {
	ep     *tidings.WebhookEndpoint
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a Dispatcher of store with the defaults.
func New(store tidings.WebhookStore) *Dispatcher {
	return &Dispatcher{Store: store, metrics: newMetrics()}
}

func (d *Dispatcher) init() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.metrics == nil {
		d.metrics = newMetrics()
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.MinBackoff <= 0 {
		d.MinBackoff = DefaultMinBackoff
	}
	if d.MaxBackoff < d.MinBackoff {
		d.MaxBackoff = max(DefaultMaxBackoff, d.MinBackoff)
	}
	if d.FailAfter <= 0 {
		d.FailAfter = DefaultFailAfter
	}
	if d.Timeout <= 0 {
		d.Timeout = DefaultTimeout
	}
	if d.Poll <= 0 {
		d.Poll = DefaultPoll
	}
	if d.Batch <= 0 {
		d.Batch = DefaultBatch
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Client == nil {
		d.Client = NewClient(d.Timeout, d.DenyPrivate)
	}
	if d.wake == nil {
		d.wake = make(chan struct{})
	}
	if d.reload == nil {
		d.reload = make(chan struct{}, 1)
	}
	d.progress = make(map[string]*tidings.WebhookProgress)
	d.lag = make(map[string]time.Time)
	d.apps = make(map[string]string)
	d.failing = make(map[string]bool)
	d.reported = make(map[string]bool)
	d.workers = make(map[string]*worker)
}

// Publish wakes the dispatcher: events were committed. It implements
// tidings.EventPublisher and never blocks.
func (d *Dispatcher) Publish(...*tidings.Event) { d.Notify() }

// Notify wakes the endpoints waiting for events.
func (d *Dispatcher) Notify() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.wake != nil {
		close(d.wake)
	}
	d.wake = make(chan struct{})
}

// NotifyEndpoints makes the dispatcher read the endpoints again now (one
// was changed through the API); otherwise it does every Poll.
func (d *Dispatcher) NotifyEndpoints() {
	d.mu.Lock()
	if d.reload == nil {
		d.reload = make(chan struct{}, 1)
	}
	ch := d.reload
	d.mu.Unlock()
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (d *Dispatcher) wakeChan() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.wake
}

// Run dispatches until ctx ends, then saves the progress made and
// returns.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.init()
	t := time.NewTicker(d.Poll)
	defer t.Stop()
	leaseTTL := max(15*time.Second, 3*d.Poll)
	var heldUntil time.Time
	defer func() {
		d.stopAll()
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.flush(fctx)
		if d.Leases != nil && !heldUntil.IsZero() {
			_ = d.Leases.Release(fctx, LeaseName, d.Node)
		}
	}()
	for {
		leader := true
		if d.Leases != nil {
			now := time.Now()
			if now.After(heldUntil.Add(-2 * leaseTTL / 3)) {
				held, err := d.Leases.Hold(ctx, LeaseName, d.Node, leaseTTL)
				if err != nil && ctx.Err() == nil {
					d.Logger.Warn("webhooks: could not hold the dispatch lease", "err", err)
				}
				if held && err == nil {
					heldUntil = now.Add(leaseTTL)
				} else {
					heldUntil = time.Time{}
				}
			}
			leader = !heldUntil.IsZero()
		}
		if leader {
			if err := d.sync(ctx); err != nil && ctx.Err() == nil {
				d.Logger.Warn("webhooks: could not read the endpoints", "err", err)
			}
		} else {
			d.stopAll()
		}
		d.flush(ctx)
		d.observe()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-d.reload:
		}
	}
}

// sync starts, stops and restarts the workers to match the stored
// endpoints.
func (d *Dispatcher) sync(ctx context.Context) error {
	eps, err := d.Store.AllWebhooks(ctx)
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(eps))
	for _, ep := range eps {
		seen[ep.ID] = true
		w := d.workers[ep.ID]
		if w != nil && w.ep.Version == ep.Version {
			continue
		}
		if w != nil {
			d.stop(ep.ID)
		}
		d.mu.Lock()
		d.apps[ep.ID] = ep.AppID
		d.failing[ep.ID] = ep.Failing && !ep.Disabled
		d.mu.Unlock()
		if ep.Disabled {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		w = &worker{ep: ep, cancel: cancel, done: make(chan struct{})}
		d.workers[ep.ID] = w
		go func() {
			defer close(w.done)
			d.deliverAll(wctx, ep)
		}()
	}
	for id := range d.workers {
		if !seen[id] {
			d.stop(id)
		}
	}
	d.mu.Lock()
	for id := range d.apps {
		if !seen[id] {
			delete(d.apps, id)
			delete(d.failing, id)
			delete(d.lag, id)
		}
	}
	d.mu.Unlock()
	return nil
}

func (d *Dispatcher) stop(id string) {
	if w := d.workers[id]; w != nil {
		w.cancel()
		<-w.done
		delete(d.workers, id)
		d.mu.Lock()
		delete(d.lag, id)
		d.mu.Unlock()
	}
}

func (d *Dispatcher) stopAll() {
	for id := range d.workers {
		d.stop(id)
	}
}

// state is what a worker knows of its endpoint as it goes.
type state struct {
	lastSeq      int64
	failing      bool
	failingSince *time.Time
	missedUpTo   int64
	missedAt     *time.Time
}

// deliverAll delivers the endpoint's events, in order, until ctx ends.
func (d *Dispatcher) deliverAll(ctx context.Context, ep *tidings.WebhookEndpoint) {
	st := state{lastSeq: ep.LastSeq, failing: ep.Failing, failingSince: ep.FailingSince}
	key, err := tidings.WebhookSecretKey(ep.Secret)
	if err != nil {
		d.Logger.Error("webhooks: the endpoint's secret is not valid", "endpoint", ep.ID, "app", ep.AppID, "err", err)
		return
	}
	for ctx.Err() == nil {
		wake := d.wakeChan()
		evs, pruned, err := d.read(ctx, st.lastSeq)
		if err != nil {
			if ctx.Err() == nil {
				d.Logger.Warn("webhooks: could not read the event log", "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(d.Poll):
			}
			continue
		}
		if pruned > st.lastSeq {
			now := d.Now().UTC()
			d.Logger.Warn("webhooks: events were removed by retention before the endpoint received them",
				"endpoint", ep.ID, "app", ep.AppID, "after", st.lastSeq, "up_to", pruned)
			d.metrics.missed.WithLabelValues(ep.AppID).Inc()
			st.lastSeq, st.missedUpTo, st.missedAt = pruned, pruned, &now
			d.record(ep, &st, nil)
		}
		if len(evs) == 0 {
			select {
			case <-ctx.Done():
			case <-wake:
			case <-time.After(d.Poll):
			}
			continue
		}
		for _, ev := range evs {
			if ev.Seq <= st.lastSeq {
				continue
			}
			if ev.AppID == ep.AppID && tidings.WebhookMatches(ep.Events, ev.Name) {
				if !d.deliver(ctx, ep, key, ev, &st) {
					return
				}
			}
			st.lastSeq = ev.Seq
			d.record(ep, &st, nil)
		}
	}
}

// deliver POSTs ev to the endpoint until it takes it or ctx ends
// (false).
func (d *Dispatcher) deliver(ctx context.Context, ep *tidings.WebhookEndpoint, key []byte, ev *tidings.Event, st *state) bool {
	body, err := Body(ev)
	if err != nil {
		d.Logger.Error("webhooks: could not encode an event; skipped", "event", ev.ID, "err", err)
		return true
	}
	d.mu.Lock()
	d.lag[ep.ID] = ev.Time
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.lag, ep.ID)
		d.mu.Unlock()
	}()
	for n := 1; ; n++ {
		a := d.attempt(ctx, ep, key, ev, body)
		a.Attempt = n
		if ctx.Err() != nil {
			return false // cut by a stop: not the receiver's failure
		}
		now := a.Time
		if a.Success() {
			d.metrics.deliveries.WithLabelValues("success").Inc()
			st.failing, st.failingSince = false, nil
			d.record(ep, st, &a)
			return true
		}
		d.metrics.deliveries.WithLabelValues("failure").Inc()
		if st.failingSince == nil {
			st.failingSince = &now
		}
		if !st.failing && now.Sub(*st.failingSince) >= d.FailAfter {
			st.failing = true
			d.Logger.Warn("webhooks: the endpoint is failing: deliveries go on, but retention no longer waits for it",
				"endpoint", ep.ID, "app", ep.AppID, "since", st.failingSince, "url", ep.URL)
		}
		d.record(ep, st, &a)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(Backoff(n, d.MinBackoff, d.MaxBackoff)):
		}
	}
}

// attempt makes one delivery attempt.
func (d *Dispatcher) attempt(ctx context.Context, ep *tidings.WebhookEndpoint, key []byte, ev *tidings.Event, body []byte) tidings.WebhookAttempt {
	start := d.Now().UTC()
	a := tidings.WebhookAttempt{EndpointID: ep.ID, EventID: ev.ID, EventSeq: ev.Seq, EventName: ev.Name, Time: start}
	rctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		a.Error = err.Error()
		return a
	}
	ts := start.Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Tidings-Webhooks/1")
	req.Header.Set(HeaderID, ev.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, sign(key, ev.ID, ts, body))
	t0 := time.Now()
	resp, err := d.Client.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseRead))
		resp.Body.Close()
		a.Status = resp.StatusCode
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			a.Error = "redirects are not followed"
		}
	} else {
		a.Error = err.Error()
	}
	elapsed := time.Since(t0)
	a.LatencyMS = float64(elapsed.Microseconds()) / 1000
	d.metrics.duration.Observe(elapsed.Seconds())
	return a
}

// record keeps the worker's state and attempt a until the next save.
func (d *Dispatcher) record(ep *tidings.WebhookEndpoint, st *state, a *tidings.WebhookAttempt) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.progress[ep.ID]
	if p == nil {
		p = &tidings.WebhookProgress{EndpointID: ep.ID}
		d.progress[ep.ID] = p
	}
	p.Version, p.LastSeq, p.Failing, p.FailingSince = ep.Version, st.lastSeq, st.failing, st.failingSince
	p.MissedUpTo, p.MissedAt = st.missedUpTo, st.missedAt
	if a != nil {
		p.Attempts = append(p.Attempts, *a)
		if len(p.Attempts) > 2*tidings.WebhookAttemptsKept {
			p.Attempts = append(p.Attempts[:0], p.Attempts[len(p.Attempts)-tidings.WebhookAttemptsKept:]...)
		}
	}
	d.failing[ep.ID] = st.failing
}

// flush saves the progress recorded since the last save.
func (d *Dispatcher) flush(ctx context.Context) {
	d.mu.Lock()
	if len(d.progress) == 0 {
		d.mu.Unlock()
		return
	}
	batch := make([]tidings.WebhookProgress, 0, len(d.progress))
	for _, p := range d.progress {
		batch = append(batch, *p)
	}
	d.progress = make(map[string]*tidings.WebhookProgress)
	d.mu.Unlock()
	sort.Slice(batch, func(i, j int) bool { return batch[i].EndpointID < batch[j].EndpointID })
	if err := d.Store.SaveWebhookProgress(ctx, batch); err != nil {
		d.Logger.Warn("webhooks: could not save the progress of deliveries; will try again", "err", err)
		d.mu.Lock()
		for i := range batch {
			p := &batch[i]
			if newer := d.progress[p.EndpointID]; newer != nil {
				newer.Attempts = append(p.Attempts, newer.Attempts...)
			} else {
				d.progress[p.EndpointID] = p
			}
		}
		d.mu.Unlock()
	}
}

// observe sets the gauges.
func (d *Dispatcher) observe() {
	d.mu.Lock()
	defer d.mu.Unlock()
	failing := map[string]float64{}
	lag := map[string]float64{}
	now := d.Now()
	for id, app := range d.apps {
		failing[app] += 0
		lag[app] += 0
		if d.failing[id] {
			failing[app]++
		}
		if t, ok := d.lag[id]; ok {
			lag[app] = max(lag[app], now.Sub(t).Seconds())
		}
	}
	for app := range d.reported {
		if _, ok := failing[app]; !ok {
			d.metrics.failing.DeleteLabelValues(app)
			d.metrics.lag.DeleteLabelValues(app)
			delete(d.reported, app)
		}
	}
	for app, n := range failing {
		d.metrics.failing.WithLabelValues(app).Set(n)
		d.metrics.lag.WithLabelValues(app).Set(lag[app])
		d.reported[app] = true
	}
}

// Backoff returns the wait after the n-th failure in a row (n >= 1):
// min doubled n-1 times, at most max, of which a random part, up to
// half, is taken off (jitter), so that the retries of many endpoints
// spread out.
func Backoff(n int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	half := d / 2
	if half <= 0 {
		return d
	}
	return d - rand.N(half+1)
}

// logCache keeps the events read last, so that the endpoints that stand
// at the same place in the log share one read: (lo, hi] is the range of
// positions it holds every event of.
type logCache struct {
	mu     sync.Mutex
	lo, hi int64
	evs    []*tidings.Event
	bytes  int // of the payloads held
}

// maxCached and maxCachedBytes bound the events the cache holds, and
// their payloads' size.
const (
	maxCached      = 4096
	maxCachedBytes = 16 << 20
)

// read returns up to Batch events after `after`, from the cache when it
// holds them, and the newest position removed by retention when events
// after `after` were.
func (d *Dispatcher) read(ctx context.Context, after int64) ([]*tidings.Event, int64, error) {
	c := &d.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if after >= c.lo && after < c.hi {
		i := sort.Search(len(c.evs), func(i int) bool { return c.evs[i].Seq > after })
		j := min(len(c.evs), i+d.Batch)
		return c.evs[i:j:j], 0, nil
	}
	evs, pruned, err := d.Store.WebhookEvents(ctx, after, d.Batch)
	if err != nil || len(evs) == 0 {
		return evs, pruned, err
	}
	from := after
	if pruned > after {
		from = pruned
	}
	if from < c.lo && len(c.evs) > 0 {
		return evs, pruned, nil // an endpoint behind: the others keep the cache
	}
	if from == c.hi && len(c.evs) > 0 {
		c.evs = append(c.evs, evs...)
	} else {
		c.evs, c.lo, c.bytes = append([]*tidings.Event(nil), evs...), from, 0
	}
	for _, e := range evs {
		c.bytes += len(e.Payload)
	}
	c.hi = c.evs[len(c.evs)-1].Seq
	drop := 0
	for n, b := len(c.evs), c.bytes; drop < n-1 && (n-drop > maxCached || b > maxCachedBytes); drop++ {
		b -= len(c.evs[drop].Payload)
	}
	if drop > 0 {
		for _, e := range c.evs[:drop] {
			c.bytes -= len(e.Payload)
		}
		c.lo = c.evs[drop-1].Seq
		c.evs = append([]*tidings.Event(nil), c.evs[drop:]...)
	}
	return evs, pruned, nil
}

// NewClient returns the HTTP client of deliveries: each attempt within
// timeout, no redirect followed (a 3xx is a failure), no proxy from the
// environment, and, with denyPrivate, no connection to a loopback,
// private, link-local or unspecified address (checked on the address
// connected to, after name resolution).
func NewClient(timeout time.Duration, denyPrivate bool) *http.Client {
	dialer := &net.Dialer{Timeout: min(timeout, 10*time.Second), KeepAlive: 30 * time.Second}
	if denyPrivate {
		dialer.Control = refusePrivate
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// errPrivate refuses a connection to a private address.
var errPrivate = errors.New("the address is private (loopback, private network or link-local), refused by --webhook-deny-private")

// cgnat is the shared address space of carrier-grade NAT.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func refusePrivate(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("webhook: dial %s: %w", address, err)
	}
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast() || cgnat.Contains(ip) {
		return errPrivate
	}
	return nil
}
