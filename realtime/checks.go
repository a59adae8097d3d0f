package realtime

import (
	"sync"
	"time"
)

// checkNextTickLocked makes the node's next tick check the client (an
// account of it ended).
func (c *Client) checkNextTickLocked() { c.checkSoonerLocked(time.Unix(0, 0)) }

// checkQueue orders the clients by when the node's tick must check them
// (Client.checkAt), so that a tick takes only the clients due, not every
// client: at 19,000 idle connections, a walk over all of them cost about
// 2 ms a second, each client a cache miss, for none due.
//
// A client is in it once, under the earliest time asked for since it was
// last taken: a time asked for later than the one it is under waits for
// that one (a check then finds nothing, and asks again). Its lock is
// taken last (Client.mu may be held), and nothing else under it.
type checkQueue struct {
	mu   sync.Mutex
	heap []*Client // a min-heap by Client.queuedAt
}

// schedule asks for c to be checked by at (unix nanoseconds of the node's
// clock), unless it is gone.
func (q *checkQueue) schedule(c *Client, at int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case c.checkGone:
	case c.checkIndex == 0:
		c.queuedAt = at
		q.heap = append(q.heap, c)
		c.checkIndex = len(q.heap)
		q.up(len(q.heap) - 1)
	case at < c.queuedAt:
		c.queuedAt = at
		q.up(c.checkIndex - 1)
	}
}

// remove takes c out for good: it ended.
func (q *checkQueue) remove(c *Client) {
	q.mu.Lock()
	defer q.mu.Unlock()
	c.checkGone = true
	if c.checkIndex == 0 {
		return
	}
	i, last := c.checkIndex-1, len(q.heap)-1
	q.swap(i, last)
	q.heap[last] = nil
	q.heap = q.heap[:last]
	c.checkIndex = 0
	if i < last {
		q.down(i)
		q.up(i)
	}
}

// due takes out the clients due by now and appends them to into.
func (q *checkQueue) due(now int64, into []*Client) []*Client {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.heap) > 0 && q.heap[0].queuedAt <= now {
		c, last := q.heap[0], len(q.heap)-1
		q.swap(0, last)
		q.heap[last] = nil
		q.heap = q.heap[:last]
		c.checkIndex = 0
		q.down(0)
		into = append(into, c)
	}
	return into
}

func (q *checkQueue) swap(i, j int) {
	q.heap[i], q.heap[j] = q.heap[j], q.heap[i]
	q.heap[i].checkIndex = i + 1
	q.heap[j].checkIndex = j + 1
}

func (q *checkQueue) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if q.heap[p].queuedAt <= q.heap[i].queuedAt {
			return
		}
		q.swap(i, p)
		i = p
	}
}

func (q *checkQueue) down(i int) {
	n := len(q.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && q.heap[r].queuedAt < q.heap[l].queuedAt {
			m = r
		}
		if q.heap[i].queuedAt <= q.heap[m].queuedAt {
			return
		}
		q.swap(i, m)
		i = m
	}
}
