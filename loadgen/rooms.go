package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/tidings/tidings/protocol"
)

// RoomsConfig configures the rooms scenario: many small conversations
// (Rooms of Members users each, 1:1 chats with Members 2), every user on a
// connection of their own that both sends to its room and receives from
// it. Messages go at Rate per second in all, spread evenly over the
// rooms, each sent by a random member; with Rate 0, as fast as they are
// delivered, with at most Window messages in flight per room (sent and not
// yet received by all its other members). Members acknowledge what they
// received with a reply at most every ReplyEvery while updates flow, as
// clients do, and at the end. With ReadEvery, members also mark their
// room read (message.read) at most that often while messages come, as
// an app showing the conversation does.
type RoomsConfig struct {
	Config
	Rooms   int
	Members int
	Rate    float64
	Window  int
	// ReplyEvery is the longest a member waits before acknowledging what
	// it received (default 1s).
	ReplyEvery time.Duration
	// ReadEvery is the least time between two read receipts of a member
	// (0: none).
	ReadEvery time.Duration
	// Size is the length of a message's text in bytes (default 64).
	Size int
	// Warmup runs the load before measuring (default 2s).
	Warmup time.Duration
	// Drain bounds the wait for the last deliveries (default 30s).
	Drain time.Duration
}

func (c *RoomsConfig) defaults() {
	c.Rooms = max(c.Rooms, 1)
	c.Members = max(c.Members, 2)
	if c.Window <= 0 {
		c.Window = 2
	}
	if c.ReplyEvery <= 0 {
		c.ReplyEvery = time.Second
	}
	if c.Size <= 0 {
		c.Size = 64
	}
	if c.Warmup <= 0 {
		c.Warmup = 2 * time.Second
	}
	if c.Drain <= 0 {
		c.Drain = 30 * time.Second
	}
}

// room is one conversation of the scenario and its members.
type room struct {
	conv    string
	members []*member
	sent    atomic.Int64 // messages sent (and not refused) × (members − 1)…
	got     atomic.Int64 // …and the copies its members received
	wake    chan struct{}
}

// member is a user of a room: a receiver and a sender on one connection.
type member struct {
	seat int
	recv receiver
	snd  *sender

	replyMu   sync.Mutex
	lastReply time.Time
	replied   int64
	lastRead  time.Time // guarded by replyMu
}

// roomsRun is what the members of a run share.
type roomsRun struct {
	cfg       RoomsConfig
	delivered atomic.Int64 // copies received by the other members, duplicates excluded
	echoes    atomic.Int64 // copies received by their sender
	hist      Histogram
	from, to  atomic.Int64 // latency recorded for messages sent within [from, to) (unix ns)
	// reads: read receipts sent; readErrs: those answered with an error.
	reads, readErrs atomic.Int64
}

// observe processes an update received by member m of room rm.
func (run *roomsRun) observe(rm *room, m *member, frame []byte, at time.Time) {
	mk, ok := findMarker(frame)
	if !ok || mk.sender >= len(rm.members) {
		return
	}
	ref := updateRef(frame)
	if mk.sender == m.seat { // the sender's own copy (a silent update)
		run.echoes.Add(1)
		m.reply(ref, at, run.cfg.ReplyEvery)
		return
	}
	m.recv.mu.Lock()
	dup := m.recv.tr.Observe(mk.sender, mk.seq, ref)
	m.recv.mu.Unlock()
	m.reply(ref, at, run.cfg.ReplyEvery)
	if dup {
		return
	}
	run.delivered.Add(1)
	rm.got.Add(1)
	if run.cfg.ReadEvery > 0 {
		run.markRead(rm, m, at)
	}
	select {
	case rm.wake <- struct{}{}:
	default:
	}
	if sent := mk.sent.UnixNano(); sent >= run.from.Load() && sent < run.to.Load() {
		run.hist.Record(at.Sub(mk.sent))
	}
}

// reply acknowledges ref if the last reply is older than every (or force).
func (m *member) reply(ref int64, at time.Time, every time.Duration) {
	if ref <= 0 {
		return
	}
	m.replyMu.Lock()
	if ref <= m.replied || at.Sub(m.lastReply) < every {
		m.replyMu.Unlock()
		return
	}
	m.lastReply, m.replied = at, ref
	m.replyMu.Unlock()
	if s := m.recv.socket(); s != nil {
		s.reply(ref)
	}
}

// markRead sends m's read receipt for room rm (up to its newest message)
// if its last one is older than ReadEvery.
func (run *roomsRun) markRead(rm *room, m *member, at time.Time) {
	m.replyMu.Lock()
	if at.Sub(m.lastRead) < run.cfg.ReadEvery {
		m.replyMu.Unlock()
		return
	}
	m.lastRead = at
	m.replyMu.Unlock()
	s := m.recv.socket()
	if s == nil {
		return
	}
	run.reads.Add(1)
	err := s.command(protocol.CmdMarkRead, map[string]string{"conversationId": rm.conv}, func(f *protocol.Frame) {
		if f.Error != nil {
			run.readErrs.Add(1)
		}
	})
	if err != nil {
		run.readErrs.Add(1)
	}
}

// RunRooms runs the rooms scenario: it reports messages and deliveries per
// second, the latency from send to receipt, the server's CPU time per
// message, and what was lost or duplicated.
func RunRooms(ctx context.Context, cfg RoomsConfig) (*Result, error) {
	cfg.defaults()
	e, err := cfg.open("rooms")
	if err != nil {
		return nil, err
	}
	defer e.prog.close()
	r := e.result("rooms", map[string]any{"rooms": cfg.Rooms, "members": cfg.Members, "rate": cfg.Rate,
		"window": cfg.Window, "size": cfg.Size, "replyEvery": cfg.ReplyEvery.String(), "readEvery": cfg.ReadEvery.String(),
		"duration": cfg.Duration.String(), "warmup": cfg.Warmup.String()})
	run := &roomsRun{cfg: cfg}
	run.to.Store(-1)

	// Users, their tokens, the rooms.
	t0 := time.Now()
	ids := make([]string, cfg.Rooms*cfg.Members)
	for i := range ids {
		ids[i] = e.id("u", i)
	}
	tokens, err := e.makeUsers(ctx, ids)
	if err != nil {
		return nil, err
	}
	rooms := make([]*room, cfg.Rooms)
	var made atomic.Int64
	e.prog.set(func() string { return fmt.Sprintf("creating the rooms: %d of %d", made.Load(), cfg.Rooms) })
	err = parallel(ctx, cfg.Rooms, e.cfg.Workers, func(i int) error {
		rm := &room{conv: e.id("r", i), wake: make(chan struct{}, 1)}
		rooms[i] = rm
		first := i * cfg.Members
		defer made.Add(1)
		return e.api.conversation(ctx, tokens[first], rm.conv, ids[first+1:first+cfg.Members], tokens[first+1:first+cfg.Members], 1)
	})
	if err != nil {
		return nil, err
	}
	r.SetupSeconds = time.Since(t0).Seconds()

	// A connection per member.
	t0 = time.Now()
	ackLat := new(Histogram)
	var all []*member
	for _, rm := range rooms {
		for seat := range cfg.Members {
			m := &member{seat: seat}
			rm.members = append(rm.members, m)
			all = append(all, m)
		}
	}
	var connected atomic.Int64
	e.prog.set(func() string { return fmt.Sprintf("connecting: %d of %d", connected.Load(), len(all)) })
	err = parallel(ctx, len(all), e.cfg.Workers, func(i int) error {
		rm, m := rooms[i/cfg.Members], all[i]
		s, err := dialSocket(ctx, e.ws, func(frame []byte, at time.Time) { run.observe(rm, m, frame, at) })
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		m.recv.setSocket(s)
		m.snd = newSender(m.seat, rm.conv, tokens[i], s, e.api, cfg.Size, max(cfg.Window, 1), ackLat)
		if _, err := s.auth(ctx, tokens[i], "bench", "latest"); err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		connected.Add(1)
		return nil
	})
	defer func() {
		for _, m := range all {
			if s := m.recv.socket(); s != nil {
				s.drop()
			}
		}
	}()
	if err != nil {
		return nil, err
	}
	r.Connections = len(all)
	r.ConnectSeconds = time.Since(t0).Seconds()

	// Send: one goroutine per room.
	// The measurement's start as the progress line reads it, from its own
	// goroutine.
	type mark struct {
		d0    int64
		start time.Time
	}
	var marked atomic.Pointer[mark]
	e.prog.set(func() string {
		rate := ""
		if mk := marked.Load(); mk != nil {
			rate = fmt.Sprintf(" (%s/s measured)", num(float64(run.delivered.Load()-mk.d0)/time.Since(mk.start).Seconds()))
		}
		return fmt.Sprintf("deliveries %d%s; p99 %s", run.delivered.Load(), rate, msText(ms(run.hist.Quantile(0.99))))
	})
	sendCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	end := time.Now().Add(cfg.Warmup + cfg.Duration)
	var wg sync.WaitGroup
	var acked0 atomic.Int64
	for i, rm := range rooms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run.sendRoom(sendCtx, rm, i, end)
		}()
	}
	sleep(ctx, cfg.Warmup)
	m := e.startMeter()
	d0 := run.delivered.Load()
	for _, mb := range all {
		acked0.Add(mb.snd.ackedN.Load())
	}
	start := time.Now()
	marked.Store(&mark{d0, start})
	run.from.Store(start.UnixNano())
	run.to.Store(1<<63 - 1)
	sleep(ctx, time.Until(end))
	run.to.Store(time.Now().UnixNano())
	d1 := run.delivered.Load()
	var acked1 int64
	for _, mb := range all {
		acked1 += mb.snd.ackedN.Load()
	}
	r.Server, r.Tool = m.stop()
	r.Seconds = time.Since(start).Seconds()
	wg.Wait()
	var ss []*sender
	for _, mb := range all {
		mb.snd.wait(10 * time.Second)
		ss = append(ss, mb.snd)
	}

	// The last deliveries, then the final acknowledgements.
	_, acked, _, _ := senderTotals(ss)
	drain(ctx, cfg.Drain, run.delivered.Load, acked*int64(cfg.Members-1))
	for _, mb := range all {
		mb.recv.mu.Lock()
		ref := mb.recv.tr.LastRef()
		mb.recv.mu.Unlock()
		mb.reply(ref, time.Now(), 0)
	}

	r.Sent, r.Acked, r.SendErrors, r.SendErrorCodes = senderTotals(ss)
	r.Deliveries = d1 - d0
	r.DeliveriesPerSec = float64(r.Deliveries) / r.Seconds
	measured := acked1 - acked0.Load()
	r.MessagesPerSec = float64(measured) / r.Seconds
	l := run.hist.Summary()
	r.Latency = &l
	if a := ackLat.Summary(); a.Count > 0 {
		r.AckLatency = &a
	}
	// Each member must have every acknowledged message of the others.
	var rs []*receiver
	for _, rm := range rooms {
		expected := make([]bitset, len(rm.members))
		for seat, mb := range rm.members {
			expected[seat] = mb.snd.ackedSet()
		}
		for seat, mb := range rm.members {
			exp := append([]bitset(nil), expected...)
			exp[seat] = nil
			mb.recv.mu.Lock()
			r.Lost += mb.recv.tr.Missing(exp)
			r.Duplicated += mb.recv.tr.Duplicates
			r.OutOfOrder += mb.recv.tr.OutOfOrder
			mb.recv.mu.Unlock()
			rs = append(rs, &mb.recv)
		}
	}
	r.ReadReceipts, r.ReadReceiptErrors = run.reads.Load(), run.readErrs.Load()
	r.UnexpectedClose, r.CloseCodes = closes(rs)
	if r.UnexpectedClose > 0 {
		e.note("the first connection closed: %s", closeReason(rs))
	}
	if echoes := run.echoes.Load(); echoes > 0 {
		e.note("%d copies to their own senders (not counted as deliveries)", echoes)
	}
	r.finish(e)
	if measured > 0 && r.Server != nil {
		r.ServerCPUPerMessageUs = 1e6 * r.Server.CPUSeconds / float64(measured)
	}
	return r, nil
}

// sendRoom sends the messages of room rm until end: at the room's share
// of the rate, or with rate 0 whenever fewer than the window are in
// flight. Each message goes from a random member.
func (run *roomsRun) sendRoom(ctx context.Context, rm *room, i int, end time.Time) {
	cfg := run.cfg
	rng := rand.New(rand.NewPCG(uint64(i), 1))
	others := int64(len(rm.members) - 1)
	var interval time.Duration
	next := time.Now()
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(cfg.Rooms) / cfg.Rate)
		next = next.Add(time.Duration(rng.Int64N(int64(interval) + 1))) // spread the rooms
	}
	for ctx.Err() == nil && time.Now().Before(end) {
		var at time.Time
		if cfg.Rate > 0 {
			if d := time.Until(next); d > 0 {
				if sleep(ctx, min(d, time.Until(end))) != nil || !time.Now().Before(end) {
					return
				}
			}
			at, next = next, next.Add(interval)
		} else {
			for rm.sent.Load()-rm.got.Load() >= int64(cfg.Window)*others {
				select {
				case <-rm.wake:
				case <-time.After(50 * time.Millisecond):
				case <-ctx.Done():
					return
				}
				if !time.Now().Before(end) {
					return
				}
			}
		}
		// (A message the server refuses stays in the window: start the
		// server with its rate limits raised.)
		rm.sent.Add(others)
		if rm.members[rng.IntN(len(rm.members))].snd.send(ctx, at) != nil {
			return
		}
	}
}

// reply acknowledges every update up to ref.
func (s *socket) reply(ref int64) {
	b := []byte(`{"type":"` + protocol.TypeReply + `","ref":"` + protocol.FormatRef(ref) + `"}`)
	s.conn.WriteMessage(gws.OpcodeText, b) // a failed write shows as the socket's close
}
