package loadgen

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// FanoutConfig configures the fanout scenario: Subscribers users in one
// conversation, Senders more sending to it, at Rate messages per second in
// all or, with Rate 0, as fast as the server delivers them (at most Window
// messages not yet received by every subscriber).
type FanoutConfig struct {
	Config
	Subscribers int
	Senders     int
	Rate        float64
	Window      int
	// Size is the length of a message's text in bytes (default 64).
	Size int
	// Warmup runs the load before measuring (default 2s).
	Warmup time.Duration
	// Settle is the wait after connecting, for the presence updates of
	// the connections to pass (default 1s).
	Settle time.Duration
	// Drain bounds the wait for the last deliveries after the senders
	// stop, as long as they keep coming (default 60s).
	Drain time.Duration
	// Poll receives through the long-polling transport instead of the
	// WebSocket (the poll scenario).
	Poll bool
	// Messages, when set, is how many messages are sent in all (warmup
	// included): the measured phase ends when they are all delivered,
	// rather than after Duration. A run that must check what was
	// delivered, not how fast.
	Messages int
}

func (c *FanoutConfig) defaults() {
	c.Subscribers = max(c.Subscribers, 1)
	c.Senders = max(c.Senders, 1)
	if c.Window <= 0 {
		c.Window = 16
	}
	if c.Size <= 0 {
		c.Size = 64
	}
	if c.Warmup <= 0 {
		c.Warmup = 2 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = time.Second
	}
	if c.Drain <= 0 {
		c.Drain = time.Minute
	}
}

// RunFanout runs the fanout scenario: it reports deliveries per second,
// the latency from send to receipt, and what was lost or duplicated.
func RunFanout(ctx context.Context, cfg FanoutConfig) (*Result, error) {
	cfg.defaults()
	name := "fanout"
	if cfg.Poll {
		name = "poll"
	}
	e, err := cfg.open(name)
	if err != nil {
		return nil, err
	}
	defer e.prog.close()
	r := e.result(name, map[string]any{"subscribers": cfg.Subscribers, "senders": cfg.Senders, "rate": cfg.Rate,
		"window": cfg.Window, "size": cfg.Size, "duration": cfg.Duration.String(), "warmup": cfg.Warmup.String()})

	t0 := time.Now()
	g, err := e.setupGroup(ctx, cfg.Senders, cfg.Subscribers)
	if err != nil {
		return nil, err
	}
	r.SetupSeconds = time.Since(t0).Seconds()

	aud := newAudience(cfg.Senders)
	t0 = time.Now()
	var rs []*receiver
	var stopPolls func()
	if cfg.Poll {
		rs, stopPolls, err = e.startPollers(ctx, g, aud)
	} else {
		rs, err = e.connectReceivers(ctx, g, aud)
	}
	if stopPolls != nil {
		defer stopPolls()
	} else {
		defer dropAll(rs)
	}
	if err != nil {
		return nil, err
	}
	ss, err := e.connectSenders(ctx, g, cfg.Size, cfg.Window)
	if err != nil {
		return nil, err
	}
	defer closeSenders(ss)
	r.Connections = len(rs) + len(ss)
	r.ConnectSeconds = time.Since(t0).Seconds()

	// Let the presence updates of the connections settle.
	sleep(ctx, cfg.Settle)

	n := int64(len(rs))
	gate := func() bool {
		var sent int64 // and not refused
		for _, s := range ss {
			sent += s.sent.Load() - s.failed.Load()
		}
		return sent*n-aud.delivered.Load() < int64(cfg.Window)*n
	}
	var m *meter
	var d0 int64
	var start time.Time
	// The measurement's start as the progress line reads it, from its own
	// goroutine.
	type mark struct {
		d0    int64
		start time.Time
	}
	var measured atomic.Pointer[mark]
	e.prog.set(func() string {
		sent, acked, failed, _ := senderTotals(ss)
		rate := ""
		if mk := measured.Load(); mk != nil {
			rate = fmt.Sprintf(" (%s/s measured)", num(float64(aud.delivered.Load()-mk.d0)/time.Since(mk.start).Seconds()))
		}
		return fmt.Sprintf("sent %d acked %d failed %d; deliveries %d%s; p99 %s", sent, acked, failed,
			aud.delivered.Load(), rate, msText(ms(aud.hist.Quantile(0.99))))
	})
	sendCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	end := time.Now().Add(cfg.Warmup + cfg.Duration)
	var budget *atomic.Int64
	if cfg.Messages > 0 {
		budget = new(atomic.Int64)
		budget.Store(int64(cfg.Messages))
		end = time.Now().Add(cfg.Warmup + cfg.Drain)
	}
	go func() {
		defer close(done)
		pace(sendCtx, ss, cfg.Rate, end, gate, budget)
	}()
	sleep(ctx, cfg.Warmup)
	m = e.startMeter()
	d0 = aud.delivered.Load()
	start = time.Now()
	measured.Store(&mark{d0, start})
	aud.measure()
	select { // the end of the sending: its time, or its last message
	case <-done:
	case <-time.After(time.Until(end)):
	case <-ctx.Done():
	}
	if cfg.Messages > 0 {
		// A fixed number of messages is measured until its last
		// delivery, not its last send: on a busy machine, a few messages
		// were all sent before the first was delivered, and the run
		// measured no delivery at all.
		<-done
		for _, s := range ss {
			s.wait(10 * time.Second)
		}
		_, acked, _, _ := senderTotals(ss)
		drain(ctx, cfg.Drain, aud.delivered.Load, acked*n)
	}
	aud.stopMeasuring()
	d1 := aud.delivered.Load()
	r.Server, r.Tool = m.stop()
	r.Seconds = time.Since(start).Seconds()
	<-done
	for _, s := range ss {
		s.wait(10 * time.Second)
	}

	// Wait for the last deliveries.
	_, acked, _, _ := senderTotals(ss)
	drain(ctx, cfg.Drain, aud.delivered.Load, acked*n)

	r.Sent, r.Acked, r.SendErrors, r.SendErrorCodes = senderTotals(ss)
	r.Deliveries = d1 - d0
	r.DeliveriesPerSec = float64(r.Deliveries) / r.Seconds
	r.MessagesPerSec = float64(r.Deliveries) / float64(n) / r.Seconds
	l := aud.hist.Summary()
	r.Latency = &l
	if a := ss[0].ackLat.Summary(); a.Count > 0 {
		r.AckLatency = &a // all the senders share it
	}
	r.Lost, r.Duplicated, r.OutOfOrder = check(rs, ss)
	r.UnexpectedClose, r.CloseCodes = closes(rs)
	if r.UnexpectedClose > 0 {
		e.note("the first connection closed: %s", closeReason(rs))
	}
	r.finish(e)
	return r, nil
}

// group is a conversation created for a run, with its senders and
// receivers.
type group struct {
	conv                       string
	senderIDs, receiverIDs     []string
	senderTokens, receiverToks []string
}

// setupGroup creates the users (senders first: the first sender owns the
// conversation) and the conversation.
func (e *env) setupGroup(ctx context.Context, senders, receivers int) (*group, error) {
	g := &group{conv: e.id("c", 0)}
	for i := range senders {
		g.senderIDs = append(g.senderIDs, e.id("s", i))
	}
	for i := range receivers {
		g.receiverIDs = append(g.receiverIDs, e.id("u", i))
	}
	all := append(append([]string(nil), g.senderIDs...), g.receiverIDs...)
	tokens, err := e.makeUsers(ctx, all)
	if err != nil {
		return nil, err
	}
	g.senderTokens, g.receiverToks = tokens[:senders], tokens[senders:]
	e.prog.set(func() string { return "creating the conversation" })
	if err := e.api.conversation(ctx, tokens[0], g.conv, all[1:], tokens[1:], e.cfg.Workers); err != nil {
		return nil, err
	}
	return g, nil
}

// makeUsers creates users and returns their tokens.
func (e *env) makeUsers(ctx context.Context, ids []string) ([]string, error) {
	tokens := make([]string, len(ids))
	var done atomic.Int64
	e.prog.set(func() string { return fmt.Sprintf("creating users: %d of %d", done.Load(), len(ids)) })
	err := parallel(ctx, len(ids), e.cfg.Workers, func(i int) error {
		var err error
		tokens[i], err = e.api.user(ctx, ids[i])
		done.Add(1)
		return err
	})
	return tokens, err
}

// connectReceivers connects and authenticates a socket per receiver of g.
func (e *env) connectReceivers(ctx context.Context, g *group, aud *audience) ([]*receiver, error) {
	rs := make([]*receiver, len(g.receiverIDs))
	for i := range rs {
		rs[i] = &receiver{}
	}
	return rs, e.connectEach(ctx, e.ws, rs, g.receiverToks, aud, "latest", nil)
}

// connectEach connects rs[i] with tokens[i], resuming after the ref
// resume(i) gives (or after fixed when resume is nil).
func (e *env) connectEach(ctx context.Context, target wsTarget, rs []*receiver, tokens []string, aud *audience, fixed string, resume func(i int) string) error {
	var connected atomic.Int64
	e.prog.set(func() string { return fmt.Sprintf("connecting: %d of %d", connected.Load(), len(rs)) })
	return parallel(ctx, len(rs), e.cfg.Workers, func(i int) error {
		r := rs[i]
		s, err := dialSocket(ctx, target, func(frame []byte, at time.Time) { aud.observe(r, frame, at) })
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		r.setSocket(s)
		after := fixed
		if resume != nil {
			after = resume(i)
		}
		if _, err := s.auth(ctx, tokens[i], "bench", after); err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		connected.Add(1)
		return nil
	})
}

// connectSenders connects a socket per sender of g.
func (e *env) connectSenders(ctx context.Context, g *group, size, window int) ([]*sender, error) {
	ss := make([]*sender, len(g.senderIDs))
	ackLat := new(Histogram)
	err := parallel(ctx, len(ss), e.cfg.Workers, func(i int) error {
		s, err := dialSocket(ctx, e.ws, nil)
		if err != nil {
			return err
		}
		ss[i] = newSender(i, g.conv, g.senderTokens[i], s, e.api, size, max(window, 64), ackLat)
		_, err = s.auth(ctx, g.senderTokens[i], "bench", "latest")
		return err
	})
	return ss, err
}

func closeSenders(ss []*sender) {
	for _, s := range ss {
		if s != nil && s.sock != nil {
			s.sock.close()
		}
	}
}

// dropAll cuts every receiver's connection.
func dropAll(rs []*receiver) {
	for _, r := range rs {
		if s := r.socket(); s != nil {
			s.drop()
		}
	}
}
