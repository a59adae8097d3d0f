package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/tidings/tidings"
)

// ConversationService implements tidings.ConversationService.
type ConversationService struct{ db *DB }

var _ tidings.ConversationService = (*ConversationService)(nil)

func NewConversationService(db *DB) *ConversationService { return &ConversationService{db: db} }

// rowQuerier is what both the read pool and the write connection offer.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// conversationView selects a conversation with the caller's participation
// (role and read mark; NULL when not a participant). Arguments: user id,
// then the WHERE clause's.
const conversationView = `SELECT c.id, c.name, c.description, c.is_public, c.roles, c.last_seq, c.participant_count,
	c.created_by, c.created_at, c.updated_at, c.last_activity_at, c.deleted_at, p.role, p.read_seq, p.muted
	FROM conversations c LEFT JOIN participants p
	ON p.app_id = c.app_id AND p.conversation_id = c.id AND p.user_id = ?`

func scanConversation(row interface{ Scan(...any) error }) (*tidings.Conversation, error) {
	var c tidings.Conversation
	var roles string
	var created, updated, activity int64
	var deleted sql.NullInt64
	var role sql.NullString
	var readSeq sql.NullInt64
	var muted sql.NullBool
	if err := row.Scan(&c.ID, &c.Name, &c.Description, &c.IsPublic, &roles, &c.LastSeq, &c.ParticipantCount,
		&c.CreatedBy, &created, &updated, &activity, &deleted, &role, &readSeq, &muted); err != nil {
		return nil, err
	}
	c.MutedByModerator = muted.Bool
	if err := json.Unmarshal([]byte(roles), &c.Roles); err != nil {
		return nil, fmt.Errorf("conversation %s: bad roles: %w", c.ID, err)
	}
	c.CreatedAt, c.UpdatedAt, c.LastActivityAt = fromMicros(created), fromMicros(updated), fromMicros(activity)
	c.DeletedAt = fromNullMicros(deleted)
	c.Role = tidings.Role(role.String)
	c.ReadSeq = readSeq.Int64
	if c.Role != "" {
		c.UnreadCount = max(0, c.LastSeq-c.ReadSeq)
	}
	return &c, nil
}

// loadConversation loads a conversation with the caller's role in it, as
// the access policy (tidings.Can*) needs it: nil when there is none. The
// app's server has tidings.RoleServer.
func loadConversation(ctx context.Context, q rowQuerier, c tidings.Caller, id string) (*tidings.Conversation, error) {
	conv, err := scanConversation(q.QueryRowContext(ctx, conversationView+` WHERE c.app_id = ? AND c.id = ?`, c.UserID, c.AppID, id))
	if isNoRows(err) {
		return nil, nil
	}
	if err == nil && c.Server {
		conv = tidings.ServerView(conv)
	}
	return conv, err
}

// shown returns conv as its caller is answered with: the app's server
// takes no part in it (no role, no marks).
func shown(conv *tidings.Conversation, err error) (*tidings.Conversation, error) {
	if conv != nil && conv.Role == tidings.RoleServer {
		conv.Role = ""
	}
	return conv, err
}

// conversation loads a conversation in the write transaction (see
// loadConversation).
func (tx *Tx) conversation(c tidings.Caller, id string) (*tidings.Conversation, error) {
	return loadConversation(tx.ctx, tx, c, id)
}

// visibleConversation loads a conversation as the user caller sees it
// (tidings.CanSeeConversation).
func visibleConversation(ctx context.Context, q rowQuerier, c tidings.Caller, id string) (*tidings.Conversation, error) {
	conv, err := loadConversation(ctx, q, c, id)
	if err != nil {
		return nil, err
	}
	if err := tidings.CanSeeConversation(id, conv); err != nil {
		return nil, err
	}
	return conv, nil
}

func (s *ConversationService) CreateConversation(ctx context.Context, nc tidings.NewConversation) (*tidings.Conversation, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	if err := nc.Validate(); err != nil {
		return nil, err
	}
	all := tidings.ConversationParticipants(c, nc)
	roles, err := json.Marshal(nc.Roles)
	if err != nil {
		return nil, err
	}
	err = s.db.updateConv(ctx, c.AppID, nc.ID, func(tx *Tx) error {
		actor, err := tx.actor(c)
		if err != nil {
			return err
		}
		var n int
		if err := tx.queryRow(`SELECT COUNT(*) FROM conversations WHERE app_id = ? AND id = ?`, []any{c.AppID, nc.ID}, &n); err != nil {
			return err
		}
		if n > 0 {
			return tidings.ErrConversationIDNotAvailable(nc.ID)
		}
		for _, p := range all {
			if p.UserID == c.UserID {
				continue // the creator: tx.actor found them
			}
			if _, err := tx.findUser(c.AppID, p.UserID); err != nil {
				return err
			}
		}
		now := micros(tx.now)
		if _, err := tx.exec(`INSERT INTO conversations (app_id, id, name, description, is_public, roles, participant_count,
			created_by, created_at, updated_at, last_activity_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.AppID, nc.ID, nc.Name, nc.Description, nc.IsPublic, string(roles), len(all), c.UserID, now, now, now); err != nil {
			return err
		}
		created, err := tx.emitEvent(c.AppID, tidings.EventConversationCreate, actor, nc.ID, "", tidings.ConversationPayload{
			ConversationID: nc.ID, Name: nc.Name, Description: nc.Description, IsPublic: nc.IsPublic,
			Roles: *nc.Roles, Participants: all,
		})
		if err != nil {
			return err
		}
		// The first participants see the conversation from its creation.
		for _, p := range all {
			if err := tx.addParticipant(c.AppID, nc.ID, p, actor, created.Seq, tidings.ReasonAdded); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s.FindConversationByID(ctx, nc.ID)
}

// addParticipant inserts a participant, emits participantAdded and opens
// their membership of the conversation's events from fromSeq (0: from
// that participantAdded event). reason is the event's: tidings.ReasonAdded
// or ReasonJoined. It does not change the conversation's participant count.
func (tx *Tx) addParticipant(appID, convID string, p tidings.NewParticipant, actor *tidings.Profile, fromSeq int64, reason string) error {
	if _, err := tx.exec(`INSERT INTO participants (app_id, conversation_id, user_id, role, joined_at) VALUES (?, ?, ?, ?, ?)`,
		appID, convID, p.UserID, string(p.Role), micros(tx.now)); err != nil {
		return err
	}
	ev, err := tx.emitEvent(appID, tidings.EventParticipantAdded, actor, convID, p.UserID,
		tidings.ParticipantPayload{ConversationID: convID, ProfileID: p.UserID, Role: p.Role, Reason: reason})
	if err != nil {
		return err
	}
	if fromSeq == 0 {
		fromSeq = ev.Seq
	}
	_, err = tx.exec(`INSERT INTO memberships (app_id, conversation_id, user_id, from_seq) VALUES (?, ?, ?, ?)`,
		appID, convID, p.UserID, fromSeq)
	return err
}

func (s *ConversationService) FindConversationByID(ctx context.Context, id string) (*tidings.Conversation, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	// The marks of sends not written yet are added to what is read (see
	// unwritten), rather than written first: a client opening a
	// conversation would otherwise cost a write of every waiting mark.
	var conv *tidings.Conversation
	counted, err := s.db.unwritten.read(func(l *unwrittenLookup) error {
		cv, err := visibleConversation(ctx, s.db.read, c, id)
		if err != nil {
			return err
		}
		k := convKey{c.AppID, id}
		cv.LastSeq = l.lastSeq(k, cv.LastSeq)
		cv.LastActivityAt = fromMicros(l.activity(k, micros(cv.LastActivityAt)))
		if cv.Role != "" && cv.Role != tidings.RoleServer {
			cv.ReadSeq = l.readSeq(k, c.UserID, cv.ReadSeq)
			cv.UnreadCount = max(0, cv.LastSeq-cv.ReadSeq)
		}
		conv = cv
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !counted {
		// What it reads of the marks is this conversation's: its row
		// and its participants' (the caller's among them).
		if err := s.db.syncMarksOf(ctx, []convKey{{c.AppID, id}}); err != nil {
			return nil, err
		}
		return shown(visibleConversation(ctx, s.db.read, c, id))
	}
	return shown(conv, nil)
}

// The list cursor is the last conversation's activity time and id.
func encodeCursor(conv *tidings.Conversation) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(micros(conv.LastActivityAt), 10) + ":" + conv.ID))
}

func decodeCursor(s string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		if at, id, ok := strings.Cut(string(b), ":"); ok {
			if n, err := strconv.ParseInt(at, 10, 64); err == nil {
				return n, id, nil
			}
		}
	}
	return 0, "", tidings.Errorf(tidings.EInvalid, "cursor is not valid: pass the nextCursor of a previous page")
}

func (s *ConversationService) ListConversations(ctx context.Context, f tidings.ConversationFilter) (*tidings.ConversationPage, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.syncListMarks(ctx, c); err != nil {
		return nil, err
	}
	limit := clampLimit(f.Limit)
	// A user's conversations; the app's server's are all of the app's.
	query := conversationView + ` WHERE p.user_id IS NOT NULL AND c.app_id = ?`
	if c.Server {
		query = conversationView + ` WHERE c.app_id = ?`
	}
	args := []any{c.UserID, c.AppID}
	if !f.IncludeDeleted {
		query += ` AND c.deleted_at IS NULL`
	}
	if f.Cursor != "" {
		at, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, err
		}
		query += ` AND (c.last_activity_at < ? OR (c.last_activity_at = ? AND c.id < ?))`
		args = append(args, at, at, id)
	}
	query += ` ORDER BY c.last_activity_at DESC, c.id DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.db.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	page := &tidings.ConversationPage{Conversations: []*tidings.Conversation{}}
	for rows.Next() {
		conv, err := scanConversation(rows)
		if err != nil {
			return nil, err
		}
		page.Conversations = append(page.Conversations, conv)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(page.Conversations) > limit {
		page.Conversations = page.Conversations[:limit]
		page.NextCursor = encodeCursor(page.Conversations[limit-1])
	}
	return page, nil
}

// syncListMarks has the marks that order c's list of conversations by
// their last activity written, as syncMarks, but for a user only those of
// the conversations they take part in, and for the app's server only its
// app's: a client listing its conversations (each time an app opens)
// would otherwise cost a write of every conversation's waiting marks, and
// the sends behind it would wait for it (docs/benchmarks.md, "A list of
// conversations no longer writes every mark"); an app's server listing
// its conversations, a write of every other app's. A committed send's
// marks are in unwritten before anyone is told of it.
func (s *ConversationService) syncListMarks(ctx context.Context, c tidings.Caller) error {
	if !s.db.marksPending.Load() {
		return s.db.syncMarks(ctx) // nothing waits: no write
	}
	if c.Server {
		return s.db.syncMarksOf(ctx, s.db.unwritten.appConvs(c.AppID))
	}
	return s.db.syncMarksOfUser(ctx, c.AppID, c.UserID)
}

// syncMarksOfUser is syncMarks for the marks of the conversations user of
// app takes part in alone.
func (db *DB) syncMarksOfUser(ctx context.Context, app, user string) error {
	rows, err := db.query(ctx, `SELECT conversation_id FROM participants WHERE app_id = ? AND user_id = ?`, app, user)
	if err != nil {
		return err
	}
	defer rows.Close()
	var keys []convKey
	for rows.Next() {
		k := convKey{app: app}
		if err := rows.Scan(&k.conv); err != nil {
			return err
		}
		if db.unwritten.has(k) {
			keys = append(keys, k)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return db.syncMarksOf(ctx, keys)
}

func (s *ConversationService) UpdateConversation(ctx context.Context, id string, upd tidings.ConversationUpdate) (*tidings.Conversation, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	err = s.db.updateConv(ctx, c.AppID, id, func(tx *Tx) error {
		conv, err := tx.conversation(c, id)
		if err != nil {
			return err
		}
		if err := tidings.CanUpdateConversation(id, conv, upd); err != nil {
			return err
		}
		if err := upd.Apply(conv); err != nil {
			return err
		}
		actor, err := tx.actor(c)
		if err != nil {
			return err
		}
		roles, err := json.Marshal(conv.Roles)
		if err != nil {
			return err
		}
		if _, err := tx.exec(`UPDATE conversations SET name = ?, description = ?, is_public = ?, roles = ?, updated_at = ?
			WHERE app_id = ? AND id = ?`, conv.Name, conv.Description, conv.IsPublic, string(roles), micros(tx.now), c.AppID, id); err != nil {
			return err
		}
		return tx.emit(c.AppID, tidings.EventConversationUpdate, actor, id, "", tidings.ConversationPayload{
			ConversationID: id, Name: conv.Name, Description: conv.Description, IsPublic: conv.IsPublic, Roles: conv.Roles,
		})
	})
	if err != nil {
		return nil, err
	}
	return s.FindConversationByID(ctx, id)
}

func (s *ConversationService) DeleteConversation(ctx context.Context, id string) error {
	_, err := s.setDeleted(ctx, id, true)
	return err
}

func (s *ConversationService) UndeleteConversation(ctx context.Context, id string) (*tidings.Conversation, error) {
	return s.setDeleted(ctx, id, false)
}

// setDeleted soft-deletes or restores a conversation. Doing it twice is
// not an error and emits no second event.
func (s *ConversationService) setDeleted(ctx context.Context, id string, deleted bool) (*tidings.Conversation, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	err = s.db.updateConv(ctx, c.AppID, id, func(tx *Tx) error {
		conv, err := tx.conversation(c, id)
		if err != nil {
			return err
		}
		if err := tidings.CanDeleteConversation(id, conv); err != nil || (conv.DeletedAt != nil) == deleted {
			return err
		}
		actor, err := tx.actor(c)
		if err != nil {
			return err
		}
		name, at := tidings.EventConversationUndelete, any(nil)
		if deleted {
			name, at = tidings.EventConversationDelete, micros(tx.now)
		}
		if _, err := tx.exec(`UPDATE conversations SET deleted_at = ?, updated_at = ? WHERE app_id = ? AND id = ?`,
			at, micros(tx.now), c.AppID, id); err != nil {
			return err
		}
		return tx.emit(c.AppID, name, actor, id, "", tidings.ConversationDatePayload{ConversationID: id, Date: tx.now})
	})
	if err != nil || deleted {
		return nil, err
	}
	return s.FindConversationByID(ctx, id)
}

const participantColumns = `p.user_id, p.role, p.delivered_seq, p.read_seq, p.joined_at,
	u.display_name, u.avatar_url, u.identifier_value, u.identifier_kind, p.muted`

const participantFrom = ` FROM participants p JOIN users u ON u.app_id = p.app_id AND u.id = p.user_id`

func scanParticipant(row interface{ Scan(...any) error }) (*tidings.Participant, error) {
	var p tidings.Participant
	var joined int64
	var idValue, idKind sql.NullString
	if err := row.Scan(&p.UserID, &p.Role, &p.DeliveredSeq, &p.ReadSeq, &joined,
		&p.Profile.DisplayName, &p.Profile.AvatarURL, &idValue, &idKind, &p.Muted); err != nil {
		return nil, err
	}
	p.Profile.ID = p.UserID
	if idValue.Valid {
		p.Profile.Identifier = &tidings.Identifier{Value: idValue.String, Kind: idKind.String}
	}
	p.JoinedAt = fromMicros(joined)
	return &p, nil
}

func findParticipant(ctx context.Context, q rowQuerier, appID, convID, userID string) (*tidings.Participant, error) {
	p, err := scanParticipant(q.QueryRowContext(ctx, `SELECT `+participantColumns+participantFrom+`
		WHERE p.app_id = ? AND p.conversation_id = ? AND p.user_id = ?`, appID, convID, userID))
	if isNoRows(err) {
		return nil, tidings.ErrNotParticipant(convID, userID)
	}
	return p, err
}

// participant loads a participant in the write transaction, as the access
// policy needs it: nil when the user does not take part.
func (tx *Tx) participant(appID, convID, userID string) (*tidings.Participant, error) {
	p, err := findParticipant(tx.ctx, tx, appID, convID, userID)
	if tidings.ErrorCode(err) == tidings.ENotFound {
		return nil, nil
	}
	return p, err
}

func (s *ConversationService) ListParticipants(ctx context.Context, id string, f tidings.ParticipantFilter) (*tidings.ParticipantPage, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = tidings.DefaultParticipantPage
	case limit > tidings.MaxParticipantPage:
		limit = tidings.MaxParticipantPage
	}
	if _, err := visibleConversation(ctx, s.db.read, c, id); err != nil {
		return nil, err
	}
	// The senders' marks not written yet are added to what is read (see
	// unwritten), rather than written first.
	var page *tidings.ParticipantPage
	counted, err := s.db.unwritten.read(func(l *unwrittenLookup) error {
		var err error
		page, err = s.participantPage(ctx, c, id, f.Cursor, limit, l)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !counted {
		if err := s.db.syncMarksOf(ctx, []convKey{{c.AppID, id}}); err != nil {
			return nil, err
		}
		return s.participantPage(ctx, c, id, f.Cursor, limit, nil)
	}
	return page, nil
}

// participantPage reads a page of conversation id's participants, adding
// the marks l holds that are not written yet (l nil: all are written).
func (s *ConversationService) participantPage(ctx context.Context, c tidings.Caller, id, cursor string, limit int, l *unwrittenLookup) (*tidings.ParticipantPage, error) {
	query := `SELECT ` + participantColumns + participantFrom + ` WHERE p.app_id = ? AND p.conversation_id = ?`
	args := []any{c.AppID, id}
	if cursor != "" {
		at, userID, err := decodeCursor(cursor)
		if err != nil {
			return nil, err
		}
		query += ` AND (p.joined_at > ? OR (p.joined_at = ? AND p.user_id > ?))`
		args = append(args, at, at, userID)
	}
	query += ` ORDER BY p.joined_at, p.user_id LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.db.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	page := &tidings.ParticipantPage{Participants: []*tidings.Participant{}}
	for rows.Next() {
		p, err := scanParticipant(rows)
		if err != nil {
			return nil, err
		}
		page.Participants = append(page.Participants, p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	if l != nil {
		k := convKey{c.AppID, id}
		for _, p := range page.Participants {
			// A sender has seen their own message: both marks are its seq.
			p.DeliveredSeq = l.readSeq(k, p.UserID, p.DeliveredSeq)
			p.ReadSeq = l.readSeq(k, p.UserID, p.ReadSeq)
		}
	}
	if len(page.Participants) > limit {
		page.Participants = page.Participants[:limit]
		last := page.Participants[limit-1]
		page.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(micros(last.JoinedAt), 10) + ":" + last.UserID))
	}
	return page, nil
}

func (s *ConversationService) AddParticipant(ctx context.Context, id string, np tidings.NewParticipant) (*tidings.Participant, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	if err := np.Validate(); err != nil {
		return nil, err
	}
	err = s.db.updateConv(ctx, c.AppID, id, func(tx *Tx) error {
		conv, err := tx.conversation(c, id)
		if err != nil {
			return err
		}
		existing, err := tx.participant(c.AppID, id, np.UserID)
		if err != nil {
			return err
		}
		if err := tidings.CanAddParticipant(id, conv, np, existing); err != nil {
			return err
		}
		if _, err := tx.findUser(c.AppID, np.UserID); err != nil {
			return err
		}
		return tx.join(c, id, np, tidings.ReasonAdded)
	})
	if err != nil {
		return nil, err
	}
	return findParticipant(ctx, s.db.read, c.AppID, id, np.UserID)
}

// join adds a participant on behalf of the caller and counts them; reason
// is tidings.ReasonAdded or ReasonJoined.
func (tx *Tx) join(c tidings.Caller, convID string, np tidings.NewParticipant, reason string) error {
	actor, err := tx.actor(c)
	if err != nil {
		return err
	}
	if _, err := tx.exec(`UPDATE conversations SET participant_count = participant_count + 1 WHERE app_id = ? AND id = ?`, c.AppID, convID); err != nil {
		return err
	}
	return tx.addParticipant(c.AppID, convID, np, actor, 0, reason)
}

func (s *ConversationService) UpdateParticipant(ctx context.Context, id, userID string, role tidings.Role) (*tidings.Participant, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	if !role.Valid() {
		return nil, tidings.Errorf(tidings.EInvalid, "role %q is not a role: use owner, admin or member", role)
	}
	err = s.db.updateConv(ctx, c.AppID, id, func(tx *Tx) error {
		conv, err := tx.conversation(c, id)
		if err != nil {
			return err
		}
		target, err := tx.participant(c.AppID, id, userID)
		if err != nil {
			return err
		}
		change, err := tidings.CanUpdateParticipant(id, conv, userID, target, role, func() (int, error) { return tx.countOwners(c.AppID, id) })
		if err != nil || !change {
			return err
		}
		actor, err := tx.actor(c)
		if err != nil {
			return err
		}
		if _, err := tx.exec(`UPDATE participants SET role = ? WHERE app_id = ? AND conversation_id = ? AND user_id = ?`,
			string(role), c.AppID, id, userID); err != nil {
			return err
		}
		return tx.emit(c.AppID, tidings.EventParticipantUpdated, actor, id, userID,
			tidings.ParticipantPayload{ConversationID: id, ProfileID: userID, Role: role})
	})
	if err != nil {
		return nil, err
	}
	return findParticipant(ctx, s.db.read, c.AppID, id, userID)
}

func (s *ConversationService) MuteParticipant(ctx context.Context, id, userID string, muted bool) (*tidings.Participant, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	err = s.db.updateConv(ctx, c.AppID, id, func(tx *Tx) error {
		conv, err := tx.conversation(c, id)
		if err != nil {
			return err
		}
		target, err := tx.participant(c.AppID, id, userID)
		if err != nil {
			return err
		}
		if err := tidings.CanMuteParticipant(id, conv, userID, target); err != nil || target.Muted == muted {
			return err // the same: nothing changes
		}
		actor, err := tx.actor(c)
		if err != nil {
			return err
		}
		if _, err := tx.exec(`UPDATE participants SET muted = ? WHERE app_id = ? AND conversation_id = ? AND user_id = ?`,
			muted, c.AppID, id, userID); err != nil {
			return err
		}
		return tx.emit(c.AppID, tidings.EventParticipantUpdated, actor, id, userID,
			tidings.ParticipantPayload{ConversationID: id, ProfileID: userID, Role: target.Role, Muted: &muted})
	})
	if err != nil {
		return nil, err
	}
	return findParticipant(ctx, s.db.read, c.AppID, id, userID)
}

// countOwners counts the owners of a conversation, for the last owner
// rule of the access policy.
func (tx *Tx) countOwners(appID, convID string) (int, error) {
	var owners int
	err := tx.queryRow(`SELECT COUNT(*) FROM participants WHERE app_id = ? AND conversation_id = ? AND role = 'owner'`,
		[]any{appID, convID}, &owners)
	return owners, err
}

func (s *ConversationService) RemoveParticipant(ctx context.Context, id, userID string) error {
	c, err := actingCaller(ctx)
	if err != nil {
		return err
	}
	if c.IsUser() && userID == c.UserID {
		return s.Leave(ctx, id)
	}
	return s.db.updateConv(ctx, c.AppID, id, func(tx *Tx) error {
		conv, err := tx.conversation(c, id)
		if err != nil {
			return err
		}
		target, err := tx.participant(c.AppID, id, userID)
		if err != nil {
			return err
		}
		if err := tidings.CanRemoveParticipant(id, conv, userID, target); err != nil {
			return err
		}
		return tx.removeParticipant(c, id, userID)
	})
}

// removeParticipant deletes a participant, uncounts them and emits
// participantRemoved, with the reason tidings.ReasonLeft when the caller
// removes themselves and ReasonRemoved otherwise.
func (tx *Tx) removeParticipant(c tidings.Caller, convID, userID string) error {
	reason := tidings.ReasonRemoved
	if userID == c.UserID {
		reason = tidings.ReasonLeft
	}
	actor, err := tx.actor(c)
	if err != nil {
		return err
	}
	if _, err := tx.exec(`DELETE FROM participants WHERE app_id = ? AND conversation_id = ? AND user_id = ?`, c.AppID, convID, userID); err != nil {
		return err
	}
	if _, err := tx.exec(`UPDATE conversations SET participant_count = participant_count - 1 WHERE app_id = ? AND id = ?`, c.AppID, convID); err != nil {
		return err
	}
	ev, err := tx.emitEvent(c.AppID, tidings.EventParticipantRemoved, actor, convID, userID,
		tidings.ParticipantPayload{ConversationID: convID, ProfileID: userID, Reason: reason})
	if err != nil {
		return err
	}
	// They see their removal, and nothing after it.
	_, err = tx.exec(`UPDATE memberships SET to_seq = ? WHERE app_id = ? AND user_id = ? AND conversation_id = ? AND to_seq IS NULL`,
		ev.Seq, c.AppID, userID, convID)
	return err
}

func (s *ConversationService) Join(ctx context.Context, id string) (*tidings.Participant, error) {
	c, err := userCaller(ctx)
	if err != nil {
		return nil, err
	}
	err = s.db.updateConv(ctx, c.AppID, id, func(tx *Tx) error {
		conv, err := tx.conversation(c, id)
		if err != nil {
			return err
		}
		if join, err := tidings.CanJoinConversation(id, conv); err != nil || !join {
			return err // !join: already in, joining again changes nothing
		}
		return tx.join(c, id, tidings.NewParticipant{UserID: c.UserID, Role: tidings.RoleMember}, tidings.ReasonJoined)
	})
	if err != nil {
		return nil, err
	}
	return findParticipant(ctx, s.db.read, c.AppID, id, c.UserID)
}

func (s *ConversationService) Leave(ctx context.Context, id string) error {
	c, err := userCaller(ctx)
	if err != nil {
		return err
	}
	return s.db.updateConv(ctx, c.AppID, id, func(tx *Tx) error {
		conv, err := tx.conversation(c, id)
		if err != nil {
			return err
		}
		if err := tidings.CanLeaveConversation(id, conv, func() (int, error) { return tx.countOwners(c.AppID, id) }); err != nil {
			return err
		}
		return tx.removeParticipant(c, id, c.UserID)
	})
}

// parseRoles decodes a conversation's roles column, remembering the few
// distinct values there are so that sending does not decode JSON each
// time. Only the writer calls it.
func (db *DB) parseRoles(s string) (tidings.Roles, error) {
	if r, ok := db.roles[s]; ok {
		return r, nil
	}
	var r tidings.Roles
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		return r, fmt.Errorf("bad roles %q: %w", s, err)
	}
	if len(db.roles) > 1024 {
		clear(db.roles)
	}
	db.roles[s] = r
	return r, nil
}
