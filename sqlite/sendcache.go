package sqlite

import (
	"database/sql"
	"time"

	"github.com/tidings/tidings"
)

// sendCache lets a run of send jobs in one transaction skip most of their
// statements. Sending a message needs to read the conversation, the
// sender's role and profile, and to write the conversation's last seq and
// the sender's read mark. When many messages are committed together, most
// go to conversations already read in that transaction: the cache keeps
// what was read, and the writes are made once per conversation and sender
// when the cache is flushed, before any other kind of job runs and before
// COMMIT. A send job therefore costs two inserts (message and event).
//
// What it read stays true across transactions as long as only send jobs
// commit, since every other write goes through the writer too, as a job
// that is not a send: the cache is kept from one transaction to the next
// (its writes flushed before each COMMIT) and emptied before any other
// job runs, when a transaction is rolled back, and when it holds more
// than maxCachedSenders senders. A run of sends to the same
// conversations, across many commits, then reads each conversation and
// sender once.
//
// The writer goroutine alone uses it. A send job changes it only once all
// its statements succeeded (see sendCache.sent), so a job rolled back to
// its savepoint leaves no trace; a rolled back transaction discards it.
type sendCache struct {
	db      *DB
	senders map[senderKey]*senderState
	convs   map[convKey]*convState
	// what sends changed since the last flush
	dirtyConvs   []convKey
	dirtySenders []senderKey
}

type convKey struct{ app, conv string }

type senderKey struct {
	convKey
	user string
}

// convState is a conversation as sending needs it.
type convState struct {
	isPublic  bool
	deletedAt *time.Time
	roles     tidings.Roles
	lastSeq   int64
	activity  int64 // last_activity_at to write
	dirty     bool
}

// senderState is a sender as sending needs it.
type senderState struct {
	key     senderKey
	conv    *convState
	role    tidings.Role     // "" when not a participant
	muted   bool             // muted in the conversation
	profile *tidings.Profile // nil when the user does not exist
	readSeq int64            // read and delivered mark to write
	dirty   bool
}

func newSendCache(db *DB) *sendCache {
	return &sendCache{db: db, senders: map[senderKey]*senderState{}, convs: map[convKey]*convState{}}
}

// sender returns what sending in conversation conv as user needs, reading
// it from the database if it is not cached. ENotFound if conv does not
// exist.
func (sc *sendCache) sender(tx *Tx, app, conv, user string) (*senderState, error) {
	k := senderKey{convKey{app, conv}, user}
	if s, ok := sc.senders[k]; ok {
		return s, nil
	}
	if cs, ok := sc.convs[k.convKey]; ok {
		return sc.newSender(tx, k, cs)
	}
	var isPublic bool
	var deleted sql.NullInt64
	var rolesJSON string
	var lastSeq, activity int64
	var role, name, avatar, idValue, idKind sql.NullString
	var muted sql.NullBool
	err := tx.queryRow(`SELECT c.is_public, c.deleted_at, c.roles, c.last_seq, c.last_activity_at, p.role, p.muted,
		u.display_name, u.avatar_url, u.identifier_value, u.identifier_kind
		FROM conversations c
		LEFT JOIN participants p ON p.app_id = c.app_id AND p.conversation_id = c.id AND p.user_id = ?
		LEFT JOIN users u ON u.app_id = c.app_id AND u.id = ?
		WHERE c.app_id = ? AND c.id = ?`, []any{user, user, app, conv},
		&isPublic, &deleted, &rolesJSON, &lastSeq, &activity, &role, &muted, &name, &avatar, &idValue, &idKind)
	if isNoRows(err) {
		return nil, tidings.ErrConversationNotFound(conv)
	}
	if err != nil {
		return nil, err
	}
	cs, ok := sc.convs[k.convKey]
	if !ok {
		roles, err := sc.db.parseRoles(rolesJSON)
		if err != nil {
			return nil, err
		}
		cs = &convState{isPublic: isPublic, deletedAt: fromNullMicros(deleted), roles: roles, lastSeq: lastSeq, activity: activity}
		sc.convs[k.convKey] = cs
	}
	s := &senderState{key: k, conv: cs, role: tidings.Role(role.String), muted: muted.Bool}
	if name.Valid {
		s.profile = &tidings.Profile{ID: user, DisplayName: name.String, AvatarURL: avatar.String}
		if idValue.Valid {
			s.profile.Identifier = &tidings.Identifier{Value: idValue.String, Kind: idKind.String}
		}
	}
	sc.senders[k] = s
	return s, nil
}

// newSender reads the sender's role and profile in conversation cs, which
// is cached.
func (sc *sendCache) newSender(tx *Tx, k senderKey, cs *convState) (*senderState, error) {
	var role, name, avatar, idValue, idKind sql.NullString
	var muted sql.NullBool
	err := tx.queryRow(`SELECT p.role, p.muted, u.display_name, u.avatar_url, u.identifier_value, u.identifier_kind
		FROM (SELECT 1) LEFT JOIN participants p ON p.app_id = ? AND p.conversation_id = ? AND p.user_id = ?
		LEFT JOIN users u ON u.app_id = ? AND u.id = ?`, []any{k.app, k.conv, k.user, k.app, k.user},
		&role, &muted, &name, &avatar, &idValue, &idKind)
	if err != nil {
		return nil, err
	}
	s := &senderState{key: k, conv: cs, role: tidings.Role(role.String), muted: muted.Bool}
	if name.Valid {
		s.profile = &tidings.Profile{ID: k.user, DisplayName: name.String, AvatarURL: avatar.String}
		if idValue.Valid {
			s.profile.Identifier = &tidings.Identifier{Value: idValue.String, Kind: idKind.String}
		}
	}
	sc.senders[k] = s
	return s, nil
}

// sent records that s sent message seq at time now (in microseconds).
func (sc *sendCache) sent(s *senderState, seq, now int64) {
	if !s.conv.dirty {
		sc.dirtyConvs = append(sc.dirtyConvs, s.key.convKey)
	}
	if !s.dirty {
		sc.dirtySenders = append(sc.dirtySenders, s.key)
	}
	s.conv.lastSeq, s.conv.activity, s.conv.dirty = seq, now, true
	s.readSeq, s.dirty = seq, true
}

// maxCachedSenders bounds the senders the cache keeps from one
// transaction to the next (about 200 bytes each).
const maxCachedSenders = 1 << 14

// flush writes what the cached sends changed since the last flush. What
// was read stays cached.
func (sc *sendCache) flush() error {
	for _, k := range sc.dirtyConvs {
		cs := sc.convs[k]
		if _, err := sc.db.control(`UPDATE conversations SET last_seq = ?, last_activity_at = ? WHERE app_id = ? AND id = ?`,
			cs.lastSeq, cs.activity, k.app, k.conv); err != nil {
			return err
		}
		cs.dirty = false
	}
	sc.dirtyConvs = sc.dirtyConvs[:0]
	for _, k := range sc.dirtySenders {
		// The sender has seen their own message, and what came before it.
		s := sc.senders[k]
		if _, err := sc.db.control(`UPDATE participants SET delivered_seq = max(delivered_seq, ?), read_seq = max(read_seq, ?)
			WHERE app_id = ? AND conversation_id = ? AND user_id = ?`, s.readSeq, s.readSeq, k.app, k.conv, k.user); err != nil {
			return err
		}
		s.dirty = false
	}
	sc.dirtySenders = sc.dirtySenders[:0]
	return nil
}

// bound empties the cache, flushed, if it holds too many senders.
func (sc *sendCache) bound() {
	if len(sc.senders) > maxCachedSenders {
		sc.discard()
	}
}

// discard empties the cache without writing.
func (sc *sendCache) discard() {
	clear(sc.convs)
	clear(sc.senders)
	sc.dirtyConvs = sc.dirtyConvs[:0]
	sc.dirtySenders = sc.dirtySenders[:0]
}
