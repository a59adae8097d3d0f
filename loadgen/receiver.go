package loadgen

import (
	"sync"
	"sync/atomic"
	"time"
)

// receiver is one client receiving the bench messages: what it got,
// checked for loss, duplicates and order.
type receiver struct {
	mu      sync.Mutex
	tr      Tracker
	sock    *socket // on the WebSocket transport; see socket
	target  []int   // reconnect: per sender, the seq to have received…
	caught  time.Time
	waiting bool // …not yet reached
}

// audience is what the receivers of one scenario share: counts and the
// latency histogram.
type audience struct {
	senders   int
	delivered atomic.Int64 // bench messages received, duplicates excluded
	other     atomic.Int64 // other updates (presence, membership…)
	hist      Histogram
	// The latency of the messages sent within [from, to) (unix ns) is
	// recorded: the measured phase.
	from, to atomic.Int64
	caughtUp atomic.Int64
}

func newAudience(senders int) *audience {
	a := &audience{senders: senders}
	a.to.Store(-1)
	return a
}

// measure records the latency of the messages sent from now on, until
// stopMeasuring.
func (a *audience) measure()       { a.from.Store(time.Now().UnixNano()); a.to.Store(1<<63 - 1) }
func (a *audience) stopMeasuring() { a.to.Store(time.Now().UnixNano()) }

// observe processes one update frame received by r at time at.
func (a *audience) observe(r *receiver, frame []byte, at time.Time) {
	m, ok := findMarker(frame)
	if !ok || m.sender >= a.senders {
		a.other.Add(1)
		return
	}
	ref := updateRef(frame)
	r.mu.Lock()
	dup := r.tr.Observe(m.sender, m.seq, ref)
	if r.waiting && r.reached() {
		r.waiting, r.caught = false, at
		a.caughtUp.Add(1)
	}
	r.mu.Unlock()
	if dup {
		return
	}
	a.delivered.Add(1)
	if sent := m.sent.UnixNano(); sent >= a.from.Load() && sent < a.to.Load() {
		a.hist.Record(at.Sub(m.sent))
	}
}

// reached reports whether r has every message up to its target.
func (r *receiver) reached() bool {
	for s, seq := range r.target {
		if r.tr.Contiguous(s) < seq {
			return false
		}
	}
	return true
}

// waitFor sets the messages r must have to be caught up; it reports
// whether it already has them.
func (r *receiver) waitFor(target []int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.target, r.caught = target, time.Time{}
	r.waiting = !r.reached()
	return !r.waiting
}

// check counts what the receivers missed of the acknowledged messages,
// and their duplicates and reorderings.
func check(rs []*receiver, senders []*sender) (lost, dup, outOfOrder int64) {
	expected := make([]bitset, len(senders))
	for i, s := range senders {
		expected[i] = s.ackedSet()
	}
	for _, r := range rs {
		r.mu.Lock()
		lost += r.tr.Missing(expected)
		dup += r.tr.Duplicates
		outOfOrder += r.tr.OutOfOrder
		r.mu.Unlock()
	}
	return lost, dup, outOfOrder
}

// socket returns r's current connection (nil before the first).
func (r *receiver) socket() *socket {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sock
}

func (r *receiver) setSocket(s *socket) {
	r.mu.Lock()
	r.sock = s
	r.mu.Unlock()
}

// closeReason returns why the first closed socket of rs closed ("" if none).
func closeReason(rs []*receiver) string {
	for _, r := range rs {
		if s := r.socket(); s != nil {
			select {
			case <-s.closed:
				return s.err.Error()
			default:
			}
		}
	}
	return ""
}

// closes counts the receivers' sockets closed by the server, by code.
func closes(rs []*receiver) (n int, codes []int) {
	seen := map[int]bool{}
	for _, r := range rs {
		s := r.socket()
		if s == nil {
			continue
		}
		select {
		case <-s.closed:
			n++
			if c := s.closeCode(); !seen[c] {
				seen[c] = true
				codes = append(codes, c)
			}
		default:
		}
	}
	return n, codes
}
