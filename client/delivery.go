package client

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidings/tidings/protocol"
)

type itemKind int

const (
	itemEvent  itemKind = iota // an update from a connection
	itemResync                 // a ResyncRequired made by the client
	itemStatus                 // a status change
)

// item is an entry of the delivery queue.
type item struct {
	kind   itemKind
	ev     Event
	seq    int64 // the update's ref; 0 for live-only updates
	conn   *conn // where it came from, to acknowledge it
	acct   *Account
	status StatusChange
}

// queue is the unbounded FIFO between the connections' read loops and the
// delivery goroutine; only updates count towards the limit given to push.
type queue struct {
	mu     sync.Mutex
	items  []*item
	head   int
	events int
	closed bool
	signal chan struct{}
}

func newQueue() *queue { return &queue{signal: make(chan struct{}, 1)} }

// push appends it; false if the queue holds limit updates already (limit
// 0: no limit) or is closed. A closed queue still takes status changes,
// for rest.
func (q *queue) push(it *item, limit int) bool {
	q.mu.Lock()
	if (q.closed && it.kind != itemStatus) || (limit > 0 && it.kind == itemEvent && q.events >= limit) {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, it)
	if it.kind == itemEvent {
		q.events++
	}
	q.mu.Unlock()
	q.wake()
	return true
}

// pop waits for the next item; more says whether others follow it. While
// hold reports true, updates wait in the queue and only status changes
// are returned. Once the queue is closed, pop returns the status changes
// left and drops the rest, then ok is false.
func (q *queue) pop(hold func() bool) (it *item, more, ok bool) {
	for {
		q.mu.Lock()
		if q.closed || hold() {
			for i := q.head; i < len(q.items); i++ {
				if q.items[i].kind == itemStatus {
					it = q.items[i]
					q.items = append(q.items[:i], q.items[i+1:]...)
					q.mu.Unlock()
					return it, false, true
				}
			}
			if q.closed {
				q.items, q.head, q.events = nil, 0, 0
				q.mu.Unlock()
				return nil, false, false
			}
		} else if q.head < len(q.items) {
			it = q.items[q.head]
			q.items[q.head] = nil
			q.head++
			if it.kind == itemEvent {
				q.events--
			}
			more = q.head < len(q.items)
			if !more {
				q.items, q.head = q.items[:0], 0
			}
			q.mu.Unlock()
			return it, more, true
		}
		q.mu.Unlock()
		<-q.signal
	}
}

// wake makes a waiting pop look again.
func (q *queue) wake() {
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// rest empties a closed queue and returns the status changes it holds:
// those pushed after pop said there were no more.
func (q *queue) rest() []*item {
	q.mu.Lock()
	defer q.mu.Unlock()
	var rest []*item
	for _, it := range q.items[q.head:] {
		if it.kind == itemStatus {
			rest = append(rest, it)
		}
	}
	q.items, q.head, q.events = nil, 0, 0
	return rest
}

// isClosed reports whether close was called.
func (q *queue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wake()
}

// listenerSet is a list of listeners that may change while it is called.
type listenerSet[T any] struct {
	mu   sync.Mutex
	list atomic.Pointer[[]*listener[T]]
}

type listener[T any] struct {
	fn      func(T)
	removed atomic.Bool
}

func (s *listenerSet[T]) add(fn func(T)) (remove func()) {
	if fn == nil {
		return func() {}
	}
	l := &listener[T]{fn: fn}
	s.mu.Lock()
	var list []*listener[T]
	if p := s.list.Load(); p != nil {
		list = slices.Clone(*p)
	}
	list = append(list, l)
	s.list.Store(&list)
	s.mu.Unlock()
	return func() {
		if l.removed.Swap(true) {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		list := slices.DeleteFunc(slices.Clone(*s.list.Load()), func(x *listener[T]) bool { return x == l })
		s.list.Store(&list)
	}
}

// empty reports whether no listener is registered.
func (s *listenerSet[T]) empty() bool {
	p := s.list.Load()
	return p == nil || len(*p) == 0
}

// call calls the listeners registered now, but not those removed while
// the others run.
func (s *listenerSet[T]) call(v T) {
	p := s.list.Load()
	if p == nil {
		return
	}
	for _, l := range *p {
		if !l.removed.Load() {
			l.fn(v)
		}
	}
}

// deliver is the delivery goroutine: it calls the listeners with each
// item of the queue, in order, skipping updates already processed, and
// has updates acknowledged once processed (coalesced per account, see
// Account.processed). Updates wait while there is no event listener: one
// that nobody processed must not be acknowledged.
func (c *Client) deliver() {
	defer close(c.deliveryDone)
	for {
		it, _, ok := c.q.pop(c.events.empty)
		if !ok {
			break
		}
		switch it.kind {
		case itemStatus:
			c.statuses.call(it.status)
		case itemEvent:
			a := it.acct
			if a.removed.Load() {
				continue // logged out
			}
			if it.seq > 0 && it.seq <= a.lastRef.Load() {
				continue // already processed: a replay overlapping what came before
			}
			c.events.call(it.ev)
			if it.seq > 0 {
				a.lastRef.Store(it.seq)
				a.processed(it)
			}
		case itemResync:
			a := it.acct
			if a.removed.Load() {
				continue
			}
			c.events.call(it.ev)
			rs := it.ev.(*ResyncRequired)
			a.dropAck()
			if ref, ok := protocol.ParseRef(rs.Ref); ok {
				a.lastRef.Store(ref)
			} else {
				a.lastRef.Store(0)
				a.resumeLatest.Store(true)
			}
			if rs.Ref != "" {
				c.saveCursor(a, rs.Ref)
			}
			_ = c.call(func(m *machine) { a.m.resync = false })
		}
		// Before updates wait for a listener, acknowledge what was processed.
		if c.events.empty() {
			c.flushAcks()
		}
	}
}

func (c *Client) saveCursor(a *Account, ref string) {
	if a.cursor == nil {
		return
	}
	c.mu.Lock()
	cur := Cursor{AppID: a.appID, UserID: a.userID, Device: a.device, Ref: ref}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.cursor.SaveCursor(ctx, cur); err != nil {
		c.opts.logger.Warn("tidings: could not save the cursor", "err", err)
	}
}
