package loadgen

import (
	"context"
	"fmt"
	"time"
)

// ConnectionsConfig configures the connections scenario: Connections idle
// authenticated connections (one user each, in no conversation) held for
// Duration.
type ConnectionsConfig struct {
	Config
	Connections int
	// Settle is the wait before measuring memory, after connecting and
	// after setup (default 3s).
	Settle time.Duration
}

// RunConnections runs the connections scenario: it reports the server's
// memory per connection and its CPU time while the connections are idle
// (its pings and timers).
func RunConnections(ctx context.Context, cfg ConnectionsConfig) (*Result, error) {
	cfg.Connections = max(cfg.Connections, 1)
	if cfg.Settle <= 0 {
		cfg.Settle = 3 * time.Second
	}
	e, err := cfg.open("connections")
	if err != nil {
		return nil, err
	}
	defer e.prog.close()
	r := e.result("connections", map[string]any{"connections": cfg.Connections, "duration": cfg.Duration.String(),
		"sources": e.cfg.Sources})

	t0 := time.Now()
	ids := make([]string, cfg.Connections)
	for i := range ids {
		ids[i] = e.id("u", i)
	}
	tokens, err := e.makeUsers(ctx, ids)
	if err != nil {
		return nil, err
	}
	r.SetupSeconds = time.Since(t0).Seconds()
	e.api.hc.CloseIdleConnections()

	e.prog.set(func() string { return "settling before measuring the server's memory" })
	sleep(ctx, cfg.Settle)
	before, srvOK := e.server()
	self0 := SampleSelf()

	t0 = time.Now()
	rs := make([]*receiver, cfg.Connections)
	for i := range rs {
		rs[i] = &receiver{}
	}
	aud := newAudience(0)
	defer dropAll(rs)
	if err := e.connectEach(ctx, e.ws, rs, tokens, aud, "latest", nil); err != nil {
		return nil, err
	}
	r.Connections = len(rs)
	r.ConnectSeconds = time.Since(t0).Seconds()

	e.prog.set(func() string { return "settling" })
	sleep(ctx, cfg.Settle)
	pings := func() int64 {
		var n int64
		for _, r := range rs {
			n += r.socket().pings.Load()
		}
		return n
	}
	p0 := pings()
	m := e.startMeter()
	start := time.Now()
	e.prog.set(func() string {
		n, _ := closes(rs)
		return fmt.Sprintf("%d connections open, %d closed, %d pings from the server", len(rs)-n, n, pings()-p0)
	})
	sleep(ctx, cfg.Duration)
	r.Server, r.Tool = m.stop()
	r.Seconds = time.Since(start).Seconds()
	r.Pings = pings() - p0
	if after, ok := e.server(); ok && srvOK {
		r.ServerRSSBefore = before.RSS
		r.ServerRSSPerConnKiB = float64(after.RSS-before.RSS) / float64(len(rs)) / 1024
	}
	r.ToolRSSPerConnKiB = float64(SampleSelf().RSS-self0.RSS) / float64(len(rs)) / 1024
	r.UnexpectedClose, r.CloseCodes = closes(rs)
	if r.UnexpectedClose > 0 {
		e.note("the first connection closed: %s", closeReason(rs))
	}
	r.finish(e)
	return r, nil
}
