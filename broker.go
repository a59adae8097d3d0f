package tidings

import (
	"context"
	"encoding/json"
	"time"
)

// The interfaces of this file are what a cluster of nodes needs besides a
// shared store (docs/cluster.md); realtime.Node uses them when given a
// Broker. One node runs without them, with its in-process hub.

// Broker carries what one node must tell the others: the ranges of
// events that became final (published by the cluster's tailer, see
// LogTail), the live-only updates (typing, presence, closed accounts), and
// revocations. It is at most once: the event log stays the source of
// truth, and a node that misses a range reads it from the log. NATS
// implements it for clusters; a single node needs none.
type Broker interface {
	// PublishRange hands a range of final events to every node. Ranges
	// are published in order, each starting where the previous ended.
	PublishRange(ctx context.Context, r EventRange) error
	// PublishLive hands a live-only update to the nodes that hold
	// sessions of its receivers.
	PublishLive(ctx context.Context, u LiveUpdate) error
	// Subscribe calls h with what is published, from now on, until ctx
	// ends or the subscription is closed. Calls are sequential.
	Subscribe(ctx context.Context, h BrokerHandler) (Subscription, error)
}

// BrokerHandler receives what the nodes of a cluster publish.
type BrokerHandler interface {
	// Range is called with each range of final events. A range whose From
	// is not the To of the last one received means ranges were missed:
	// the node reads (lastTo, From] from the log before delivering it.
	Range(r EventRange)
	Live(u LiveUpdate)
	// Lost says that messages may have been missed (the broker restarted,
	// the node was cut off): the node tails the log itself until ranges
	// chain again.
	Lost()
}

// Subscription ends a Subscribe.
type Subscription interface {
	Close() error
}

// EventRange is every event with a position in (From, To], in position
// order, once all those positions are final: committed or abandoned for
// good, so that no event can later appear in the range. Delivering ranges
// in order keeps refs meaning "everything up to N" with writers on every
// node.
type EventRange struct {
	From, To int64
	Events   []*Event
}

// LogTail is the store's side of delivery in a cluster: it tells which
// positions are final. On PostgreSQL a position is final once every
// transaction that was running when its event's commit was seen has
// ended (docs/cluster.md); on SQLite, with one writer, every committed
// position is final at once.
type LogTail interface {
	// Final returns the events with positions after `after` up to the
	// largest final position, at most limit of them (To is then the
	// position of the last one). It returns an empty range with To ==
	// after when nothing more is final. Its events are as the store
	// publishes them: a profile event names the conversations it goes
	// through (Event.Conversations), which nodes need to deliver it.
	Final(ctx context.Context, after int64, limit int) (EventRange, error)
}

// LiveUpdate is an update that is never stored: typing, presence, the end
// of an account on a connection. The node that holds a receiver's session
// delivers it; the others drop it.
type LiveUpdate struct {
	AppID string
	// Name is the event name (conversation.participantTyping, presence.update,
	// account.closed).
	Name string
	// ConversationID, for typing: the online participants receive it.
	ConversationID string
	// UserIDs are the receivers, when the update is for given users
	// (presence, account.closed).
	UserIDs []string
	Payload json.RawMessage
}

// PresenceStore counts the sessions of each user across the cluster: who is
// online (presence updates, presence.get), and how many connections a user
// holds (max-conns-per-user). A node's sessions are leased: when a node
// dies, its sessions end with its lease, so that its users go offline
// rather than stay online forever.
type PresenceStore interface {
	// Connect counts a session of the user on node. It returns
	// ERateLimited when the user already holds limit sessions in the
	// cluster (0: no limit), and whether this is the user's first session.
	Connect(ctx context.Context, appID, userID, node string, limit int) (first bool, err error)
	// Disconnect ends a session, and reports whether it was the user's
	// last.
	Disconnect(ctx context.Context, appID, userID, node string) (last bool, err error)
	// Online returns those of userIDs who hold at least one session.
	Online(ctx context.Context, appID string, userIDs []string) ([]string, error)
	// Renew extends the lease of every session of node by lease. A node
	// renews well within the lease while it lives.
	Renew(ctx context.Context, node string, lease time.Duration) error
	// Expired removes the sessions of the nodes whose lease lapsed (they
	// died, or were cut off longer than their lease), and returns the
	// users who so lost their last session in the cluster: they went
	// offline without any node ending a session, so no node told their
	// peers. A user is returned once, to one caller, however many nodes
	// call it; one node at a time (the log's tailer) calls it
	// periodically.
	Expired(ctx context.Context) ([]PresenceChange, error)
}

// PresenceChange is a user who went offline because the lease of the
// node that held their last session lapsed.
type PresenceChange struct {
	AppID  string
	UserID string
	// LastSeen is the last renewal of that node's lease (as far as the
	// store knows it): the last time the user was known online.
	LastSeen time.Time
}

// Authenticator turns credentials into a caller, the same way on every
// node: a user token or a server key. Implementations may cache what they
// verified; a revocation (a server key rotated, a user deleted, a signing
// secret changed) reaches every node's cache through Revocations.
type Authenticator interface {
	// Authenticate returns the caller a credential stands for and until
	// when it may be trusted without asking again. EUnauthenticated for a
	// bad, expired or revoked credential.
	Authenticate(ctx context.Context, credential string) (Caller, time.Time, error)
	// Revoke tells every node to forget what it cached about r at once.
	Revoke(ctx context.Context, r Revocation) error
}

// Revocation names what no node may trust any longer: a whole app's
// credentials (AppID alone: its key rotated, its secret changed) or one
// user's (AppID and UserID: the user deleted).
type Revocation struct {
	AppID  string
	UserID string
}

// Leases elects one node of a cluster for a task that must run once (the
// log tailer, which publishes the ranges of final events). A lease held
// by a node that stops renewing it ends by itself after its ttl, so that
// another node takes over. NATS (a JetStream key-value bucket with a TTL)
// implements it for clusters; a single node needs none.
type Leases interface {
	// Hold takes the lease name for node, or renews it if node holds it
	// already, for ttl. It reports whether node holds it now; false, nil
	// when another node holds it.
	Hold(ctx context.Context, name, node string, ttl time.Duration) (bool, error)
	// Release gives the lease up at once if node holds it.
	Release(ctx context.Context, name, node string) error
}
