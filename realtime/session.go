package realtime

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// Session is one authenticated account on a connection: it receives the
// updates of one user, replayed from the event log after the cursor it
// resumed from, then live, without a gap or a duplicate at the seam.
type Session struct {
	client  *Client
	account string
	app     string
	user    string
	device  string
	profile tidings.Profile
	// subs are the conversations it is indexed under, each once; guarded
	// by Node.mu. A slice: most sessions have a few, and a map of one
	// conversation cost ten times its 32 bytes on every connection.
	subs    []convKey
	removed map[convKey]int64 // while it registers: removals of its user dispatched meanwhile, by seq; guarded by Node.mu
	poll    bool              // a poll's session: it does not make its user present
	// watching are the users (of its app) whose presence it subscribed
	// to; guarded by Node.mu.
	watching map[string]struct{}
	// In cluster mode: counted says the session is counted in the node's
	// PresenceStore, first that it was its user's first session in the
	// cluster; reach is at least the newest event of its stream committed
	// when its conversations were read (see streamReach), set by the
	// replay (guarded by mu).
	counted, first bool
	reach          int64
	// indexed is, alone (not in cluster mode), the newest event the node
	// had dispatched when register had indexed the session by its user
	// and conversations: every later event reaches it live. Set by
	// register.
	indexed int64
	// repliedSeq is the newest ref its client replied, up to lastSent
	// then (see replied); replyQueued says it is on the node's list of
	// sessions with replies to note, nextReply is the next on that list.
	repliedSeq  atomic.Int64
	replyQueued atomic.Bool
	nextReply   *Session
	// stayed: when it ended, its user still had sessions on other nodes
	// (their typing indicators stay on). Set by unregister.
	stayed bool

	mu        sync.Mutex
	expires   time.Time
	issued    time.Time // when its token was issued (checkAccess); zero for a poll
	replaying bool
	pending   []pendingUpdate // live updates that arrived during replay
	// lastSent is the highest ref written to the connection (set just
	// before the write: see writeLocked): set under mu, read under mu or
	// by replied, which takes no lock.
	lastSent atomic.Int64
	closed   bool
	// ownSends are its tidings.v2 connection's message.send commands with
	// a clientId whose update has not come yet (see ownSend).
	ownSends []*ownSend
}

// ownSend is a message.send of a tidings.v2 connection, which gets the
// answer in place of the message's update (protocol.SubprotocolV2): the
// first of the session's updates of a sent message with its conversation
// and clientId is answered, once, by answerOwn; if none comes by the time
// the send has its result and the node has dispatched what was published
// before (Client.send), the send answers without ref and the update
// follows as it comes.
type ownSend struct {
	id             string // the command's
	conversationID string
	nm             tidings.NewMessage // as the client sent it
	answered       bool
}

// addOwnSend records a send in flight.
func (s *Session) addOwnSend(o *ownSend) {
	s.mu.Lock()
	s.ownSends = append(s.ownSends, o)
	s.mu.Unlock()
}

// takeOwnSend forgets o and says whether it is still to be answered.
func (s *Session) takeOwnSend(o *ownSend) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := slices.Index(s.ownSends, o); i >= 0 {
		s.ownSends = slices.Delete(s.ownSends, i, i+1)
	}
	if o.answered {
		return false
	}
	o.answered = true
	return true
}

// deliverEvent delivers a durable event's update (frameSet.get), or on a
// tidings.v2 session the answer to the message.send whose message the
// event sent, in its place (see ownSend).
func (s *Session) deliverEvent(seq int64, fs *frameSet) {
	if s.client.v2 && fs.ev.Name == tidings.EventMessageSent && fs.isSender(s.user) && s.answerOwn(seq, fs) {
		return
	}
	s.deliver(seq, fs.get(s))
}

// answerOwn answers, in the place of the update of seq, the send of s whose
// message fs's event sent, and says whether it did.
func (s *Session) answerOwn(seq int64, fs *frameSet) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ownSends) == 0 || s.closed || s.replaying || seq <= s.lastSent.Load() {
		return false
	}
	b, err := fs.bodyV2()
	if err != nil || b.msg == nil || b.msg.ClientID == "" {
		return false
	}
	i := slices.IndexFunc(s.ownSends, func(o *ownSend) bool {
		return o.conversationID == fs.ev.ConversationID && o.nm.ClientID == b.msg.ClientID
	})
	if i < 0 {
		return false
	}
	o := s.ownSends[i]
	s.ownSends = slices.Delete(s.ownSends, i, i+1)
	o.answered = true
	r := protocol.NewSendResult(o.nm, b.msg, true).V2(protocol.FormatRef(seq))
	s.writeLocked(seq, answerFrameV2(o.id, r, nil))
	return true
}

type pendingUpdate struct {
	seq   int64
	frame []byte
}

// resyncError is EResyncRequired with the newest ref to resume from.
type resyncError struct {
	err    error
	latest int64
}

func (e *resyncError) Error() string { return e.err.Error() }
func (e *resyncError) Unwrap() error { return e.err }

// ResumeRef is the ref to resume from after rebuilding.
func (e *resyncError) ResumeRef() string { return protocol.FormatRef(e.latest) }

func asResync(err error, target **resyncError) bool { return errors.As(err, target) }

// deliver sends a durable update (seq > 0) or a live one (seq == 0: typing
// and presence, never stored). During a replay both wait in pending, in the
// order they came, and follow the replay.
func (s *Session) deliver(seq int64, frame []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed || frame == nil: // nil: it could not be encoded
		return
	case s.replaying:
		if len(s.pending) >= s.client.node.QueueSize {
			s.closeSlowLocked()
			return
		}
		s.pending = append(s.pending, pendingUpdate{seq, frame})
		return
	case seq > 0 && seq <= s.lastSent.Load():
		return // already sent by the replay
	}
	s.writeLocked(seq, frame)
}

// writeLocked writes the frame of update seq (0: live-only). A full queue
// means a slow consumer, whose connection is closed: the log keeps what it
// did not get, and lastSent stays the last ref actually written.
//
// lastSent is set before the write: once queued, the frame may reach the
// client, and its reply come back (replied, which takes no lock), before
// this goroutine runs on; a reply then was cut down to the ref before,
// and lost.
func (s *Session) writeLocked(seq int64, frame []byte) {
	prev := s.lastSent.Load()
	if seq > 0 {
		s.lastSent.Store(seq)
	}
	if !s.client.t.Write(frame) {
		s.lastSent.Store(prev)
		s.closeSlowLocked()
	}
}

// closeSlowLocked ends the session and closes its connection as a slow
// consumer: the log keeps what it did not get, for its next connection.
// s.mu is held, so the connection is closed on a goroutine of its own.
func (s *Session) closeSlowLocked() {
	s.closed = true
	go s.client.SlowConsumer()
}

// replay sends the user's updates after `after` from the log, then turns
// the session live. The session is registered for live updates before
// replay starts, and those that arrive meanwhile wait in pending: the ones
// the replay also found are dropped by their seq.
//
// In cluster mode, the replay sends nothing above the node's position
// from the log: the events above it are delivered live later, and one
// sent from the log first would be overtaken by an older one delivered
// live. An event of the stream above the position is delivered after the
// position is read, so after the session's conversations were indexed:
// it reaches pending. The replay still goes on until the position
// reaches s.reach (see streamReach): the last event of the first read that
// saw the end of the stream, or else streamReach's.
func (s *Session) replay(ctx context.Context, after int64) error {
	n := s.client.node
	s.mu.Lock()
	s.lastSent.Store(after)
	s.mu.Unlock()
	reached := !n.clustered() // s.reach is known (alone, the bound is no bound)
	// Batches of at most the room left in the connection's queue, handed
	// over at once so that the connection writes each in one go.
	holder, _ := s.client.t.(Holder)
	for {
		batch := n.ReplayBatch
		if room, ok := s.waitRoom(ctx); ok {
			if room == 0 {
				s.slowConsumer()
				return nil
			}
			batch = min(batch, room)
		}
		s.mu.Lock()
		from := s.lastSent.Load()
		s.mu.Unlock()
		bound := int64(math.MaxInt64)
		if n.clustered() {
			bound = n.position() // before the read: every event up to it is in the log
		}
		evs, err := n.readReplay(ctx, s.app, s.user, from, batch)
		if err != nil {
			return err
		}
		// Fewer than asked: the log had no more of the stream when it was
		// read (every event up to bound, at least); what came after reaches
		// the session live, so no read is needed to see the end. Read after
		// register, that read also tells the reach.
		end := len(evs) < batch
		if end && !reached {
			reached = true
			var last int64 // none: nothing of the stream is above `from`
			if len(evs) > 0 {
				last = evs[len(evs)-1].Seq
			}
			s.setReach(last)
		}
		if i := slices.IndexFunc(evs, func(ev *tidings.Event) bool { return ev.Seq > bound }); i >= 0 {
			evs = evs[:i]
		}
		if len(evs) > 0 {
			if err := s.replayBatch(evs, holder); err != nil || s.isClosed() {
				return err
			}
			n.metrics.replayed.Add(float64(len(evs)))
		}
		if !end && len(evs) > 0 {
			continue
		}
		if !reached {
			reach, err := n.streamReach(ctx, s.app, s.user)
			if err != nil {
				return err
			}
			reached = true
			s.setReach(reach)
		}
		if bound >= s.reach {
			break
		}
		if err := n.waitPosition(ctx, s.reach); err != nil {
			return err
		}
	}
	// Then what came live meanwhile, paced the same way; the session turns
	// live once none is left.
	for {
		s.mu.Lock()
		if s.closed || len(s.pending) == 0 {
			s.pending, s.replaying = nil, false
			s.mu.Unlock()
			return nil
		}
		p := s.pending[0]
		s.pending = s.pending[1:]
		if p.seq == 0 || p.seq > s.lastSent.Load() {
			s.writeLocked(p.seq, p.frame)
		}
		s.mu.Unlock()
		if room, ok := s.waitRoom(ctx); ok && room == 0 {
			s.slowConsumer()
			return nil
		}
	}
}

// setReach sets the replay's reach (see streamReach).
func (s *Session) setReach(reach int64) {
	s.mu.Lock()
	s.reach = reach
	s.mu.Unlock()
}

// readReplay reads a replay's batch from the log, once it is the turn of
// the replay (Node.ReplayReads at once).
func (n *Node) readReplay(ctx context.Context, app, user string, after int64, limit int) ([]*tidings.Event, error) {
	if n.replayReads != nil { // nil: a node not opened (tests)
		select {
		case n.replayReads <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		defer func() { <-n.replayReads }()
	}
	return n.Log.UserEvents(ctx, app, user, after, limit)
}

// liveAt turns the session live with nothing to replay, when that is
// sure, and says whether it did. The caller knows that no event after
// `after` was in the log before the session was registered (after is the
// log's newest seq, read before register); liveAt checks, alone (not in
// cluster mode), that none was dispatched either before register had
// indexed the session by its user and conversations (each one after
// that reaches it live, in order), and that none waits in pending. A
// client resuming from the newest ref (a new device, "latest", or a
// cursor that is up to date) then costs no read of its stream. Else the
// caller replays.
func (s *Session) liveAt(after int64) bool {
	if s.client.node.clustered() || s.indexed > after {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.replaying || len(s.pending) > 0 {
		return false
	}
	s.lastSent.Store(after)
	s.replaying = false
	return true
}

// slowConsumer closes the connection of a session whose replay gave up:
// nothing drained from its queue in time.
func (s *Session) slowConsumer() {
	s.mu.Lock()
	closed := s.closed
	s.closed = true
	s.mu.Unlock()
	if !closed {
		s.client.SlowConsumer()
	}
}

// replayBatch writes the updates of events read from the log, held
// together when the transport can.
func (s *Session) replayBatch(evs []*tidings.Event, holder Holder) error {
	n := s.client.node
	if holder != nil {
		holder.Hold()
		defer holder.Release()
	}
	for _, ev := range evs {
		body, err := n.encodeStored(ev)
		if err != nil {
			return err
		}
		var frame []byte
		if s.client.v2 {
			b, err := n.encodeStoredV2(ev)
			if err != nil {
				return err
			}
			frame = updateFrameV2(s.account, ev.Seq, silentFor(ev, s.user), b.forUser(body.isSender(s.user)))
		} else {
			frame = updateFrame(s.account, ev.Seq, silentFor(ev, s.user), body.forUser(s.user))
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil
		}
		if ev.Seq > s.lastSent.Load() {
			s.writeLocked(ev.Seq, frame)
		}
		s.mu.Unlock()
	}
	return nil
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Holder is a Transport that can hold the frames written to it and write
// them together once released.
type Holder interface {
	Hold()
	Release()
}

// RoomWaiter is a Transport whose queue a replay can wait on: a replay
// reads the log faster than most connections carry it, and must not
// overflow the queue of a client that reads, only more slowly.
type RoomWaiter interface {
	// WaitRoom waits until the queue has room again, and returns how many
	// frames the replay may add, leaving room for the answers and live
	// updates that come meanwhile. It returns 0 when it gives up: the
	// connection did not drain in time (the replay then closes it as a
	// slow consumer), or it closed.
	WaitRoom(ctx context.Context) int
}

// waitRoom waits for room in the transport's queue, and says how much
// there is, when the transport knows.
func (s *Session) waitRoom(ctx context.Context) (int, bool) {
	if w, ok := s.client.t.(RoomWaiter); ok {
		return w.WaitRoom(ctx), true
	}
	return 0, false
}

// ack records that the client processed every update up to ref.
func (s *Session) ack(seq int64) { s.ackAt(seq, s.client.node.Now()) }

// replied records a reply up to seq, for the node to note later
// (Node.noteReplies): a reply is handled on the connection's reading
// goroutine, whose stack must stay small (2 KiB once idle), and noting an
// acknowledgement (a session's lock, the node's map of cursors) went
// deeper than a reply's frames leave room for. Only atomics here: the
// newest ref replied, and the session pushed once onto the node's list
// of sessions with replies to note.
func (s *Session) replied(seq int64) {
	seq = min(seq, s.lastSent.Load()) // cannot acknowledge what was not sent
	for {
		old := s.repliedSeq.Load()
		if seq <= old || s.repliedSeq.CompareAndSwap(old, seq) {
			break
		}
	}
	if !s.replyQueued.CompareAndSwap(false, true) {
		return
	}
	n := s.client.node
	for {
		head := n.replies.Load()
		s.nextReply = head
		if n.replies.CompareAndSwap(head, s) {
			return
		}
	}
}

// ackAt is ack at a time already read.
func (s *Session) ackAt(seq int64, now time.Time) {
	s.mu.Lock()
	seq = min(seq, s.lastSent.Load()) // cannot acknowledge what was not sent
	s.mu.Unlock()
	s.client.node.noteAck(s.cursorKey(), seq, now)
}

func (s *Session) cursorKey() deviceKey { return deviceKey{s.app, s.user, s.device} }
