package realtime

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// The polling transport, for clients that cannot hold a WebSocket: the
// same updates, in the same order, with the same refs. A poll returns the
// updates after a ref (or the device's cursor) at once if there are any,
// else waits for the first one up to a time limit. Replies are separate
// requests (Ack). Typing and presence reach polling clients only while a
// poll is waiting.

// PollRequest asks for the updates of the caller's user.
type PollRequest struct {
	Device string
	After  string        // a ref; "" resumes from the device's cursor
	Wait   time.Duration // how long to wait when there is nothing yet
	Limit  int           // at most this many updates (default 100)
}

// PollResult holds updates as the same frames the WebSocket carries.
// LastRef is where the device now stands: the ref of the last durable
// update in it, or the ref the poll resumed after when it has none.
type PollResult struct {
	Updates []json.RawMessage `json:"updates"`
	LastRef string            `json:"lastRef"`
}

// pollTransport collects the frames of one poll.
type pollTransport struct {
	mu     sync.Mutex
	frames []json.RawMessage
	limit  int
	ready  chan struct{}
}

// Write keeps up to limit frames; past it, the session ends (as for a
// slow consumer) and the rest waits in the log for the next poll.
func (p *pollTransport) Write(frame []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.frames) >= p.limit {
		return false
	}
	p.frames = append(p.frames, frame)
	select {
	case p.ready <- struct{}{}:
	default:
	}
	return true
}

func (p *pollTransport) Close(int, string) {}

// Poll returns the updates of the caller after req.After, waiting up to
// req.Wait for the first one.
func (n *Node) Poll(ctx context.Context, caller tidings.Caller, req PollRequest) (*PollResult, error) {
	var err error
	if req.Device, err = deviceName(req.Device); err != nil {
		return nil, err
	}
	if req.Limit <= 0 || req.Limit > 1000 {
		req.Limit = 100
	}
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: caller.AppID, Server: true})
	u, err := n.Users.FindUserByID(server, caller.UserID)
	if err != nil {
		return nil, err
	}
	if n.userSessions(caller.AppID, caller.UserID) >= n.MaxConnsPerUser {
		return nil, tidings.Errorf(tidings.ERateLimited, "too many connections and polls for this user (at most %d)", n.MaxConnsPerUser)
	}
	after, _, err := n.resumePoint(ctx, caller, req.Device, req.After, logPoint{})
	if err != nil {
		return nil, err
	}
	pt := &pollTransport{limit: req.Limit, ready: make(chan struct{}, 1)}
	c := n.Connect(pt)
	defer c.end(true)
	s := &Session{client: c, account: "default", app: caller.AppID, user: caller.UserID, device: req.Device,
		profile: u.Summary(), expires: n.Now().Add(req.Wait + time.Minute), replaying: true, poll: true}
	if err := n.register(ctx, s); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.accounts.set(s)
	c.checkSoonerLocked(s.expires)
	c.mu.Unlock()
	if err := s.replay(ctx, after); err != nil {
		return nil, err
	}
	pt.mu.Lock()
	empty := len(pt.frames) == 0
	pt.mu.Unlock()
	if empty && req.Wait > 0 {
		t := time.NewTimer(req.Wait)
		select {
		case <-pt.ready:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	n.endSession(s)
	pt.mu.Lock()
	defer pt.mu.Unlock()
	res := &PollResult{Updates: pt.frames}
	if res.Updates == nil {
		res.Updates = []json.RawMessage{}
	}
	s.mu.Lock()
	last := s.lastSent.Load()
	s.mu.Unlock()
	res.LastRef = protocol.FormatRef(max(last, after))
	return res, nil
}

// Ack stores that the caller's device processed every update up to ref.
func (n *Node) Ack(ctx context.Context, caller tidings.Caller, device, ref string) error {
	device, err := deviceName(device)
	if err != nil {
		return err
	}
	seq, ok := protocol.ParseRef(ref)
	if !ok {
		return tidings.Errorf(tidings.EInvalid, "ref %q is not a ref", ref)
	}
	latest, err := n.Log.LastEventSeq(ctx)
	if err != nil {
		return err
	}
	if seq > latest {
		return tidings.Errorf(tidings.EInvalid, "ref %q was never sent", ref)
	}
	return n.Log.SaveCursors(ctx, []tidings.Cursor{{AppID: caller.AppID, UserID: caller.UserID, Device: device, Seq: seq}})
}
