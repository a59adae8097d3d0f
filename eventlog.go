package tidings

import (
	"cmp"
	"context"
	"time"
)

// EventLog is the durable log of events as realtime delivery reads it.
//
// Each event is stored once, whatever the number of its receivers. The
// stream of one user is the subsequence of the log they may see: the
// events of a conversation while they take part in it (from the event that
// added them, or the conversation's creation, to the event that removed
// them, both included) and the events about themselves that belong to no
// conversation (their profile). A user's updates are that stream, in seq
// order; an update's ref is the event's seq.
//
// EventLog takes no caller from the context: realtime delivery calls it for
// users it has authenticated.
type EventLog interface {
	// UserEvents returns, in seq order, up to limit events of userID's
	// stream with seq > after. Fewer than limit means that it returned
	// every event of the stream committed before the call (realtime's
	// replay ends on it). It returns EResyncRequired when events after `after` were
	// pruned by retention.
	UserEvents(ctx context.Context, appID, userID string, after int64, limit int) ([]*Event, error)
	// LastEventSeq returns the seq of the newest event (0 when none). In
	// a cluster it must be final (see LogTail): every event at or below
	// it committed or abandoned for good; a node starts delivering there.
	LastEventSeq(ctx context.Context) (int64, error)
	// UserConversations returns the conversations userID takes part in
	// now, each with the seq from which its events are theirs.
	UserConversations(ctx context.Context, appID, userID string) ([]Membership, error)
	// Cursor returns the last ref acknowledged by the user's device (0 when
	// none).
	Cursor(ctx context.Context, appID, userID, device string) (int64, error)
	// SaveCursors stores acknowledged refs; a cursor never moves back.
	// The cursors of users who do not exist (deleted meanwhile) are
	// skipped.
	SaveCursors(ctx context.Context, cursors []Cursor) error
	// Prune removes the events older than before, but always keeps the
	// newest one, and never those after the position (LastSeq) of a
	// webhook endpoint that is neither disabled nor failing; it returns
	// how many it removed.
	Prune(ctx context.Context, before time.Time) (int64, error)
}

// Cursor is the last ref one device of a user acknowledged.
type Cursor struct {
	AppID  string
	UserID string
	Device string
	Seq    int64
}

// CompareCursorKeys orders cursors by their device, as the stores key
// them: app, user, then device, each compared as bytes. Writes of many
// cursors go in this order, so that each covers a range of the stores'
// table and concurrent writes lock rows in one order.
func CompareCursorKeys(a, b Cursor) int {
	return cmp.Or(cmp.Compare(a.AppID, b.AppID), cmp.Compare(a.UserID, b.UserID), cmp.Compare(a.Device, b.Device))
}

// Membership says from which event on a user sees a conversation's events.
type Membership struct {
	ConversationID string
	FromSeq        int64
}

// Pruned is the error of a read of the events after seq after when
// retention removed some of them, the newest removed being pruned
// (EResyncRequired; nil when after is at or past pruned): what every
// EventLog returns then.
func Pruned(after, pruned int64) error {
	if after >= pruned {
		return nil
	}
	return Errorf(EResyncRequired,
		"updates after ref %d are no longer kept (kept from %d): rebuild your state from the REST API and resume from the newest ref", after, pruned+1)
}
