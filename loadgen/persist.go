package loadgen

import (
	"context"
	"fmt"
	"net/url"
	"sync/atomic"
	"time"
)

// PersistConfig configures the persist scenario: APISenders senders
// through the REST API and SocketSenders through the realtime socket, each
// in a conversation of its own (with one other member, offline), sending
// as fast as their messages are acknowledged.
type PersistConfig struct {
	Config
	APISenders    int
	SocketSenders int
	// Inflight is how many messages a socket sender has waiting for their
	// answer (default 1); an API sender waits for each answer.
	Inflight int
	Size     int
}

// RunPersist runs the persist scenario: it reports messages durably
// acknowledged per second, and checks that each conversation holds every
// message acknowledged.
func RunPersist(ctx context.Context, cfg PersistConfig) (*Result, error) {
	if cfg.Size <= 0 {
		cfg.Size = 64
	}
	cfg.Inflight = max(cfg.Inflight, 1)
	if cfg.APISenders+cfg.SocketSenders <= 0 {
		cfg.SocketSenders = 1
	}
	e, err := cfg.open("persist")
	if err != nil {
		return nil, err
	}
	defer e.prog.close()
	r := e.result("persist", map[string]any{"apiSenders": cfg.APISenders, "socketSenders": cfg.SocketSenders,
		"inflight": cfg.Inflight, "size": cfg.Size, "duration": cfg.Duration.String()})

	t0 := time.Now()
	n := cfg.APISenders + cfg.SocketSenders
	ids := make([]string, 0, 2*n)
	for i := range n {
		ids = append(ids, e.id("s", i), e.id("p", i))
	}
	tokens, err := e.makeUsers(ctx, ids)
	if err != nil {
		return nil, err
	}
	api, sock := new(Histogram), new(Histogram)
	ss := make([]*sender, n)
	defer closeSenders(ss)
	e.prog.set(func() string { return "creating conversations and connecting" })
	err = parallel(ctx, n, e.cfg.Workers, func(i int) error {
		conv := e.id("c", i)
		if err := e.api.conversation(ctx, tokens[2*i], conv, []string{ids[2*i+1]}, tokens[2*i+1:2*i+2], 1); err != nil {
			return err
		}
		if i < cfg.APISenders {
			ss[i] = newSender(i, conv, tokens[2*i], nil, e.api, cfg.Size, 1, api)
			return nil
		}
		s, err := dialSocket(ctx, e.ws, nil)
		if err != nil {
			return err
		}
		ss[i] = newSender(i, conv, tokens[2*i], s, e.api, cfg.Size, cfg.Inflight, sock)
		_, err = s.auth(ctx, tokens[2*i], "bench", "latest")
		return err
	})
	if err != nil {
		return nil, err
	}
	r.SetupSeconds = time.Since(t0).Seconds()
	r.Connections = cfg.SocketSenders

	e.prog.set(func() string {
		sent, acked, failed, _ := senderTotals(ss)
		return fmt.Sprintf("sent %d acked %d failed %d; answered in p50 %s p99 %s", sent, acked, failed,
			msText(ms(api.Quantile(0.5)+sock.Quantile(0.5))), msText(ms(max(api.Quantile(0.99), sock.Quantile(0.99)))))
	})
	m := e.startMeter()
	start := time.Now()
	pace(ctx, ss, 0, start.Add(cfg.Duration), nil, nil)
	for _, s := range ss {
		s.wait(10 * time.Second)
	}
	r.Server, r.Tool = m.stop()
	r.Seconds = time.Since(start).Seconds()
	r.Sent, r.Acked, r.SendErrors, r.SendErrorCodes = senderTotals(ss)
	r.MessagesPerSec = float64(r.Acked) / r.Seconds
	var apiAcked, sockAcked int64
	for i, s := range ss {
		if i < cfg.APISenders {
			apiAcked += s.ackedN.Load()
		} else {
			sockAcked += s.ackedN.Load()
		}
	}
	r.APIMessagesPerSec = float64(apiAcked) / r.Seconds
	r.SocketMessagesPerSec = float64(sockAcked) / r.Seconds
	if a := api.Summary(); a.Count > 0 {
		r.APIAckLatency = &a
	}
	if s := sock.Summary(); s.Count > 0 {
		r.SocketAckLatency = &s
	}

	// Each conversation must hold every message acknowledged: its last
	// seq is at least their number. Read as setup is (a request refused
	// as rate limited is tried again): the API senders may have used
	// their users' whole allowance of requests.
	e.prog.set(func() string { return "checking the conversations" })
	var lost atomic.Int64
	err = parallel(ctx, n, e.cfg.Workers, func(i int) error {
		var c struct {
			LastSeq int64 `json:"lastSeq"`
		}
		if err := e.api.setup(ctx, "GET", "/v1/conversations/"+url.PathEscape(ss[i].conv), tokens[2*i], nil, &c); err != nil {
			return err
		}
		if acked := ss[i].ackedN.Load(); c.LastSeq < acked {
			lost.Add(acked - c.LastSeq)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("check the conversations: %w", err)
	}
	r.Lost = lost.Load()
	r.finish(e)
	return r, nil
}
