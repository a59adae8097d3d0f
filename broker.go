package tidings

import (
	"context"
	"encoding/json"
	"time"
)

// The interfaces of this file are what a cluster of nodes needs besides a
// shared store (docs/cluster.md). They are declared, not yet used: one
// node runs without them, with its in-process hub.

// Broker carries what one node must tell the others: the events it
// committed, how far its positions are persisted, and the live-only
// updates (typing, presence, closed accounts). It is at most once: the
// event log stays the source of truth, and a node that misses events reads
// them from the log up to the marks it receives. NATS implements it for
// clusters; a single node needs none.
type Broker interface {
	// PublishEvents hands events this node committed to every node,
	// after their commit, in position order. It must not block for long:
	// it runs on the write path. Events with positions above the
	// cluster's mark wait on the receiving side (see Mark).
	PublishEvents(ctx context.Context, events []*Event) error
	// PublishMark announces this node's persisted-up-to position: no event
	// with a position at or below it is still being committed by this
	// node, nor will be. A node publishes it when it moves, and at least
	// every MarkInterval while it lives, so that a silent node is known to
	// be dead.
	PublishMark(ctx context.Context, m Mark) error
	// PublishLive hands a live-only update to the nodes that hold
	// sessions of its receivers.
	PublishLive(ctx context.Context, u LiveUpdate) error
	// Subscribe calls h with what every node (this one too) publishes,
	// from now on, until ctx ends or the subscription is closed. Calls are
	// sequential. A gap (the broker restarted, the node was cut off) is
	// reported to h.Lost, after which the node catches up from the log.
	Subscribe(ctx context.Context, h BrokerHandler) (Subscription, error)
}

// BrokerHandler receives what the nodes of a cluster publish.
type BrokerHandler interface {
	Events(events []*Event)
	Mark(m Mark)
	Live(u LiveUpdate)
	// Lost says that messages may have been missed since the last one
	// received: the node must read the log from its last delivered
	// position instead of trusting the broker, until the marks it
	// receives show it caught up.
	Lost()
}

// Subscription ends a Subscribe.
type Subscription interface {
	Close() error
}

// Mark is a node's persisted-up-to position (Synapse's "persisted upto"
// for one writer): every position it drew at or below UpTo is committed or
// abandoned. The cluster's mark is the smallest mark of the live nodes;
// events are delivered, live or replayed, only up to it, so that an event
// never overtakes one with a smaller position that is still in flight, and
// refs keep meaning "everything up to N".
type Mark struct {
	Node string
	// AppID scopes the mark to one app's positions when positions are kept
	// per app; empty for the positions of all apps.
	AppID string
	UpTo  int64
	// Lease is how long the mark holds without news of the node: a node
	// that publishes nothing for longer is dead, and its transactions are
	// ended in the store before the cluster's mark passes it.
	Lease time.Duration
}

// MarkInterval is how often a node publishes its mark at least.
const MarkInterval = time.Second

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
