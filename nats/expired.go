package nats

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tidings/tidings"
)

// Expired removes from the sessions bucket the entries of the nodes
// whose lease lapsed (their key in the nodes bucket expired, or holds
// another incarnation), and returns the users left without a session
// that counts. Each removal is a compare-and-set on the user's key, so
// that of several callers (and of the nodes connecting and disconnecting
// the user meanwhile) exactly one removes the last entry that counted, and
// only that caller returns the user.
//
// It reads every key of the sessions bucket (one per user online): it is
// meant for one node at a time, every few seconds. A user's LastSeen is the
// last renewal of their node's lease that this Presence saw in an earlier
// call; when it saw none, the time the node's key was replaced by another
// incarnation, or, the key gone, the time now less the lease (when the
// key would have been written last, had it expired just now).
func (p *Presence) Expired(ctx context.Context) ([]tidings.PresenceChange, error) {
	kv, err := p.c.bucket(ctx, p.c.sessionsBucket(), 0, true)
	if err != nil {
		return nil, err
	}
	l := p.liveness()
	var dead []userKey
	err = p.scan(ctx, kv, func(k userKey, m map[string]entry) error {
		for node, e := range m {
			if e.Count <= 0 {
				continue
			}
			ok, err := l.live(ctx, node, e)
			if err != nil {
				return err
			}
			if !ok {
				dead = append(dead, k)
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	now := time.Now()
	p.mu.Lock()
	last := make(map[string]nodeKey, len(p.renewals))
	for id, nk := range p.renewals {
		last[id] = nk
	}
	// What this call saw alive is the latest renewal known; nodes it did
	// not see (dead and removed, or gone) are forgotten.
	clear(p.renewals)
	for id, nk := range l.seen {
		if nk.inc != "" {
			p.renewals[id] = nk
		}
	}
	p.mu.Unlock()
	lastSeen := func(node string, e entry) time.Time {
		lease := time.Duration(e.LeaseMS) * time.Millisecond
		id := livenessID(node, lease)
		if nk, ok := last[id]; ok && nk.inc == e.Inc {
			return nk.at
		}
		if nk := l.seen[id]; nk.inc != "" {
			return nk.at // another incarnation took its place
		}
		return now.Add(-lease)
	}
	var out []tidings.PresenceChange
	for _, k := range dead {
		ch, gone, err := p.removeDead(ctx, kv, l, k, lastSeen)
		if err != nil {
			return out, err
		}
		if gone {
			out = append(out, ch)
		}
	}
	return out, nil
}

// removeDead removes the entries of a user's key whose node's lease
// lapsed, and reports whether that left the user without a session, and
// when they were last seen then.
func (p *Presence) removeDead(ctx context.Context, kv jetstream.KeyValue, l *liveness, k userKey,
	lastSeen func(string, entry) time.Time) (tidings.PresenceChange, bool, error) {
	defer p.lockUser(k).Unlock()
	for {
		m, rev, err := p.read(ctx, kv, k)
		if err != nil {
			return tidings.PresenceChange{}, false, err
		}
		keep, total, err := l.others(ctx, m, "")
		if err != nil {
			return tidings.PresenceChange{}, false, err
		}
		var seen time.Time
		removed := false
		for node, e := range m {
			if _, ok := keep[node]; !ok && e.Count > 0 {
				removed = true
				if t := lastSeen(node, e); t.After(seen) {
					seen = t
				}
			}
		}
		if !removed {
			return tidings.PresenceChange{}, false, nil // another caller, or node, did it
		}
		ok, err := p.write(ctx, kv, k, keep, rev)
		if err != nil {
			return tidings.PresenceChange{}, false, err
		}
		if !ok {
			if err := ctx.Err(); err != nil {
				return tidings.PresenceChange{}, false, err
			}
			continue
		}
		return tidings.PresenceChange{AppID: k.app, UserID: k.user, LastSeen: seen.UTC()}, total == 0, nil
	}
}

// scan calls f with every user's key of the sessions bucket, as it is now.
func (p *Presence) scan(ctx context.Context, kv jetstream.KeyValue, f func(userKey, map[string]entry) error) error {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		p.c.forget(p.c.sessionsBucket(), err)
		return unavailable(err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return unavailable(errors.New("the sessions bucket's watcher stopped"))
			}
			if e == nil {
				return nil // every key as it is now was read
			}
			k, ok := untokenKey(e.Key())
			if !ok {
				continue
			}
			m := map[string]entry{}
			if err := json.Unmarshal(e.Value(), &m); err != nil {
				continue // read again, and replaced, by the next change
			}
			if err := f(k, m); err != nil {
				return err
			}
		}
	}
}

// untokenKey is the user a key of the sessions bucket names.
func untokenKey(key string) (userKey, bool) {
	app, user, ok := strings.Cut(key, ".")
	if !ok {
		return userKey{}, false
	}
	a, ok1 := untoken(app)
	u, ok2 := untoken(user)
	return userKey{a, u}, ok1 && ok2
}

// untoken is the id token(id) wrote.
func untoken(t string) (string, bool) {
	if !strings.HasPrefix(t, "=") {
		return t, t != ""
	}
	b, err := base64.RawURLEncoding.DecodeString(t[1:])
	return string(b), err == nil
}
