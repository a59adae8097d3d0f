package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// Cluster mode (docs/cluster.md): with a Broker, the node delivers the
// ranges of final events the cluster's tailer publishes, rather than the
// events its store publishes in-process. One node at a time (the holder
// of the lease "tailer") reads the final events from the log (LogTail)
// and publishes them; every node, the tailer included, receives them from
// its subscription and delivers them in position order, reading from the
// log what it missed. Live-only updates (typing, presence) go through the
// broker as well, and every node, the one that published included,
// delivers them to its own sessions from its subscription.

// tailerLease is the name of the lease of the node that tails the log.
const tailerLease = "tailer"

// clusterState is what the delivery goroutine keeps in cluster mode.
type clusterState struct {
	sub tidings.Subscription

	// Owned by runCluster.
	last    int64 // the position delivered up to
	chainTo int64 // the To of the last range received; -1 after Lost
	polling atomic.Bool

	heard   atomic.Int64 // the largest To received (for a new tailer)
	tailing atomic.Bool  // this node holds the tailer lease
	// renewing is since when (unix ns) this node's presence renewals
	// have all succeeded; 0 after a failure.
	renewing atomic.Int64

	posMu sync.Mutex
	posCh chan struct{} // closed when pos moves on
}

// clusterItem is what the broker hands the node, queued in order.
type clusterItem struct {
	r    *tidings.EventRange
	live *tidings.LiveUpdate
	lost bool
}

// clusterHandler is the node's tidings.BrokerHandler: it queues what it
// is given for the delivery goroutine, and never blocks.
type clusterHandler struct{ n *Node }

func (h clusterHandler) Range(r tidings.EventRange) {
	h.n.cluster.heard.Store(max(h.n.cluster.heard.Load(), r.To))
	h.n.enqueue(clusterItem{r: &r})
}
func (h clusterHandler) Live(u tidings.LiveUpdate) { h.n.enqueue(clusterItem{live: &u}) }
func (h clusterHandler) Lost()                     { h.n.enqueue(clusterItem{lost: true}) }

func (n *Node) enqueue(it clusterItem) {
	n.queueMu.Lock()
	n.items = append(n.items, it)
	n.queueMu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// clustered says whether the node runs in cluster mode.
func (n *Node) clustered() bool { return n.Broker != nil }

// openCluster subscribes to the broker and starts from the log's final
// position: what was final before is in the log for replays.
func (n *Node) openCluster() error {
	if n.Tail == nil || n.Leases == nil || n.NodeID == "" {
		return errors.New("realtime: a node with a Broker needs Tail, Leases and NodeID")
	}
	n.cluster = &clusterState{chainTo: -1, posCh: make(chan struct{})}
	sub, err := n.Broker.Subscribe(n.ctx, clusterHandler{n})
	if err != nil {
		return err
	}
	// After subscribing: ranges received from now on chain with it, or
	// are filled from the log.
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	start, err := n.Log.LastEventSeq(ctx)
	cancel()
	if err != nil {
		sub.Close()
		return err
	}
	n.cluster.sub = sub
	n.cluster.last = start
	n.cluster.heard.Store(start)
	n.pos.Store(start)
	return nil
}

// position is the position the node has delivered up to: replays send
// nothing above it from the log, so that live delivery cannot be
// overtaken, and new devices start from it.
func (n *Node) position() int64 { return n.pos.Load() }

// advance records that every event up to p was delivered, and wakes the
// replays waiting for it.
func (n *Node) advance(p int64) {
	c := n.cluster
	c.posMu.Lock()
	if p > n.pos.Load() {
		n.pos.Store(p)
	}
	close(c.posCh)
	c.posCh = make(chan struct{})
	c.posMu.Unlock()
}

// waitPosition waits until the node has delivered every event up to p.
func (n *Node) waitPosition(ctx context.Context, p int64) error {
	c := n.cluster
	for {
		c.posMu.Lock()
		if n.pos.Load() >= p {
			c.posMu.Unlock()
			return nil
		}
		ch := c.posCh
		c.posMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.ctx.Done():
			return n.ctx.Err()
		}
	}
}

// runCluster delivers what the broker hands over, in order: ranges of
// final events (reading the gaps from the log), live-only updates, and,
// after Lost, the log itself until ranges chain again.
func (n *Node) runCluster() {
	defer n.wg.Done()
	c := n.cluster
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	wait := n.TailInterval
	var items []clusterItem
	for {
		var tick <-chan time.Time
		if c.polling.Load() {
			timer.Reset(wait)
			tick = timer.C
		}
		select {
		case <-n.ctx.Done():
			return
		case <-n.wake:
		case <-tick:
		}
		n.queueMu.Lock()
		items, n.items = n.items, items[:0]
		n.queueMu.Unlock()
		if n.Batcher != nil {
			n.Batcher.BeginBatch()
		}
		for i, it := range items {
			switch {
			case it.r != nil:
				n.deliverRange(*it.r)
			case it.live != nil:
				n.applyLive(*it.live)
			case it.lost:
				if !c.polling.Load() {
					n.Logger.Warn("realtime: the broker may have lost ranges: reading the log until they chain again")
				}
				c.polling.Store(true)
				c.chainTo = -1
			}
			items[i] = clusterItem{}
		}
		if c.polling.Load() {
			if n.catchUp() {
				wait = n.TailInterval
			} else {
				wait = min(2*wait, 4*n.TailIdle)
			}
		}
		if n.Batcher != nil {
			n.Batcher.EndBatch()
		}
	}
}

// deliverRange delivers a range of final events in position order: what
// was delivered already is dropped, and a gap before it is read from the
// log first. A gap the log does not fill (an error) turns to reading the
// log until ranges chain again.
func (n *Node) deliverRange(r tidings.EventRange) {
	c := n.cluster
	chained := r.From == c.chainTo
	c.chainTo = r.To
	if r.To > c.last && r.From > c.last {
		for c.last < r.From {
			if !n.readFinal() {
				c.polling.Store(true)
				return
			}
		}
	}
	if r.To > c.last {
		n.dispatchAfter(c.last, r.Events)
		c.last = r.To
		n.advance(c.last)
	}
	if chained && c.polling.Load() {
		n.Logger.Info("realtime: ranges chain again: delivering from the broker")
		c.polling.Store(false)
		// Live updates may have been lost meanwhile, account.closed
		// among them: read the users of the sessions again.
		select {
		case n.checkNow <- struct{}{}:
		default:
		}
	}
}

// readFinal delivers the next final events from the log, and reports
// whether it moved on.
func (n *Node) readFinal() bool {
	c := n.cluster
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	r, err := n.Tail.Final(ctx, c.last, n.TailBatch)
	n.metrics.gaps.Inc()
	if err != nil {
		if n.ctx.Err() == nil {
			n.Logger.Error("realtime: read the final events from the log", "err", err, "after", c.last)
		}
		return false
	}
	if r.To <= c.last {
		return false
	}
	n.dispatchAfter(c.last, r.Events)
	c.last = r.To
	n.advance(c.last)
	if n.Batcher != nil {
		// A long gap goes out in batches of TailBatch, not held whole.
		n.Batcher.EndBatch()
		n.Batcher.BeginBatch()
	}
	return true
}

// dispatchAfter delivers the events after position last, in order, and
// hands them to Delivered.
func (n *Node) dispatchAfter(last int64, events []*tidings.Event) {
	first := len(events)
	for i, ev := range events {
		if ev.Seq > last {
			first = min(first, i)
			n.dispatch(ev)
		}
	}
	if n.Delivered != nil && first < len(events) {
		// Events are in position order: those after last are a suffix.
		n.Delivered.Publish(events[first:]...)
	}
}

// catchUp reads the log until it has nothing more final, and reports
// whether it delivered anything.
func (n *Node) catchUp() bool {
	moved := false
	for n.ctx.Err() == nil && n.readFinal() {
		moved = true
	}
	return moved
}

// tail runs while the node lives: it takes the tailer's lease when no
// node holds it, and while it holds it, publishes the ranges of final
// events it reads from the log, each starting where the last ended.
func (n *Node) tail() {
	defer n.wg.Done()
	held := false
	defer func() {
		if held {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := n.Leases.Release(ctx, tailerLease, n.NodeID); err != nil {
				n.Logger.Warn("realtime: release the tailer lease", "err", err)
			}
		}
	}()
	renewEvery := n.TailerTTL / 4
	var renewed time.Time
	var from, at int64 // published up to; read up to
	idle := n.TailInterval
	var published time.Time // the last publish, heartbeats included
	sleep := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-n.ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for n.ctx.Err() == nil {
		if time.Since(renewed) >= renewEvery {
			ok, err := n.Leases.Hold(n.ctx, tailerLease, n.NodeID, n.TailerTTL)
			renewed = time.Now()
			if err != nil {
				if n.ctx.Err() != nil {
					return
				}
				n.Logger.Warn("realtime: hold the tailer lease", "err", err)
				ok = false
				// The broker's side is failing: maybe no node tails the
				// log now, so this one reads it itself until ranges
				// chain again.
				n.enqueue(clusterItem{lost: true})
			}
			if ok && !held {
				// Where the last tailer stopped, as far as this node
				// knows: the nodes drop what they have, and read from the
				// log what they lack.
				from = max(n.cluster.heard.Load(), n.position())
				at = from
				n.Logger.Info("realtime: this node tails the log", "node", n.NodeID, "from", from)
			} else if !ok && held {
				n.Logger.Info("realtime: this node no longer tails the log", "node", n.NodeID)
			}
			held = ok
			n.cluster.tailing.Store(held)
			if held {
				n.metrics.tailing.Set(1)
			} else {
				n.metrics.tailing.Set(0)
			}
		}
		if !held {
			if !sleep(renewEvery) {
				return
			}
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		r, err := n.Tail.Final(ctx, at, n.TailBatch)
		switch {
		case err == nil && r.To > at && len(r.Events) > 0:
			err = n.Broker.PublishRange(ctx, tidings.EventRange{From: from, To: r.To, Events: r.Events})
			if tidings.ErrorCode(err) == tidings.ETooLarge {
				// Left for the nodes to read from the log: the next range
				// (a heartbeat at once) starts after it.
				n.Logger.Warn("realtime: a range of events is too large for the broker: the nodes read it from the log", "from", from, "to", r.To, "err", err)
				from, published, err = r.To, time.Time{}, nil
			} else if err == nil {
				from, published = r.To, time.Now()
			}
		case err == nil && time.Since(published) >= n.TailHeartbeat:
			// A heartbeat: the range since the last one, without events
			// (there are none in it), so that a node that lost the last
			// range of a quiet time reads it without waiting for the
			// next event, and ranges chain again after Lost.
			to := max(r.To, at)
			err = n.Broker.PublishRange(ctx, tidings.EventRange{From: from, To: to})
			if err == nil {
				from, published = to, time.Now()
			}
		}
		cancel()
		switch {
		case err != nil:
			if n.ctx.Err() != nil {
				return
			}
			n.Logger.Error("realtime: tail the log", "err", err)
			at = from // published nothing past from: read it again
			idle = n.TailIdle
		case r.To > at:
			at = r.To
			idle = n.TailInterval
			if len(r.Events) >= n.TailBatch {
				continue // more is final already
			}
		default:
			idle = min(2*idle, n.TailIdle)
		}
		if !sleep(idle) {
			return
		}
	}
}

// renewPresence extends the lease of this node's sessions in the
// PresenceStore while the node lives, from the start (so that its first
// sessions are counted under its lease).
//
// A node whose lease lapsed while it lived (cut off from the store longer
// than its lease) had its users told offline by the node that tails the
// log; the store counts its sessions again at its next renewal, and the
// node then tells that its users are online (those not told offline get
// it twice, which changes nothing for them).
func (n *Node) renewPresence() {
	defer n.wg.Done()
	t := time.NewTicker(n.PresenceLease / 3)
	defer t.Stop()
	renewed := time.Now()
	for {
		ctx, cancel := context.WithTimeout(n.ctx, n.PresenceLease/3)
		err := n.PresenceStore.Renew(ctx, n.NodeID, n.PresenceLease)
		cancel()
		switch {
		case err != nil:
			n.cluster.renewing.Store(0)
			if n.ctx.Err() == nil {
				n.Logger.Warn("realtime: renew the presence of this node's sessions", "err", err)
			}
		default:
			if time.Since(renewed) > n.PresenceLease {
				n.Logger.Warn("realtime: the presence lease of this node lapsed: its users are told online again")
				n.announceOnline()
			}
			renewed = time.Now()
			n.cluster.renewing.CompareAndSwap(0, renewed.UnixNano())
		}
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// announceOnline tells every node that the users with a live session
// here are online, as their first session did.
func (n *Node) announceOnline() {
	type online struct {
		s      *Session
		convs  []string
		hidden bool
	}
	var all []online
	n.mu.Lock()
	for uk, st := range n.people {
		if !st.online {
			continue
		}
		for _, s := range n.users[uk] {
			if !s.poll {
				all = append(all, online{s, convIDs(s), st.hidden})
				break
			}
		}
	}
	n.mu.Unlock()
	for _, o := range all {
		n.publishPresence(o.s, o.convs, true, o.hidden, time.Time{})
	}
}

// watchExpired runs while the node lives: every third of the presence
// lease, while the node tails the log, it ends the sessions of the nodes
// whose lease lapsed and tells the peers of the users who so went offline
// (expirePresence). It judges the others' leases only once its own
// renewals have all succeeded for a whole lease: after the presence store
// was out of reach (NATS down longer than the lease), every node's lease
// lapsed, and the nodes alive write their sessions again within a third
// of a lease; their users are not told offline.
func (n *Node) watchExpired() {
	defer n.wg.Done()
	t := time.NewTicker(n.PresenceLease / 3)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		since := n.cluster.renewing.Load()
		if n.cluster.tailing.Load() && since != 0 && time.Since(time.Unix(0, since)) >= n.PresenceLease {
			n.expirePresence()
		}
	}
}

// expirePresence asks the PresenceStore which users went offline because
// the node of their last session died (its lease lapsed), and tells their
// peers on every node, as the node of that session would have: a
// presence.update offline, with the dead node's last renewal as last
// seen, which this node also stores. Called by the node that tails the
// log, so that one node does it; the store returns each user once
// anyway.
func (n *Node) expirePresence() {
	ctx, cancel := context.WithTimeout(n.ctx, n.PresenceLease)
	defer cancel()
	changes, err := n.PresenceStore.Expired(ctx)
	if err != nil && n.ctx.Err() == nil {
		n.Logger.Warn("realtime: end the sessions of the nodes whose presence lease lapsed", "err", err)
	}
	for _, ch := range changes {
		// Each with time of its own: they were removed from the store,
		// and are told now or never.
		actx, acancel := context.WithTimeout(n.ctx, 10*time.Second)
		err := n.announceExpired(actx, ch)
		acancel()
		if err != nil && n.ctx.Err() == nil {
			n.Logger.Warn("realtime: tell that a user of a lapsed node went offline", "err", err, "app", ch.AppID, "user", ch.UserID)
		}
	}
	if len(changes) > 0 {
		n.Logger.Info("realtime: users went offline with a node whose presence lease lapsed", "users", len(changes))
	}
}

// announceExpired publishes that a user went offline with the node of
// their last session: to the sessions of every conversation they take
// part in, and to those subscribed to them, as publishPresence does.
func (n *Node) announceExpired(ctx context.Context, ch tidings.PresenceChange) error {
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: ch.AppID, Server: true})
	u, err := n.Users.FindUserByID(server, ch.UserID)
	if tidings.ErrorCode(err) == tidings.ENotFound {
		return nil // deleted: nobody sees them any more
	}
	if err != nil {
		return err
	}
	ms, err := n.Log.UserConversations(ctx, ch.AppID, ch.UserID)
	if err != nil {
		return err
	}
	convs := make([]string, len(ms))
	for i, m := range ms {
		convs[i] = m.ConversationID
	}
	// Back online meanwhile, through another node: who counted their
	// session told their peers.
	if online, err := n.PresenceStore.Online(ctx, ch.AppID, []string{ch.UserID}); err != nil {
		return err
	} else if len(online) > 0 {
		return nil
	}
	seen := ch.LastSeen.UTC().Truncate(time.Microsecond) // as stored
	if !seen.IsZero() {
		uk := userKey{ch.AppID, ch.UserID}
		n.mu.Lock()
		if seen.After(n.lastSeen[uk]) {
			n.lastSeen[uk] = seen
		}
		n.mu.Unlock()
	}
	return n.publishLive(tidings.LiveUpdate{AppID: ch.AppID, Name: protocol.EventPresence, UserIDs: []string{ch.UserID}},
		livePresence{Profile: u.Summary(), Online: false, Hidden: u.PresenceHidden, LastSeen: seen, Conversations: convs})
}

// Live-only updates between nodes. The payload is the node's own: every
// node runs the same binary.

// liveTyping is the payload of a typing update between nodes.
type liveTyping struct {
	User    string          `json:"user"`
	Profile tidings.Profile `json:"profile"`
}

// livePresence is the payload of a presence update between nodes: the
// user, whether they came online or went offline, and the conversations
// they take part in (whose online participants are told, as peersLocked).
type livePresence struct {
	Profile       tidings.Profile `json:"profile"`
	Online        bool            `json:"online"`
	LastSeen      time.Time       `json:"lastSeen"`
	Hidden        bool            `json:"hidden"`
	Conversations []string        `json:"conversations,omitempty"`
	// Others: not to the user's own sessions (their privacy switch
	// turned: only what the others see changes).
	Others bool `json:"others,omitempty"`
}

// publishLive hands a live-only update to every node, this one included.
func (n *Node) publishLive(u tidings.LiveUpdate, payload any) error {
	body, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	u.Payload = body
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
	defer cancel()
	if err := n.Broker.PublishLive(ctx, u); err != nil {
		if n.ctx.Err() == nil {
			n.Logger.Warn("realtime: publish a live update", "err", err, "name", u.Name)
		}
		return tidings.Errorf(tidings.EUnavailable, "the update could not reach the other nodes: retry")
	}
	return nil
}

// publishTyping tells every node that user types in ck, or stopped.
func (n *Node) publishTyping(ck convKey, user string, profile tidings.Profile, on bool) error {
	name := protocol.EventTypingOff
	if on {
		name = protocol.EventTyping
	}
	return n.publishLive(tidings.LiveUpdate{AppID: ck.app, Name: name, ConversationID: ck.conv, UserIDs: []string{user}},
		liveTyping{User: user, Profile: profile})
}

// publishPresence tells every node that s's user came online or went
// offline.
func (n *Node) publishPresence(s *Session, convs []string, online, hidden bool, lastSeen time.Time) {
	n.publishLive(tidings.LiveUpdate{AppID: s.app, Name: protocol.EventPresence, UserIDs: []string{s.user}},
		livePresence{Profile: s.profile, Online: online, Hidden: hidden, LastSeen: lastSeen, Conversations: convs})
}

// applyLive delivers a live-only update to this node's sessions.
func (n *Node) applyLive(u tidings.LiveUpdate) {
	switch u.Name {
	case protocol.EventTyping, protocol.EventTypingOff:
		var p liveTyping
		if err := json.Unmarshal(u.Payload, &p); err != nil {
			n.Logger.Warn("realtime: a typing update from another node is not valid", "err", err)
			return
		}
		ck := convKey{u.AppID, u.ConversationID}
		on := u.Name == protocol.EventTyping
		n.mu.Lock()
		targets, changed := n.typingLocked(ck, p.User, p.Profile, on)
		n.mu.Unlock()
		if changed {
			n.tellTyping(ck, p.User, p.Profile, on, targets)
		}
	case protocol.EventPresence:
		var p livePresence
		if err := json.Unmarshal(u.Payload, &p); err != nil {
			n.Logger.Warn("realtime: a presence update from another node is not valid", "err", err)
			return
		}
		n.mu.Lock()
		targets := n.presenceTargetsOfLocked(u.AppID, p.Profile.ID, p.Conversations, p.Hidden)
		n.mu.Unlock()
		if p.Others {
			targets = slices.DeleteFunc(targets, func(t *Session) bool { return t.user == p.Profile.ID })
		}
		n.tellPresence(u.AppID, p.Profile, p.Online, p.LastSeen, targets)
	case protocol.EventAccountEnds:
		n.applyAccountEnds(u)
	default:
		n.Logger.Warn("realtime: a live update of an unknown kind", "name", u.Name)
	}
}

// convIDs lists the conversations a session is subscribed to. n.mu is held.
func convIDs(s *Session) []string {
	out := make([]string, 0, len(s.subs))
	for _, ck := range s.subs {
		out = append(out, ck.conv)
	}
	return out
}
