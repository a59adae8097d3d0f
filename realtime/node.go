// Package realtime delivers updates to connected clients: the events of
// every committed change, to exactly the users who may see them, replayed
// from the event log after the last acknowledged ref when a client comes
// back, then live.
//
// A Node receives events from the store (it is the store's
// tidings.EventPublisher), keeps an index of the online sessions of each
// user and each conversation, and fans each event out to them: the event
// is encoded once, and each receiver gets it wrapped in an update frame.
// Clients (client.go) are connections whose transport (WebSocket, package
// ws; long polling, poll.go) hands their frames to the node; each account
// authenticated on a client is a Session (session.go).
//
// In a cluster (cluster.go, docs/cluster.md), a Node receives instead the
// ranges of final events that the node holding the tailer lease reads
// from the log and publishes on a tidings.Broker, and delivers them in
// position order, reading from the log what the broker lost.
package realtime

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/ratelimit"
)

// Node is the realtime hub of one server.
type Node struct {
	Apps     tidings.AppService
	Users    tidings.UserService
	Messages tidings.MessageService
	Log      tidings.EventLog
	Logger   *slog.Logger
	Now      func() time.Time

	// QueueSize bounds the updates waiting for one session during replay
	// (and, in transports, for one connection): past it the connection is
	// closed as a slow consumer. Default 4096.
	QueueSize int
	// ReplayBatch is how many events a replay reads at a time (default 256).
	ReplayBatch int
	// ReplayReads bounds the replays reading from the log at once
	// (default 4 × GOMAXPROCS, at least 16): the others wait their turn
	// here, not in the store's queue, where the auths of a reconnect
	// storm would wait behind thousands of them.
	ReplayReads int
	// AuthTimeout closes a connection with no authenticated account after
	// it (default 10s).
	AuthTimeout time.Duration
	// IdleTimeout closes a connection from which no command or reply came
	// for that long (0, the default: never).
	IdleTimeout time.Duration
	// TypingTimeout ends a typing indicator not refreshed for that long
	// (default 5s).
	TypingTimeout time.Duration
	// MaxConnsPerUser bounds the connections of one user (default 32).
	MaxConnsPerUser int
	// CommandRate and CommandBurst limit the commands of one connection per
	// second (defaults 50 and 100).
	CommandRate  float64
	CommandBurst float64
	// Limits, when set, limits the commands of each user and app on top:
	// give the HTTP server the same Limiter, so that a user has one
	// budget over both transports. Nil limits none.
	Limits *ratelimit.Limiter
	// CursorFlushInterval is how long an acknowledged ref may wait before
	// it is stored (default 1s; see cursorDelay); they are also stored
	// when a session ends and at shutdown.
	CursorFlushInterval time.Duration
	// PresenceLimit is the largest number of online sessions a
	// conversation may have for presence to go through it (default 100):
	// in larger ones (channels), a user coming online would otherwise
	// tell every other member, and N members connecting cost N² updates.
	PresenceLimit int
	// MaxPresenceSubscriptions bounds the users one account of a
	// connection may follow with presence.subscribe (default 1000; 0:
	// the command is refused).
	MaxPresenceSubscriptions int
	// LastSeen keeps when users were last seen; nil: Users, when it
	// implements tidings.LastSeenStore.
	LastSeen tidings.LastSeenStore

	// Batcher, when set (before Open), is told when the node starts and
	// ends delivering a batch of events, so that the transport can write
	// each connection once per batch rather than once per event.
	Batcher Batcher

	// Cluster mode (docs/cluster.md; set before Open). Broker, when set,
	// carries what nodes tell each other: the node then delivers the
	// ranges of final events published by the cluster's tailer (Publish is
	// not used; do not set the node as the store's publisher), and
	// live-only updates go through it too. It needs Tail (the log's final
	// events), Leases (which node tails the log) and NodeID (unique in the
	// cluster). PresenceStore, when set, counts the sessions of each user in
	// the whole cluster: for presence and MaxConnsPerUser. Without
	// Broker, the node works alone, from the events its store publishes.
	Broker        tidings.Broker
	Tail          tidings.LogTail
	Leases        tidings.Leases
	PresenceStore tidings.PresenceStore
	NodeID        string
	// Delivered, in cluster mode, is handed the events the node delivers,
	// in position order, each once: every final event of the cluster,
	// whichever node committed it (the push dispatcher takes the messages
	// sent from it, as a single node's store publishes them to it). It is
	// called on the delivery goroutine and must not block. Unused without
	// Broker: the store's publisher hands the events to whom needs them.
	Delivered tidings.EventPublisher
	// Conversations, with PresenceStore, lets presence.get tell the
	// participants online on other nodes too (of the first 1,000
	// participants); without it, only those online on this node.
	Conversations tidings.ConversationService
	// TailInterval is the pause between two reads of the log's final
	// events that found some (default 1ms); TailIdle the longest pause
	// when they find none (default 5ms; four times that while a node reads
	// the log itself after the broker lost ranges). TailBatch bounds the
	// events of one read (default 1000).
	TailInterval time.Duration
	TailIdle     time.Duration
	TailBatch    int
	// TailerTTL is the lease of the node that tails the log (default 2s):
	// when that node dies, another takes over after it.
	TailerTTL time.Duration
	// TailHeartbeat is how often the tailer publishes a range without
	// events when there is nothing else to publish (default 1s): a node
	// that lost the last range of a quiet time learns of it so.
	TailHeartbeat time.Duration
	// PresenceLease is the lease of this node's sessions in PresenceStore
	// (default 15s), renewed every third of it.
	PresenceLease time.Duration
	// AccessCheck is how often the node ends the sessions whose access
	// the app ended (deactivated, tokens revoked, deleted) without the
	// node being told: CloseUser's update lost between nodes, or a command
	// that changed the store directly. It reads again the users of its
	// sessions that Users logged since the last check (tidings.AccessLog),
	// or every one of them when Users keeps no such log (see
	// checkAccess). Default in cluster mode 1 minute, and it also runs
	// when the broker's ranges chain again after a loss; alone, 0 (never).
	AccessCheck time.Duration

	metrics *metrics
	bodies  *bodyCache[eventBody] // encoded events, shared by live delivery and replays
	// bodiesV2 is bodies in tidings.v2, filled when a tidings.v2 session
	// gets an event.
	bodiesV2 *bodyCache[eventBodyV2]
	targets  []*Session // dispatch's scratch: the delivery goroutine's only

	queueMu sync.Mutex
	queue   []*tidings.Event
	// queued counts the events published, taken the events taken from
	// queue and dispatched; waiters wait for taken to reach a count
	// (afterDispatch). Guarded by queueMu.
	queued, taken uint64
	waiters       []dispatchWaiter
	items         []clusterItem // in cluster mode, instead of queue
	wake          chan struct{}

	checkNow chan struct{} // wakes watchAccess at once
	// accessAt is the point of Users' access log (tidings.AccessLog) up
	// to which the users of this node's sessions were checked, when
	// accessKnown: watchAccess's own.
	accessAt    int64
	accessKnown bool
	// closes counts the calls of closeUser: an auth that saw none while
	// it read the user and indexed its session need not read the user
	// again (see auth).
	closes atomic.Uint64

	cluster *clusterState // cluster mode only
	pos     atomic.Int64  // the position delivered up to (cluster mode)

	mu       sync.Mutex
	convs    map[convKey]*convSubs  // the sessions of each conversation, with the seq from which it is theirs
	users    map[userKey][]*Session // most users have one session on a node: a slice, not a map, of them
	clients  map[*Client]struct{}
	checks   checkQueue // the clients by when the tick checks them
	due      []*Client  // the tick's clients due; its own
	sessions int
	typing   map[typingKey]typingState
	people   map[userKey]*presenceState        // the users with a live session here
	watchers map[userKey]map[*Session]struct{} // the sessions subscribed to a user's presence
	lastSeen map[userKey]time.Time             // when users went offline, not stored yet

	acksMu sync.Mutex
	acks   map[deviceKey]*cursorState // acknowledged refs, stored by flushCursors
	// replies lists the sessions whose clients replied since their
	// replies were last noted into acks (Session.replied, noteReplies).
	replies atomic.Pointer[Session]
	// notingMu is held while replies are noted, so that a reader of acks
	// that notes them first waits for a noting under way (noteReplies).
	notingMu sync.Mutex

	closing bool           // Shutdown has begun; guarded by mu
	tasks   sync.WaitGroup // the goroutines of clients (auth, replay); Add under mu, while not closing

	warm        chan func()   // hands work to an idle warm worker (goWarm)
	replayReads chan struct{} // a token per replay reading the log (ReplayReads)
	warmWorkers atomic.Int32  // the warm workers running

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// commandCtx is the context of the commands that start now
	// (commandContext); commandMu makes the next one.
	commandCtx atomic.Pointer[commandDeadline]
	commandMu  sync.Mutex
}

// commandTimeout is how long a command (a send included) may take before
// its context ends: the client is answered unavailable. commandShare is
// how long the commands that start one after the other share a context:
// each gets commandTimeout to commandTimeout+commandShare.
const (
	commandTimeout = 30 * time.Second
	commandShare   = time.Second
)

type commandDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc // kept, never called: it ends at its deadline, or with the node
	until  time.Time          // the last start that may share it
}

// commandContext returns the context of a command that starts now: it
// ends with the node, or commandTimeout to commandTimeout+commandShare
// from now. The commands that start within commandShare share one: a
// context with a deadline of its own per send (its timer set, then
// stopped at the send's end) was 2 to 3 % of the server's CPU in small
// rooms (docs/benchmarks.md, "One deadline for the commands of a
// second").
func (n *Node) commandContext() context.Context {
	now := time.Now()
	if d := n.commandCtx.Load(); d != nil && !now.After(d.until) {
		return d.ctx
	}
	n.commandMu.Lock()
	defer n.commandMu.Unlock()
	if d := n.commandCtx.Load(); d != nil && !now.After(d.until) {
		return d.ctx
	}
	ctx, cancel := context.WithTimeout(n.ctx, commandTimeout+commandShare)
	n.commandCtx.Store(&commandDeadline{ctx: ctx, cancel: cancel, until: now.Add(commandShare)})
	return ctx
}

type convKey struct{ app, conv string }
type userKey struct{ app, user string }

// NewNode returns a node with default settings; set its services, then Open it.
func NewNode() *Node {
	return &Node{
		Logger: slog.Default(), Now: time.Now,
		QueueSize: 4096, ReplayBatch: 256, AuthTimeout: 10 * time.Second, TypingTimeout: 5 * time.Second,
		MaxConnsPerUser: 32, CommandRate: 50, CommandBurst: 100, CursorFlushInterval: time.Second, PresenceLimit: 100,
		MaxPresenceSubscriptions: 1000,
		TailInterval:             time.Millisecond, TailIdle: 5 * time.Millisecond, TailBatch: 1000,
		TailerTTL: 2 * time.Second, TailHeartbeat: time.Second, PresenceLease: 15 * time.Second,
		metrics: newMetrics(), bodies: newBodyCache[eventBody](), bodiesV2: newBodyCache[eventBodyV2](), wake: make(chan struct{}, 1),
	}
}

// Open starts the node's goroutines.
func (n *Node) Open() error {
	if n.metrics == nil {
		n.metrics = newMetrics()
	}
	if n.wake == nil {
		n.wake = make(chan struct{}, 1)
	}
	n.convs = make(map[convKey]*convSubs)
	n.users = make(map[userKey][]*Session)
	n.clients = make(map[*Client]struct{})
	n.typing = make(map[typingKey]typingState)
	n.people = make(map[userKey]*presenceState)
	n.watchers = make(map[userKey]map[*Session]struct{})
	n.lastSeen = make(map[userKey]time.Time)
	n.acks = make(map[deviceKey]*cursorState)
	n.checkNow = make(chan struct{}, 1)
	n.warm = make(chan func())
	n.replayReads = make(chan struct{}, cmp.Or(n.ReplayReads, max(16, 4*runtime.GOMAXPROCS(0))))
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if n.clustered() {
		n.TailInterval = cmp.Or(n.TailInterval, time.Millisecond)
		n.TailIdle = max(cmp.Or(n.TailIdle, 5*time.Millisecond), n.TailInterval)
		n.TailBatch = cmp.Or(n.TailBatch, 1000)
		n.TailerTTL = cmp.Or(n.TailerTTL, 2*time.Second)
		n.TailHeartbeat = cmp.Or(n.TailHeartbeat, time.Second)
		n.PresenceLease = cmp.Or(n.PresenceLease, 15*time.Second)
		n.AccessCheck = cmp.Or(n.AccessCheck, time.Minute)
		if err := n.openCluster(); err != nil {
			n.cancel()
			return err
		}
		n.wg.Add(4)
		go n.runCluster()
		go n.tail()
		go n.tick()
		go n.watchAccess()
		if n.PresenceStore != nil {
			n.wg.Add(2)
			go n.renewPresence()
			go n.watchExpired()
		}
		return nil
	}
	n.wg.Add(2)
	go n.run()
	go n.tick()
	if n.AccessCheck > 0 {
		n.wg.Add(1)
		go n.watchAccess()
	}
	return nil
}

// Close is Shutdown without a time limit.
func (n *Node) Close() error { return n.Shutdown(context.Background()) }

// Shutdown closes every connection with "going away" (clients reconnect
// and resume elsewhere or later), stores the cursors of all together (in
// writes of cursorChunk),
// and stops the node: its own goroutines and those of its clients (auth,
// replay). It returns ctx's error if that took longer than ctx allows.
func (n *Node) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	n.closing = true // no new client, session or goroutine from now on
	clients := make([]*Client, 0, len(n.clients))
	for c := range n.clients {
		clients = append(clients, c)
	}
	n.mu.Unlock()
	// Every client at once: they are ended in memory, their connections
	// told to close, and their cursors stored together below, not one
	// write (and one fsync) per client.
	for _, c := range clients {
		if c.end(false) {
			c.t.Close(protocol.CloseGoingAway, "the server is shutting down: reconnect")
		}
	}
	err := n.flushCursors(ctx)
	if err != nil {
		err = fmt.Errorf("realtime: store the cursors: %w", err)
	}
	if lerr := n.flushLastSeen(ctx); lerr != nil && err == nil {
		err = fmt.Errorf("realtime: store when users were last seen: %w", lerr)
	}
	n.cancel()
	done := make(chan struct{})
	go func() {
		n.wg.Wait() // the tailer has released its lease
		n.tasks.Wait()
		if n.cluster != nil {
			n.cluster.sub.Close()
		}
		close(done)
	}()
	select {
	case <-done:
		return err
	case <-ctx.Done():
		if err == nil {
			err = fmt.Errorf("realtime: goroutines still running: %w", ctx.Err())
		}
		return err
	}
}

// track counts a task that Shutdown waits for (n.tasks.Done when it
// ends), unless the node is shutting down: then it returns false.
func (n *Node) track() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closing {
		return false
	}
	n.tasks.Add(1)
	return true
}

// goTracked runs f on a goroutine that Shutdown waits for, unless the
// node is shutting down: then it returns false and f does not run.
func (n *Node) goTracked(f func()) bool {
	if !n.track() {
		return false
	}
	go func() {
		defer n.tasks.Done()
		f()
	}()
	return true
}

// goWarm is goTracked on one of the node's warm workers when one is
// idle: long-lived goroutines whose stacks have grown already. An auth
// goes deep (the token, the store's SQLite calls), and on a fresh
// goroutine its stack was copied four times (2 to 32 KiB) on every
// connect: a tenth of the server's CPU in a burst of connects. Up to
// maxWarmWorkers workers are started as needed and stay, idle, until the
// node stops; past them, f runs on a goroutine of its own. f must not
// block for long: a worker held is one a connect does not find.
func (n *Node) goWarm(f func()) bool {
	if !n.track() {
		return false
	}
	select {
	case n.warm <- f:
		return true
	default:
	}
	if n.warmWorkers.Add(1) <= maxWarmWorkers {
		go n.warmWorker(f)
		return true
	}
	n.warmWorkers.Add(-1)
	go func() {
		defer n.tasks.Done()
		f()
	}()
	return true
}

// maxWarmWorkers bounds the warm workers of a node (goWarm): each keeps
// a stack of about 32 KiB while idle (4 MiB for all). Auths wait on the
// store (a device's first cursor is a write): in a burst of connects
// many run at once, and those past the bound grow a fresh stack each
// (16 workers left a tenth of the CPU in stack copies, with 64 clients
// connecting at once).
const maxWarmWorkers = 128

// warmWorker runs f, then the functions goWarm hands it, until the node
// stops.
func (n *Node) warmWorker(f func()) {
	defer n.warmWorkers.Add(-1)
	for {
		func() {
			defer n.tasks.Done()
			f()
		}()
		select {
		case f = <-n.warm:
		case <-n.ctx.Done():
			return
		}
	}
}

// Publish receives the events of committed changes, in commit order. It
// never blocks: events are queued for the node's goroutine. It may be
// called from NewNode on: events published before Open wait for it. In
// cluster mode (Broker set) it does nothing: the node delivers the ranges
// the cluster's tailer publishes.
func (n *Node) Publish(events ...*tidings.Event) {
	if n.Broker != nil {
		return
	}
	n.queueMu.Lock()
	n.queue = append(n.queue, events...)
	n.queued += uint64(len(events))
	n.queueMu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Batcher is told when the node delivers a batch of events: the writes to
// connections between BeginBatch and EndBatch may wait for EndBatch, so
// that the frames of several events go out in one write.
type Batcher interface {
	BeginBatch()
	EndBatch()
}

// run fans the queued events out, one at a time, in order.
//
// The events queued together are delivered in one batch (see Batcher),
// and so are those queued while it is delivered (up to batchDeliveries
// deliveries, or batchHold): at saturation, each connection gets the
// frames of several events in one write. A lone event is not held: its
// first receivers are written to while the last are still being queued
// (with 10,000 receivers, their queuing takes milliseconds); the events
// that follow it meanwhile are held.
func (n *Node) run() {
	defer n.wg.Done()
	var batch []*tidings.Event
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.wake:
		}
		batching, delivered, start := false, 0, time.Now()
		for {
			n.queueMu.Lock()
			batch, n.queue = n.queue, batch[:0]
			n.queueMu.Unlock()
			if len(batch) == 0 {
				break
			}
			if !batching && n.Batcher != nil && (len(batch) > 1 || delivered > 0) {
				batching = true
				n.Batcher.BeginBatch()
			}
			for i, ev := range batch {
				delivered += n.dispatch(ev)
				batch[i] = nil
			}
			n.dispatched(len(batch))
			if delivered >= batchDeliveries || time.Since(start) >= batchHold {
				break // the next wake delivers what came meanwhile
			}
		}
		if batching {
			n.Batcher.EndBatch()
		}
	}
}

// dispatchWaiter is closed once the node has dispatched the first at
// events published.
type dispatchWaiter struct {
	at   uint64
	done chan struct{}
}

// afterDispatch returns a channel closed once every event published so
// far has been dispatched to the sessions.
func (n *Node) afterDispatch() <-chan struct{} {
	done := make(chan struct{})
	n.queueMu.Lock()
	defer n.queueMu.Unlock()
	if n.taken >= n.queued {
		close(done)
		return done
	}
	n.waiters = append(n.waiters, dispatchWaiter{n.queued, done})
	return done
}

// dispatched notes that k more events were dispatched.
func (n *Node) dispatched(k int) {
	n.queueMu.Lock()
	defer n.queueMu.Unlock()
	n.taken += uint64(k)
	kept := n.waiters[:0]
	for _, w := range n.waiters {
		if w.at <= n.taken {
			close(w.done)
		} else {
			kept = append(kept, w)
		}
	}
	clear(n.waiters[len(kept):])
	n.waiters = kept
}

// batchDeliveries and batchHold bound a batch made longer by the events
// that came while it was delivered: no connection waits for more than
// about a millisecond of queuing.
const (
	batchDeliveries = 4096
	batchHold       = time.Millisecond
)

// dispatch delivers one durable event to the sessions that may see it,
// keeping the conversation index in step with membership events.
func (n *Node) dispatch(ev *tidings.Event) (delivered int) {
	targets := n.audience(ev, n.targets[:0])
	frames := framesFor(ev, n)
	for _, s := range targets {
		s.deliverEvent(ev.Seq, frames)
	}
	clear(targets) // keeps no session alive
	n.targets = targets[:0]
	if ev.Name == tidings.EventProfileUpdate {
		n.presenceSetting(ev) // the privacy switch may have turned
	}
	if ev.Name == tidings.EventMessageSent && ev.Actor != nil {
		n.setTypingOff(ev.AppID, ev.ConversationID, ev.Actor.ID) // sending ends typing
	}
	n.metrics.events.Inc()
	n.metrics.deliveries.Add(float64(len(targets)))
	return len(targets)
}

// audience appends to targets the sessions an event goes to, and updates the
// conversation index: a participant added starts receiving with that
// event; a participant removed receives that event, and nothing after.
func (n *Node) audience(ev *tidings.Event, targets []*Session) []*Session {
	n.mu.Lock()
	defer n.mu.Unlock()
	// Under n.mu, so that a session whose conversations are indexed
	// after this reads a position at least ev's (see Session.replay).
	if ev.Seq > n.pos.Load() {
		n.pos.Store(ev.Seq)
	}
	if ev.ConversationID == "" {
		targets = append(targets, n.users[userKey{ev.AppID, ev.UserID}]...)
		return n.sharersLocked(ev, targets)
	}
	ck := convKey{ev.AppID, ev.ConversationID}
	if ev.Name == tidings.EventConversationCreate {
		// The first participants see the conversation from its creation.
		var p tidings.ConversationPayload
		if err := json.Unmarshal(ev.Payload, &p); err == nil {
			for _, np := range p.Participants {
				for _, s := range n.users[userKey{ev.AppID, np.UserID}] {
					n.subscribeLocked(ck, s, ev.Seq)
				}
			}
		}
	}
	if ev.Name == tidings.EventParticipantAdded && ev.UserID != "" {
		for _, s := range n.users[userKey{ev.AppID, ev.UserID}] {
			n.subscribeLocked(ck, s, ev.Seq)
		}
	}
	subs := n.convs[ck]
	targets = slices.Grow(targets, subs.len())
	for s, from := range subs.all() {
		if ev.Seq >= from {
			targets = append(targets, s)
		}
	}
	if ev.Name == tidings.EventParticipantRemoved && ev.UserID != "" {
		for _, s := range n.users[userKey{ev.AppID, ev.UserID}] {
			n.unsubscribeLocked(ck, s)
			if s.removed != nil { // registering: see register
				s.removed[ck] = ev.Seq
			}
		}
	}
	return targets
}

// sharersLocked adds to targets the sessions of the other users who take
// part, at the time of a profile event, in one of the conversations its
// user took part in (ev.Conversations): each once, however many
// conversations they share. The index is in step with the membership
// events dispatched before, so that it holds the participants as of ev.
func (n *Node) sharersLocked(ev *tidings.Event, targets []*Session) []*Session {
	if len(ev.Conversations) == 0 {
		return targets
	}
	var seen map[*Session]struct{}
	if len(ev.Conversations) > 1 {
		seen = make(map[*Session]struct{})
	}
	for _, conv := range ev.Conversations {
		for s, from := range n.convs[convKey{ev.AppID, conv}].all() {
			if s.user == ev.UserID || ev.Seq < from {
				continue
			}
			if seen != nil {
				if _, ok := seen[s]; ok {
					continue
				}
				seen[s] = struct{}{}
			}
			targets = append(targets, s)
		}
	}
	return targets
}

func (n *Node) subscribeLocked(ck convKey, s *Session, from int64) {
	m := n.convs[ck]
	if m == nil {
		m = &convSubs{}
		n.convs[ck] = m
	}
	if m.add(s, from) {
		s.subs = append(s.subs, ck) // not there: m did not have s
	}
}

func (n *Node) unsubscribeLocked(ck convKey, s *Session) {
	if m := n.convs[ck]; m != nil {
		m.remove(s)
		if m.len() == 0 {
			delete(n.convs, ck)
		}
	}
	if i := slices.Index(s.subs, ck); i >= 0 {
		s.subs = slices.Delete(s.subs, i, i+1)
	}
}

// register indexes a session by its user and conversations. It is called
// before the session's replay starts, so that nothing committed after the
// replay's first read is missed.
//
// The conversations are read from the store with no lock held, while
// events go on being dispatched: the session is indexed by its user
// first, so that a participantAdded dispatched from then on subscribes it
// even if the list does not have it, and the removals of its user
// dispatched meanwhile are noted, so that a conversation the list still
// has (read before the removal was committed) is not subscribed again.
func (n *Node) register(ctx context.Context, s *Session) error {
	n.mu.Lock()
	s.subs = nil
	s.removed = make(map[convKey]int64)
	uk := userKey{s.app, s.user}
	n.users[uk] = append(n.users[uk], s)
	// The user's privacy switch is read below, after they are indexed: a
	// profile update dispatched from then on is newer than the read, and
	// wins (gen).
	var st *presenceState
	var gen uint64
	if !s.poll {
		if st = n.people[uk]; st == nil {
			st = &presenceState{}
			n.people[uk] = st
		}
		gen = st.gen
	}
	// Only a user not yet online is announced, and needs their switch.
	needSwitch := st != nil && (!st.online || s.first)
	n.sessions++
	n.mu.Unlock()
	var ms []tidings.Membership
	var read []tidings.UserPresence
	var err error
	store := n.lastSeenStore()
	if both, ok := n.Log.(MembershipPresenceReader); ok && needSwitch && store != nil && n.presenceIsUsers() {
		var p *tidings.UserPresence
		if ms, p, err = both.UserConversationsAndPresence(ctx, s.app, s.user); p != nil {
			read = []tidings.UserPresence{*p}
		}
	} else {
		ms, err = n.Log.UserConversations(ctx, s.app, s.user)
		if err == nil && needSwitch && store != nil {
			read, err = store.UsersPresence(ctx, s.app, []string{s.user})
		}
	}
	if err != nil {
		n.unregister(s)
		return err
	}
	n.mu.Lock()
	for _, m := range ms {
		ck := convKey{s.app, m.ConversationID}
		if removed, ok := s.removed[ck]; ok && removed >= m.FromSeq {
			continue // the span the list has ended while it was read
		}
		n.subscribeLocked(ck, s, m.FromSeq)
	}
	s.removed = nil
	s.indexed = n.pos.Load() // under n.mu, which audience raises it under
	var targets []*Session
	var convs []string
	announce := st != nil && !st.online
	if st != nil && n.PresenceStore != nil {
		announce = s.first // the user's first session in the cluster
	}
	if st != nil && (!st.online || announce) {
		if len(read) == 1 && st.gen == gen {
			st.hidden = read[0].Hidden
		}
		st.online = true
	}
	hidden := st != nil && st.hidden
	if announce {
		if n.clustered() {
			convs = convIDs(s)
		} else {
			targets = n.presenceTargetsLocked(s, hidden)
		}
	}
	n.mu.Unlock()
	if announce {
		if n.clustered() {
			n.publishPresence(s, convs, true, hidden, time.Time{})
		} else {
			n.tellPresence(s.app, s.profile, true, time.Time{}, targets)
		}
	}
	n.metrics.sessions.Inc()
	return nil
}

// presenceIsUsers says whether the node's presence store
// (lastSeenStore) is its Users: unset, or set to the same service (as
// tidings serve does).
func (n *Node) presenceIsUsers() bool {
	return n.LastSeen == nil || any(n.LastSeen) == any(n.Users)
}

// MembershipPresenceReader is an EventLog that reads a user's
// conversations (UserConversations) and their presence setting
// (tidings.LastSeenStore.UsersPresence) together, as registering a user's
// first session needs both (sqlite: one query). register uses it only
// when the node's presence store is its Users (presenceIsUsers), which
// must then be of the same store as the log.
type MembershipPresenceReader interface {
	// UserConversationsAndPresence returns what UserConversations and
	// UsersPresence (of the one user; nil when there is no such user)
	// would.
	UserConversationsAndPresence(ctx context.Context, app, user string) ([]tidings.Membership, *tidings.UserPresence, error)
}

// streamReach returns the position of the newest event of a user's
// stream committed now (0 when none is above the node's position). A
// session's replay reaches it before turning live: its conversations
// were read from the store by register, which may be ahead of the node's
// delivery (a removal committed but not delivered yet), and the events
// the list no longer has would reach it neither live nor, above the
// node's position, from the log. Any read of the stream after register
// that sees its end tells as much: the replay calls streamReach only when
// none of its reads did.
func (n *Node) streamReach(ctx context.Context, app, user string) (int64, error) {
	const limit = 1000
	after, reach := n.position(), int64(0)
	for {
		evs, err := n.Log.UserEvents(ctx, app, user, after, limit)
		if tidings.ErrorCode(err) == tidings.EResyncRequired {
			return 0, nil // the replay says so
		}
		if err != nil || len(evs) == 0 {
			return reach, err
		}
		reach = evs[len(evs)-1].Seq
		if len(evs) < limit {
			return reach, nil
		}
		after = reach
	}
}

// unregister removes a session from the index. When it was the last
// live session of its user, the user goes offline: those who see their
// presence are told, and the time is kept as their last seen.
func (n *Node) unregister(s *Session) {
	n.mu.Lock()
	uk := userKey{s.app, s.user}
	i := slices.Index(n.users[uk], s)
	if i < 0 {
		n.mu.Unlock()
		return
	}
	if us := n.users[uk]; len(us) == 1 {
		delete(n.users, uk)
	} else {
		n.users[uk] = slices.Delete(us, i, i+1)
	}
	var targets []*Session
	var now time.Time
	announce, hidden := false, false
	if st := n.people[uk]; !s.poll && st != nil && n.liveSessionsLocked(uk) == 0 {
		delete(n.people, uk)
		announce, hidden = st.online, st.hidden
	}
	var convs []string
	if n.clustered() {
		convs = convIDs(s)
	} else if announce {
		now = n.Now().UTC().Truncate(time.Microsecond) // as stored
		n.lastSeen[uk] = now
		targets = n.presenceTargetsLocked(s, hidden)
	}
	subs := s.subs
	s.subs = nil // unsubscribeLocked need not look for each in it
	for _, ck := range subs {
		n.unsubscribeLocked(ck, s)
	}
	for u := range s.watching {
		n.unwatchLocked(s, u)
	}
	n.sessions--
	n.mu.Unlock()
	if n.clustered() {
		if n.PresenceStore != nil {
			announce = false
		}
		if s.counted {
			// The cluster says whether it was the user's last session.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			last, err := n.PresenceStore.Disconnect(ctx, s.app, s.user, n.NodeID)
			cancel()
			if err != nil {
				n.Logger.Warn("realtime: end a session in the presence store", "err", err, "app", s.app, "user", s.user)
			}
			announce = last
			s.stayed = !last && err == nil
		}
		if announce {
			now = n.Now().UTC().Truncate(time.Microsecond)
			n.mu.Lock()
			n.lastSeen[uk] = now
			n.mu.Unlock()
			n.publishPresence(s, convs, false, hidden, now)
		}
	} else if announce {
		n.tellPresence(s.app, s.profile, false, now, targets)
	}
	n.metrics.sessions.Dec()
}

// liveSessionsLocked counts the sessions of a user but polls: those that
// make the user present.
func (n *Node) liveSessionsLocked(uk userKey) int {
	count := 0
	for _, s := range n.users[uk] {
		if !s.poll {
			count++
		}
	}
	return count
}

// userSessions counts the sessions of a user on this node.
func (n *Node) userSessions(app, user string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.users[userKey{app, user}])
}

// tick runs the timers of the node: cursor flushes, typing expiry, token
// expiry, authentication and idle timeouts.
func (n *Node) tick() {
	defer n.wg.Done()
	t := time.NewTicker(n.tickInterval())
	defer t.Stop()
	lastFlush := n.Now()
	for {
		select {
		case <-n.ctx.Done():
			return // Shutdown has stored the cursors
		case <-t.C:
		}
		now := n.Now()
		if now.Sub(lastFlush) >= min(n.CursorFlushInterval, time.Second) {
			n.flushDueCursors(n.ctx)
			n.flushLastSeen(n.ctx)
			lastFlush = now
		}
		n.expireTyping(now)
		n.checkClients(now)
	}
}

func (n *Node) tickInterval() time.Duration {
	d := min(n.CursorFlushInterval, n.TypingTimeout/5, time.Second)
	return max(d, 10*time.Millisecond)
}

// cursorChunk is the most cursors flushCursors stores in one write.
const cursorChunk = 500

// deviceKey names the cursor of one device of a user.
type deviceKey struct{ app, user, device string }

// cursorState is a device's acknowledged ref, and the one last stored;
// due is when the tick stores it (see cursorDelay).
type cursorState struct {
	acked, saved int64
	touched, due time.Time
}

// cursorDelay is how long after a device acknowledges a ref that was not
// stored yet the tick stores it. With a CursorFlushInterval of a second
// or less, the tick stores every cursor acknowledged since its last
// flush, once a CursorFlushInterval. With a longer one, each device waits
// a random time in the second half of the interval: devices that
// acknowledged in the same second (every receiver of one message) are
// then stored over several seconds rather than all in one write, and each
// at most once a CursorFlushInterval however often it acknowledges.
func (n *Node) cursorDelay() time.Duration {
	d := n.CursorFlushInterval
	if d <= time.Second {
		return 0
	}
	return d - rand.N(d/2)
}

// noteReplies notes the replies recorded since it last ran
// (Session.replied) as acknowledgements: the node's tick runs it (with the
// cursors' flush), and so does every reader of acks first, so that a
// reply is never missed by what reads them (a flush, a resume).
func (n *Node) noteReplies() {
	// Held while noting: another goroutine's noting under way (the
	// tick's) has taken the list, and a reader that found it empty must
	// not read acks before that noting is done.
	n.notingMu.Lock()
	defer n.notingMu.Unlock()
	s := n.replies.Swap(nil)
	if s == nil {
		return
	}
	now := n.Now()
	for s != nil {
		next := s.nextReply
		s.nextReply = nil
		// Cleared before the ref is read: a reply recorded from here on
		// queues the session again, or is read below.
		s.replyQueued.Store(false)
		s.ackAt(s.repliedSeq.Load(), now)
		s = next
	}
}

// noteAck records a device's acknowledged ref in memory; flushCursors
// stores it. A reconnecting device resumes from it even before it is
// stored (see resumePoint).
func (n *Node) noteAck(k deviceKey, seq int64, now time.Time) {
	n.acksMu.Lock()
	defer n.acksMu.Unlock()
	c := n.acks[k]
	if c == nil {
		c = &cursorState{}
		n.acks[k] = c
	}
	if seq > c.acked && c.acked == c.saved {
		c.due = now.Add(n.cursorDelay())
	}
	c.acked = max(c.acked, seq)
	c.touched = now
}

// ackedInMemory returns a device's acknowledged ref not yet forgotten.
func (n *Node) ackedInMemory(k deviceKey) int64 {
	n.noteReplies()
	n.acksMu.Lock()
	defer n.acksMu.Unlock()
	if c := n.acks[k]; c != nil {
		return c.acked
	}
	return 0
}

// flushCursors stores the refs acknowledged since the last flush: of the
// given devices only when keys are given, else of every device.
func (n *Node) flushCursors(ctx context.Context, keys ...deviceKey) error {
	return n.storeCursors(ctx, n.unsaved(keys, false))
}

// flushDueCursors stores the refs acknowledged since the last flush by
// the devices whose time has come (cursorState.due), and forgets the
// cursors stored and untouched for a minute.
func (n *Node) flushDueCursors(ctx context.Context) error {
	return n.storeCursors(ctx, n.unsaved(nil, true))
}

// unsaved returns the cursors acknowledged past what was stored, of the
// given devices, or else of every device (only those due, if dueOnly),
// and marks them stored.
func (n *Node) unsaved(keys []deviceKey, dueOnly bool) []tidings.Cursor {
	n.noteReplies()
	n.acksMu.Lock()
	defer n.acksMu.Unlock()
	var cs []tidings.Cursor
	now := n.Now()
	save := func(k deviceKey, c *cursorState) {
		if c.acked > c.saved {
			cs = append(cs, tidings.Cursor{AppID: k.app, UserID: k.user, Device: k.device, Seq: c.acked})
			c.saved = c.acked
		}
	}
	if len(keys) > 0 {
		for _, k := range keys {
			if c := n.acks[k]; c != nil {
				save(k, c)
			}
		}
		return cs
	}
	for k, c := range n.acks {
		if dueOnly && c.due.After(now) {
			continue
		}
		save(k, c)
		if c.acked == c.saved && now.Sub(c.touched) > time.Minute {
			delete(n.acks, k)
		}
	}
	return cs
}

// storeCursors stores cs, which unsaved marked stored; those that could
// not be stored are marked unsaved again, for the next flush.
func (n *Node) storeCursors(ctx context.Context, cs []tidings.Cursor) error {
	// In writes of cursorChunk cursors at most, one after the other: the
	// store's writer commits the sends queued meanwhile between two, so a
	// flush of thousands of cursors (every receiver of a busy second)
	// does not hold them up for its whole length.
	//
	// In the order of the stores' key (app, user, device), so that each
	// write covers a range of the cursors table rather than rows all over
	// it: unsorted (acks is a map), 500 cursors of 10,000 devices fell on
	// most of the table's pages, each written again to the log and the
	// file. Sorted, the writes of one flush share out the pages between
	// them (docs/benchmarks.md, "… cursors stored in key order").
	slices.SortFunc(cs, tidings.CompareCursorKeys)
	var errs []error
	for len(cs) > 0 {
		chunk := cs[:min(len(cs), cursorChunk)]
		cs = cs[len(chunk):]
		if err := n.Log.SaveCursors(ctx, chunk); err != nil {
			if ctx.Err() == nil {
				n.Logger.Error("save cursors", "err", err, "count", len(chunk))
			}
			// Not stored: the next flush tries again.
			n.acksMu.Lock()
			for _, cur := range chunk {
				if c := n.acks[deviceKey{cur.AppID, cur.UserID, cur.Device}]; c != nil && c.saved == cur.Seq {
					c.saved = 0
				}
			}
			n.acksMu.Unlock()
			errs = append(errs, err)
			continue
		}
		n.metrics.cursors.Add(float64(len(chunk)))
	}
	return errors.Join(errs...)
}

// checkClients closes the clients whose time is up: no account in time,
// idle too long, or every token expired.
// Only the clients whose checkAt has passed are checked (n.checks): on a
// node of idle connections, most have nothing due for minutes.
func (n *Node) checkClients(now time.Time) {
	n.due = n.checks.due(now.UnixNano(), n.due[:0])
	for i, c := range n.due {
		c.check(now)
		n.checks.schedule(c, c.checkAt.Load())
		n.due[i] = nil
	}
}
