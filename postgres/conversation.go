package postgres

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidings/tidings"
)

// ConversationService implements tidings.ConversationService.
//
// Every change to a conversation (and every send, see MessageService)
// first queues for the conversation (lockConversation, an advisory lock
// taken before the transaction has an id), then locks its row: changes of
// one conversation are made one at a time, in the order of their events'
// positions, on every node.
type ConversationService struct{ db *DB }

var _ tidings.ConversationService = (*ConversationService)(nil)

func NewConversationService(db *DB) *ConversationService { return &ConversationService{db: db} }

// querier is what both the pool and a transaction offer.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// conversationView selects a conversation with the caller's participation
// (role and read mark; NULL when not a participant). Arguments: $1 user
// id, $2 app id, $3 conversation id.
const conversationView = `SELECT c.id, c.name, c.description, c.is_public, c.roles, c.last_seq, c.participant_count,
	c.created_by, c.created_at, c.updated_at, c.last_activity_at, c.deleted_at, p.role, p.read_seq, p.muted
	FROM conversations c LEFT JOIN participants p
	ON p.app_id = c.app_id AND p.conversation_id = c.id AND p.user_id = $1`

func scanConversation(row interface{ Scan(...any) error }) (*tidings.Conversation, error) {
	var c tidings.Conversation
	var roles []byte
	var deleted *time.Time
	var role *string
	var readSeq *int64
	var muted *bool
	if err := row.Scan(&c.ID, &c.Name, &c.Description, &c.IsPublic, &roles, &c.LastSeq, &c.ParticipantCount,
		&c.CreatedBy, &c.CreatedAt, &c.UpdatedAt, &c.LastActivityAt, &deleted, &role, &readSeq, &muted); err != nil {
		return nil, err
	}
	c.MutedByModerator = muted != nil && *muted
	if err := json.Unmarshal(roles, &c.Roles); err != nil {
		return nil, fmt.Errorf("conversation %s: bad roles: %w", c.ID, err)
	}
	c.CreatedAt, c.UpdatedAt, c.LastActivityAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC(), c.LastActivityAt.UTC()
	c.DeletedAt = fromNullTime(deleted)
	if role != nil {
		c.Role = tidings.Role(*role)
	}
	if readSeq != nil {
		c.ReadSeq = *readSeq
	}
	if c.Role != "" {
		c.UnreadCount = max(0, c.LastSeq-c.ReadSeq)
	}
	return &c, nil
}

// loadConversation loads a conversation with the caller's role in it, as
// the access policy (tidings.Can*) needs it: nil when there is none. The
// app's server has tidings.RoleServer.
func loadConversation(ctx context.Context, q querier, c tidings.Caller, id string) (*tidings.Conversation, error) {
	conv, err := scanConversation(q.QueryRow(ctx, conversationView+` WHERE c.app_id = $2 AND c.id = $3`, c.UserID, c.AppID, id))
	return asCaller(c, conv, err)
}

// asCaller returns a conversation as loaded for c: nil when there is none
// (no rows), and the app's server's view (tidings.ServerView) for it.
func asCaller(c tidings.Caller, conv *tidings.Conversation, err error) (*tidings.Conversation, error) {
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

// lockedConversation queues for the conversation and locks it for the
// rest of the transaction (see ConversationService), then loads it as
// loadConversation does. It must come first in the transaction.
func (tx *Tx) lockedConversation(c tidings.Caller, id string) (*tidings.Conversation, error) {
	if err := lockConversation(tx.ctx, tx, c.AppID, id); err != nil {
		return nil, err
	}
	conv, err := scanConversation(tx.queryRow(conversationView+` WHERE c.app_id = $2 AND c.id = $3 FOR UPDATE OF c`, c.UserID, c.AppID, id))
	return asCaller(c, conv, err)
}

// visibleConversation loads a conversation as the user caller sees it
// (tidings.CanSeeConversation).
func visibleConversation(ctx context.Context, q querier, c tidings.Caller, id string) (*tidings.Conversation, error) {
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
	// A user creator is the owner, whatever the list says; the app's
	// server gives the participants and roles it lists, and is none.
	all := tidings.ConversationParticipants(c, nc)
	var others []string // the participants to look up: all but the creator (tx.actor finds them)
	for _, p := range all {
		if p.UserID != c.UserID {
			others = append(others, p.UserID)
		}
	}
	roles, err := json.Marshal(nc.Roles)
	if err != nil {
		return nil, err
	}
	err = s.db.update(ctx, func(tx *Tx) error {
		// Queued on the id, so that two creations of one id meet here.
		if err := lockConversation(tx.ctx, tx, c.AppID, nc.ID); err != nil {
			return err
		}
		actor, err := tx.actor(c)
		if err != nil {
			return err
		}
		var taken bool
		if err := tx.queryRow(`SELECT EXISTS (SELECT 1 FROM conversations WHERE app_id = $1 AND id = $2)`,
			c.AppID, nc.ID).Scan(&taken); err != nil {
			return err
		}
		if taken {
			return tidings.ErrConversationIDNotAvailable(nc.ID)
		}
		if len(others) > 0 {
			// The first unknown user in the order given, as looking them
			// up one by one would find.
			var missing string
			err := tx.queryRow(`SELECT w.id FROM unnest($2::text[]) WITH ORDINALITY AS w (id, n)
				WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.app_id = $1 AND u.id = w.id)
				ORDER BY w.n LIMIT 1`, c.AppID, others).Scan(&missing)
			if err == nil {
				return tidings.Errorf(tidings.ENotFound, "user %q not found", missing)
			}
			if !isNoRows(err) {
				return err
			}
		}
		if _, err := tx.exec(`INSERT INTO conversations (app_id, id, name, description, is_public, roles, participant_count,
			created_by, created_at, updated_at, last_activity_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9)`,
			c.AppID, nc.ID, nc.Name, nc.Description, nc.IsPublic, string(roles), len(all), c.UserID, tx.now); err != nil {
			return err
		}
		created, err := tx.emitEvent(c.AppID, tidings.EventConversationCreate, actor, nc.ID, "", tidings.ConversationPayload{
			ConversationID: nc.ID, Name: nc.Name, Description: nc.Description, IsPublic: nc.IsPublic,
			Roles: *nc.Roles, Participants: all,
		})
		if err != nil {
			return err
		}
		// The first participants, each added by an event of their own, in
		// the order given; they see the conversation from its creation.
		ids, roleNames := make([]string, len(all)), make([]string, len(all))
		for i, p := range all {
			ids[i], roleNames[i] = p.UserID, string(p.Role)
		}
		if len(all) == 0 {
			return nil // the app's server's conversation, empty yet
		}
		if _, err := tx.exec(`INSERT INTO participants (app_id, conversation_id, user_id, role, joined_at)
			SELECT $1, $2, u, r, $5 FROM unnest($3::text[], $4::text[]) AS w (u, r)`, c.AppID, nc.ID, ids, roleNames, tx.now); err != nil {
			return err
		}
		for _, p := range all {
			if err := tx.emit(c.AppID, tidings.EventParticipantAdded, actor, nc.ID, p.UserID,
				tidings.ParticipantPayload{ConversationID: nc.ID, ProfileID: p.UserID, Role: p.Role, Reason: tidings.ReasonAdded}); err != nil {
				return err
			}
		}
		_, err = tx.exec(`INSERT INTO memberships (app_id, conversation_id, user_id, from_seq)
			SELECT $1, $2, u, $4 FROM unnest($3::text[]) AS w (u)`, c.AppID, nc.ID, ids, created.Seq)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.FindConversationByID(ctx, nc.ID)
}

// addParticipant inserts a participant, emits participantAdded and opens
// their membership of the conversation's events from that event. reason
// is the event's: tidings.ReasonAdded or ReasonJoined. It does not change
// the conversation's participant count.
func (tx *Tx) addParticipant(appID, convID string, p tidings.NewParticipant, actor *tidings.Profile, reason string) error {
	if _, err := tx.exec(`INSERT INTO participants (app_id, conversation_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4, $5)`,
		appID, convID, p.UserID, string(p.Role), tx.now); err != nil {
		return err
	}
	ev, err := tx.emitEvent(appID, tidings.EventParticipantAdded, actor, convID, p.UserID,
		tidings.ParticipantPayload{ConversationID: convID, ProfileID: p.UserID, Role: p.Role, Reason: reason})
	if err != nil {
		return err
	}
	_, err = tx.exec(`INSERT INTO memberships (app_id, conversation_id, user_id, from_seq) VALUES ($1, $2, $3, $4)`,
		appID, convID, p.UserID, ev.Seq)
	return err
}

func (s *ConversationService) FindConversationByID(ctx context.Context, id string) (*tidings.Conversation, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.db.usable(); err != nil {
		return nil, err
	}
	conv, err := shown(visibleConversation(ctx, s.db.pool, c, id))
	return conv, s.db.mapError(err)
}

// A list cursor is a time (in microseconds) and an id: the last
// conversation's activity, or the last participant's joining.
func encodeCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at.UnixMicro(), 10) + ":" + id))
}

func decodeCursor(s string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		if at, id, ok := strings.Cut(string(b), ":"); ok {
			if n, err := strconv.ParseInt(at, 10, 64); err == nil {
				return time.UnixMicro(n).UTC(), id, nil
			}
		}
	}
	return time.Time{}, "", tidings.Errorf(tidings.EInvalid, "cursor is not valid: pass the nextCursor of a previous page")
}

func (s *ConversationService) ListConversations(ctx context.Context, f tidings.ConversationFilter) (*tidings.ConversationPage, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	limit := clampLimit(f.Limit)
	// A user's conversations; the app's server's are all of the app's.
	query := conversationView + ` WHERE p.user_id IS NOT NULL AND c.app_id = $2`
	if c.Server {
		query = conversationView + ` WHERE c.app_id = $2`
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
		query += ` AND (c.last_activity_at, c.id) < ($3, $4)`
		args = append(args, at, id)
	}
	query += fmt.Sprintf(` ORDER BY c.last_activity_at DESC, c.id DESC LIMIT $%d`, len(args)+1)
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
			return nil, s.db.mapError(err)
		}
		page.Conversations = append(page.Conversations, conv)
	}
	if err := rows.Err(); err != nil {
		return nil, s.db.mapError(err)
	}
	if len(page.Conversations) > limit {
		page.Conversations = page.Conversations[:limit]
		last := page.Conversations[limit-1]
		page.NextCursor = encodeCursor(last.LastActivityAt, last.ID)
	}
	return page, nil
}

func (s *ConversationService) UpdateConversation(ctx context.Context, id string, upd tidings.ConversationUpdate) (*tidings.Conversation, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	err = s.db.update(ctx, func(tx *Tx) error {
		conv, err := tx.lockedConversation(c, id)
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
		if _, err := tx.exec(`UPDATE conversations SET name = $1, description = $2, is_public = $3, roles = $4, updated_at = $5
			WHERE app_id = $6 AND id = $7`, conv.Name, conv.Description, conv.IsPublic, string(roles), tx.now, c.AppID, id); err != nil {
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
	err = s.db.update(ctx, func(tx *Tx) error {
		conv, err := tx.lockedConversation(c, id)
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
		name, at := tidings.EventConversationUndelete, (*time.Time)(nil)
		if deleted {
			name, at = tidings.EventConversationDelete, &tx.now
		}
		if _, err := tx.exec(`UPDATE conversations SET deleted_at = $1, updated_at = $2 WHERE app_id = $3 AND id = $4`,
			at, tx.now, c.AppID, id); err != nil {
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
	var idValue, idKind *string
	if err := row.Scan(&p.UserID, &p.Role, &p.DeliveredSeq, &p.ReadSeq, &p.JoinedAt,
		&p.Profile.DisplayName, &p.Profile.AvatarURL, &idValue, &idKind, &p.Muted); err != nil {
		return nil, err
	}
	p.Profile.ID = p.UserID
	if idValue != nil && idKind != nil {
		p.Profile.Identifier = &tidings.Identifier{Value: *idValue, Kind: *idKind}
	}
	p.JoinedAt = p.JoinedAt.UTC()
	return &p, nil
}

// findParticipant loads a participant; forUpdate (in a transaction) locks
// their row until it ends.
func findParticipant(ctx context.Context, q querier, appID, convID, userID string, forUpdate bool) (*tidings.Participant, error) {
	query := `SELECT ` + participantColumns + participantFrom + ` WHERE p.app_id = $1 AND p.conversation_id = $2 AND p.user_id = $3`
	if forUpdate {
		query += ` FOR UPDATE OF p`
	}
	p, err := scanParticipant(q.QueryRow(ctx, query, appID, convID, userID))
	if isNoRows(err) {
		return nil, tidings.ErrNotParticipant(convID, userID)
	}
	return p, err
}

// participant loads a participant in the transaction, as the access
// policy needs it: nil when the user does not take part.
func (tx *Tx) participant(appID, convID, userID string) (*tidings.Participant, error) {
	p, err := findParticipant(tx.ctx, tx.tx, appID, convID, userID, false)
	if tidings.ErrorCode(err) == tidings.ENotFound {
		return nil, nil
	}
	return p, err
}

// readParticipant loads a participant after a write, outside it.
func (s *ConversationService) readParticipant(ctx context.Context, appID, convID, userID string) (*tidings.Participant, error) {
	if err := s.db.usable(); err != nil {
		return nil, err
	}
	p, err := findParticipant(ctx, s.db.pool, appID, convID, userID, false)
	return p, s.db.mapError(err)
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
	if _, err := s.FindConversationByID(ctx, id); err != nil {
		return nil, err
	}
	query := `SELECT ` + participantColumns + participantFrom + ` WHERE p.app_id = $1 AND p.conversation_id = $2`
	args := []any{c.AppID, id}
	if f.Cursor != "" {
		at, userID, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, err
		}
		query += ` AND (p.joined_at, p.user_id) > ($3, $4)`
		args = append(args, at, userID)
	}
	query += fmt.Sprintf(` ORDER BY p.joined_at, p.user_id LIMIT $%d`, len(args)+1)
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
			return nil, s.db.mapError(err)
		}
		page.Participants = append(page.Participants, p)
	}
	if err := rows.Err(); err != nil {
		return nil, s.db.mapError(err)
	}
	if len(page.Participants) > limit {
		page.Participants = page.Participants[:limit]
		last := page.Participants[limit-1]
		page.NextCursor = encodeCursor(last.JoinedAt, last.UserID)
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
	err = s.db.update(ctx, func(tx *Tx) error {
		conv, err := tx.lockedConversation(c, id)
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
		if _, err := tx.findUser(c.AppID, np.UserID, false); err != nil {
			return err
		}
		return tx.join(c, id, np, tidings.ReasonAdded)
	})
	if err != nil {
		return nil, err
	}
	return s.readParticipant(ctx, c.AppID, id, np.UserID)
}

// join adds a participant on behalf of the caller and counts them; reason
// is tidings.ReasonAdded or ReasonJoined.
func (tx *Tx) join(c tidings.Caller, convID string, np tidings.NewParticipant, reason string) error {
	actor, err := tx.actor(c)
	if err != nil {
		return err
	}
	if _, err := tx.exec(`UPDATE conversations SET participant_count = participant_count + 1 WHERE app_id = $1 AND id = $2`, c.AppID, convID); err != nil {
		return err
	}
	return tx.addParticipant(c.AppID, convID, np, actor, reason)
}

func (s *ConversationService) UpdateParticipant(ctx context.Context, id, userID string, role tidings.Role) (*tidings.Participant, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	if !role.Valid() {
		return nil, tidings.Errorf(tidings.EInvalid, "role %q is not a role: use owner, admin or member", role)
	}
	err = s.db.update(ctx, func(tx *Tx) error {
		conv, err := tx.lockedConversation(c, id)
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
		if _, err := tx.exec(`UPDATE participants SET role = $1 WHERE app_id = $2 AND conversation_id = $3 AND user_id = $4`,
			string(role), c.AppID, id, userID); err != nil {
			return err
		}
		return tx.emit(c.AppID, tidings.EventParticipantUpdated, actor, id, userID,
			tidings.ParticipantPayload{ConversationID: id, ProfileID: userID, Role: role})
	})
	if err != nil {
		return nil, err
	}
	return s.readParticipant(ctx, c.AppID, id, userID)
}

func (s *ConversationService) MuteParticipant(ctx context.Context, id, userID string, muted bool) (*tidings.Participant, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	err = s.db.update(ctx, func(tx *Tx) error {
		conv, err := tx.lockedConversation(c, id)
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
		if _, err := tx.exec(`UPDATE participants SET muted = $1 WHERE app_id = $2 AND conversation_id = $3 AND user_id = $4`,
			muted, c.AppID, id, userID); err != nil {
			return err
		}
		return tx.emit(c.AppID, tidings.EventParticipantUpdated, actor, id, userID,
			tidings.ParticipantPayload{ConversationID: id, ProfileID: userID, Role: target.Role, Muted: &muted})
	})
	if err != nil {
		return nil, err
	}
	return s.readParticipant(ctx, c.AppID, id, userID)
}

// countOwners counts the owners of a conversation, for the last owner
// rule of the access policy. The conversation is locked, so that no other
// change of roles can meet this one.
func (tx *Tx) countOwners(appID, convID string) (int, error) {
	var owners int
	err := tx.queryRow(`SELECT count(*) FROM participants WHERE app_id = $1 AND conversation_id = $2 AND role = 'owner'`,
		appID, convID).Scan(&owners)
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
	return s.db.update(ctx, func(tx *Tx) error {
		conv, err := tx.lockedConversation(c, id)
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
	if _, err := tx.exec(`DELETE FROM participants WHERE app_id = $1 AND conversation_id = $2 AND user_id = $3`, c.AppID, convID, userID); err != nil {
		return err
	}
	if _, err := tx.exec(`UPDATE conversations SET participant_count = participant_count - 1 WHERE app_id = $1 AND id = $2`, c.AppID, convID); err != nil {
		return err
	}
	ev, err := tx.emitEvent(c.AppID, tidings.EventParticipantRemoved, actor, convID, userID,
		tidings.ParticipantPayload{ConversationID: convID, ProfileID: userID, Reason: reason})
	if err != nil {
		return err
	}
	// They see their removal, and nothing after it.
	_, err = tx.exec(`UPDATE memberships SET to_seq = $1 WHERE app_id = $2 AND user_id = $3 AND conversation_id = $4 AND to_seq IS NULL`,
		ev.Seq, c.AppID, userID, convID)
	return err
}

func (s *ConversationService) Join(ctx context.Context, id string) (*tidings.Participant, error) {
	c, err := userCaller(ctx)
	if err != nil {
		return nil, err
	}
	err = s.db.update(ctx, func(tx *Tx) error {
		conv, err := tx.lockedConversation(c, id)
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
	return s.readParticipant(ctx, c.AppID, id, c.UserID)
}

func (s *ConversationService) Leave(ctx context.Context, id string) error {
	c, err := userCaller(ctx)
	if err != nil {
		return err
	}
	return s.db.update(ctx, func(tx *Tx) error {
		conv, err := tx.lockedConversation(c, id)
		if err != nil {
			return err
		}
		if err := tidings.CanLeaveConversation(id, conv, func() (int, error) { return tx.countOwners(c.AppID, id) }); err != nil {
			return err
		}
		return tx.removeParticipant(c, id, c.UserID)
	})
}
