package postgres

import (
	"context"

	"github.com/tidings/tidings"
)

// BeforeSendService implements tidings.BeforeSendService (the API's side)
// and tidings.BeforeSendStore (the sender's) on the before_send_hooks
// table, as SQLite's does.
type BeforeSendService struct{ db *DB }

var (
	_ tidings.BeforeSendService = (*BeforeSendService)(nil)
	_ tidings.BeforeSendStore   = (*BeforeSendService)(nil)
)

func NewBeforeSendService(db *DB) *BeforeSendService { return &BeforeSendService{db: db} }

const beforeSendColumns = `app_id, url, secret, timeout_ms, fail_open, created_at, updated_at`

func scanBeforeSend(row interface{ Scan(...any) error }) (*tidings.BeforeSendHook, error) {
	var h tidings.BeforeSendHook
	if err := row.Scan(&h.AppID, &h.URL, &h.Secret, &h.TimeoutMS, &h.FailOpen, &h.CreatedAt, &h.UpdatedAt); err != nil {
		return nil, err
	}
	h.CreatedAt, h.UpdatedAt = h.CreatedAt.UTC(), h.UpdatedAt.UTC()
	return &h, nil
}

func (s *BeforeSendService) FindBeforeSend(ctx context.Context) (*tidings.BeforeSendHook, error) {
	caller, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	h, err := s.AppBeforeSend(ctx, caller.AppID)
	if err == nil && h == nil {
		err = tidings.Errorf(tidings.ENotFound, "the app has no before-send hook")
	}
	return h, err
}

func (s *BeforeSendService) AppBeforeSend(ctx context.Context, appID string) (*tidings.BeforeSendHook, error) {
	h, err := scanBeforeSend(s.db.queryRow(ctx, `SELECT `+beforeSendColumns+` FROM before_send_hooks WHERE app_id = $1`, appID))
	if isNoRows(err) {
		return nil, nil
	}
	return h, err
}

func (s *BeforeSendService) SetBeforeSend(ctx context.Context, cfg tidings.BeforeSendConfig) (*tidings.BeforeSendHook, error) {
	caller, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	var h *tidings.BeforeSendHook
	err = s.db.update(ctx, func(tx *Tx) error {
		h = &tidings.BeforeSendHook{AppID: caller.AppID, URL: cfg.URL, Secret: cfg.Secret, TimeoutMS: cfg.TimeoutMS,
			FailOpen: cfg.FailOpen, CreatedAt: tx.now, UpdatedAt: tx.now}
		if h.Secret == "" {
			h.Secret = tidings.NewWebhookSecret()
		}
		// An omitted secret keeps the current one (COALESCE of the
		// given, NULL when omitted).
		var given *string
		if cfg.Secret != "" {
			given = &cfg.Secret
		}
		return tx.queryRow(`INSERT INTO before_send_hooks (app_id, url, secret, timeout_ms, fail_open, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $6)
			ON CONFLICT (app_id) DO UPDATE SET url = excluded.url, secret = COALESCE($7, before_send_hooks.secret),
				timeout_ms = excluded.timeout_ms, fail_open = excluded.fail_open, updated_at = excluded.updated_at
			RETURNING `+beforeSendColumns,
			h.AppID, h.URL, h.Secret, h.TimeoutMS, h.FailOpen, tx.now, given).Scan(
			&h.AppID, &h.URL, &h.Secret, &h.TimeoutMS, &h.FailOpen, &h.CreatedAt, &h.UpdatedAt)
	})
	if err != nil {
		return nil, err
	}
	h.CreatedAt, h.UpdatedAt = h.CreatedAt.UTC(), h.UpdatedAt.UTC()
	return h, nil
}

func (s *BeforeSendService) DeleteBeforeSend(ctx context.Context) error {
	caller, err := serverCaller(ctx)
	if err != nil {
		return err
	}
	return s.db.update(ctx, func(tx *Tx) error {
		_, err := tx.exec(`DELETE FROM before_send_hooks WHERE app_id = $1`, caller.AppID)
		return err
	})
}

func (s *BeforeSendService) FindSentMessage(ctx context.Context, convID, clientID string) (*tidings.Message, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	if clientID == "" {
		return nil, nil
	}
	sender := c.UserID
	if c.Server {
		sender = ""
	}
	m, err := scanMessage(s.db.queryRow(ctx, `SELECT `+messageColumns+messageFrom+`
		WHERE m.app_id = $1 AND m.conversation_id = $2 AND m.sender_id = $3 AND m.client_id = $4`, c.AppID, convID, sender, clientID))
	if isNoRows(err) {
		return nil, nil
	}
	return m, err
}

// ConversationForSend is FindConversationByID: this store writes a send's
// marks in its own transaction, so nothing lags behind.
func (s *BeforeSendService) ConversationForSend(ctx context.Context, id string) (*tidings.Conversation, error) {
	return NewConversationService(s.db).FindConversationByID(ctx, id)
}
