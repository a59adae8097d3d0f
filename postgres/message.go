package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/tidings/tidings"
)

// MessageService implements tidings.MessageService.
//
// A send queues for its conversation (an advisory lock, taken before its
// transaction has an id), then locks the conversation's row to number
// the message, then draws its event's position: within a conversation,
// messages are numbered without gaps and their events' positions follow
// their numbers, whichever node sends them (docs/cluster.md). Sending
// again with a client id already used returns the first message: the
// lock makes retries meet one after the other, and a unique index makes
// sure of it.
type MessageService struct {
	db       *DB
	maxBytes int
}

var _ tidings.MessageService = (*MessageService)(nil)

// NewMessageService returns the message service; maxMessageBytes bounds the
// size of a message's parts, metadata and alert (0: the default, 64 KiB).
func NewMessageService(db *DB, maxMessageBytes int) *MessageService {
	if maxMessageBytes <= 0 {
		maxMessageBytes = tidings.DefaultMessageSize
	}
	return &MessageService{db: db, maxBytes: maxMessageBytes}
}

const messageColumns = `m.id, m.conversation_id, m.seq, m.sender_id, m.client_id, m.parts, m.metadata, m.alert,
	m.sent_at, m.edited_at, m.deleted_at, coalesce(u.display_name, ''), coalesce(u.avatar_url, ''), u.identifier_value, u.identifier_kind`

// messageFrom joins the sender's profile: none for a message whose sender
// was deleted (an empty sender_id; nor for a system message), as in SQLite.
const messageFrom = ` FROM messages m LEFT JOIN users u ON u.app_id = m.app_id AND u.id = m.sender_id`

func scanMessage(row interface{ Scan(...any) error }) (*tidings.Message, error) {
	var m tidings.Message
	var clientID, idValue, idKind *string
	var parts, meta []byte
	var edited, deleted *time.Time
	if err := row.Scan(&m.ID, &m.ConversationID, &m.Seq, &m.Sender.ID, &clientID, &parts, &meta, &m.Alert,
		&m.SentAt, &edited, &deleted, &m.Sender.DisplayName, &m.Sender.AvatarURL, &idValue, &idKind); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(parts, &m.Parts); err != nil {
		return nil, fmt.Errorf("message %s: bad parts: %w", m.ID, err)
	}
	if meta != nil {
		m.Metadata = json.RawMessage(meta)
	}
	if idValue != nil && idKind != nil {
		m.Sender.Identifier = &tidings.Identifier{Value: *idValue, Kind: *idKind}
	}
	if clientID != nil {
		m.ClientID = *clientID
	}
	m.SentAt = m.SentAt.UTC()
	m.EditedAt, m.DeletedAt = fromNullTime(edited), fromNullTime(deleted)
	return &m, nil
}

func findMessage(ctx context.Context, q querier, appID, convID, msgID string) (*tidings.Message, error) {
	m, err := scanMessage(q.QueryRow(ctx, `SELECT `+messageColumns+messageFrom+`
		WHERE m.app_id = $1 AND m.conversation_id = $2 AND m.id = $3`, appID, convID, msgID))
	if isNoRows(err) {
		return nil, tidings.ErrMessageNotFound(convID, msgID)
	}
	return m, err
}

// message loads a message in the transaction, as the access policy needs
// it: nil when there is none.
func (tx *Tx) message(appID, convID, msgID string) (*tidings.Message, error) {
	m, err := findMessage(tx.ctx, tx.tx, appID, convID, msgID)
	if tidings.ErrorCode(err) == tidings.ENotFound {
		return nil, nil
	}
	return m, err
}

// sendView is what a send reads of its conversation, sender and client
// id, in one statement that also locks the conversation's row (see
// MessageService). Arguments: $1 sender, $2 app, $3 conversation, $4
// client id (NULL: none).
const sendView = `SELECT c.is_public, c.deleted_at, c.roles, c.last_seq, p.role,
	u.display_name, u.avatar_url, u.identifier_value, u.identifier_kind,
	(SELECT m.id FROM messages m WHERE m.app_id = c.app_id AND m.conversation_id = c.id
		AND m.sender_id = $1 AND m.client_id = $4)
	FROM conversations c
	LEFT JOIN participants p ON p.app_id = c.app_id AND p.conversation_id = c.id AND p.user_id = $1
	LEFT JOIN users u ON u.app_id = c.app_id AND u.id = $1
	WHERE c.app_id = $2 AND c.id = $3
	FOR UPDATE OF c`

// sendInsert stores a new message, unless the sender used its client id
// already, and then moves the conversation's last seq and the sender's
// own marks to it, in one statement. It returns the seq stored (no row:
// the client id was taken).
const sendInsert = `WITH m AS (
		INSERT INTO messages (app_id, conversation_id, seq, id, sender_id, client_id, parts, metadata, alert, sent_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (app_id, conversation_id, sender_id, client_id) WHERE client_id IS NOT NULL DO NOTHING
		RETURNING seq),
	c AS (UPDATE conversations SET last_seq = m.seq, last_activity_at = $10 FROM m
		WHERE conversations.app_id = $1 AND conversations.id = $2),
	p AS (UPDATE participants SET delivered_seq = greatest(delivered_seq, m.seq), read_seq = greatest(read_seq, m.seq) FROM m
		WHERE participants.app_id = $1 AND participants.conversation_id = $2 AND participants.user_id = $5)
	SELECT seq FROM m`

func (s *MessageService) SendMessage(ctx context.Context, convID string, nm tidings.NewMessage) (*tidings.Message, bool, error) {
	c, err := userCaller(ctx)
	if err != nil {
		return nil, false, err
	}
	if err := nm.Validate(s.maxBytes); err != nil {
		return nil, false, err
	}
	// Committed with the sends queued with it (sendbatch.go).
	j := &sendJob{ctx: ctx, caller: c, convID: convID, nm: nm, done: make(chan struct{})}
	if err := s.db.sends.send(j); err != nil {
		return nil, false, err
	}
	return j.msg, j.created, nil
}

// sendOne makes a send in a transaction of its own: what a batch of
// sends does for each of its sends when the server refused one of its
// statements (see sendbatch.go).
func (db *DB) sendOne(ctx context.Context, c tidings.Caller, convID string, nm tidings.NewMessage) (*tidings.Message, bool, error) {
	var msg *tidings.Message
	created := false
	err := db.run(ctx, func(tx *Tx) error {
		msg, created = nil, false
		if err := lockConversation(tx.ctx, tx, c.AppID, convID); err != nil {
			return err
		}
		var view tidings.Conversation
		var roles []byte
		var role, name, avatar, idValue, idKind, earlier *string
		err := tx.queryRow(sendView, c.UserID, c.AppID, convID, nullString(nm.ClientID)).Scan(
			&view.IsPublic, &view.DeletedAt, &roles, &view.LastSeq, &role, &name, &avatar, &idValue, &idKind, &earlier)
		if isNoRows(err) {
			return tidings.ErrConversationNotFound(convID)
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal(roles, &view.Roles); err != nil {
			return fmt.Errorf("conversation %s: bad roles: %w", convID, err)
		}
		if role != nil {
			view.Role = tidings.Role(*role)
		}
		view.ID = convID
		if err := tidings.CanSeeConversation(convID, &view); err != nil {
			return err
		}
		if name == nil {
			return tidings.Errorf(tidings.EUnauthenticated, "the user of this token no longer exists")
		}
		if err := tidings.CanSendMessage(convID, &view); err != nil {
			return err
		}
		if earlier != nil { // the earlier message is the answer
			msg, err = findMessage(tx.ctx, tx.tx, c.AppID, convID, *earlier)
			return err
		}
		sender := tidings.Profile{ID: c.UserID, DisplayName: *name}
		if avatar != nil {
			sender.AvatarURL = *avatar
		}
		if idValue != nil && idKind != nil {
			sender.Identifier = &tidings.Identifier{Value: *idValue, Kind: *idKind}
		}
		parts, err := tx.resolveFiles(c.AppID, convID, nm.Parts)
		if err != nil {
			return err
		}
		partsJSON, err := json.Marshal(parts)
		if err != nil {
			return err
		}
		m := &tidings.Message{
			ID: tidings.NewID(), ConversationID: convID, Seq: view.LastSeq + 1, ClientID: nm.ClientID,
			Sender: sender, Parts: parts, Metadata: nm.Metadata, Alert: nm.Alert, SentAt: tx.now,
		}
		var seq int64
		err = tx.queryRow(sendInsert, c.AppID, convID, m.Seq, m.ID, c.UserID, nullString(nm.ClientID),
			string(partsJSON), nullBytes(nm.Metadata), nm.Alert, tx.now).Scan(&seq)
		if isNoRows(err) {
			// The client id was taken after all: the unique index has the
			// last word, and the earlier message is the answer.
			msg, err = findClientMessage(tx, c, convID, nm.ClientID)
			return err
		}
		if err != nil {
			return err
		}
		if err := tx.emit(c.AppID, tidings.EventMessageSent, &sender, convID, "", tidings.NewMessagePayload(m, "")); err != nil {
			return err
		}
		msg, created = m, true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return msg, created, nil
}

// findClientMessage loads the message the caller sent with a client id.
func findClientMessage(tx *Tx, c tidings.Caller, convID, clientID string) (*tidings.Message, error) {
	return scanMessage(tx.queryRow(`SELECT `+messageColumns+messageFrom+`
		WHERE m.app_id = $1 AND m.conversation_id = $2 AND m.sender_id = $3 AND m.client_id = $4`,
		c.AppID, convID, c.UserID, clientID))
}

// resolveFiles checks that every part's file was uploaded to the
// conversation and fills the part's name, type and size from it. The
// file is then attached, and so kept (see FileService.RemoveUnattached):
// its row is updated, not only read, so that a removal running at the
// same time either waits for this transaction and keeps the file, or
// removed it first and the part is refused.
func (tx *Tx) resolveFiles(appID, convID string, parts []tidings.Part) ([]tidings.Part, error) {
	parts = append([]tidings.Part(nil), parts...)
	for i := range parts {
		p := &parts[i]
		if p.FileID == "" {
			continue
		}
		var name, typ string
		var size int64
		err := tx.queryRow(`UPDATE files SET attached = true WHERE app_id = $1 AND conversation_id = $2 AND id = $3
			RETURNING name, type, size`, appID, convID, p.FileID).Scan(&name, &typ, &size)
		if isNoRows(err) {
			return nil, tidings.Errorf(tidings.EInvalid, "parts[%d].fileId %q is not a file of this conversation: upload it first", i, p.FileID)
		}
		if err != nil {
			return nil, err
		}
		if p.Name == "" {
			p.Name = name
		}
		p.Size = size
		if p.Type == "" {
			p.Type = typ
		}
	}
	return parts, nil
}

// readable checks that the caller may read the conversation's messages
// and files (tidings.CanReadConversation).
func readable(ctx context.Context, db *DB, c tidings.Caller, convID string) (*tidings.Conversation, error) {
	if err := db.usable(); err != nil {
		return nil, err
	}
	conv, err := loadConversation(ctx, db.pool, c, convID)
	if err != nil {
		return nil, db.mapError(err)
	}
	if err := tidings.CanReadConversation(convID, conv); err != nil {
		return nil, err
	}
	return conv, nil
}

func (s *MessageService) FindMessage(ctx context.Context, convID, msgID string) (*tidings.Message, error) {
	c, err := userCaller(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := readable(ctx, s.db, c, convID); err != nil {
		return nil, err
	}
	m, err := findMessage(ctx, s.db.pool, c.AppID, convID, msgID)
	return m, s.db.mapError(err)
}

func (s *MessageService) ListMessages(ctx context.Context, convID string, f tidings.MessageFilter) (*tidings.MessagePage, error) {
	c, err := userCaller(ctx)
	if err != nil {
		return nil, err
	}
	if f.Before != nil && f.After != nil {
		return nil, tidings.Errorf(tidings.EInvalid, "give before or after, not both")
	}
	if (f.Before != nil && *f.Before < 0) || (f.After != nil && *f.After < 0) {
		return nil, tidings.Errorf(tidings.EInvalid, "before and after must not be negative")
	}
	if _, err := readable(ctx, s.db, c, convID); err != nil {
		return nil, err
	}
	limit := clampLimit(f.Limit)
	query := `SELECT ` + messageColumns + messageFrom + ` WHERE m.app_id = $1 AND m.conversation_id = $2`
	var args []any
	forward := f.After != nil
	if forward {
		query += ` AND m.seq > $3 ORDER BY m.seq ASC LIMIT $4`
		args = []any{c.AppID, convID, *f.After, limit + 1}
	} else {
		before := int64(math.MaxInt64)
		if f.Before != nil {
			before = *f.Before
		}
		query += ` AND m.seq < $3 ORDER BY m.seq DESC LIMIT $4`
		args = []any{c.AppID, convID, before, limit + 1}
	}
	rows, err := s.db.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	page := &tidings.MessagePage{Messages: make([]*tidings.Message, 0, limit)}
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, s.db.mapError(err)
		}
		page.Messages = append(page.Messages, m)
	}
	if err := rows.Err(); err != nil {
		return nil, s.db.mapError(err)
	}
	if len(page.Messages) > limit {
		page.Messages, page.HasMore = page.Messages[:limit], true
	}
	if !forward { // newest first from the query; pages are ascending
		ms := page.Messages
		for i, j := 0, len(ms)-1; i < j; i, j = i+1, j-1 {
			ms[i], ms[j] = ms[j], ms[i]
		}
	}
	return page, nil
}

func (s *MessageService) EditMessage(ctx context.Context, convID, msgID string, e tidings.MessageEdit) (*tidings.Message, error) {
	c, err := userCaller(ctx)
	if err != nil {
		return nil, err
	}
	if err := e.Validate(s.maxBytes); err != nil {
		return nil, err
	}
	var msg *tidings.Message
	err = s.db.update(ctx, func(tx *Tx) error {
		conv, err := tx.lockedConversation(c, convID)
		if err != nil {
			return err
		}
		if msg, err = tx.message(c.AppID, convID, msgID); err != nil {
			return err
		}
		if err := tidings.CanEditMessage(convID, conv, c.UserID, msgID, msg); err != nil {
			return err
		}
		if msg.Parts, err = tx.resolveFiles(c.AppID, convID, e.Parts); err != nil {
			return err
		}
		if e.Metadata != nil {
			msg.Metadata = *e.Metadata
		}
		partsJSON, err := json.Marshal(msg.Parts)
		if err != nil {
			return err
		}
		now := tx.now
		msg.EditedAt = &now
		if _, err := tx.exec(`UPDATE messages SET parts = $1, metadata = $2, edited_at = $3 WHERE app_id = $4 AND conversation_id = $5 AND id = $6`,
			string(partsJSON), nullBytes(msg.Metadata), tx.now, c.AppID, convID, msgID); err != nil {
			return err
		}
		sender := msg.Sender
		return tx.emit(c.AppID, tidings.EventMessageEdited, &sender, convID, "", tidings.NewMessagePayload(msg, msgID))
	})
	if err != nil {
		return nil, err
	}
	return msg, nil
}

func (s *MessageService) DeleteMessage(ctx context.Context, convID, msgID string) (*tidings.Message, error) {
	c, err := userCaller(ctx)
	if err != nil {
		return nil, err
	}
	var msg *tidings.Message
	err = s.db.update(ctx, func(tx *Tx) error {
		conv, err := tx.lockedConversation(c, convID)
		if err != nil {
			return err
		}
		if msg, err = tx.message(c.AppID, convID, msgID); err != nil {
			return err
		}
		if del, err := tidings.CanDeleteMessage(convID, conv, c.UserID, msgID, msg); err != nil || !del {
			return err // !del: deleted already, deleting again changes nothing
		}
		actor, err := tx.actor(c)
		if err != nil {
			return err
		}
		now := tx.now
		msg.Parts, msg.Metadata, msg.Alert, msg.DeletedAt = []tidings.Part{}, nil, "", &now
		if _, err := tx.exec(`UPDATE messages SET parts = '[]', metadata = NULL, alert = '', deleted_at = $1
			WHERE app_id = $2 AND conversation_id = $3 AND id = $4`, tx.now, c.AppID, convID, msgID); err != nil {
			return err
		}
		return tx.emit(c.AppID, tidings.EventMessageDeleted, actor, convID, "", tidings.NewMessagePayload(msg, msgID))
	})
	if err != nil {
		return nil, err
	}
	return msg, nil
}

func (s *MessageService) MarkDelivered(ctx context.Context, convID string, seq int64) (*tidings.MessageStatus, error) {
	return s.mark(ctx, convID, seq, false)
}

func (s *MessageService) MarkRead(ctx context.Context, convID string, seq int64) (*tidings.MessageStatus, error) {
	return s.mark(ctx, convID, seq, true)
}

// mark moves the caller's delivered mark (and, when read, their read mark)
// forward to seq, and emits the matching event if a mark moved.
//
// It does not queue for the conversation, so that marks (about one per
// message and receiver) do not wait for its sends: it locks the caller's
// participant row only, which keeps marks from moving back when several
// devices mark at once. A mark's event follows the event of the message
// it names, which was committed before the mark could see it.
func (s *MessageService) mark(ctx context.Context, convID string, seq int64, read bool) (*tidings.MessageStatus, error) {
	c, err := userCaller(ctx)
	if err != nil {
		return nil, err
	}
	if seq < 0 {
		return nil, tidings.Errorf(tidings.EInvalid, "seq must not be negative")
	}
	var st *tidings.MessageStatus
	err = s.db.update(ctx, func(tx *Tx) error {
		st = nil
		seq := seq
		conv, err := loadConversation(tx.ctx, tx.tx, c, convID)
		if err != nil {
			return err
		}
		if err := tidings.CanMarkMessages(convID, conv); err != nil {
			return err
		}
		p, err := findParticipant(tx.ctx, tx.tx, c.AppID, convID, c.UserID, true)
		if err != nil {
			if tidings.ErrorCode(err) == tidings.ENotFound {
				// Removed since the conversation was read.
				return tidings.Errorf(tidings.EForbidden, "you do not take part in conversation %q", convID)
			}
			return err
		}
		// Read again now that the row is locked: sends may have come.
		if err := tx.queryRow(`SELECT last_seq FROM conversations WHERE app_id = $1 AND id = $2`, c.AppID, convID).Scan(&conv.LastSeq); err != nil {
			return err
		}
		if seq == 0 {
			seq = conv.LastSeq
		}
		if seq > conv.LastSeq {
			return tidings.Errorf(tidings.EInvalid, "seq %d is beyond the newest message (%d)", seq, conv.LastSeq)
		}
		st = &tidings.MessageStatus{ConversationID: convID, UserID: c.UserID, DeliveredSeq: max(p.DeliveredSeq, seq), ReadSeq: p.ReadSeq}
		if read {
			st.ReadSeq = max(p.ReadSeq, seq)
		}
		st.UnreadCount = max(0, conv.LastSeq-st.ReadSeq)
		name := tidings.EventMessageDelivered
		moved := st.DeliveredSeq != p.DeliveredSeq
		if read {
			name, moved = tidings.EventMessageRead, st.ReadSeq != p.ReadSeq
		}
		if !moved || seq == 0 {
			return nil
		}
		var msgID string
		if err := tx.queryRow(`WITH u AS (UPDATE participants SET delivered_seq = $1, read_seq = $2
				WHERE app_id = $3 AND conversation_id = $4 AND user_id = $5)
			SELECT id FROM messages WHERE app_id = $3 AND conversation_id = $4 AND seq = $6`,
			st.DeliveredSeq, st.ReadSeq, c.AppID, convID, c.UserID, seq).Scan(&msgID); err != nil {
			return err
		}
		actor, err := tx.actor(c)
		if err != nil {
			return err
		}
		return tx.emit(c.AppID, name, actor, convID, c.UserID, tidings.StatusPayload{
			ConversationID: convID, ProfileID: c.UserID, Seq: seq, MessageID: msgID, Timestamp: tx.now,
		})
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}
