package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	var fields []byte
	var created time.Time
	var until *time.Time
	if err := row.Scan(&a.ID, &a.Name, &a.SigningSecret, &fields, &created, &a.PreviousSigningSecret, &until); err != nil {
		return nil, err
	}
	a.PreviousSecretUntil = fromNullTime(until)
	if err := json.Unmarshal(fields, &a.UserEditableFields); err != nil {
		return nil, err
	}
	if a.UserEditableFields == nil {
		a.UserEditableFields = []string{}
	}
	a.CreatedAt = created.UTC()
	return &a, nil
}

func encodeFields(fields []string) string {
	if fields == nil {
		fields = []string{}
	}
	b, _ := json.Marshal(fields)
	return string(b)
}

// serverKeyHashPrefix starts every stored server key: what is stored is
// its SHA-256, never the key.
const serverKeyHashPrefix = "sha256:"

// hashServerKey returns what is stored of a server key.
func hashServerKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return serverKeyHashPrefix + hex.EncodeToString(sum[:])
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
	err := s.db.update(ctx, func(tx *Tx) error {
		app = &tidings.App{
			ID: id, Name: name, CreatedAt: tx.now,
			ServerKey:          tidings.NewSecret("tsk_", 24),
			SigningSecret:      tidings.NewSecret("", 32),
			UserEditableFields: append([]string(nil), tidings.DefaultUserEditableFields...),
		}
		tag, err := tx.exec(`INSERT INTO apps (server_key, `+appColumns+`) VALUES ($1, $2, $3, $4, $5, $6, '', NULL)
			ON CONFLICT (id) DO NOTHING`,
			hashServerKey(app.ServerKey), app.ID, app.Name, app.SigningSecret, encodeFields(app.UserEditableFields), app.CreatedAt)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return tidings.Errorf(tidings.EConflict, "app %q already exists", id)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return app, nil
}

func (s *AppService) FindAppByID(ctx context.Context, id string) (*tidings.App, error) {
	a, err := scanApp(s.db.queryRow(ctx, `SELECT `+appColumns+` FROM apps WHERE id = $1`, id))
	if isNoRows(err) {
		return nil, tidings.Errorf(tidings.ENotFound, "app %q not found", id)
	}
	return a, err
}

// connectQuery reads an app's id and signing secrets, its user (the
// columns of userColumns, those NOT NULL given a value when there is no
// such user) and the cursor of the user's device. Arguments: app, user,
// device.
const connectQuery = `SELECT a.id, a.signing_secret, a.previous_signing_secret, a.previous_secret_until, u.id IS NOT NULL,
	COALESCE(u.id, ''), COALESCE(u.display_name, ''), COALESCE(u.avatar_url, ''), u.identifier_value, u.identifier_kind,
	u.metadata, COALESCE(u.created_at, 'epoch'), COALESCE(u.updated_at, 'epoch'), COALESCE(u.presence_hidden, false),
	u.last_seen_at, u.deactivated_at, u.tokens_not_before,
	(SELECT c.seq FROM cursors c WHERE c.app_id = a.id AND c.user_id = $2 AND c.device = $3)
	FROM apps a LEFT JOIN users u ON u.app_id = a.id AND u.id = $2 WHERE a.id = $1`

// ReadConnect reads what a WebSocket auth needs on every connect
// (realtime.ConnectReader): the log's newest final seq, as
// EventLog.LastEventSeq, then in one query (where FindAppByID,
// FindUserByID and EventLog.Cursor are three) the app id with what
// verifying its tokens needs (its id and signing secrets, not its other
// settings), its user userID as the app's server sees it (nil when the
// app has no such user), and the cursor of the user's device (0 when
// none). ENotFound if there is no such app.
func (s *AppService) ReadConnect(ctx context.Context, id, userID, device string) (app *tidings.App, u *tidings.User, latest, cursor int64, err error) {
	if latest, err = s.db.settled(ctx); err != nil {
		return nil, nil, 0, 0, err
	}
	row := s.db.queryRow(ctx, connectQuery, id, userID, device)
	var a tidings.App
	var until *time.Time
	var found bool
	var cur *int64
	// scanUser scans once: its scan reads the whole row.
	u, err = scanUser(scanFunc(func(user ...any) error {
		all := append([]any{&a.ID, &a.SigningSecret, &a.PreviousSigningSecret, &until, &found}, user...)
		return row.Scan(append(all, &cur)...)
	}))
	if isNoRows(err) {
		return nil, nil, 0, 0, tidings.Errorf(tidings.ENotFound, "app %q not found", id)
	}
	if err != nil {
		return nil, nil, 0, 0, s.db.mapError(err)
	}
	a.PreviousSecretUntil = fromNullTime(until)
	if !found {
		u = nil
	}
	if cur != nil {
		cursor = *cur
	}
	return &a, u, latest, cursor, nil
}

// scanFunc is a row whose Scan is the function.
type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }

func (s *AppService) FindAppByServerKey(ctx context.Context, key string) (*tidings.App, error) {
	a, err := scanApp(s.db.queryRow(ctx, `SELECT `+appColumns+` FROM apps WHERE server_key = $1`, hashServerKey(key)))
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
			return nil, s.db.mapError(err)
		}
		apps = append(apps, a)
	}
	return apps, s.db.mapError(rows.Err())
}

func (s *AppService) RotateServerKey(ctx context.Context, id string) (*tidings.App, error) {
	key := tidings.NewSecret("tsk_", 24)
	var app *tidings.App
	err := s.db.update(ctx, func(tx *Tx) error {
		var err error
		app, err = scanApp(tx.queryRow(`UPDATE apps SET server_key = $1 WHERE id = $2 RETURNING `+appColumns, hashServerKey(key), id))
		if isNoRows(err) {
			return tidings.Errorf(tidings.ENotFound, "app %q not found", id)
		}
		return err
	})
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
	secret := tidings.NewSecret("", 32)
	var app *tidings.App
	err := s.db.update(ctx, func(tx *Tx) error {
		// The previous secret is the one replaced, read in the same
		// statement: of two rotations at once, the second keeps the
		// first's secret as its previous one.
		var err error
		app, err = scanApp(tx.queryRow(`UPDATE apps SET previous_signing_secret = signing_secret, signing_secret = $1,
			previous_secret_until = $2 WHERE id = $3 RETURNING `+appColumns, secret, tx.now.Add(overlap), id))
		if isNoRows(err) {
			return tidings.Errorf(tidings.ENotFound, "app %q not found", id)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return app, nil
}

func (s *AppService) UpdateApp(ctx context.Context, id string, upd tidings.AppUpdate) (*tidings.App, error) {
	var app *tidings.App
	err := s.db.update(ctx, func(tx *Tx) error {
		var err error
		if app, err = tx.findApp(id, true); err != nil {
			return err
		}
		if err := upd.Apply(app); err != nil {
			return err
		}
		_, err = tx.exec(`UPDATE apps SET name = $1, user_editable_fields = $2 WHERE id = $3`,
			app.Name, encodeFields(app.UserEditableFields), id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return app, nil
}

// findApp reads an app within the transaction; forUpdate locks its row
// until the transaction ends.
func (tx *Tx) findApp(id string, forUpdate bool) (*tidings.App, error) {
	q := `SELECT ` + appColumns + ` FROM apps WHERE id = $1`
	if forUpdate {
		q += ` FOR UPDATE`
	}
	app, err := scanApp(tx.queryRow(q, id))
	if isNoRows(err) {
		return nil, tidings.Errorf(tidings.ENotFound, "app %q not found", id)
	}
	return app, err
}
