package nats

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tidings/tidings"
)

// Leases elects one node for a task over JetStream key-value buckets: a
// lease is a key whose value is its holder's name, in a bucket whose TTL
// is the lease's ttl, so that a lease not renewed expires after ttl (the
// NATS server's clock counts, from the holder's last write). A bucket has
// one TTL, so each ttl has its bucket: every node must hold a given lease
// name with the same ttl.
type Leases struct {
	c *Conn

	mu   sync.Mutex
	ttls map[string]time.Duration // by lease name: the ttl Hold used last
}

var _ tidings.Leases = (*Leases)(nil)

// Leases returns the connection's Leases. Buckets are made on first use.
func (c *Conn) Leases() *Leases { return &Leases{c: c, ttls: make(map[string]time.Duration)} }

func (l *Leases) kv(ctx context.Context, ttl time.Duration) (jetstream.KeyValue, string, error) {
	if ttl < 100*time.Millisecond {
		return nil, "", tidings.Errorf(tidings.EInvalid, "a lease ttl of %v is too short", ttl)
	}
	ttl = ttl.Truncate(time.Millisecond)
	name := l.c.leasesBucket(ttl)
	kv, err := l.c.bucket(ctx, name, ttl, true)
	return kv, name, err
}

// Hold takes the lease name for node if nobody holds it, or renews it if
// node holds it, for ttl; it reports false when another node holds it.
// Compare-and-set on the key's revision makes one node win when several
// try at once. A holder may act on the lease until ttl after it called
// Hold; it renews well within ttl.
func (l *Leases) Hold(ctx context.Context, name, node string, ttl time.Duration) (bool, error) {
	kv, bucket, err := l.kv(ctx, ttl)
	if err != nil {
		return false, err
	}
	l.mu.Lock()
	l.ttls[name] = ttl
	l.mu.Unlock()
	key := token(name)
	for range 3 {
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound): // free, expired or released
			_, err = kv.Create(ctx, key, []byte(node))
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // taken meanwhile: see by whom
			}
		case err != nil:
		case string(e.Value()) != node:
			return false, nil
		default:
			_, err = kv.Update(ctx, key, []byte(node), e.Revision())
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				continue // expired or changed meanwhile
			}
		}
		if err != nil {
			l.c.forget(bucket, err)
			return false, unavailable(err)
		}
		return true, nil
	}
	return false, nil // contended: another node is taking it
}

// Release gives the lease up at once if node holds it (deleting its key,
// on its revision), and does nothing otherwise. It knows the lease's
// bucket from the ttl this Leases held it with: a lease it never held is
// not released.
func (l *Leases) Release(ctx context.Context, name, node string) error {
	l.mu.Lock()
	ttl, ok := l.ttls[name]
	l.mu.Unlock()
	if !ok {
		return nil
	}
	kv, bucket, err := l.kv(ctx, ttl)
	if err != nil {
		return err
	}
	key := token(name)
	e, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nil
	case err != nil:
		l.c.forget(bucket, err)
		return unavailable(err)
	case string(e.Value()) != node:
		return nil
	}
	err = kv.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		l.c.forget(bucket, err)
		return unavailable(err)
	}
	return nil
}
