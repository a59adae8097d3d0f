package sqlite

import (
	"context"

	"github.com/tidings/tidings"
)

// BeforeSendService implements tidings.BeforeSendService (the API's side)
// and tidings.BeforeSendStore (the sender's) on the before_send_hooks
// table.
type BeforeSendService struct{ db *DB }

var (
	_ tidings.BeforeSendService = (*BeforeSendService)(nil)
	_ tidings.BeforeSendStore   = (*BeforeSendService)(nil)
)

func NewBeforeSendService(db *DB) *BeforeSendService { return &BeforeSendService{db: db} }

const beforeSendColumns = `app_id, url, secret, timeout_ms, fail_open, created_at, updated_at`

func scanBeforeSend(row interface{ Scan(...any) error }) (*tidings.BeforeSendHook, error) {
	var h tidings.BeforeSendHook
	var created, updated int64
	if err := row.Scan(&h.AppID, &h.URL, &h.Secret, &h.TimeoutMS, &h.FailOpen, &created, &updated); err != nil {
		return nil, err
	}
	h.CreatedAt, h.UpdatedAt = fromMicros(created), fromMicros(updated)
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
	h, err := scanBeforeSend(s.db.queryRow(ctx, `SELECT `+beforeSendColumns+` FROM before_send_hooks WHERE app_id = ?`, appID))
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
	err = s.db.updateAside(ctx, func(tx *Tx) error {
		st, err := tx.stmt(`SELECT ` + beforeSendColumns + ` FROM before_send_hooks WHERE app_id = ?`)
		if err != nil {
			return err
		}
		old, err := scanBeforeSend(st.QueryRowContext(tx.ctx, caller.AppID))
		switch {
		case isNoRows(err):
			old = nil
		case err != nil:
			return err
		}
		h = &tidings.BeforeSendHook{AppID: caller.AppID, URL: cfg.URL, Secret: cfg.Secret, TimeoutMS: cfg.TimeoutMS,
			FailOpen: cfg.FailOpen, CreatedAt: tx.now, UpdatedAt: tx.now}
		if old != nil {
			h.CreatedAt = old.CreatedAt
			if h.Secret == "" {
				h.Secret = old.Secret
			}
		}
		if h.Secret == "" {
			h.Secret = tidings.NewWebhookSecret()
		}
		_, err = tx.exec(`INSERT INTO before_send_hooks (app_id, url, secret, timeout_ms, fail_open, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (app_id) DO UPDATE SET url = excluded.url, secret = excluded.secret, timeout_ms = excluded.timeout_ms,
				fail_open = excluded.fail_open, updated_at = excluded.updated_at`,
			h.AppID, h.URL, h.Secret, h.TimeoutMS, h.FailOpen, micros(h.CreatedAt), micros(tx.now))
		return err
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

func (s *BeforeSendService) DeleteBeforeSend(ctx context.Context) error {
	caller, err := serverCaller(ctx)
	if err != nil {
		return err
	}
	return s.db.updateAside(ctx, func(tx *Tx) error {
		_, err := tx.exec(`DELETE FROM before_send_hooks WHERE app_id = ?`, caller.AppID)
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
	// Moved out of the journal first only when the message is there: a
	// retry is rare, and a move per send would cost a commit.
	if s.db.journal.pendingClientID(convKey{c.AppID, convID}, sender, clientID) {
		if err := s.db.syncMessages(ctx, c.AppID, convID); err != nil {
			return nil, err
		}
	}
	m, err := scanMessage(s.db.queryRow(ctx, `SELECT `+messageColumns+messageFrom+`
		WHERE m.app_id = ? AND m.conversation_id = ? AND m.sender_id = ? AND m.client_id = ?`, c.AppID, convID, sender, clientID))
	if isNoRows(err) {
		return nil, nil
	}
	return m, err
}

// ConversationForSend reads the conversation as FindConversationByID
// does, without first writing the marks of the sends committed so far
// (syncMarks): a hook's app would otherwise pay a commit per send.
func (s *BeforeSendService) ConversationForSend(ctx context.Context, id string) (*tidings.Conversation, error) {
	c, err := actingCaller(ctx)
	if err != nil {
		return nil, err
	}
	return shown(visibleConversation(ctx, s.db.read, c, id))
}
