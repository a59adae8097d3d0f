package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"time"

	"github.com/tidings/tidings"
)

// AppService implements tidings.AppService.
type AppService struct{ db *DB }

var _ tidings.AppService = (*AppService)(nil)

func NewAppService(db *DB) *AppService { return &AppService{db: db} }

// appColumns are the columns scanApp reads. server_key holds the key's
// hash (hashServerKey), which is never read back.
const appColumns = `id, name, signing_secret, user_editable_fields, created_at, previous_signing_secret, previous_secret_until`

func scanApp(row interface{ Scan(...any) error }) (*tidings.App, error) {
	var a tidings.App
	var created int64
	var fields string
	var until sql.NullInt64
	if err := row.Scan(&a.ID, &a.Name, &a.SigningSecret, &fields, &created, &a.PreviousSigningSecret, &until); err != nil {
		return nil, err
	}
	a.PreviousSecretUntil = fromNullMicros(until)
	if err := json.Unmarshal([]byte(fields), &a.UserEditableFields); err != nil {
		return nil, err
	}
	if a.UserEditableFields == nil {
		a.UserEditableFields = []string{}
	}
	a.CreatedAt = fromMicros(created)
	return &a, nil
}

func encodeFields(fields []string) string {
	if fields == nil {
		fields = []string{}
	}
	b, _ := json.Marshal(fields)
	return string(b)
}

func (s *AppService) CreateApp(ctx context.Context, id, name string) (*tidings.App, error) {
	if id == "" {
		id = tidings.NewID()
	}
	if !tidings.ValidID(id) {
		return nil, tidings.Errorf(tidings.EInvalid, "app id %q is not valid: use 1 to 128 letters, digits and . _ @ : -", id)
	}
	name = strings.TrimSpace(name)
	if name == "" {
		name = id
	}
	if len(name) > tidings.MaxNameLen {
		return nil, tidings.Errorf(tidings.EInvalid, "app name is longer than %d bytes", tidings.MaxNameLen)
	}
	var app *tidings.App
	err := s.db.updateAside(ctx, func(tx *Tx) error {
		var n int
		if err := tx.queryRow(`SELECT COUNT(*) FROM apps WHERE id = ?`, []any{id}, &n); err != nil {
			return err
		}
		if n > 0 {
			return tidings.Errorf(tidings.EConflict, "app %q already exists", id)
		}
		app = &tidings.App{
			ID: id, Name: name, CreatedAt: tx.now,
			ServerKey:          tidings.NewSecret("tsk_", 24),
			SigningSecret:      tidings.NewSecret("", 32),
			UserEditableFields: append([]string(nil), tidings.DefaultUserEditableFields...),
		}
		_, err := tx.exec(`INSERT INTO apps (server_key, `+appColumns+`) VALUES (?, ?, ?, ?, ?, ?, '', NULL)`,
			hashServerKey(app.ServerKey), app.ID, app.Name, app.SigningSecret, encodeFields(app.UserEditableFields), micros(app.CreatedAt))
		return err
	})
	if err != nil {
		return nil, err
	}
	return app, nil
}

func (s *AppService) FindAppByID(ctx context.Context, id string) (*tidings.App, error) {
	a, err := scanApp(s.db.queryRow(ctx, `SELECT `+appColumns+` FROM apps WHERE id = ?`, id))
	if isNoRows(err) {
		return nil, tidings.Errorf(tidings.ENotFound, "app %q not found", id)
	}
	return a, err
}

// connectQuery reads in one statement what a WebSocket auth needs: the
// app's id and signing secrets, whether the user exists, the user's
// columns (those NOT NULL given a value when there is no such user), the
// log's newest seq and the device's cursor. Arguments: user, device (the
// cursor), user, app.
const connectQuery = `SELECT a.id, a.signing_secret, a.previous_signing_secret, a.previous_secret_until, u.id IS NOT NULL,
	COALESCE(u.id, ''), COALESCE(u.display_name, ''), COALESCE(u.avatar_url, ''), u.identifier_value, u.identifier_kind,
	u.metadata, COALESCE(u.created_at, 0), COALESCE(u.updated_at, 0), COALESCE(u.presence_hidden, 0), u.last_seen_at,
	u.deactivated_at, u.tokens_not_before,
	(SELECT MAX(seq) FROM events), (SELECT c.seq FROM cursors c WHERE c.app_id = a.id AND c.user_id = ? AND c.device = ?)
	FROM apps a LEFT JOIN users u ON u.app_id = a.id AND u.id = ? WHERE a.id = ?`

// ReadConnect reads in one query (where FindAppByID, FindUserByID,
// EventLog.LastEventSeq and EventLog.Cursor are four) what a WebSocket
// auth needs on every connect: the app id, with what verifying its tokens
// needs (its id and signing secrets, not its other settings); its user
// userID, as the app's server sees it (nil when the app has no such
// user); the log's newest seq; and the cursor of the user's device
// (0 when none). ENotFound if there is no such app.
func (s *AppService) ReadConnect(ctx context.Context, id, userID, device string) (app *tidings.App, u *tidings.User, latest, cursor int64, err error) {
	row := s.db.queryRow(ctx, connectQuery, userID, device, userID, id)
	var a tidings.App
	var until, seq, cur sql.NullInt64
	var found bool
	// scanUser scans once: its scan reads the whole row.
	u, err = scanUser(scanFunc(func(user ...any) error {
		all := append([]any{&a.ID, &a.SigningSecret, &a.PreviousSigningSecret, &until, &found}, user...)
		return row.Scan(append(all, &seq, &cur)...)
	}))
	if isNoRows(err) {
		return nil, nil, 0, 0, tidings.Errorf(tidings.ENotFound, "app %q not found", id)
	}
	if err != nil {
		return nil, nil, 0, 0, err
	}
	a.PreviousSecretUntil = fromNullMicros(until)
	if !found {
		u = nil
	}
	return &a, u, seq.Int64, cur.Int64, nil
}

// scanFunc is a row whose Scan is the function.
type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

func (s *AppService) FindAppByServerKey(ctx context.Context, key string) (*tidings.App, error) {
	a, err := scanApp(s.db.queryRow(ctx, `SELECT `+appColumns+` FROM apps WHERE server_key = ?`, hashServerKey(key)))
	if isNoRows(err) {
		return nil, tidings.Errorf(tidings.EUnauthenticated, "unknown server key")
	}
	return a, err
}

func (s *AppService) ListApps(ctx context.Context) ([]*tidings.App, error) {
	rows, err := s.db.query(ctx, `SELECT `+appColumns+` FROM apps ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var apps []*tidings.App
	for rows.Next() {
		a, err := scanApp(rows)
		if err != nil {
			return nil, err
		}
		apps = append(apps, a)
	}
	return apps, rows.Err()
}

func (s *AppService) RotateServerKey(ctx context.Context, id string) (*tidings.App, error) {
	key := tidings.NewSecret("tsk_", 24)
	err := s.db.updateAside(ctx, func(tx *Tx) error {
		res, err := tx.exec(`UPDATE apps SET server_key = ? WHERE id = ?`, hashServerKey(key), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return tidings.Errorf(tidings.ENotFound, "app %q not found", id)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	app, err := s.FindAppByID(ctx, id)
	if err != nil {
		return nil, err
	}
	app.ServerKey = key
	return app, nil
}

func (s *AppService) RotateSigningSecret(ctx context.Context, id string, overlap time.Duration) (*tidings.App, error) {
	if overlap < 0 {
		return nil, tidings.Errorf(tidings.EInvalid, "the overlap must not be negative")
	}
	var app *tidings.App
	err := s.db.updateAside(ctx, func(tx *Tx) error {
		var err error
		if app, err = tx.findApp(id); err != nil {
			return err
		}
		until := tx.now.Add(overlap)
		app.PreviousSigningSecret, app.PreviousSecretUntil = app.SigningSecret, &until
		app.SigningSecret = tidings.NewSecret("", 32)
		_, err = tx.exec(`UPDATE apps SET signing_secret = ?, previous_signing_secret = ?, previous_secret_until = ? WHERE id = ?`,
			app.SigningSecret, app.PreviousSigningSecret, micros(until), id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return app, nil
}

func (s *AppService) UpdateApp(ctx context.Context, id string, upd tidings.AppUpdate) (*tidings.App, error) {
	var app *tidings.App
	err := s.db.updateAside(ctx, func(tx *Tx) error {
		var err error
		if app, err = tx.findApp(id); err != nil {
			return err
		}
		if err := upd.Apply(app); err != nil {
			return err
		}
		_, err = tx.exec(`UPDATE apps SET name = ?, user_editable_fields = ? WHERE id = ?`,
			app.Name, encodeFields(app.UserEditableFields), id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return app, nil
}

// findApp reads an app within the write transaction.
func (tx *Tx) findApp(id string) (*tidings.App, error) {
	st, err := tx.stmt(`SELECT ` + appColumns + ` FROM apps WHERE id = ?`)
	if err != nil {
		return nil, err
	}
	app, err := scanApp(st.QueryRowContext(tx.ctx, id))
	if isNoRows(err) {
		return nil, tidings.Errorf(tidings.ENotFound, "app %q not found", id)
	}
	return app, err
}
