package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash/maphash"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tidings/tidings"
)

// Presence counts the sessions of each user across the cluster in
// JetStream key-value buckets (docs/cluster.md, "Subjects and buckets"):
//
//   - the sessions bucket holds one key per user (app and user id), whose
//     value counts the user's sessions on each node. Every change is a
//     compare-and-set on that key's revision, retried on conflict, so that
//     the user's first and last sessions and the connection limit are
//     exact however many nodes connect and disconnect the user at once.
//   - a node's entries are leased: a key per node in a bucket whose TTL is
//     the lease holds the node's incarnation (a random id drawn when the
//     node first writes). An entry counts only while its node's key holds
//     the entry's incarnation; Renew rewrites the node's key. A node that
//     stops renewing loses its sessions when its key expires, and a node
//     restarted under the same name starts a new incarnation, so that the
//     sessions of its former life stop counting at once.
//
// A Presence remembers the sessions it counted for each of its nodes:
// when a node's lease lapsed (NATS was down longer than the lease, or it
// lost its buckets), Renew starts a new incarnation and writes the node's
// sessions again.
type Presence struct {
	c *Conn

	regMu   sync.Mutex // held while a node's key is written
	seed    maphash.Seed
	userMus [64]sync.Mutex // by user: one change of a user's key at a time

	mu    sync.Mutex
	nodes map[string]*nodeState
	// renewals are the other nodes' keys as Expired last saw them alive
	// (node+lease → key): when a node's lease lapses, its last renewal.
	renewals map[string]nodeKey
}

var _ tidings.PresenceStore = (*Presence)(nil)

// nodeState is what a Presence knows of one of its nodes.
type nodeState struct {
	inc        string        // the incarnation its entries carry
	lease      time.Duration // its key's bucket TTL
	registered bool          // its key was written for inc
	counts     map[userKey]int
	// pending are the users whose entries must be written again, in a new
	// incarnation.
	pending map[userKey]struct{}
}

type userKey struct{ app, user string }

// entry is a node's count of a user's sessions, as stored.
type entry struct {
	Inc     string `json:"i"`
	Count   int    `json:"n"`
	LeaseMS int64  `json:"l"`
}

// Presence returns the connection's PresenceStore. Its buckets are made
// on first use.
func (c *Conn) Presence() *Presence {
	return &Presence{c: c, seed: maphash.MakeSeed(), nodes: make(map[string]*nodeState), renewals: make(map[string]nodeKey)}
}

func (p *Presence) userKey(k userKey) string { return token(k.app) + "." + token(k.user) }

func (p *Presence) lockUser(k userKey) *sync.Mutex {
	var h maphash.Hash
	h.SetSeed(p.seed)
	h.WriteString(k.app)
	h.WriteByte(0)
	h.WriteString(k.user)
	m := &p.userMus[h.Sum64()%uint64(len(p.userMus))]
	m.Lock()
	return m
}

func newIncarnation() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// state returns node's state, making it (not yet registered) if new.
func (p *Presence) state(node string) *nodeState {
	p.mu.Lock()
	defer p.mu.Unlock()
	ns := p.nodes[node]
	if ns == nil {
		ns = &nodeState{inc: newIncarnation(), lease: p.c.opts.PresenceLease,
			counts: make(map[userKey]int), pending: make(map[userKey]struct{})}
		p.nodes[node] = ns
	}
	return ns
}

// register writes node's key for a new incarnation with the given lease,
// and marks every session the node holds to be written again under it.
// The caller holds regMu.
func (p *Presence) register(ctx context.Context, node string, ns *nodeState, lease time.Duration) error {
	p.mu.Lock()
	inc := ns.inc
	if ns.registered || lease != ns.lease {
		inc = newIncarnation()
	}
	p.mu.Unlock()
	name := p.c.nodesBucket(lease)
	kv, err := p.c.bucket(ctx, name, lease, true)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, token(node), []byte(inc)); err != nil {
		p.c.forget(name, err)
		return unavailable(err)
	}
	p.mu.Lock()
	ns.inc, ns.lease, ns.registered = inc, lease, true
	for k := range ns.counts {
		ns.pending[k] = struct{}{}
	}
	p.mu.Unlock()
	return nil
}

// ensure returns node's state, registered.
func (p *Presence) ensure(ctx context.Context, node string) (*nodeState, error) {
	ns := p.state(node)
	p.mu.Lock()
	ok := ns.registered
	p.mu.Unlock()
	if ok {
		return ns, nil
	}
	p.regMu.Lock()
	defer p.regMu.Unlock()
	p.mu.Lock()
	ok = ns.registered
	lease := ns.lease
	p.mu.Unlock()
	if ok {
		return ns, nil
	}
	return ns, p.register(ctx, node, ns, lease)
}

// read returns the entries of a user's key and its revision (0: no key).
func (p *Presence) read(ctx context.Context, kv jetstream.KeyValue, k userKey) (map[string]entry, uint64, error) {
	e, err := kv.Get(ctx, p.userKey(k))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return map[string]entry{}, 0, nil
	}
	if err != nil {
		p.c.forget(p.c.sessionsBucket(), err)
		return nil, 0, unavailable(err)
	}
	m := map[string]entry{}
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		// Not ours to understand: start over rather than fail forever.
		p.c.log.Error("nats: a sessions entry could not be decoded; it is replaced", "key", e.Key(), "err", err)
		m = map[string]entry{}
	}
	return m, e.Revision(), nil
}

// write sets a user's key to m if its revision is still rev (0: if it
// has no key), deleting it when m is empty. It reports false on a
// conflict.
func (p *Presence) write(ctx context.Context, kv jetstream.KeyValue, k userKey, m map[string]entry, rev uint64) (bool, error) {
	key := p.userKey(k)
	var err error
	switch {
	case len(m) == 0 && rev == 0:
		return true, nil
	case len(m) == 0:
		err = kv.Delete(ctx, key, jetstream.LastRevision(rev))
	default:
		b, merr := json.Marshal(m)
		if merr != nil {
			return false, merr
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, b)
		} else {
			_, err = kv.Update(ctx, key, b, rev)
		}
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return false, nil
	}
	if err != nil {
		p.c.forget(p.c.sessionsBucket(), err)
		return false, unavailable(err)
	}
	return true, nil
}

// liveness tells whether other nodes' entries count, remembering what it
// learnt for the length of one call.
type liveness struct {
	p    *Presence
	mu   sync.Mutex
	seen map[string]nodeKey // node+lease → its key now (inc "": none)
}

// nodeKey is what a node's key held when read: its incarnation and when
// it was last written (the NATS server's clock).
type nodeKey struct {
	inc string
	at  time.Time
}

func (p *Presence) liveness() *liveness { return &liveness{p: p, seen: make(map[string]nodeKey)} }

func livenessID(node string, lease time.Duration) string { return node + "\x00" + lease.String() }

// live reports whether e, node's entry, counts: its node's key holds its
// incarnation. For a node of this Presence, the incarnation it knows.
func (l *liveness) live(ctx context.Context, node string, e entry) (bool, error) {
	l.p.mu.Lock()
	ns := l.p.nodes[node]
	if ns != nil && ns.registered {
		ok := e.Inc == ns.inc
		l.p.mu.Unlock()
		return ok, nil
	}
	l.p.mu.Unlock()
	lease := time.Duration(e.LeaseMS) * time.Millisecond
	id := livenessID(node, lease)
	l.mu.Lock()
	nk, ok := l.seen[id]
	l.mu.Unlock()
	if ok {
		return nk.inc == e.Inc, nil
	}
	name := l.p.c.nodesBucket(lease)
	kv, err := l.p.c.bucket(ctx, name, lease, false)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
	case err != nil:
		return false, err
	default:
		v, err := kv.Get(ctx, token(node))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			l.p.c.forget(name, err)
			return false, unavailable(err)
		default:
			nk = nodeKey{inc: string(v.Value()), at: v.Created()}
		}
	}
	l.mu.Lock()
	l.seen[id] = nk
	l.mu.Unlock()
	return nk.inc == e.Inc, nil
}

// others returns the entries of m that count, but node's, and the
// sessions they count.
func (l *liveness) others(ctx context.Context, m map[string]entry, node string) (map[string]entry, int, error) {
	keep := make(map[string]entry, len(m))
	total := 0
	for n, e := range m {
		if n == node || e.Count <= 0 {
			continue
		}
		ok, err := l.live(ctx, n, e)
		if err != nil {
			return nil, 0, err
		}
		if ok {
			keep[n] = e
			total += e.Count
		}
	}
	return keep, total, nil
}

// change sets node's count of k's sessions to what apply returns, given
// the count now and the sessions the user holds on other nodes; apply
// returns an error to change nothing. It retries on conflicts. The caller
// holds k's lock.
func (p *Presence) change(ctx context.Context, node string, ns *nodeState, k userKey,
	apply func(own, others int) (int, error)) error {
	kv, err := p.c.bucket(ctx, p.c.sessionsBucket(), 0, true)
	if err != nil {
		return err
	}
	for {
		m, rev, err := p.read(ctx, kv, k)
		if err != nil {
			return err
		}
		keep, others, err := p.liveness().others(ctx, m, node)
		if err != nil {
			return err
		}
		p.mu.Lock()
		own, inc, lease := ns.counts[k], ns.inc, ns.lease
		p.mu.Unlock()
		n, err := apply(own, others)
		if err != nil {
			return err
		}
		if n > 0 {
			keep[node] = entry{Inc: inc, Count: n, LeaseMS: lease.Milliseconds()}
		}
		ok, err := p.write(ctx, kv, k, keep, rev)
		if err != nil {
			// The write may have been applied: the next Renew writes
			// the entry again from what this Presence counts.
			p.mu.Lock()
			ns.pending[k] = struct{}{}
			p.mu.Unlock()
			return err
		}
		if !ok {
			if err := ctx.Err(); err != nil {
				return err
			}
			continue // another node changed the user meanwhile
		}
		p.mu.Lock()
		if n > 0 {
			ns.counts[k] = n
		} else {
			delete(ns.counts, k)
		}
		if ns.inc == inc {
			delete(ns.pending, k)
		} else { // a new incarnation began meanwhile: write it again
			ns.pending[k] = struct{}{}
		}
		p.mu.Unlock()
		return nil
	}
}

// Connect counts a session of the user on node: ERateLimited when the
// user holds limit sessions in the cluster already (0: no limit).
func (p *Presence) Connect(ctx context.Context, appID, userID, node string, limit int) (bool, error) {
	ns, err := p.ensure(ctx, node)
	if err != nil {
		return false, err
	}
	k := userKey{appID, userID}
	defer p.lockUser(k).Unlock()
	first := false
	err = p.change(ctx, node, ns, k, func(own, others int) (int, error) {
		if limit > 0 && own+others >= limit {
			return 0, tidings.Errorf(tidings.ERateLimited, "too many connections for this user (at most %d)", limit)
		}
		first = own+others == 0
		return own + 1, nil
	})
	return first, err
}

// Disconnect ends a session of the user on node, and reports whether it
// was the user's last in the cluster. A session this Presence did not
// count changes nothing.
func (p *Presence) Disconnect(ctx context.Context, appID, userID, node string) (bool, error) {
	ns, err := p.ensure(ctx, node)
	if err != nil {
		return false, err
	}
	k := userKey{appID, userID}
	defer p.lockUser(k).Unlock()
	last := false
	err = p.change(ctx, node, ns, k, func(own, others int) (int, error) {
		own = max(own-1, 0)
		last = own+others == 0
		return own, nil
	})
	return last, err
}

// Online returns those of userIDs who hold a session that counts.
func (p *Presence) Online(ctx context.Context, appID string, userIDs []string) ([]string, error) {
	kv, err := p.c.bucket(ctx, p.c.sessionsBucket(), 0, true)
	if err != nil {
		return nil, err
	}
	l := p.liveness()
	online := make([]bool, len(userIDs))
	errs := make([]error, len(userIDs))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, u := range userIDs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			m, _, err := p.read(ctx, kv, userKey{appID, u})
			if err != nil {
				errs[i] = err
				return
			}
			_, n, err := l.others(ctx, m, "")
			online[i], errs[i] = n > 0, err
		})
	}
	wg.Wait()
	var out []string
	for i, u := range userIDs {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if online[i] {
			out = append(out, u)
		}
	}
	return out, nil
}

// Renew extends the lease of node's sessions by lease, rewriting the
// node's key. If the lease lapsed (the key expired or holds another
// incarnation) or changes length, the node starts a new incarnation and
// writes its sessions again. A node renews well within the lease, while
// it lives. lease is a whole number of milliseconds, at least 100 ms.
func (p *Presence) Renew(ctx context.Context, node string, lease time.Duration) error {
	if lease < 100*time.Millisecond {
		return tidings.Errorf(tidings.EInvalid, "a presence lease of %v is too short", lease)
	}
	lease = lease.Truncate(time.Millisecond)
	ns := p.state(node)
	p.regMu.Lock()
	err := p.renew(ctx, node, ns, lease)
	p.regMu.Unlock()
	if err != nil {
		return err
	}
	return p.rewritePending(ctx, node, ns)
}

func (p *Presence) renew(ctx context.Context, node string, ns *nodeState, lease time.Duration) error {
	p.mu.Lock()
	registered, inc, current := ns.registered, ns.inc, ns.lease
	p.mu.Unlock()
	if !registered || lease != current {
		return p.register(ctx, node, ns, lease)
	}
	name := p.c.nodesBucket(lease)
	kv, err := p.c.bucket(ctx, name, lease, true)
	if err != nil {
		return err
	}
	e, err := kv.Get(ctx, token(node))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return p.register(ctx, node, ns, lease) // expired
	case err != nil:
		p.c.forget(name, err)
		return unavailable(err)
	case string(e.Value()) != inc:
		return p.register(ctx, node, ns, lease) // taken by another process of the same name
	}
	_, err = kv.Update(ctx, token(node), []byte(inc), e.Revision())
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return p.register(ctx, node, ns, lease) // expired or taken meanwhile
	}
	if err != nil {
		p.c.forget(name, err)
		return unavailable(err)
	}
	return nil
}

// rewritePending writes again the entries of a new incarnation.
func (p *Presence) rewritePending(ctx context.Context, node string, ns *nodeState) error {
	p.mu.Lock()
	todo := make([]userKey, 0, len(ns.pending))
	for k := range ns.pending {
		todo = append(todo, k)
	}
	p.mu.Unlock()
	for _, k := range todo {
		m := p.lockUser(k)
		err := p.change(ctx, node, ns, k, func(own, _ int) (int, error) { return own, nil })
		m.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}
