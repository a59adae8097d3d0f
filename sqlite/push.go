package sqlite

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"fmt"

	"github.com/tidings/tidings"
)

// PushService implements tidings.PushService and tidings.PushStore.
type PushService struct{ db *DB }

var (
	_ tidings.PushService = (*PushService)(nil)
	_ tidings.PushStore   = (*PushService)(nil)
)

// HasPushTargets reports whether any user of the app has a push target,
// without a query (push.TargetIndex): it is exact for every change of
// targets committed, since this DB makes them all.
func (s *PushService) HasPushTargets(appID string) bool {
	s.db.pushMu.RLock()
	defer s.db.pushMu.RUnlock()
	return s.db.pushApps[appID]
}

// loadPushApps reads which apps have push targets, on Open.
func (db *DB) loadPushApps(ctx context.Context) error {
	rows, err := db.wconn.QueryContext(ctx, `SELECT id FROM apps AS a WHERE EXISTS (SELECT 1 FROM push_targets AS t WHERE t.app_id = a.id)`)
	if err != nil {
		return fmt.Errorf("sqlite: read the apps with push targets: %w", err)
	}
	defer rows.Close()
	apps := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("sqlite: read the apps with push targets: %w", err)
		}
		apps[id] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqlite: read the apps with push targets: %w", err)
	}
	db.pushApps, db.pushDirty = apps, map[string]bool{}
	return nil
}

// pushTargetsChanged notes that the job may have added or removed push
// targets of the app: once the transaction has ended, committed or not,
// the writer checks again whether the app has any.
func (tx *Tx) pushTargetsChanged(appID string) {
	tx.db.pushDirty[appID] = true
}

// checkPushApps checks again, after a transaction ended, whether each app
// whose targets its jobs changed has any. Were the check to fail, the app
// counts as having some: the dispatcher then asks, as without the index.
func (db *DB) checkPushApps() {
	for app := range db.pushDirty {
		var has bool
		if err := db.wconn.QueryRowContext(context.Background(),
			`SELECT EXISTS (SELECT 1 FROM push_targets WHERE app_id = ?)`, app).Scan(&has); err != nil {
			db.Logger.Warn("could not tell whether an app has push targets", "app", app, "err", err)
			has = true
		}
		db.pushMu.Lock()
		if has {
			db.pushApps[app] = true
		} else {
			delete(db.pushApps, app)
		}
		db.pushMu.Unlock()
	}
	clear(db.pushDirty)
}

func NewPushService(db *DB) *PushService { return &PushService{db: db} }

const pushTargetColumns = `id, app_id, user_id, device, kind, address, p256dh, auth, created_at`

func scanPushTarget(row interface{ Scan(...any) error }) (*tidings.PushTarget, error) {
	var t tidings.PushTarget
	var address, p256dh, auth string
	var created int64
	if err := row.Scan(&t.ID, &t.AppID, &t.UserID, &t.Device, &t.Kind, &address, &p256dh, &auth, &created); err != nil {
		return nil, err
	}
	if t.Kind == tidings.PushWebPush {
		t.Endpoint = address
		t.Keys = &tidings.PushKeys{P256dh: p256dh, Auth: auth}
	} else {
		t.Token = address
	}
	t.CreatedAt = fromMicros(created)
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
	var id string
	now := s.db.Now()
	err = s.db.updateAside(ctx, func(tx *Tx) error {
		tx.pushTargetsChanged(c.AppID)
		err := tx.queryRow(`SELECT id FROM push_targets WHERE app_id = ? AND kind = ? AND address = ?`,
			[]any{c.AppID, nt.Kind, address}, &id)
		switch {
		case isNoRows(err):
			id = tidings.NewID()
			if _, err := tx.exec(`INSERT INTO push_targets (`+pushTargetColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				id, c.AppID, c.UserID, nt.Device, nt.Kind, address, p256dh, auth, micros(now)); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			// The same subscription or token again: it is the caller's now,
			// with the keys and device given.
			if _, err := tx.exec(`UPDATE push_targets SET user_id = ?, device = ?, p256dh = ?, auth = ?, created_at = ?
				WHERE app_id = ? AND id = ?`, c.UserID, nt.Device, p256dh, auth, micros(now), c.AppID, id); err != nil {
				return err
			}
		}
		_, err = tx.exec(`DELETE FROM push_targets WHERE app_id = ? AND user_id = ? AND id NOT IN (
			SELECT id FROM push_targets WHERE app_id = ? AND user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?)`,
			c.AppID, c.UserID, c.AppID, c.UserID, tidings.MaxPushTargets)
		return err
	})
	if err != nil {
		return nil, err
	}
	t, err := scanPushTarget(s.db.queryRow(ctx, `SELECT `+pushTargetColumns+` FROM push_targets WHERE app_id = ? AND id = ?`, c.AppID, id))
	if err != nil {
		return nil, fmt.Errorf("sqlite: read the push target: %w", err)
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
		WHERE app_id = ? AND user_id = ? ORDER BY created_at, id`, appID, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*tidings.PushTarget{}
	for rows.Next() {
		t, err := scanPushTarget(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func (s *PushService) DeletePushTarget(ctx context.Context, id string) error {
	c, err := userCaller(ctx)
	if err != nil {
		return err
	}
	return s.db.updateAside(ctx, func(tx *Tx) error {
		tx.pushTargetsChanged(c.AppID)
		res, err := tx.exec(`DELETE FROM push_targets WHERE app_id = ? AND user_id = ? AND id = ?`, c.AppID, c.UserID, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
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
	var disabled int
	err := s.db.queryRow(ctx, `SELECT disabled FROM push_settings WHERE app_id = ? AND user_id = ?`, c.AppID, c.UserID).Scan(&disabled)
	if err != nil && !isNoRows(err) {
		return nil, err
	}
	st := &tidings.PushSettings{Enabled: disabled == 0, MutedConversations: []string{}}
	rows, err := s.db.query(ctx, `SELECT conversation_id FROM push_mutes WHERE app_id = ? AND user_id = ? ORDER BY conversation_id`, c.AppID, c.UserID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		st.MutedConversations = append(st.MutedConversations, id)
	}
	return st, rows.Err()
}

func (s *PushService) UpdatePushSettings(ctx context.Context, upd tidings.PushSettingsUpdate) (*tidings.PushSettings, error) {
	c, err := userCaller(ctx)
	if err != nil {
		return nil, err
	}
	if upd.Enabled != nil {
		disabled := 0
		if !*upd.Enabled {
			disabled = 1
		}
		err := s.db.updateAside(ctx, func(tx *Tx) error {
			_, err := tx.exec(`INSERT INTO push_settings (app_id, user_id, disabled) VALUES (?, ?, ?)
				ON CONFLICT (app_id, user_id) DO UPDATE SET disabled = excluded.disabled`, c.AppID, c.UserID, disabled)
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
	return s.db.updateAside(ctx, func(tx *Tx) error {
		var one int
		err := tx.queryRow(`SELECT 1 FROM participants WHERE app_id = ? AND conversation_id = ? AND user_id = ?`,
			[]any{c.AppID, conversationID, c.UserID}, &one)
		if isNoRows(err) {
			return tidings.Errorf(tidings.ENotFound, "conversation %q not found among yours", conversationID)
		} else if err != nil {
			return err
		}
		if muted {
			_, err = tx.exec(`INSERT OR IGNORE INTO push_mutes (app_id, user_id, conversation_id) VALUES (?, ?, ?)`,
				c.AppID, c.UserID, conversationID)
		} else {
			_, err = tx.exec(`DELETE FROM push_mutes WHERE app_id = ? AND user_id = ? AND conversation_id = ?`,
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
	err = s.db.updateAside(ctx, func(tx *Tx) error {
		var err error
		if cfg, err = tx.pushConfig(c.AppID); err != nil {
			return err
		}
		if err := upd.Apply(cfg); err != nil {
			return err
		}
		_, err = tx.exec(`UPDATE push_apps SET vapid_subject = ?, alert_template = ?, burst_template = ? WHERE app_id = ?`,
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
	cfg, err := scanPushConfig(s.db.queryRow(ctx, `SELECT `+pushAppColumns+` FROM push_apps WHERE app_id = ?`, appID))
	if err == nil || !isNoRows(err) {
		return cfg, err
	}
	err = s.db.updateAside(ctx, func(tx *Tx) error {
		cfg, err = tx.pushConfig(appID)
		return err
	})
	return cfg, err
}

// pushConfig reads the app's push configuration, making it (and the
// app's VAPID key pair) if there is none yet.
func (tx *Tx) pushConfig(appID string) (*tidings.PushConfig, error) {
	st, err := tx.stmt(`SELECT ` + pushAppColumns + ` FROM push_apps WHERE app_id = ?`)
	if err != nil {
		return nil, err
	}
	cfg, err := scanPushConfig(st.QueryRowContext(tx.ctx, appID))
	if !isNoRows(err) {
		return cfg, err
	}
	if _, err := tx.findApp(appID); err != nil {
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
	_, err = tx.exec(`INSERT INTO push_apps (app_id, `+pushAppColumns+`) VALUES (?, ?, ?, ?, ?, ?)`, appID,
		cfg.VAPIDPublicKey, cfg.VAPIDPrivateKey, cfg.VAPIDSubject, cfg.AlertTemplate, cfg.BurstTemplate)
	return cfg, err
}

func (s *PushService) PushCandidates(ctx context.Context, appID, conversationID, exclude string) ([]string, error) {
	return s.db.strings(ctx, `SELECT p.user_id FROM participants p
		WHERE p.app_id = ? AND p.conversation_id = ? AND p.user_id <> ?
		  AND EXISTS (SELECT 1 FROM push_targets t WHERE t.app_id = p.app_id AND t.user_id = p.user_id)
		  AND NOT EXISTS (SELECT 1 FROM push_mutes m WHERE m.app_id = p.app_id AND m.user_id = p.user_id AND m.conversation_id = p.conversation_id)
		  AND NOT EXISTS (SELECT 1 FROM push_settings s WHERE s.app_id = p.app_id AND s.user_id = p.user_id AND s.disabled <> 0)`,
		appID, conversationID, exclude)
}

func (s *PushService) PushRecipient(ctx context.Context, appID, userID, conversationID string) (*tidings.PushRecipient, error) {
	var r tidings.PushRecipient
	var disabled, muted int
	err := s.db.queryRow(ctx, `SELECT
		  COALESCE((SELECT disabled FROM push_settings WHERE app_id = ?1 AND user_id = ?2), 0),
		  EXISTS (SELECT 1 FROM push_mutes WHERE app_id = ?1 AND user_id = ?2 AND conversation_id = ?3)`,
		appID, userID, conversationID).Scan(&disabled, &muted)
	if err != nil {
		return nil, err
	}
	r.Disabled, r.Muted = disabled != 0, muted != 0
	// The badge counts the conversations' last seqs past the user's read
	// marks: those of sends whose marks are not written yet are added
	// (see unwritten); asking for them to be written would write them
	// after almost every message once members are offline.
	counted, err := s.db.unwritten.read(func(l *unwrittenLookup) error {
		r.Unread, r.Badge = 0, 0
		rows, err := s.db.query(ctx, `SELECT p.conversation_id, c.last_seq, p.read_seq
			FROM participants p JOIN conversations c ON c.app_id = p.app_id AND c.id = p.conversation_id
			WHERE p.app_id = ? AND p.user_id = ? AND c.deleted_at IS NULL`, appID, userID)
		if err != nil {
			return err
		}
		defer rows.Close()
		type seqs struct {
			conv       string
			last, read int64
		}
		var all []seqs
		for rows.Next() {
			var q seqs
			if err := rows.Scan(&q.conv, &q.last, &q.read); err != nil {
				return err
			}
			all = append(all, q)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		for _, q := range all {
			k := convKey{appID, q.conv}
			unread := max(l.lastSeq(k, q.last)-l.readSeq(k, userID, q.read), 0)
			r.Badge += unread
			if q.conv == conversationID {
				r.Unread = unread
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !counted {
		return s.pushRecipientSynced(ctx, appID, userID, conversationID, &r)
	}
	if r.Targets, err = s.userTargets(ctx, appID, userID); err != nil {
		return nil, err
	}
	return &r, nil
}

// pushRecipientSynced counts the unread messages of r once the marks of
// the user's conversations are written: the marks not written yet
// changed under each of several counts (unwritten.read).
func (s *PushService) pushRecipientSynced(ctx context.Context, appID, userID, conversationID string, r *tidings.PushRecipient) (*tidings.PushRecipient, error) {
	if err := s.db.syncMarksOfUser(ctx, appID, userID); err != nil {
		return nil, err
	}
	var unread sql.NullInt64
	err := s.db.queryRow(ctx, `SELECT
		  (SELECT MAX(c.last_seq - p.read_seq, 0) FROM participants p JOIN conversations c ON c.app_id = p.app_id AND c.id = p.conversation_id
		   WHERE p.app_id = ?1 AND p.user_id = ?2 AND p.conversation_id = ?3 AND c.deleted_at IS NULL),
		  (SELECT COALESCE(SUM(MAX(c.last_seq - p.read_seq, 0)), 0) FROM participants p JOIN conversations c ON c.app_id = p.app_id AND c.id = p.conversation_id
		   WHERE p.app_id = ?1 AND p.user_id = ?2 AND c.deleted_at IS NULL)`,
		appID, userID, conversationID).Scan(&unread, &r.Badge)
	if err != nil {
		return nil, err
	}
	r.Unread = unread.Int64
	if r.Targets, err = s.userTargets(ctx, appID, userID); err != nil {
		return nil, err
	}
	return r, nil
}

func (s *PushService) RemovePushTargets(ctx context.Context, appID string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.db.updateAside(ctx, func(tx *Tx) error {
		tx.pushTargetsChanged(appID)
		for _, id := range ids {
			if _, err := tx.exec(`DELETE FROM push_targets WHERE app_id = ? AND id = ?`, appID, id); err != nil {
				return err
			}
		}
		return nil
	})
}
