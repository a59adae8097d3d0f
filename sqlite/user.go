package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/tidings/tidings"
)

// UserService implements tidings.UserService.
type UserService struct{ db *DB }

var _ tidings.UserService = (*UserService)(nil)

func NewUserService(db *DB) *UserService { return &UserService{db: db} }

const userColumns = `id, display_name, avatar_url, identifier_value, identifier_kind, metadata, created_at, updated_at, presence_hidden, last_seen_at,
	deactivated_at, tokens_not_before`

func scanUser(row interface{ Scan(...any) error }) (*tidings.User, error) {
	var u tidings.User
	var idValue, idKind, meta sql.NullString
	var created, updated int64
	var lastSeen, deactivated, notBefore sql.NullInt64
	if err := row.Scan(&u.ID, &u.DisplayName, &u.AvatarURL, &idValue, &idKind, &meta, &created, &updated, &u.PresenceHidden, &lastSeen,
		&deactivated, &notBefore); err != nil {
		return nil, err
	}
	u.DeactivatedAt, u.TokensNotBefore = fromNullMicros(deactivated), fromNullMicros(notBefore)
	if lastSeen.Valid {
		t := fromMicros(lastSeen.Int64)
		u.LastSeenAt = &t
	}
	if idValue.Valid {
		u.Identifier = &tidings.Identifier{Value: idValue.String, Kind: idKind.String}
	}
	if meta.Valid {
		u.Metadata = json.RawMessage(meta.String)
	}
	u.CreatedAt, u.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &u, nil
}

func identifierArgs(id *tidings.Identifier) (value, kind any) {
	if id == nil {
		return nil, nil
	}
	return id.Value, id.Kind
}

func (s *UserService) CreateUser(ctx context.Context, u *tidings.User) (*tidings.User, error) {
	c, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	nu := *u
	if err := nu.Validate(); err != nil {
		return nil, err
	}
	err = s.db.updateUser(ctx, c.AppID, nu.ID, func(tx *Tx) error {
		var n int
		if err := tx.queryRow(`SELECT COUNT(*) FROM users WHERE app_id = ? AND id = ?`, []any{c.AppID, nu.ID}, &n); err != nil {
			return err
		}
		if n > 0 {
			return tidings.Errorf(tidings.EConflict, "user %q already exists", nu.ID)
		}
		if err := tx.identifierFree(c.AppID, nu.ID, nu.Identifier); err != nil {
			return err
		}
		nu.CreatedAt, nu.UpdatedAt, nu.LastSeenAt, nu.DeactivatedAt, nu.TokensNotBefore = tx.now, tx.now, nil, nil, nil
		idValue, idKind := identifierArgs(nu.Identifier)
		if _, err := tx.exec(`INSERT INTO users (app_id, `+userColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)`,
			c.AppID, nu.ID, nu.DisplayName, nu.AvatarURL, idValue, idKind, nullBytes(nu.Metadata), micros(tx.now), micros(tx.now), nu.PresenceHidden); err != nil {
			return err
		}
		return tx.emit(c.AppID, tidings.EventProfileUpdate, nil, "", nu.ID, tidings.ProfilePayload{ProfileID: nu.ID, User: &nu})
	})
	if err != nil {
		return nil, err
	}
	return &nu, nil
}

func (s *UserService) FindUserByID(ctx context.Context, id string) (*tidings.User, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	u, err := scanUser(s.db.queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE app_id = ? AND id = ?`, c.AppID, id))
	if isNoRows(err) {
		return nil, tidings.Errorf(tidings.ENotFound, "user %q not found", id)
	}
	if err != nil {
		return nil, err
	}
	u.HideFrom(c)
	return u, nil
}

func (s *UserService) ListUsers(ctx context.Context, f tidings.UserFilter) ([]*tidings.User, error) {
	c, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	query := `SELECT ` + userColumns + ` FROM users WHERE app_id = ? AND id > ?`
	args := []any{c.AppID, f.After}
	if f.IDPrefix != "" {
		// Ids are ASCII (tidings.ValidID): those with the prefix sort
		// from it to it followed by DEL.
		query += ` AND id >= ? AND id < ?`
		args = append(args, f.IDPrefix, f.IDPrefix+"\x7f")
	}
	if f.Search != "" {
		query += ` AND (instr(lower(display_name), lower(?)) > 0 OR instr(lower(coalesce(identifier_value, '')), lower(?)) > 0)`
		args = append(args, f.Search, f.Search)
	}
	rows, err := s.db.query(ctx, query+` ORDER BY id LIMIT ?`, append(args, clampLimit(f.Limit))...)
	if err != nil {
		return nil, err
	}
	return scanUsers(rows)
}

// scanUsers reads the users of rows, and closes them.
func scanUsers(rows *sql.Rows) ([]*tidings.User, error) {
	defer rows.Close()
	users := []*tidings.User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		users = append(users, u)
	}
	return users, rows.Err()
}

func (s *UserService) UpdateUser(ctx context.Context, id string, upd tidings.UserUpdate) (*tidings.User, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return nil, err
	}
	if !c.Server && c.UserID != id {
		return nil, tidings.Errorf(tidings.EForbidden, "a user can only update their own profile")
	}
	var u *tidings.User
	err = s.db.updateUser(ctx, c.AppID, id, func(tx *Tx) error {
		if !c.Server {
			app, err := tx.findApp(c.AppID)
			if err != nil {
				return err
			}
			for _, f := range upd.Fields() {
				if !app.UserMayEdit(f) {
					return tidings.Errorf(tidings.EForbidden, "users may not change their own %s in this app: only the app's server (with the server key) can set it", f)
				}
			}
		}
		var err error
		u, err = tx.findUser(c.AppID, id)
		if err != nil {
			return err
		}
		if err := upd.Apply(u); err != nil {
			return err
		}
		if upd.Identifier != nil {
			if err := tx.identifierFree(c.AppID, id, u.Identifier); err != nil {
				return err
			}
		}
		u.UpdatedAt = tx.now
		idValue, idKind := identifierArgs(u.Identifier)
		if _, err := tx.exec(`UPDATE users SET display_name = ?, avatar_url = ?, identifier_value = ?, identifier_kind = ?, metadata = ?, presence_hidden = ?, updated_at = ?
			WHERE app_id = ? AND id = ?`,
			u.DisplayName, u.AvatarURL, idValue, idKind, nullBytes(u.Metadata), u.PresenceHidden, micros(tx.now), c.AppID, id); err != nil {
			return err
		}
		var actor *tidings.Profile
		if !c.Server {
			p := u.Summary()
			actor = &p
		}
		return tx.emitProfile(c, u, actor)
	})
	if err != nil {
		return nil, err
	}
	u.HideFrom(c)
	return u, nil
}

// emitProfile emits the profile.update event of u's change, made by
// actor (nil: the app's server), to u and every user who shares a
// conversation with them (tidings.NewProfilePayload says what it carries).
func (tx *Tx) emitProfile(c tidings.Caller, u *tidings.User, actor *tidings.Profile) error {
	ev, err := tx.emitEvent(c.AppID, tidings.EventProfileUpdate, actor, "", u.ID, tidings.NewProfilePayload(u))
	if err != nil {
		return err
	}
	return tx.shareProfile(ev)
}

// shareProfile sends a profile event to the users who share a
// conversation with its user: it records the event against each
// conversation the user takes part in now (one row per conversation, not
// per receiver: a change of a member of a 10,000-member channel writes one
// row), and names them on the event for live delivery. A new user takes
// part in none.
func (tx *Tx) shareProfile(ev *tidings.Event) error {
	rows, err := tx.query(`INSERT INTO profile_shares (app_id, conversation_id, seq, user_id)
		SELECT app_id, conversation_id, ?, user_id FROM memberships
		WHERE app_id = ? AND user_id = ? AND to_seq IS NULL
		RETURNING conversation_id`, ev.Seq, ev.AppID, ev.UserID)
	if err != nil {
		return fmt.Errorf("share %s event: %w", ev.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		var conv string
		if err := rows.Scan(&conv); err != nil {
			return err
		}
		ev.Conversations = append(ev.Conversations, conv)
	}
	return rows.Err()
}

// lastSeenChunk is how many users one write of SaveLastSeen updates at
// most: a storm of disconnections is a few short writes, between which
// sends go through.
const lastSeenChunk = 2000

// SaveLastSeen implements tidings.LastSeenStore. It emits no event: last
// seen is not a change of the profile.
func (s *UserService) SaveLastSeen(ctx context.Context, seen []tidings.LastSeen) error {
	for len(seen) > 0 {
		chunk := seen[:min(len(seen), lastSeenChunk)]
		seen = seen[len(chunk):]
		// One statement for the chunk: [[app, user, micros], …].
		rows := make([][3]any, len(chunk))
		for i, ls := range chunk {
			rows[i] = [3]any{ls.AppID, ls.UserID, micros(ls.At)}
		}
		list, err := json.Marshal(rows)
		if err != nil {
			return err
		}
		err = s.db.updateAside(ctx, func(tx *Tx) error {
			_, err := tx.exec(`UPDATE users SET last_seen_at = max(coalesce(users.last_seen_at, 0), s.at)
				FROM (SELECT value ->> 0 AS app, value ->> 1 AS id, value ->> 2 AS at FROM json_each(?)) AS s
				WHERE users.app_id = s.app AND users.id = s.id`, string(list))
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// UsersPresence implements tidings.LastSeenStore, with one read.
func (s *UserService) UsersPresence(ctx context.Context, appID string, ids []string) ([]tidings.UserPresence, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.query(ctx, `SELECT u.id, u.presence_hidden, u.last_seen_at
		FROM json_each(?) AS j CROSS JOIN users AS u ON u.app_id = ? AND u.id = j.value`, string(list), appID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []tidings.UserPresence
	for rows.Next() {
		var p tidings.UserPresence
		var seen sql.NullInt64
		if err := rows.Scan(&p.UserID, &p.Hidden, &seen); err != nil {
			return nil, err
		}
		if seen.Valid {
			p.LastSeenAt = fromMicros(seen.Int64)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

var _ tidings.LastSeenStore = (*UserService)(nil)

// FindUsersByIDs returns, in one read, those of the app's users with the
// given ids that exist, in no particular order. The realtime node reads
// the users of its sessions again with it every --access-check. The
// caller is the app's server.
func (s *UserService) FindUsersByIDs(ctx context.Context, ids []string) ([]*tidings.User, error) {
	c, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.query(ctx, `SELECT `+userColumns+` FROM users
		WHERE app_id = ? AND id IN (SELECT value FROM json_each(?))`, c.AppID, string(list))
	if err != nil {
		return nil, err
	}
	return scanUsers(rows)
}

// identifierFree returns EConflict if a user of the app other than userID
// has the identifier.
func (tx *Tx) identifierFree(appID, userID string, ident *tidings.Identifier) error {
	if ident == nil {
		return nil
	}
	var n int
	if err := tx.queryRow(`SELECT COUNT(*) FROM users WHERE app_id = ? AND identifier_kind = ? AND identifier_value = ? AND id <> ?`,
		[]any{appID, ident.Kind, ident.Value, userID}, &n); err != nil {
		return err
	}
	if n > 0 {
		return tidings.Errorf(tidings.EConflict, "another user already has this %s identifier: identifiers are unique in an app", ident.Kind)
	}
	return nil
}

// findUser reads a user within the write transaction.
func (tx *Tx) findUser(appID, id string) (*tidings.User, error) {
	s, err := tx.stmt(`SELECT ` + userColumns + ` FROM users WHERE app_id = ? AND id = ?`)
	if err != nil {
		return nil, err
	}
	u, err := scanUser(s.QueryRowContext(tx.ctx, appID, id))
	if isNoRows(err) {
		return nil, tidings.Errorf(tidings.ENotFound, "user %q not found", id)
	}
	return u, err
}

// actor returns the profile of the caller for events (nil for the server).
func (tx *Tx) actor(c tidings.Caller) (*tidings.Profile, error) {
	if c.Server {
		return nil, nil
	}
	u, err := tx.findUser(c.AppID, c.UserID)
	if tidings.ErrorCode(err) == tidings.ENotFound {
		return nil, tidings.Errorf(tidings.EUnauthenticated, "the user of this token no longer exists")
	}
	if err != nil {
		return nil, err
	}
	p := u.Summary()
	return &p, nil
}
