package loadgen

import (
	"context"
	"encoding/json"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidings/tidings/protocol"
)

// sender sends numbered bench messages to one conversation, through its
// socket or, without one, through the REST API, and keeps which of them
// the server acknowledged.
type sender struct {
	idx   int
	conv  string
	token string
	sock  *socket // nil: through the API
	api   *api
	size  int

	inflight chan struct{} // a slot per message waiting for its answer
	wg       sync.WaitGroup

	mu     sync.Mutex
	hold   time.Time // refused as rate limited: wait until then
	seq    int
	acked  bitset
	errors counter

	sent, ackedN, failed atomic.Int64
	ackLat               *Histogram
}

func newSender(idx int, conv, token string, sock *socket, a *api, size, maxInflight int, ackLat *Histogram) *sender {
	return &sender{idx: idx, conv: conv, token: token, sock: sock, api: a, size: size,
		inflight: make(chan struct{}, max(maxInflight, 1)), errors: counter{}, ackLat: ackLat}
}

// send sends the next message, stamped with the time at, once a slot for
// it is free; through the socket it returns without waiting for the
// answer, through the API it waits.
func (s *sender) send(ctx context.Context, at time.Time) error {
	select {
	case s.inflight <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	s.seq++
	seq, hold := s.seq, s.hold
	s.mu.Unlock()
	if d := time.Until(hold); d > 0 {
		sleep(ctx, d)
	}
	if at.IsZero() {
		at = time.Now()
	}
	text := messageText(s.idx, seq, at, s.size)
	parts, _ := json.Marshal([]map[string]string{{"type": "text/plain", "data": text}})
	s.sent.Add(1)
	s.wg.Add(1)
	start := time.Now()
	done := func(code string) {
		defer s.wg.Done()
		<-s.inflight
		s.mu.Lock()
		defer s.mu.Unlock()
		if code != "" {
			s.failed.Add(1)
			s.errors[code]++
			if code == "rate_limited" {
				s.hold = time.Now().Add(100 * time.Millisecond)
			}
			return
		}
		s.acked.add(seq)
		s.ackedN.Add(1)
		s.ackLat.Record(time.Since(start))
	}
	if s.sock == nil {
		err := s.api.do(ctx, "POST", "/v1/conversations/"+url.PathEscape(s.conv)+"/messages", s.token,
			map[string]json.RawMessage{"parts": parts}, nil)
		if err != nil {
			code := errorCode(err)
			if code == "" {
				code = "http"
			}
			done(code)
			return nil
		}
		done("")
		return nil
	}
	err := s.sock.command(protocol.CmdSend, protocol.SendArgs{ConversationID: s.conv, Parts: parts}, func(f *protocol.Frame) {
		if f.Error != nil {
			done(f.Error.Code)
		} else {
			done("")
		}
	})
	if err != nil {
		done("write")
	}
	return nil
}

// wait waits for the answers of the messages sent, up to timeout; those
// still unanswered count as failed ("unanswered").
func (s *sender) wait(timeout time.Duration) {
	ch := make(chan struct{})
	go func() { s.wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(timeout):
		s.mu.Lock()
		s.errors["unanswered"] += int(s.sent.Load() - s.ackedN.Load() - s.failed.Load())
		s.mu.Unlock()
	}
}

// ackedSet returns a copy of the sequence numbers acknowledged.
func (s *sender) ackedSet() bitset {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(bitset(nil), s.acked...)
}

// lastAcked returns the highest contiguous sequence number acknowledged.
func (s *sender) contiguousAcked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for s.acked.has(n + 1) {
		n++
	}
	return n
}

// pace calls send for each sender, rate messages per second in all
// (spread evenly over the senders), until ctx ends or until is reached;
// with rate 0 each sender sends as soon as allowed by gate (closed loop).
// Each message is stamped with the time it was due, so that a late send
// counts in its latency.
//
// With a budget, the senders stop once they have sent that many messages
// in all.
func pace(ctx context.Context, senders []*sender, rate float64, until time.Time, gate func() bool, budget *atomic.Int64) {
	var wg sync.WaitGroup
	start := time.Now()
	for i, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var interval time.Duration
			if rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(len(senders)) / rate)
			}
			// Stagger the senders over one interval.
			next := start.Add(interval * time.Duration(i) / time.Duration(len(senders)))
			for ctx.Err() == nil && time.Now().Before(until) {
				var at time.Time
				if rate > 0 {
					if d := time.Until(next); d > 0 {
						if sleep(ctx, d) != nil {
							return
						}
					}
					at, next = next, next.Add(interval)
				} else {
					for gate != nil && !gate() {
						if ctx.Err() != nil || !time.Now().Before(until) {
							return
						}
						time.Sleep(200 * time.Microsecond)
					}
				}
				if budget != nil && budget.Add(-1) < 0 {
					return
				}
				if s.send(ctx, at) != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
}

// senderTotals sums the senders' counts.
func senderTotals(senders []*sender) (sent, acked, failed int64, codes []string) {
	all := counter{}
	for _, s := range senders {
		sent += s.sent.Load()
		acked += s.ackedN.Load()
		failed += s.failed.Load()
		s.mu.Lock()
		for k, v := range s.errors {
			all[k] += v
		}
		s.mu.Unlock()
	}
	return sent, acked, failed, all.list()
}
