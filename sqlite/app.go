package sqlite

import (
	"context"
	"strings"

	"github.com/tidings/tidings"
)

// AppService implements tidings.AppService.
type AppService struct{ db *DB }

var _ tidings.AppService = (*AppService)(nil)

func NewAppService(db *DB) *AppService { return &AppService{db: db} }

const appColumns = `id, name, server_key, signing_secret, created_at`

func scanApp(row interface{ Scan(...any) error }) (*tidings.App, error) {
	var a tidings.App
	var created int64
	if err := row.Scan(&a.ID, &a.Name, &a.ServerKey, &a.SigningSecret, &created); err != nil {
		return nil, err
	}
	a.CreatedAt = fromMicros(created)
	return &a, nil
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
		var n int
		if err := tx.queryRow(`SELECT COUNT(*) FROM apps WHERE id = ?`, []any{id}, &n); err != nil {
			return err
		}
		if n > 0 {
			return tidings.Errorf(tidings.EConflict, "app %q already exists", id)
		}
		app = &tidings.App{
			ID: id, Name: name, CreatedAt: tx.now,
			ServerKey:     tidings.NewSecret("tsk_", 24),
			SigningSecret: tidings.NewSecret("", 32),
		}
		_, err := tx.exec(`INSERT INTO apps (`+appColumns+`) VALUES (?, ?, ?, ?, ?)`,
			app.ID, app.Name, app.ServerKey, app.SigningSecret, micros(app.CreatedAt))
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

func (s *AppService) FindAppByServerKey(ctx context.Context, key string) (*tidings.App, error) {
	a, err := scanApp(s.db.queryRow(ctx, `SELECT `+appColumns+` FROM apps WHERE server_key = ?`, key))
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
	err := s.db.update(ctx, func(tx *Tx) error {
		res, err := tx.exec(`UPDATE apps SET server_key = ? WHERE id = ?`, key, id)
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
	return s.FindAppByID(ctx, id)
}
