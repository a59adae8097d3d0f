// Package nats is what the nodes of a Tidings cluster share through NATS
// (docs/cluster.md): a tidings.Broker over core NATS subjects (at most
// once), a tidings.PresenceStore and tidings.Leases over JetStream
// key-value buckets. Nothing in NATS is durable state: the event log in
// the store is the source of truth, and what the buckets hold is rebuilt
// by the nodes (sessions) or retaken (leases) when lost.
//
// It works with nats-server 2.9 and later, with JetStream enabled. Leases
// and node liveness use bucket TTLs (one TTL per bucket: a bucket is made
// for each lease duration used), not per-key TTLs, which need 2.11.
package nats

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tidings/tidings"
)

// Options configure a connection. The zero value works.
type Options struct {
	// Name is the connection's name as the NATS server shows it
	// (e.g. the node's name). Default "tidings".
	Name string
	// Prefix keeps the subjects and buckets of one cluster apart from
	// those of another on the same NATS (and tests apart from each
	// other): letters, digits, - and _, at most 32. Default "default".
	Prefix string
	// Replicas is the number of replicas of the key-value buckets this
	// connection creates (1 to 5; 3 on a three-server NATS cluster).
	// Default 1.
	Replicas int
	// PresenceLease is the lease of a node's sessions from its first
	// Connect until its first Renew sets one. Default 30 s.
	PresenceLease time.Duration
	// Logger receives connection events. Default slog.Default().
	Logger *slog.Logger
}

var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// Conn is a connection to NATS shared by a node's Broker, PresenceStore
// and Leases. It reconnects by itself, forever, with backoff.
type Conn struct {
	nc     *natsgo.Conn
	js     jetstream.JetStream
	prefix string
	opts   Options
	log    *slog.Logger

	mu      sync.Mutex
	subs    map[*subscription]struct{}
	buckets map[string]jetstream.KeyValue
	closed  bool
}

// Connect connects to NATS at urls, a comma-separated list of server URLs
// (nats://host:4222,nats://host2:4222). It fails when no server answers;
// once connected, it reconnects by itself for as long as the Conn is open.
func Connect(urls string, opts Options) (*Conn, error) {
	if opts.Name == "" {
		opts.Name = "tidings"
	}
	if opts.Prefix == "" {
		opts.Prefix = "default"
	}
	if !prefixPattern.MatchString(opts.Prefix) {
		return nil, tidings.Errorf(tidings.EInvalid, "nats prefix %q is not valid: use 1 to 32 letters, digits, - and _", opts.Prefix)
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.PresenceLease <= 0 {
		opts.PresenceLease = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	var list []string
	for u := range strings.SplitSeq(urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			list = append(list, u)
		}
	}
	if len(list) == 0 {
		return nil, tidings.Errorf(tidings.EInvalid, "no NATS server URL given")
	}
	c := &Conn{prefix: opts.Prefix, opts: opts, log: opts.Logger,
		subs: make(map[*subscription]struct{}), buckets: make(map[string]jetstream.KeyValue)}
	nc, err := natsgo.Connect(strings.Join(list, ","),
		natsgo.Name(opts.Name),
		natsgo.MaxReconnects(-1),
		natsgo.CustomReconnectDelay(reconnectDelay),
		// Publishing while disconnected fails at once rather than
		// queueing: a range or a live update sent late is worth less
		// than the caller knowing that it was not sent.
		natsgo.ReconnectBufSize(-1),
		natsgo.PingInterval(10*time.Second),
		natsgo.MaxPingsOutstanding(3),
		natsgo.DisconnectErrHandler(func(nc *natsgo.Conn, err error) {
			if nc.IsClosed() {
				return // Close
			}
			c.log.Warn("nats: disconnected", "err", err)
			c.lost()
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			c.log.Info("nats: reconnected", "server", nc.ConnectedUrlRedacted())
			c.lost()
		}),
		natsgo.ErrorHandler(c.asyncError),
	)
	if err != nil {
		return nil, unavailable(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, unavailable(err)
	}
	c.nc, c.js = nc, js
	return c, nil
}

// reconnectDelay is the wait before each pass over the server list: from
// 100 ms, doubling, up to 2 s, with up to 20% jitter.
func reconnectDelay(attempts int) time.Duration {
	d := 2 * time.Second
	if attempts < 5 {
		d = 100 * time.Millisecond << attempts
	}
	return d + rand.N(d/5+1)
}

// Close closes the connection and ends its subscriptions.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.closed = true
	subs := make([]*subscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	for _, s := range subs {
		_ = s.Close()
	}
	c.nc.Close()
	return nil
}

// Connected reports whether the connection is up now.
func (c *Conn) Connected() bool { return c.nc.IsConnected() }

// lost tells every subscription that messages may have been missed.
func (c *Conn) lost() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s := range c.subs {
		s.signalLost()
	}
}

func (c *Conn) asyncError(_ *natsgo.Conn, sub *natsgo.Subscription, err error) {
	if errors.Is(err, natsgo.ErrSlowConsumer) {
		c.mu.Lock()
		for s := range c.subs {
			if s.sub == sub {
				s.signalLost()
			}
		}
		c.mu.Unlock()
	}
	c.log.Warn("nats: asynchronous error", "err", err)
}

// errUnavailable is what callers see of a NATS failure: the broker is
// down or unreachable, retry later.
var errUnavailable = tidings.Errorf(tidings.EUnavailable, "the message broker is unavailable")

// unavailable wraps err, a NATS failure, so that its code is EUnavailable
// and its message shown to clients says nothing of the internals.
func unavailable(err error) error {
	return fmt.Errorf("nats: %w: %w", errUnavailable, err)
}

// token returns s as one token of a subject or key: as it is if it has
// only letters, digits, - and _, and otherwise "=" and s in unpadded
// base64url (which "=" never starts otherwise), so that distinct ids stay
// distinct and "." in ids never splits a token.
func token(s string) string {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_') {
			return "=" + base64.RawURLEncoding.EncodeToString([]byte(s))
		}
	}
	if s == "" {
		return "="
	}
	return s
}

// The names of subjects and buckets (docs/cluster.md, "Subjects and
// buckets").
func (c *Conn) rangesSubject() string         { return "tidings." + c.prefix + ".ranges" }
func (c *Conn) liveSubject(app string) string { return "tidings." + c.prefix + ".live." + token(app) }
func (c *Conn) liveSubjectPrefix() string     { return "tidings." + c.prefix + ".live." }
func (c *Conn) allSubjects() string           { return "tidings." + c.prefix + ".>" }
func (c *Conn) bucketPrefix() string          { return "tidings_" + c.prefix + "_" }
func (c *Conn) sessionsBucket() string        { return c.bucketPrefix() + "sessions" }
func (c *Conn) nodesBucket(lease time.Duration) string {
	return fmt.Sprintf("%snodes_%dms", c.bucketPrefix(), lease.Milliseconds())
}
func (c *Conn) leasesBucket(ttl time.Duration) string {
	return fmt.Sprintf("%sleases_%dms", c.bucketPrefix(), ttl.Milliseconds())
}

// bucket returns the key-value bucket name, creating it with the given
// TTL (0: none) if it does not exist; with create false, it returns
// jetstream.ErrBucketNotFound instead.
func (c *Conn) bucket(ctx context.Context, name string, ttl time.Duration, create bool) (jetstream.KeyValue, error) {
	c.mu.Lock()
	kv := c.buckets[name]
	c.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	kv, err := c.js.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) && create {
		kv, err = c.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      name,
			Description: "Tidings cluster state (docs/cluster.md)",
			History:     1,
			TTL:         ttl,
			Storage:     jetstream.FileStorage,
			Replicas:    c.opts.Replicas,
		})
		if err != nil {
			// Made meanwhile by another node, or differently: JetStream
			// says so with ErrBucketExists, or, when the two creates
			// cross, that the stream's subjects overlap with the stream
			// just made (seen in CI, TestLeasesOneWinner). Either way the
			// bucket is there to use.
			if made, gerr := c.js.KeyValue(ctx, name); gerr == nil {
				kv, err = made, nil
			}
		}
	}
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, unavailable(err)
	}
	c.mu.Lock()
	c.buckets[name] = kv
	c.mu.Unlock()
	return kv, nil
}

// forget drops a bucket from the cache after an error that may mean it
// is gone (deleted, or lost by a NATS server without storage), so that
// the next call makes it again.
func (c *Conn) forget(name string, err error) {
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, natsgo.ErrNoResponders) {
		c.mu.Lock()
		delete(c.buckets, name)
		c.mu.Unlock()
	}
}

// DeleteBuckets deletes every key-value bucket of the connection's prefix:
// sessions, node leases and leases. Nodes using them make them again; it
// is for tests, and for an operator retiring a prefix.
func (c *Conn) DeleteBuckets(ctx context.Context) error {
	names := c.js.KeyValueStoreNames(ctx)
	var del []string
	for name := range names.Name() {
		if strings.HasPrefix(name, c.bucketPrefix()) {
			del = append(del, name)
		}
	}
	if err := names.Error(); err != nil {
		return unavailable(err)
	}
	for _, name := range del {
		if err := c.js.DeleteKeyValue(ctx, name); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			return unavailable(err)
		}
	}
	c.mu.Lock()
	clear(c.buckets)
	c.mu.Unlock()
	return nil
}
