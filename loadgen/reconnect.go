package loadgen

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/tidings/tidings/protocol"
)

// ReconnectConfig configures the reconnect scenario: Clients users in one
// conversation, where Senders send Rate messages per second in all. Every
// client drops its connection at the same moment; once Missed messages
// have been sent meanwhile, they all reconnect at once, each resuming
// after the last ref it received, while messages keep coming.
type ReconnectConfig struct {
	Config
	Clients int
	Senders int
	Rate    float64
	Missed  int
	Size    int
	// Timeout bounds the wait for every client to catch up (default 60s).
	Timeout time.Duration
	// Failover, with the URLs of a cluster's nodes (at least two),
	// connects every client to the last node and the senders to the
	// first; rather than dropping, the clients lose their node, which is
	// killed (SIGKILL: it must be a process of this machine), and they
	// reconnect to the other nodes in turn. The server usage reported is
	// that of the nodes left.
	Failover bool
}

// RunReconnect runs the reconnect scenario: it reports the time until
// every client has received every message it missed, and checks that
// nothing was lost or duplicated over the whole run.
func RunReconnect(ctx context.Context, cfg ReconnectConfig) (*Result, error) {
	cfg.Clients = max(cfg.Clients, 1)
	cfg.Senders = max(cfg.Senders, 1)
	if cfg.Rate <= 0 {
		cfg.Rate = 10
	}
	cfg.Missed = max(cfg.Missed, 1)
	if cfg.Size <= 0 {
		cfg.Size = 64
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	e, err := cfg.open("reconnect")
	if err != nil {
		return nil, err
	}
	defer e.prog.close()
	r := e.result("reconnect", map[string]any{"clients": cfg.Clients, "senders": cfg.Senders, "rate": cfg.Rate,
		"missed": cfg.Missed, "size": cfg.Size})

	victim, victimPID := e.ws, 0
	if cfg.Failover {
		if len(e.ws.urls) < 2 || len(e.pids) != len(e.ws.urls) {
			return nil, fmt.Errorf("--failover needs the URLs of at least two nodes of a cluster whose processes are known (listening on this machine)")
		}
		last := len(e.ws.urls) - 1
		victim, victimPID = e.ws.subset(last, last+1), e.pids[last]
		e.ws = e.ws.subset(0, last) // senders, then the storm, go to the others
		e.pids = e.pids[:last]
		e.pid = e.pids[0]
		e.note("failover: the clients' node (%s) is killed; they reconnect to the %d others", victim.urls[0], last)
	}
	t0 := time.Now()
	g, err := e.setupGroup(ctx, cfg.Senders, cfg.Clients)
	if err != nil {
		return nil, err
	}
	r.SetupSeconds = time.Since(t0).Seconds()
	aud := newAudience(cfg.Senders)
	t0 = time.Now()
	rs := make([]*receiver, len(g.receiverIDs))
	for i := range rs {
		rs[i] = &receiver{}
	}
	err = e.connectEach(ctx, victim, rs, g.receiverToks, aud, "latest", nil)
	defer func() { dropAll(rs) }()
	if err != nil {
		return nil, err
	}
	ss, err := e.connectSenders(ctx, g, cfg.Size, 64)
	defer closeSenders(ss)
	if err != nil {
		return nil, err
	}
	r.Connections = len(rs)
	r.ConnectSeconds = time.Since(t0).Seconds()
	sleep(ctx, time.Second)

	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	sending := make(chan struct{})
	go func() {
		defer close(sending)
		pace(sendCtx, ss, cfg.Rate, time.Now().Add(time.Hour), nil, nil)
	}()
	m := e.startMeter()
	start := time.Now()
	var phase atomic.Value
	phase.Store("live")
	e.prog.set(func() string {
		n, _ := closes(rs)
		return fmt.Sprintf("%s: %d connections closed, %d of %d caught up, %d deliveries", phase.Load(), n,
			aud.caughtUp.Load(), len(rs), aud.delivered.Load())
	})
	// Live for a second, so that every client has received something.
	sleep(ctx, time.Second)

	// Every client drops; messages keep coming until each sender sent its
	// share of Missed more.
	phase.Store("away")
	if cfg.Failover {
		if err := kill(victimPID); err != nil {
			return nil, fmt.Errorf("kill the node %s (process %d): %w", victim.urls[0], victimPID, err)
		}
	} else {
		for _, rc := range rs {
			rc.socket().drop()
		}
	}
	perSender := (cfg.Missed + cfg.Senders - 1) / cfg.Senders
	base := make([]int, len(ss))
	for i, s := range ss {
		base[i] = s.contiguousAcked()
	}
	if !waitFor(ctx, time.Duration(float64(cfg.Missed)/cfg.Rate*float64(time.Second))+30*time.Second, func() bool {
		for i, s := range ss {
			if s.contiguousAcked() < base[i]+perSender {
				return false
			}
		}
		return true
	}) {
		return nil, fmt.Errorf("the senders did not get %d messages acknowledged in time", cfg.Missed)
	}
	for _, rc := range rs {
		<-rc.socket().closed
	}

	// Reconnect together, each after the last ref it received, and wait
	// until each has everything acknowledged when the storm started.
	phase.Store("reconnecting")
	target := make([]int, len(ss))
	for i, s := range ss {
		target[i] = s.contiguousAcked()
	}
	var missed int64
	for _, rc := range rs {
		rc.mu.Lock()
		for si := range ss {
			missed += int64(target[si] - rc.tr.Contiguous(si))
		}
		rc.mu.Unlock()
		rc.waitFor(target)
	}
	r.Missed = missed / int64(len(rs))
	storm := time.Now()
	refs := make([]string, len(rs))
	for i, rc := range rs {
		rc.mu.Lock()
		refs[i] = protocol.FormatRef(rc.tr.LastRef())
		rc.mu.Unlock()
	}
	workers := e.cfg.Workers
	e.cfg.Workers = max(workers, 256) // all at once, within reason
	err = e.connectEach(ctx, e.ws, rs, g.receiverToks, aud, "", func(i int) string { return refs[i] })
	e.cfg.Workers = workers
	if err != nil {
		return nil, err
	}
	r.ReconnectSeconds = time.Since(storm).Seconds()
	phase.Store("catching up")
	waitFor(ctx, cfg.Timeout, func() bool { return aud.caughtUp.Load() >= int64(len(rs)) })
	var per Histogram
	for _, rc := range rs {
		rc.mu.Lock()
		if !rc.caught.IsZero() {
			r.CaughtUp++
			per.Record(rc.caught.Sub(storm))
		}
		rc.mu.Unlock()
	}
	r.CatchUpSeconds = per.Max().Seconds()
	cu := per.Summary()
	r.CatchUp = &cu

	// A little more live traffic, then check the whole run.
	phase.Store("live again")
	sleep(ctx, time.Second)
	stopSending()
	<-sending
	for _, s := range ss {
		s.wait(10 * time.Second)
	}
	r.Server, r.Tool = m.stop()
	r.Seconds = time.Since(start).Seconds()
	_, acked, _, _ := senderTotals(ss)
	drain(ctx, time.Minute, aud.delivered.Load, acked*int64(len(rs)))
	r.Sent, r.Acked, r.SendErrors, r.SendErrorCodes = senderTotals(ss)
	r.Deliveries = aud.delivered.Load()
	r.Lost, r.Duplicated, r.OutOfOrder = check(rs, ss)
	if a := ss[0].ackLat.Summary(); a.Count > 0 {
		r.AckLatency = &a
	}
	r.UnexpectedClose, r.CloseCodes = closes(rs)
	if r.UnexpectedClose > 0 {
		e.note("the first connection closed: %s", closeReason(rs))
	}
	if r.CaughtUp < len(rs) {
		e.note("%d clients had not caught up after %s", len(rs)-r.CaughtUp, cfg.Timeout)
	}
	r.finish(e)
	return r, nil
}

// kill kills process pid at once (SIGKILL where there are signals): a
// node that dies without closing anything.
func kill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}
