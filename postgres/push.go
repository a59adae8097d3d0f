package postgres

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/tidings/tidings"
)

// PushService implements tidings.PushService and tidings.PushStore, as
// the SQLite store does (migration 0004_push.sql).
type PushService struct{ db *DB }

var (
	_ tidings.PushService = (*PushService)(nil)
	_ tidings.PushStore   = (*PushService)(nil)
)

func NewPushService(db *DB) *PushService { return &PushService{db: db} }

const pushTargetColumns = `id, app_id, user_id, device, kind, address, p256dh, auth, created_at`

func scanPushTarget(row interface{ Scan(...any) error }) (*tidings.PushTarget, error) {
	var t tidings.PushTarget
	var address, p256dh, auth string
	var created time.Time
	if err := row.Scan(&t.ID, &t.AppID, &t.UserID, &t.Device, &t.Kind, &address, &p256dh, &auth, &created); err != nil {
		return nil, err
	}
	if t.Kind == tidings.PushWebPush {
		t.Endpoint = address
		t.Keys = &tidings.PushKeys{P256dh: p256dh, Auth: auth}
	} else {
		t.Token = address
	}
	t.CreatedAt = created.UTC()
	return &t, nil
}

func (s *PushService) RegisterPushTarget(ctx context.Context, nt tidings.NewPushTarget) (*tidings.PushTarget, error) {
	c, err := userCaller(ctx)
	if err != nil {
		return nil, err
	}
	if err := nt.Validate(); err != nil {
		return nil, err
	}
	address, p256dh, auth := nt.Token, "", ""
	if nt.Kind == tidings.PushWebPush {
		address, p256dh, auth = nt.Endpoint, nt.Keys.P256dh, nt.Keys.Auth
	}
	var t *tidings.PushTarget
	err = s.db.update(ctx, func(tx *Tx) error {
		// One registration of a user at a time, so that the cap on their
		// targets holds when their devices register at once (on any node).
		// NO KEY UPDATE: the user's row is not changed, and inserts
		// referring to it (FOR KEY SHARE) do not wait.
		var one int
		err := tx.queryRow(`SELECT 1 FROM users WHERE app_id = $1 AND id = $2 FOR NO KEY UPDATE`, c.AppID, c.UserID).Scan(&one)
		if isNoRows(err) {
			return tidings.Errorf(tidings.EUnauthenticated, "the user of this token no longer exists")
		} else if err != nil {
			return err
		}
		// The same subscription or token again (registered by anyone in
		// the app) keeps its id: it is the caller's now, with the keys and
		// device given.
		t, err = scanPushTarget(tx.queryRow(`INSERT INTO push_targets (`+pushTargetColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (app_id, kind, address) DO UPDATE SET user_id = excluded.user_id, device = excluded.device,
				p256dh = excluded.p256dh, auth = excluded.auth, created_at = excluded.created_at
			RETURNING `+pushTargetColumns,
			tidings.NewID(), c.AppID, c.UserID, nt.Device, nt.Kind, address, p256dh, auth, tx.now))
		if err != nil {
			return err
		}
		_, err = tx.exec(`DELETE FROM push_targets WHERE app_id = $1 AND user_id = $2 AND id NOT IN (
			SELECT id FROM push_targets WHERE app_id = $1 AND user_id = $2 ORDER BY created_at DESC, id DESC LIMIT $3)`,
			c.AppID, c.UserID, tidings.MaxPushTargets)
		return err
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

func (s *PushService) ListPushTargets(ctx context.Context) ([]*tidings.PushTarget, error) {
	c, err := userCaller(ctx)
	if err != nil {
		return nil, err
	}
	return s.userTargets(ctx, c.AppID, c.UserID)
}

func (s *PushService) userTargets(ctx context.Context, appID, userID string) ([]*tidings.PushTarget, error) {
	rows, err := s.db.query(ctx, `SELECT `+pushTargetColumns+` FROM push_targets
		WHERE app_id = $1 AND user_id = $2 ORDER BY created_at, id`, appID, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*tidings.PushTarget{}
	for rows.Next() {
		t, err := scanPushTarget(rows)
		if err != nil {
			return nil, s.db.mapError(err)
		}
		out = append(out, t)
	}
	return out, s.db.mapError(rows.Err())
}

func (s *PushService) DeletePushTarget(ctx context.Context, id string) error {
	c, err := userCaller(ctx)
	if err != nil {
		return err
	}
	return s.db.update(ctx, func(tx *Tx) error {
		tag, err := tx.exec(`DELETE FROM push_targets WHERE app_id = $1 AND user_id = $2 AND id = $3`, c.AppID, c.UserID, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return tidings.Errorf(tidings.ENotFound, "push target %q not found", id)
		}
		return nil
	})
}

func (s *PushService) PushSettings(ctx context.Context) (*tidings.PushSettings, error) {
	c, err := userCaller(ctx)
	if err != nil {
		return nil, err
	}
	return s.settings(ctx, c)
}

func (s *PushService) settings(ctx context.Context, c tidings.Caller) (*tidings.PushSettings, error) {
	var disabled bool
	err := s.db.queryRow(ctx, `SELECT disabled FROM push_settings WHERE app_id = $1 AND user_id = $2`, c.AppID, c.UserID).Scan(&disabled)
	if err != nil && !isNoRows(err) {
		return nil, err
	}
	st := &tidings.PushSettings{Enabled: !disabled, MutedConversations: []string{}}
	rows, err := s.db.query(ctx, `SELECT conversation_id FROM push_mutes WHERE app_id = $1 AND user_id = $2 ORDER BY conversation_id`, c.AppID, c.UserID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, s.db.mapError(err)
		}
		st.MutedConversations = append(st.MutedConversations, id)
	}
	return st, s.db.mapError(rows.Err())
}

func (s *PushService) UpdatePushSettings(ctx context.Context, upd tidings.PushSettingsUpdate) (*tidings.PushSettings, error) {
	c, err := userCaller(ctx)
	if err != nil {
		return nil, err
	}
	if upd.Enabled != nil {
		err := s.db.update(ctx, func(tx *Tx) error {
			// The user's row stays locked until the commit: a deletion of
			// the user at once (which removes their settings) comes
			// wholly before or after.
			var one int
			err := tx.queryRow(`SELECT 1 FROM users WHERE app_id = $1 AND id = $2 FOR KEY SHARE`, c.AppID, c.UserID).Scan(&one)
			if isNoRows(err) {
				return tidings.Errorf(tidings.EUnauthenticated, "the user of this token no longer exists")
			} else if err != nil {
				return err
			}
			_, err = tx.exec(`INSERT INTO push_settings (app_id, user_id, disabled) VALUES ($1, $2, $3)
				ON CONFLICT (app_id, user_id) DO UPDATE SET disabled = excluded.disabled`, c.AppID, c.UserID, !*upd.Enabled)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return s.settings(ctx, c)
}

func (s *PushService) MuteConversation(ctx context.Context, conversationID string, muted bool) error {
	c, err := userCaller(ctx)
	if err != nil {
		return err
	}
	return s.db.update(ctx, func(tx *Tx) error {
		var one int
		// The participation stays locked until the commit: a deletion of
		// the user at once (which removes their mutes) comes wholly before
		// or after.
		err := tx.queryRow(`SELECT 1 FROM participants WHERE app_id = $1 AND conversation_id = $2 AND user_id = $3 FOR KEY SHARE`,
			c.AppID, conversationID, c.UserID).Scan(&one)
		if isNoRows(err) {
			return tidings.Errorf(tidings.ENotFound, "conversation %q not found among yours", conversationID)
		} else if err != nil {
			return err
		}
		if muted {
			_, err = tx.exec(`INSERT INTO push_mutes (app_id, user_id, conversation_id) VALUES ($1, $2, $3)
				ON CONFLICT DO NOTHING`, c.AppID, c.UserID, conversationID)
		} else {
			_, err = tx.exec(`DELETE FROM push_mutes WHERE app_id = $1 AND user_id = $2 AND conversation_id = $3`,
				c.AppID, c.UserID, conversationID)
		}
		return err
	})
}

func (s *PushService) VAPIDPublicKey(ctx context.Context) (string, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return "", err
	}
	cfg, err := s.AppPushConfig(ctx, c.AppID)
	if err != nil {
		return "", err
	}
	return cfg.VAPIDPublicKey, nil
}

func (s *PushService) PushConfig(ctx context.Context) (*tidings.PushConfig, error) {
	c, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	return s.AppPushConfig(ctx, c.AppID)
}

func (s *PushService) UpdatePushConfig(ctx context.Context, upd tidings.PushConfigUpdate) (*tidings.PushConfig, error) {
	c, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	var cfg *tidings.PushConfig
	err = s.db.update(ctx, func(tx *Tx) error {
		var err error
		// Locked: two updates at once (on any nodes) apply one after the
		// other, neither undoing the other's changes.
		if cfg, err = tx.pushConfig(c.AppID, true); err != nil {
			return err
		}
		if err := upd.Apply(cfg); err != nil {
			return err
		}
		_, err = tx.exec(`UPDATE push_apps SET vapid_subject = $1, alert_template = $2, burst_template = $3 WHERE app_id = $4`,
			cfg.VAPIDSubject, cfg.AlertTemplate, cfg.BurstTemplate, c.AppID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

const pushAppColumns = `vapid_public, vapid_private, vapid_subject, alert_template, burst_template`

func scanPushConfig(row interface{ Scan(...any) error }) (*tidings.PushConfig, error) {
	var cfg tidings.PushConfig
	if err := row.Scan(&cfg.VAPIDPublicKey, &cfg.VAPIDPrivateKey, &cfg.VAPIDSubject, &cfg.AlertTemplate, &cfg.BurstTemplate); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func (s *PushService) AppPushConfig(ctx context.Context, appID string) (*tidings.PushConfig, error) {
	cfg, err := scanPushConfig(s.db.queryRow(ctx, `SELECT `+pushAppColumns+` FROM push_apps WHERE app_id = $1`, appID))
	if err == nil || !isNoRows(err) {
		return cfg, err
	}
	err = s.db.update(ctx, func(tx *Tx) error {
		cfg, err = tx.pushConfig(appID, false)
		return err
	})
	return cfg, err
}

// pushConfig reads the app's push configuration, making it (and the
// app's VAPID key pair) if there is none yet; forUpdate locks its row
// until the transaction ends. Transactions making it at once, on any
// nodes, end with one key pair: the first to insert it wins, and the
// others, whose insert waits for the first's commit and then does
// nothing, read the winner's.
func (tx *Tx) pushConfig(appID string, forUpdate bool) (*tidings.PushConfig, error) {
	q := `SELECT ` + pushAppColumns + ` FROM push_apps WHERE app_id = $1`
	if forUpdate {
		q += ` FOR UPDATE`
	}
	cfg, err := scanPushConfig(tx.queryRow(q, appID))
	if !isNoRows(err) {
		return cfg, err
	}
	if _, err := tx.findApp(appID, false); err != nil {
		return nil, err
	}
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	cfg = &tidings.PushConfig{
		VAPIDPublicKey:  base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()),
		VAPIDPrivateKey: base64.RawURLEncoding.EncodeToString(key.Bytes()),
		VAPIDSubject:    tidings.DefaultVAPIDSubject,
		AlertTemplate:   tidings.DefaultPushAlertTemplate,
		BurstTemplate:   tidings.DefaultPushBurstTemplate,
	}
	tag, err := tx.exec(`INSERT INTO push_apps (app_id, `+pushAppColumns+`) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (app_id) DO NOTHING`, appID,
		cfg.VAPIDPublicKey, cfg.VAPIDPrivateKey, cfg.VAPIDSubject, cfg.AlertTemplate, cfg.BurstTemplate)
	if err != nil || tag.RowsAffected() == 1 {
		return cfg, err
	}
	// Another transaction made it first and has committed (READ COMMITTED:
	// this statement sees it).
	cfg, err = scanPushConfig(tx.queryRow(q, appID))
	if isNoRows(err) {
		return nil, fmt.Errorf("postgres: the push configuration of app %q was made and is gone", appID)
	}
	return cfg, err
}

func (s *PushService) PushCandidates(ctx context.Context, appID, conversationID, exclude string) ([]string, error) {
	rows, err := s.db.query(ctx, `SELECT p.user_id FROM participants p
		WHERE p.app_id = $1 AND p.conversation_id = $2 AND p.user_id <> $3
		  AND EXISTS (SELECT 1 FROM push_targets t WHERE t.app_id = p.app_id AND t.user_id = p.user_id)
		  AND NOT EXISTS (SELECT 1 FROM push_mutes m WHERE m.app_id = p.app_id AND m.user_id = p.user_id AND m.conversation_id = p.conversation_id)
		  AND NOT EXISTS (SELECT 1 FROM push_settings s WHERE s.app_id = p.app_id AND s.user_id = p.user_id AND s.disabled)
		ORDER BY p.user_id`,
		appID, conversationID, exclude)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, s.db.mapError(err)
		}
		out = append(out, id)
	}
	return out, s.db.mapError(rows.Err())
}

func (s *PushService) PushRecipient(ctx context.Context, appID, userID, conversationID string) (*tidings.PushRecipient, error) {
	var r tidings.PushRecipient
	var unread *int64
	err := s.db.queryRow(ctx, `SELECT
		  COALESCE((SELECT disabled FROM push_settings WHERE app_id = $1 AND user_id = $2), false),
		  EXISTS (SELECT 1 FROM push_mutes WHERE app_id = $1 AND user_id = $2 AND conversation_id = $3),
		  (SELECT GREATEST(c.last_seq - p.read_seq, 0) FROM participants p JOIN conversations c ON c.app_id = p.app_id AND c.id = p.conversation_id
		   WHERE p.app_id = $1 AND p.user_id = $2 AND p.conversation_id = $3 AND c.deleted_at IS NULL),
		  (SELECT COALESCE(SUM(GREATEST(c.last_seq - p.read_seq, 0)), 0)::bigint FROM participants p JOIN conversations c ON c.app_id = p.app_id AND c.id = p.conversation_id
		   WHERE p.app_id = $1 AND p.user_id = $2 AND c.deleted_at IS NULL)`,
		appID, userID, conversationID).Scan(&r.Disabled, &r.Muted, &unread, &r.Badge)
	if err != nil {
		return nil, err
	}
	if unread != nil {
		r.Unread = *unread
	}
	if r.Targets, err = s.userTargets(ctx, appID, userID); err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *PushService) RemovePushTargets(ctx context.Context, appID string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.db.update(ctx, func(tx *Tx) error {
		_, err := tx.exec(`DELETE FROM push_targets WHERE app_id = $1 AND id = ANY($2)`, appID, ids)
		return err
	})
}
