package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidings/tidings"
)

// UserService implements tidings.UserService and tidings.LastSeenStore.
type UserService struct{ db *DB }

var (
	_ tidings.UserService   = (*UserService)(nil)
	_ tidings.LastSeenStore = (*UserService)(nil)
)

func NewUserService(db *DB) *UserService { return &UserService{db: db} }

const userColumns = `id, display_name, avatar_url, identifier_value, identifier_kind, metadata, created_at, updated_at, presence_hidden, last_seen_at,
	deactivated_at, tokens_not_before`

func scanUser(row interface{ Scan(...any) error }) (*tidings.User, error) {
	var u tidings.User
	var idValue, idKind *string
	var meta []byte
	if err := row.Scan(&u.ID, &u.DisplayName, &u.AvatarURL, &idValue, &idKind, &meta, &u.CreatedAt, &u.UpdatedAt, &u.PresenceHidden, &u.LastSeenAt,
		&u.DeactivatedAt, &u.TokensNotBefore); err != nil {
		return nil, err
	}
	u.CreatedAt, u.UpdatedAt, u.LastSeenAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC(), fromNullTime(u.LastSeenAt)
	u.DeactivatedAt, u.TokensNotBefore = fromNullTime(u.DeactivatedAt), fromNullTime(u.TokensNotBefore)
	if idValue != nil {
		u.Identifier = &tidings.Identifier{Value: *idValue}
		if idKind != nil {
			u.Identifier.Kind = *idKind
		}
	}
	if meta != nil {
		u.Metadata = json.RawMessage(meta)
	}
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
	err = s.db.update(ctx, func(tx *Tx) error {
		if err := tx.identifierFree(c.AppID, nu.ID, nu.Identifier); err != nil {
			return err
		}
		nu.CreatedAt, nu.UpdatedAt, nu.LastSeenAt, nu.DeactivatedAt, nu.TokensNotBefore = tx.now, tx.now, nil, nil, nil
		idValue, idKind := identifierArgs(nu.Identifier)
		tag, err := tx.exec(`INSERT INTO users (app_id, `+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, NULL)
			ON CONFLICT (app_id, id) DO NOTHING`,
			c.AppID, nu.ID, nu.DisplayName, nu.AvatarURL, idValue, idKind, nullBytes(nu.Metadata), tx.now, tx.now, nu.PresenceHidden)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return tidings.Errorf(tidings.EConflict, "user %q already exists", nu.ID)
		}
		// A new user takes part in no conversation: the event is theirs.
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
	u, err := scanUser(s.db.queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE app_id = $1 AND id = $2`, c.AppID, id))
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
	query := `SELECT ` + userColumns + ` FROM users WHERE app_id = $1 AND id > $2`
	args := []any{c.AppID, f.After}
	if f.IDPrefix != "" {
		// Ids are ASCII (tidings.ValidID) and compare byte by byte
		// (COLLATE "C"): those with the prefix sort from it to it
		// followed by DEL.
		query += fmt.Sprintf(` AND id >= $%d AND id < $%d`, len(args)+1, len(args)+2)
		args = append(args, f.IDPrefix, f.IDPrefix+"\x7f")
	}
	if f.Search != "" {
		// lower() in the "C" collation changes ASCII letters only, as
		// SQLite's does.
		n := len(args) + 1
		query += fmt.Sprintf(` AND (strpos(lower(display_name), lower($%d::text COLLATE "C")) > 0
			OR strpos(lower(coalesce(identifier_value, '')), lower($%d::text COLLATE "C")) > 0)`, n, n)
		args = append(args, f.Search)
	}
	query += fmt.Sprintf(` ORDER BY id LIMIT $%d`, len(args)+1)
	rows, err := s.db.query(ctx, query, append(args, clampLimit(f.Limit))...)
	if err != nil {
		return nil, err
	}
	return s.scanUsers(rows)
}

// FindUsersByIDs returns, in one query, those of the app's users with the
// given ids that exist, in no particular order (realtime.UsersFinder: the
// node reads the users of its sessions again with it every
// --access-check). The caller is the app's server.
func (s *UserService) FindUsersByIDs(ctx context.Context, ids []string) ([]*tidings.User, error) {
	c, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := s.db.query(ctx, `SELECT `+userColumns+` FROM users WHERE app_id = $1 AND id = ANY($2)`, c.AppID, ids)
	if err != nil {
		return nil, err
	}
	return s.scanUsers(rows)
}

// scanUsers reads users of userColumns, and closes rows.
func (s *UserService) scanUsers(rows pgx.Rows) ([]*tidings.User, error) {
	defer rows.Close()
	users := []*tidings.User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, s.db.mapError(err)
		}
		users = append(users, u)
	}
	return users, s.db.mapError(rows.Err())
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
	err = s.db.update(ctx, func(tx *Tx) error {
		if !c.Server {
			app, err := tx.findApp(c.AppID, false)
			if err != nil {
				return err
			}
			for _, f := range upd.Fields() {
				if !app.UserMayEdit(f) {
					return tidings.Errorf(tidings.EForbidden, "users may not change their own %s in this app: only the app's server (with the server key) can set it", f)
				}
			}
		}
		// The user's row stays locked until the commit: concurrent updates
		// apply one after the other, and so do changes of the user's
		// participations (the participants' foreign key locks the row
		// too), so that the event is shared through exactly the
		// conversations the user takes part in at its position.
		var err error
		u, err = tx.findUser(c.AppID, id, true)
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
		if _, err := tx.exec(`UPDATE users SET display_name = $1, avatar_url = $2, identifier_value = $3, identifier_kind = $4,
				metadata = $5, presence_hidden = $6, updated_at = $7
			WHERE app_id = $8 AND id = $9`,
			u.DisplayName, u.AvatarURL, idValue, idKind, nullBytes(u.Metadata), u.PresenceHidden, tx.now, c.AppID, id); err != nil {
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
// per receiver), and names them on the event. A new user takes part in
// none. As in SQLite.
func (tx *Tx) shareProfile(ev *tidings.Event) error {
	rows, err := tx.query(`INSERT INTO profile_shares (app_id, conversation_id, seq, user_id)
		SELECT app_id, conversation_id, $1, user_id FROM memberships
		WHERE app_id = $2 AND user_id = $3 AND to_seq IS NULL
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

// lastSeenChunk is how many users one statement of SaveLastSeen updates at
// most: a storm of disconnections is a few short transactions.
const lastSeenChunk = 2000

// SaveLastSeen implements tidings.LastSeenStore. It emits no event: last
// seen is not a change of the profile.
func (s *UserService) SaveLastSeen(ctx context.Context, seen []tidings.LastSeen) error {
	for len(seen) > 0 {
		chunk := seen[:min(len(seen), lastSeenChunk)]
		seen = seen[len(chunk):]
		apps, ids, ats := make([]string, len(chunk)), make([]string, len(chunk)), make([]time.Time, len(chunk))
		for i, ls := range chunk {
			apps[i], ids[i], ats[i] = ls.AppID, ls.UserID, ls.At
		}
		err := s.db.update(ctx, func(tx *Tx) error {
			// One row per user, the latest: an UPDATE changes a row once.
			// (Saves of several nodes at once may deadlock, rarely: the
			// transaction then runs again, see DB.update.)
			_, err := tx.exec(`UPDATE users SET last_seen_at = greatest(users.last_seen_at, s.at)
				FROM (SELECT app, id, max(at) AS at FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS l (app, id, at)
					GROUP BY app, id) AS s
				WHERE users.app_id = s.app AND users.id = s.id`, apps, ids, ats)
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
	rows, err := s.db.query(ctx, `SELECT id, presence_hidden, last_seen_at FROM users WHERE app_id = $1 AND id = ANY($2)`, appID, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []tidings.UserPresence
	for rows.Next() {
		var p tidings.UserPresence
		var seen *time.Time
		if err := rows.Scan(&p.UserID, &p.Hidden, &seen); err != nil {
			return nil, s.db.mapError(err)
		}
		if seen != nil {
			p.LastSeenAt = seen.UTC()
		}
		out = append(out, p)
	}
	return out, s.db.mapError(rows.Err())
}

// identifierFree returns EConflict if a user of the app other than userID
// has the identifier. (The unique index settles a race between two
// transactions: see mapError.)
func (tx *Tx) identifierFree(appID, userID string, ident *tidings.Identifier) error {
	if ident == nil {
		return nil
	}
	var taken bool
	if err := tx.queryRow(`SELECT EXISTS (SELECT 1 FROM users WHERE app_id = $1 AND identifier_kind = $2 AND identifier_value = $3 AND id <> $4)`,
		appID, ident.Kind, ident.Value, userID).Scan(&taken); err != nil {
		return err
	}
	if taken {
		return errIdentifierTaken(ident.Kind)
	}
	return nil
}

func errIdentifierTaken(kind string) error {
	return tidings.Errorf(tidings.EConflict, "another user already has this %s identifier: identifiers are unique in an app", kind)
}

// findUser reads a user within the transaction; forUpdate locks its row
// until the transaction ends.
func (tx *Tx) findUser(appID, id string, forUpdate bool) (*tidings.User, error) {
	q := `SELECT ` + userColumns + ` FROM users WHERE app_id = $1 AND id = $2`
	if forUpdate {
		q += ` FOR UPDATE`
	}
	u, err := scanUser(tx.queryRow(q, appID, id))
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
	u, err := tx.findUser(c.AppID, c.UserID, false)
	if tidings.ErrorCode(err) == tidings.ENotFound {
		return nil, tidings.Errorf(tidings.EUnauthenticated, "the user of this token no longer exists")
	}
	if err != nil {
		return nil, err
	}
	p := u.Summary()
	return &p, nil
}
