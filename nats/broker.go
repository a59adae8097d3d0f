package nats

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/tidings/tidings"
)

var _ tidings.Broker = (*Conn)(nil)

// subBuffer is how many messages a subscription holds for a handler that
// is busy; past it, messages are dropped and the handler told Lost.
// (A variable for tests.)
var subBuffer = 1 << 16

// wireRange is an EventRange as published on the ranges subject.
type wireRange struct {
	From   int64       `json:"from"`
	To     int64       `json:"to"`
	Events []wireEvent `json:"events"`
}

// wireEvent is an Event with its in-memory Conversations, which Event's
// own encoding leaves out: nodes need them to deliver a profile event
// just published to the users who share a conversation with its user.
type wireEvent struct {
	*tidings.Event
	Conversations []string `json:"conversations,omitempty"`
}

// wireLive is a LiveUpdate as published on an app's live subject.
type wireLive struct {
	AppID          string          `json:"app"`
	Name           string          `json:"name"`
	ConversationID string          `json:"conversationId,omitempty"`
	UserIDs        []string        `json:"userIds,omitempty"`
	Payload        json.RawMessage `json:"payload,omitempty"`
}

// encodeRange encodes r in messages of at most max bytes: as one if it
// fits, and otherwise split between events into consecutive ranges that
// chain ((From, e] then (e, To]), as a receiver expects of ranges. A
// single event larger than max is refused ETooLarge.
func encodeRange(r tidings.EventRange, max int64) ([][]byte, error) {
	w := wireRange{From: r.From, To: r.To, Events: make([]wireEvent, len(r.Events))}
	for i, ev := range r.Events {
		w.Events[i] = wireEvent{Event: ev, Conversations: ev.Conversations}
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) <= max {
		return [][]byte{b}, nil
	}
	if len(r.Events) < 2 {
		return nil, tidings.Errorf(tidings.ETooLarge, "a range of events (%d, %d] takes %d bytes, more than the broker's maximum of %d", r.From, r.To, len(b), max)
	}
	mid := len(r.Events) / 2
	split := r.Events[mid-1].Seq
	first, err := encodeRange(tidings.EventRange{From: r.From, To: split, Events: r.Events[:mid]}, max)
	if err != nil {
		return nil, err
	}
	rest, err := encodeRange(tidings.EventRange{From: split, To: r.To, Events: r.Events[mid:]}, max)
	if err != nil {
		return nil, err
	}
	return append(first, rest...), nil
}

func decodeRange(b []byte) (tidings.EventRange, error) {
	var w wireRange
	if err := json.Unmarshal(b, &w); err != nil {
		return tidings.EventRange{}, err
	}
	r := tidings.EventRange{From: w.From, To: w.To, Events: make([]*tidings.Event, len(w.Events))}
	for i, we := range w.Events {
		ev := we.Event
		if ev == nil {
			return tidings.EventRange{}, errors.New("an event of the range is empty")
		}
		ev.Conversations = we.Conversations
		r.Events[i] = ev
	}
	return r, nil
}

// PublishRange publishes r to every node's subscription, split in
// consecutive ranges if it exceeds the server's maximum message size.
// While the connection is down it fails at once, EUnavailable: nothing
// is queued for later.
func (c *Conn) PublishRange(ctx context.Context, r tidings.EventRange) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !c.nc.IsConnected() {
		return unavailable(errors.New("not connected: " + c.nc.Status().String()))
	}
	msgs, err := encodeRange(r, c.nc.MaxPayload())
	if err != nil {
		return err
	}
	for _, b := range msgs {
		if err := c.nc.Publish(c.rangesSubject(), b); err != nil {
			return unavailable(err)
		}
	}
	return nil
}

// PublishLive publishes u on its app's subject. Like PublishRange, it
// fails at once, EUnavailable, while the connection is down.
func (c *Conn) PublishLive(ctx context.Context, u tidings.LiveUpdate) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !c.nc.IsConnected() {
		return unavailable(errors.New("not connected: " + c.nc.Status().String()))
	}
	b, err := json.Marshal(wireLive{AppID: u.AppID, Name: u.Name, ConversationID: u.ConversationID, UserIDs: u.UserIDs, Payload: u.Payload})
	if err != nil {
		return err
	}
	if int64(len(b)) > c.nc.MaxPayload() {
		return tidings.Errorf(tidings.ETooLarge, "a live update of %d bytes exceeds the broker's maximum of %d", len(b), c.nc.MaxPayload())
	}
	if err := c.nc.Publish(c.liveSubject(u.AppID), b); err != nil {
		return unavailable(err)
	}
	return nil
}

// Subscribe calls h with every range and live update published from now
// on (by any connection with the same prefix, this one included), one
// call at a time on one goroutine, in the order they arrived. It calls
// h.Lost when messages may have been missed: the connection dropped or
// came back, or h was too slow and the subscription's buffer overflowed.
// It ends when ctx ends or the subscription is closed; a call in progress
// then finishes.
func (c *Conn) Subscribe(ctx context.Context, h tidings.BrokerHandler) (tidings.Subscription, error) {
	s := &subscription{c: c, h: h, msgs: make(chan *natsgo.Msg, subBuffer), wake: make(chan struct{}, 1), done: make(chan struct{})}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, unavailable(natsgo.ErrConnectionClosed)
	}
	sub, err := c.nc.ChanSubscribe(c.allSubjects(), s.msgs)
	if err != nil {
		c.mu.Unlock()
		return nil, unavailable(err)
	}
	s.sub = sub
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	// The subscription holds from now on once the server has it.
	fctx, cancel := ctx, context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		fctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	}
	err = c.nc.FlushWithContext(fctx)
	cancel()
	if err != nil {
		_ = s.Close()
		return nil, unavailable(err)
	}
	go s.run(ctx)
	return s, nil
}

type subscription struct {
	c    *Conn
	h    tidings.BrokerHandler
	sub  *natsgo.Subscription
	msgs chan *natsgo.Msg
	wake chan struct{} // a loss was marked
	done chan struct{}
	once sync.Once

	mu sync.Mutex
	// lost says a loss is to be told once the first lostAt messages
	// received are handed over.
	lost   bool
	lostAt int64

	// The dispatcher's own: messages handed over, and dropped so far.
	popped  int64
	dropped int
}

// signalLost marks a loss: messages may have been missed from now on. It
// is told to the handler after every message received before it, so that
// the handler never takes a range received earlier for a sign that ranges
// chain again. (Told late, it is still told: a range received after the
// loss shows a gap by itself.)
func (s *subscription) signalLost() {
	at, err := s.sub.Delivered() // received so far
	if err != nil {
		at = 0 // closed: no matter
	}
	s.mu.Lock()
	s.lost = true
	s.lostAt = max(s.lostAt, at)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // one is pending already
	}
}

// lostNow reports whether a marked loss is to be told now.
func (s *subscription) lostNow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lost || s.popped < s.lostAt {
		return false
	}
	s.lost, s.lostAt = false, 0
	return true
}

// Close ends the subscription.
func (s *subscription) Close() error {
	s.once.Do(func() {
		s.c.mu.Lock()
		delete(s.c.subs, s)
		s.c.mu.Unlock()
		_ = s.sub.Unsubscribe()
		close(s.done)
	})
	return nil
}

func (s *subscription) run(ctx context.Context) {
	defer s.Close()
	for {
		if s.lostNow() {
			s.h.Lost()
		}
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-s.wake:
		case m := <-s.msgs:
			s.mu.Lock()
			s.popped++
			s.mu.Unlock()
			s.deliver(m)
			// Messages dropped because the buffer was full: the
			// client-side slow consumer.
			if d, err := s.sub.Dropped(); err == nil && d > s.dropped {
				s.dropped = d
				s.signalLost()
			}
		}
	}
}

func (s *subscription) deliver(m *natsgo.Msg) {
	switch {
	case m.Subject == s.c.rangesSubject():
		r, err := decodeRange(m.Data)
		if err != nil {
			s.c.log.Error("nats: a range could not be decoded", "err", err)
			s.h.Lost()
			return
		}
		s.h.Range(r)
	case strings.HasPrefix(m.Subject, s.c.liveSubjectPrefix()):
		var w wireLive
		if err := json.Unmarshal(m.Data, &w); err != nil {
			s.c.log.Error("nats: a live update could not be decoded", "err", err)
			return
		}
		s.h.Live(tidings.LiveUpdate{AppID: w.AppID, Name: w.Name, ConversationID: w.ConversationID, UserIDs: w.UserIDs, Payload: w.Payload})
	}
}
