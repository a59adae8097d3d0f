package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"time"
)

// RunPoll runs the fanout scenario with receivers on the long-polling
// transport (GET /v1/realtime/poll), each polling again as soon as a poll
// returns, after the last ref it got.
func RunPoll(ctx context.Context, cfg FanoutConfig) (*Result, error) {
	cfg.Poll = true
	return RunFanout(ctx, cfg)
}

// pollWait is how long a poll waits for an update.
const pollWait = 20

// startPollers starts a polling loop per receiver of g. Each first polls
// without waiting to learn where the stream stands, so that nothing sent
// afterwards is missed. stop ends the loops.
func (e *env) startPollers(ctx context.Context, g *group, aud *audience) ([]*receiver, func(), error) {
	rs := make([]*receiver, len(g.receiverIDs))
	refs := make([]string, len(rs))
	for i := range rs {
		rs[i] = &receiver{}
	}
	// Polls hold a connection each while they wait.
	pa := newAPI(e.cfg.URL, e.cfg.Key, e.dialer, len(rs)+8)
	err := parallel(ctx, len(rs), e.cfg.Workers, func(i int) error {
		ref, err := e.poll(ctx, pa, aud, rs[i], g.receiverToks[i], "latest", 0)
		refs[i] = ref
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var errs []string
	for i, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			after := refs[i]
			for pctx.Err() == nil {
				ref, err := e.poll(pctx, pa, aud, r, g.receiverToks[i], after, pollWait)
				if err != nil {
					if pctx.Err() == nil {
						errMu.Lock()
						errs = append(errs, err.Error())
						errMu.Unlock()
						sleep(pctx, 100*time.Millisecond)
					}
					continue
				}
				after = ref
			}
		}()
	}
	stop := func() {
		cancel()
		wg.Wait()
		pa.hc.CloseIdleConnections()
		if len(errs) > 0 {
			e.note("%d polls failed, the first: %s", len(errs), errs[0])
		}
	}
	return rs, stop, nil
}

// poll asks once for the updates after ref and hands them to aud; it
// returns the ref to poll after next.
func (e *env) poll(ctx context.Context, pa *api, aud *audience, r *receiver, token, after string, wait int) (string, error) {
	var res struct {
		Updates []json.RawMessage `json:"updates"`
		LastRef string            `json:"lastRef"`
	}
	q := url.Values{"device": {"bench"}, "after": {after}, "wait": {fmt.Sprint(wait)}, "limit": {"1000"}}
	if err := pa.do(ctx, "GET", "/v1/realtime/poll?"+q.Encode(), token, nil, &res); err != nil {
		return after, err
	}
	at := time.Now()
	for _, u := range res.Updates {
		aud.observe(r, u, at)
	}
	return res.LastRef, nil
}
