package realtime

import (
	"sync"

	"github.com/tidings/tidings"
)

// bodyCache keeps the encoded bodies of the newest events by seq. An event
// never changes once stored, so its bytes serve every session that
// replays it: when many clients come back together (a reconnect storm),
// they replay the same recent events, and each would otherwise encode
// them again. The live path fills it as it dispatches.
//
// It is generic over the form kept: eventBody (tidings.v1) or
// eventBodyV2, a cache for each.
type bodyCache[T any] struct {
	mu   sync.Mutex
	m    map[int64]T
	ring []int64 // the seqs kept, oldest at next
	next int
}

// bodyCacheSize is how many encoded events are kept (a few MiB).
const bodyCacheSize = 4096

func newBodyCache[T any]() *bodyCache[T] {
	return &bodyCache[T]{m: make(map[int64]T, bodyCacheSize), ring: make([]int64, 0, bodyCacheSize)}
}

func (c *bodyCache[T]) get(seq int64) (T, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.m[seq]
	return b, ok
}

func (c *bodyCache[T]) put(seq int64, body T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[seq]; ok {
		return
	}
	if len(c.ring) < bodyCacheSize {
		c.ring = append(c.ring, seq)
	} else {
		delete(c.m, c.ring[c.next])
		c.ring[c.next] = seq
		c.next = (c.next + 1) % bodyCacheSize
	}
	c.m[seq] = body
}

// clear forgets every body (events were redacted: a user was deleted).
func (c *bodyCache[T]) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
	c.ring, c.next = c.ring[:0], 0
}

// encodeStored encodes a durable event, or finds it encoded already.
func (n *Node) encodeStored(ev *tidings.Event) (eventBody, error) {
	if n.bodies == nil || ev.Seq <= 0 {
		return encodeEvent(ev)
	}
	if b, ok := n.bodies.get(ev.Seq); ok {
		return b, nil
	}
	b, err := encodeEvent(ev)
	if err != nil {
		return eventBody{}, err
	}
	n.bodies.put(ev.Seq, b)
	return b, nil
}

// encodeStoredLive is encodeStored for the live update of the event:
// its tidings.v1 receivers do not get it live when it fails, which is
// logged.
func (n *Node) encodeStoredLive(ev *tidings.Event) (eventBody, error) {
	b, err := n.encodeStored(ev)
	if err != nil {
		n.Logger.Error("realtime: encode an event", "err", err, "event", ev.ID, "name", ev.Name, "seq", ev.Seq)
	}
	return b, err
}

// encodeStoredV2 is encodeStored in tidings.v2.
func (n *Node) encodeStoredV2(ev *tidings.Event) (eventBodyV2, error) {
	cached := n.bodiesV2 != nil && ev.Seq > 0
	if cached {
		if b, ok := n.bodiesV2.get(ev.Seq); ok {
			return b, nil
		}
	}
	b, err := encodeEventV2(ev)
	if err != nil {
		// Its tidings.v2 receivers do not get it live (frameSet.get):
		// never silently.
		n.Logger.Error("realtime: encode an event in tidings.v2", "err", err, "event", ev.ID, "name", ev.Name, "seq", ev.Seq)
		return eventBodyV2{}, err
	}
	if cached {
		n.bodiesV2.put(ev.Seq, b)
	}
	return b, nil
}
