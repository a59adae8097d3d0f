package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"

	"github.com/tidings/tidings"
)

// MessageService implements tidings.MessageService.
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
	m.sent_at, m.edited_at, m.deleted_at, m.system, u.display_name, u.avatar_url, u.identifier_value, u.identifier_kind`

// messageFrom joins the sender's profile: none for a system message (and
// one whose sender was deleted), whose sender_id is ”.
const messageFrom = ` FROM messages m LEFT JOIN users u ON u.app_id = m.app_id AND u.id = m.sender_id`

// journalFrom is messageFrom for a message still in the journal (see
// journal.go), which has not been edited or deleted, and is no system
// message.
const journalFrom = ` FROM (SELECT *, NULL AS edited_at, NULL AS deleted_at, 0 AS system FROM message_journal) m
	LEFT JOIN users u ON u.app_id = m.app_id AND u.id = m.sender_id`

func scanMessage(row interface{ Scan(...any) error }) (*tidings.Message, error) {
	var m tidings.Message
	var clientID, meta, name, avatar, idValue, idKind sql.NullString
	var parts string
	var sent int64
	var edited, deleted sql.NullInt64
	if err := row.Scan(&m.ID, &m.ConversationID, &m.Seq, &m.Sender.ID, &clientID, &parts, &meta, &m.Alert,
		&sent, &edited, &deleted, &m.System, &name, &avatar, &idValue, &idKind); err != nil {
		return nil, err
	}
	m.Sender.DisplayName, m.Sender.AvatarURL = name.String, avatar.String
	if err := json.Unmarshal([]byte(parts), &m.Parts); err != nil {
		return nil, fmt.Errorf("message %s: bad parts: %w", m.ID, err)
	}
	if meta.Valid {
		m.Metadata = json.RawMessage(meta.String)
	}
	if idValue.Valid {
		m.Sender.Identifier = &tidings.Identifier{Value: idValue.String, Kind: idKind.String}
	}
	m.ClientID = clientID.String
	m.SentAt = fromMicros(sent)
	m.EditedAt, m.DeletedAt = fromNullMicros(edited), fromNullMicros(deleted)
	return &m, nil
}

func findMessage(ctx context.Context, q rowQuerier, appID, convID, msgID string) (*tidings.Message, error) {
	m, err := scanMessage(q.QueryRowContext(ctx, `SELECT `+messageColumns+messageFrom+`
		WHERE m.app_id = ? AND m.conversation_id = ? AND m.id = ?`, appID, convID, msgID))
	if isNoRows(err) {
		return nil, tidings.ErrMessageNotFound(convID, msgID)
	}
	return m, err
}

// message loads a message in the write transaction, as the access policy
// needs it: nil when there is none.
func (tx *Tx) message(appID, convID, msgID string) (*tidings.Message, error) {
	m, err := findMessage(tx.ctx, tx, appID, convID, msgID)
	if tidings.ErrorCode(err) == tidings.ENotFound {
		return nil, nil
	}
	return m, err
}

func (s *MessageService) SendMessage(ctx context.Context, convID string, nm tidings.NewMessage) (*tidings.Message, bool, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, false, err
	}
	if err := nm.Validate(s.maxBytes); err != nil {
		return nil, false, err
	}
	if c.Server {
		return s.sendSystem(ctx, c, convID, nm)
	}
	var msg *tidings.Message
	created := false
	err = s.db.updateSends(ctx, func(tx *Tx) error {
		created = false
		sender, err := tx.db.cache.sender(tx, c.AppID, convID, c.UserID)
		if err != nil {
			return err
		}
		conv := sender.conv
		view := tidings.Conversation{ID: convID, IsPublic: conv.isPublic, DeletedAt: conv.deletedAt, Roles: conv.roles, Role: sender.role, MutedByModerator: sender.muted}
		if err := tidings.CanSeeConversation(convID, &view); err != nil {
			return err
		}
		if sender.profile == nil {
			return tidings.Errorf(tidings.EUnauthenticated, "the user of this token no longer exists")
		}
		if err := tidings.CanSendMessage(convID, &view); err != nil {
			return err
		}
		// A client id seen before: the earlier message is the answer, in
		// the journal (journal.go) or moved into messages. Looked for
		// before anything is written: resolving the files of a retry
		// would attach them (or fail if they are gone).
		key := convKey{c.AppID, convID}
		if nm.ClientID != "" {
			if r, ok := tx.db.journal.find(key, c.UserID, nm.ClientID); ok {
				s, err := tx.stmt(`SELECT ` + messageColumns + journalFrom + ` WHERE m.event_seq = ?`)
				if err != nil {
					return err
				}
				msg, err = scanMessage(s.QueryRowContext(tx.ctx, r.eventSeq))
				if err == nil || !isNoRows(err) {
					return err
				}
				// Moved meanwhile by an operator command's Open beside
				// the server (it moves what it finds in the journal):
				// in messages, below.
			}
			// Most client ids are new: the filter says so without a
			// read (clientfilter.go), or the client-id index alone is
			// read first.
			var err error
			if tx.db.clientIDs.absent(key, c.UserID, nm.ClientID) {
				tx.db.metrics.clientIDFiltered.Inc()
				err = sql.ErrNoRows
			} else {
				tx.db.metrics.clientIDLooked.Inc()
				var found int
				err = tx.queryRow(`SELECT 1 FROM messages WHERE app_id = ? AND conversation_id = ? AND sender_id = ? AND client_id = ?`,
					[]any{c.AppID, convID, c.UserID, nm.ClientID}, &found)
			}
			if err == nil {
				s, err := tx.stmt(`SELECT ` + messageColumns + messageFrom + `
					WHERE m.app_id = ? AND m.conversation_id = ? AND m.sender_id = ? AND m.client_id = ?`)
				if err != nil {
					return err
				}
				msg, err = scanMessage(s.QueryRowContext(tx.ctx, c.AppID, convID, c.UserID, nm.ClientID))
				return err
			} else if !isNoRows(err) {
				return err
			}
		}
		parts, err := tx.resolveFiles(c.AppID, convID, nm.Parts)
		if err != nil {
			return err
		}
		msg = &tidings.Message{
			ID: tidings.NewID(), ConversationID: convID, Seq: conv.lastSeq + 1, ClientID: nm.ClientID,
			Sender: *sender.profile, Parts: parts, Metadata: nm.Metadata, Alert: nm.Alert, SentAt: tx.now,
		}
		// The event first: the message is keyed by it (event_seq; replay
		// reads sends through messages and the journal, see
		// userStreamQuery).
		ev, err := tx.emitEvent(c.AppID, tidings.EventMessageSent, sender.profile, convID, "", tidings.NewMessagePayload(msg, ""))
		if err != nil {
			return err
		}
		if _, err := tx.exec(`INSERT INTO message_journal (event_seq, app_id, conversation_id, seq, id, sender_id, client_id, parts, metadata, alert, sent_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			ev.Seq, c.AppID, convID, msg.Seq, msg.ID, c.UserID, nullString(nm.ClientID), partsText(parts), nullBytes(nm.Metadata), nm.Alert, micros(tx.now)); err != nil {
			return err
		}
		// Last, once nothing can fail: the conversation's last seq and the
		// sender's marks are written when the cache is flushed.
		tx.db.cache.sent(sender, msg.Seq, ev.Seq, micros(tx.now))
		tx.db.journal.added(journalRow{key: key, eventSeq: ev.Seq, seq: msg.Seq, id: msg.ID, sender: c.UserID, clientID: nm.ClientID})
		if nm.ClientID != "" {
			tx.db.clientIDs.added(key, c.UserID, nm.ClientID)
			if tx.db.clientIDs.full() {
				tx.db.readAgain(tx.db.clientIDs)
			}
		}
		created = true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return msg, created, nil
}

// sendSystem sends a system message: the app's server's, without a
// sender. It does not use the send cache (the conversation's marks are
// written and what the cache read of it forgotten before the job, see
// scope), and moves nobody's marks.
func (s *MessageService) sendSystem(ctx context.Context, c tidings.Caller, convID string, nm tidings.NewMessage) (*tidings.Message, bool, error) {
	var msg *tidings.Message
	created := false
	err := s.db.updateConv(ctx, c.AppID, convID, func(tx *Tx) error {
		created = false
		conv, err := tx.conversation(c, convID)
		if err != nil {
			return err
		}
		if err := tidings.CanSendMessage(convID, conv); err != nil {
			return err
		}
		if nm.ClientID != "" {
			msg, err = scanMessage(tx.QueryRowContext(tx.ctx, `SELECT `+messageColumns+messageFrom+`
				WHERE m.app_id = ? AND m.conversation_id = ? AND m.sender_id = '' AND m.client_id = ?`, c.AppID, convID, nm.ClientID))
			if err == nil || !isNoRows(err) {
				return err // found: the earlier message is the answer
			}
		}
		parts, err := tx.resolveFiles(c.AppID, convID, nm.Parts)
		if err != nil {
			return err
		}
		msg = &tidings.Message{
			ID: tidings.NewID(), ConversationID: convID, Seq: conv.LastSeq + 1, ClientID: nm.ClientID, System: true,
			Parts: parts, Metadata: nm.Metadata, Alert: nm.Alert, SentAt: tx.now,
		}
		ev, err := tx.emitEvent(c.AppID, tidings.EventMessageSent, nil, convID, "", tidings.NewMessagePayload(msg, ""))
		if err != nil {
			return err
		}
		if _, err := tx.exec(`INSERT INTO messages (app_id, conversation_id, seq, id, sender_id, client_id, parts, metadata, alert, sent_at, system, event_seq)
			VALUES (?, ?, ?, ?, '', ?, ?, ?, ?, ?, 1, ?)`,
			c.AppID, convID, msg.Seq, msg.ID, nullString(nm.ClientID), partsText(parts), nullBytes(nm.Metadata), nm.Alert, micros(tx.now), ev.Seq); err != nil {
			return err
		}
		if _, err := tx.exec(`UPDATE conversations SET last_seq = ?, last_activity_at = ? WHERE app_id = ? AND id = ?`,
			msg.Seq, micros(tx.now), c.AppID, convID); err != nil {
			return err
		}
		created = true
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return msg, created, nil
}

// resolveFiles checks that every part's file was uploaded to the
// conversation and fills the part's name, type and size from it.
func (tx *Tx) resolveFiles(appID, convID string, parts []tidings.Part) ([]tidings.Part, error) {
	parts = append([]tidings.Part(nil), parts...)
	for i := range parts {
		p := &parts[i]
		if p.FileID == "" {
			continue
		}
		var name, typ string
		var size int64
		err := tx.queryRow(`SELECT name, type, size FROM files WHERE app_id = ? AND conversation_id = ? AND id = ?`,
			[]any{appID, convID, p.FileID}, &name, &typ, &size)
		if isNoRows(err) {
			return nil, tidings.Errorf(tidings.EInvalid, "parts[%d].fileId %q is not a file of this conversation: upload it first", i, p.FileID)
		}
		if err != nil {
			return nil, err
		}
		// Attached, the file is kept (see FileService.RemoveUnattached).
		if _, err := tx.exec(`UPDATE files SET attached = 1 WHERE app_id = ? AND conversation_id = ? AND id = ? AND attached = 0`,
			appID, convID, p.FileID); err != nil {
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
func readable(ctx context.Context, q rowQuerier, c tidings.Caller, convID string) (*tidings.Conversation, error) {
	conv, err := loadConversation(ctx, q, c, convID)
	if err != nil {
		return nil, err
	}
	if err := tidings.CanReadConversation(convID, conv); err != nil {
		return nil, err
	}
	return conv, nil
}

func (s *MessageService) FindMessage(ctx context.Context, convID, msgID string) (*tidings.Message, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := readable(ctx, s.db.read, c, convID); err != nil {
		return nil, err
	}
	if err := s.db.syncMessages(ctx, c.AppID, convID); err != nil {
		return nil, err
	}
	return findMessage(ctx, s.db.read, c.AppID, convID, msgID)
}

func (s *MessageService) ListMessages(ctx context.Context, convID string, f tidings.MessageFilter) (*tidings.MessagePage, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	if f.Before != nil && f.After != nil {
		return nil, tidings.Errorf(tidings.EInvalid, "give before or after, not both")
	}
	if (f.Before != nil && *f.Before < 0) || (f.After != nil && *f.After < 0) {
		return nil, tidings.Errorf(tidings.EInvalid, "before and after must not be negative")
	}
	if _, err := readable(ctx, s.db.read, c, convID); err != nil {
		return nil, err
	}
	if err := s.db.syncMessages(ctx, c.AppID, convID); err != nil {
		return nil, err
	}
	limit := clampLimit(f.Limit)
	query := `SELECT ` + messageColumns + messageFrom + ` WHERE m.app_id = ? AND m.conversation_id = ?`
	var args []any
	forward := f.After != nil
	if forward {
		query += ` AND m.seq > ? ORDER BY m.seq ASC LIMIT ?`
		args = []any{c.AppID, convID, *f.After, limit + 1}
	} else {
		before := int64(math.MaxInt64)
		if f.Before != nil {
			before = *f.Before
		}
		query += ` AND m.seq < ? ORDER BY m.seq DESC LIMIT ?`
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
			return nil, err
		}
		page.Messages = append(page.Messages, m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
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
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	if err := e.Validate(s.maxBytes); err != nil {
		return nil, err
	}
	var msg *tidings.Message
	err = s.db.updateConv(ctx, c.AppID, convID, func(tx *Tx) error {
		conv, err := tx.conversation(c, convID)
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
		msg.EditedAt = &tx.now
		if _, err := tx.exec(`UPDATE messages SET parts = ?, metadata = ?, edited_at = ? WHERE app_id = ? AND conversation_id = ? AND id = ?`,
			partsText(msg.Parts), nullBytes(msg.Metadata), micros(tx.now), c.AppID, convID, msgID); err != nil {
			return err
		}
		actor, err := tx.actor(c) // the sender, or nil for the app's server
		if err != nil {
			return err
		}
		return tx.emit(c.AppID, tidings.EventMessageEdited, actor, convID, "", tidings.NewMessagePayload(msg, msgID))
	})
	if err != nil {
		return nil, err
	}
	return msg, nil
}

func (s *MessageService) DeleteMessage(ctx context.Context, convID, msgID string) (*tidings.Message, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	var msg *tidings.Message
	err = s.db.updateConv(ctx, c.AppID, convID, func(tx *Tx) error {
		conv, err := tx.conversation(c, convID)
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
		msg.Parts, msg.Metadata, msg.Alert, msg.DeletedAt = []tidings.Part{}, nil, "", &tx.now
		if _, err := tx.exec(`UPDATE messages SET parts = '[]', metadata = NULL, alert = '', deleted_at = ?
			WHERE app_id = ? AND conversation_id = ? AND id = ?`, micros(tx.now), c.AppID, convID, msgID); err != nil {
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
func (s *MessageService) mark(ctx context.Context, convID string, seq int64, read bool) (*tidings.MessageStatus, error) {
	c, err := userCaller(ctx)
	if err != nil {
		return nil, err
	}
	if seq < 0 {
		return nil, tidings.Errorf(tidings.EInvalid, "seq must not be negative")
	}
	var st *tidings.MessageStatus
	// A mark moves the caller's own marks only: the senders cached for
	// sending stay cached.
	err = s.db.updateMarksOf(ctx, c.AppID, convID, func(tx *Tx) error {
		// What the policy needs, the newest seq and the caller's profile
		// come from the send cache, as a send's do: a receipt comes about
		// as often as a message, and these reads were a third of its job.
		sender, err := tx.db.cache.sender(tx, c.AppID, convID, c.UserID)
		if err != nil {
			return err
		}
		cs := sender.conv
		view := tidings.Conversation{ID: convID, IsPublic: cs.isPublic, DeletedAt: cs.deletedAt, Roles: cs.roles, Role: sender.role, MutedByModerator: sender.muted}
		if err := tidings.CanMarkMessages(convID, &view); err != nil {
			return err
		}
		last := cs.lastSeq
		if seq == 0 {
			seq = last
		}
		if seq > last {
			return tidings.Errorf(tidings.EInvalid, "seq %d is beyond the newest message (%d)", seq, last)
		}
		var p tidings.Participant
		if err := tx.queryRow(`SELECT delivered_seq, read_seq FROM participants WHERE app_id = ? AND conversation_id = ? AND user_id = ?`,
			[]any{c.AppID, convID, c.UserID}, &p.DeliveredSeq, &p.ReadSeq); isNoRows(err) {
			return tidings.ErrNotParticipant(convID, c.UserID)
		} else if err != nil {
			return err
		}
		st = &tidings.MessageStatus{ConversationID: convID, UserID: c.UserID, DeliveredSeq: max(p.DeliveredSeq, seq), ReadSeq: p.ReadSeq}
		if read {
			st.ReadSeq = max(p.ReadSeq, seq)
		}
		st.UnreadCount = max(0, last-st.ReadSeq)
		name := tidings.EventMessageDelivered
		moved := st.DeliveredSeq != p.DeliveredSeq
		if read {
			name, moved = tidings.EventMessageRead, st.ReadSeq != p.ReadSeq
		}
		if !moved || seq == 0 {
			return nil
		}
		if _, err := tx.exec(`UPDATE participants SET delivered_seq = ?, read_seq = ? WHERE app_id = ? AND conversation_id = ? AND user_id = ?`,
			st.DeliveredSeq, st.ReadSeq, c.AppID, convID, c.UserID); err != nil {
			return err
		}
		// A marks job: the messages of the journal are not moved before
		// it (see runBatch).
		msgID, ok := tx.db.journal.idAt(convKey{c.AppID, convID}, seq)
		if !ok {
			if err := tx.queryRow(`SELECT id FROM messages WHERE app_id = ? AND conversation_id = ? AND seq = ?`,
				[]any{c.AppID, convID, seq}, &msgID); err != nil {
				return err
			}
		}
		if sender.profile == nil {
			return tidings.Errorf(tidings.EUnauthenticated, "the user of this token no longer exists")
		}
		return tx.emit(c.AppID, name, sender.profile, convID, c.UserID, tidings.StatusPayload{
			ConversationID: convID, ProfileID: c.UserID, Seq: seq, MessageID: msgID, Timestamp: tx.now,
		})
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}
