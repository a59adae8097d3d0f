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
