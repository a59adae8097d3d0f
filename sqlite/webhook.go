package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"

	"github.com/tidings/tidings"
)

// WebhookService implements tidings.WebhookService (the API's side) and
// tidings.WebhookStore (the dispatcher's) on the webhook_endpoints and
// webhook_attempts tables. The events delivered are the event log's own
// rows: webhooks add no write to the events' transactions.
type WebhookService struct{ db *DB }

var (
	_ tidings.WebhookService = (*WebhookService)(nil)
	_ tidings.WebhookStore   = (*WebhookService)(nil)
)

func NewWebhookService(db *DB) *WebhookService { return &WebhookService{db: db} }

const webhookColumns = `app_id, id, url, secret, events, disabled, failing, failing_since, last_seq,
	missed_up_to, missed_at, version, created_at, updated_at`

func scanWebhook(row interface{ Scan(...any) error }) (*tidings.WebhookEndpoint, error) {
	var w tidings.WebhookEndpoint
	var events string
	var failingSince, missedAt sql.NullInt64
	var created, updated int64
	if err := row.Scan(&w.AppID, &w.ID, &w.URL, &w.Secret, &events, &w.Disabled, &w.Failing, &failingSince, &w.LastSeq,
		&w.MissedUpTo, &missedAt, &w.Version, &created, &updated); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(events), &w.Events); err != nil {
		return nil, err
	}
	w.FailingSince, w.MissedAt = fromNullMicros(failingSince), fromNullMicros(missedAt)
	w.CreatedAt, w.UpdatedAt = fromMicros(created), fromMicros(updated)
	return &w, nil
}

func webhookNotFound(id string) error {
	return tidings.Errorf(tidings.ENotFound, "webhook endpoint %q not found", id)
}

func (s *WebhookService) CreateWebhook(ctx context.Context, nw tidings.NewWebhook) (*tidings.WebhookEndpoint, error) {
	caller, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	if err := nw.Validate(); err != nil {
		return nil, err
	}
	w := &tidings.WebhookEndpoint{ID: tidings.NewID(), AppID: caller.AppID, URL: nw.URL, Secret: nw.Secret,
		Events: nw.Events, Disabled: nw.Disabled, Version: 1}
	err = s.db.updateAside(ctx, func(tx *Tx) error {
		var n int
		if err := tx.queryRow(`SELECT COUNT(*) FROM webhook_endpoints WHERE app_id = ?`, []any{caller.AppID}, &n); err != nil {
			return err
		}
		if err := tidings.CheckWebhookCount(n); err != nil {
			return err
		}
		// It receives the events committed from now on.
		var last sql.NullInt64
		if err := tx.queryRow(`SELECT MAX(seq) FROM events`, nil, &last); err != nil {
			return err
		}
		w.LastSeq, w.CreatedAt, w.UpdatedAt = last.Int64, tx.now, tx.now
		events, _ := json.Marshal(w.Events)
		_, err := tx.exec(`INSERT INTO webhook_endpoints (app_id, id, url, secret, events, disabled, last_seq, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, w.AppID, w.ID, w.URL, w.Secret, string(events), w.Disabled, w.LastSeq,
			micros(tx.now), micros(tx.now))
		return err
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (s *WebhookService) ListWebhooks(ctx context.Context) ([]*tidings.WebhookEndpoint, error) {
	caller, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	return s.list(ctx, `SELECT `+webhookColumns+` FROM webhook_endpoints WHERE app_id = ? ORDER BY created_at, id`, caller.AppID)
}

func (s *WebhookService) list(ctx context.Context, query string, args ...any) ([]*tidings.WebhookEndpoint, error) {
	rows, err := s.db.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	list := []*tidings.WebhookEndpoint{}
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, w)
	}
	return list, rows.Err()
}

func (s *WebhookService) FindWebhook(ctx context.Context, id string) (*tidings.WebhookEndpoint, error) {
	caller, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	w, err := scanWebhook(s.db.queryRow(ctx, `SELECT `+webhookColumns+` FROM webhook_endpoints WHERE app_id = ? AND id = ?`, caller.AppID, id))
	if isNoRows(err) {
		return nil, webhookNotFound(id)
	}
	return w, err
}

// findWebhook reads an endpoint of the app within the write transaction.
func (tx *Tx) findWebhook(appID, id string) (*tidings.WebhookEndpoint, error) {
	st, err := tx.stmt(`SELECT ` + webhookColumns + ` FROM webhook_endpoints WHERE app_id = ? AND id = ?`)
	if err != nil {
		return nil, err
	}
	w, err := scanWebhook(st.QueryRowContext(tx.ctx, appID, id))
	if isNoRows(err) {
		return nil, webhookNotFound(id)
	}
	return w, err
}

// saveWebhook stores the settings and position of w with a new version,
// and makes it healthy again: a change made through the API is the app
// saying the receiver may take events now, so the dispatcher tries at
// once and counts failures afresh.
func (tx *Tx) saveWebhook(w *tidings.WebhookEndpoint) error {
	w.Version++
	w.UpdatedAt = tx.now
	w.Failing, w.FailingSince = false, nil
	events, _ := json.Marshal(w.Events)
	_, err := tx.exec(`UPDATE webhook_endpoints SET url = ?, events = ?, disabled = ?, failing = FALSE, failing_since = NULL,
		last_seq = ?, version = ?, updated_at = ? WHERE app_id = ? AND id = ?`,
		w.URL, string(events), w.Disabled, w.LastSeq, w.Version, micros(tx.now), w.AppID, w.ID)
	return err
}

func (s *WebhookService) UpdateWebhook(ctx context.Context, id string, upd tidings.WebhookUpdate) (*tidings.WebhookEndpoint, error) {
	caller, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	if err := upd.Validate(); err != nil {
		return nil, err
	}
	var w *tidings.WebhookEndpoint
	err = s.db.updateAside(ctx, func(tx *Tx) error {
		var err error
		if w, err = tx.findWebhook(caller.AppID, id); err != nil {
			return err
		}
		upd.Apply(w)
		return tx.saveWebhook(w)
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (s *WebhookService) DeleteWebhook(ctx context.Context, id string) error {
	caller, err := serverCaller(ctx)
	if err != nil {
		return err
	}
	return s.db.updateAside(ctx, func(tx *Tx) error {
		res, err := tx.exec(`DELETE FROM webhook_endpoints WHERE app_id = ? AND id = ?`, caller.AppID, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return webhookNotFound(id)
		}
		_, err = tx.exec(`DELETE FROM webhook_attempts WHERE endpoint_id = ?`, id)
		return err
	})
}

func (s *WebhookService) ListWebhookAttempts(ctx context.Context, id string, limit int) ([]*tidings.WebhookAttempt, error) {
	if _, err := s.FindWebhook(ctx, id); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > tidings.WebhookAttemptsKept {
		limit = tidings.WebhookAttemptsKept
	}
	rows, err := s.db.query(ctx, `SELECT event_id, event_seq, event_name, time, attempt, status, error, latency_us
		FROM webhook_attempts WHERE endpoint_id = ? ORDER BY n DESC LIMIT ?`, id, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	list := []*tidings.WebhookAttempt{}
	for rows.Next() {
		a := tidings.WebhookAttempt{EndpointID: id}
		var at, latency int64
		if err := rows.Scan(&a.EventID, &a.EventSeq, &a.EventName, &at, &a.Attempt, &a.Status, &a.Error, &latency); err != nil {
			return nil, err
		}
		a.Time, a.LatencyMS = fromMicros(at), float64(latency)/1000
		list = append(list, &a)
	}
	return list, rows.Err()
}

func (s *WebhookService) ReplayWebhook(ctx context.Context, id string, r tidings.WebhookReplay) (*tidings.WebhookEndpoint, error) {
	caller, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	if (r.FromSeq == 0) == (r.FromEventID == "") || r.FromSeq < 0 {
		return nil, tidings.Errorf(tidings.EInvalid, "give either fromSeq (a positive event position) or fromEventId")
	}
	if _, err := s.FindWebhook(ctx, id); err != nil {
		return nil, err
	}
	seq := r.FromSeq
	if r.FromEventID != "" {
		// A scan of the log (events are not indexed by id), on the read
		// pool rather than in the writer's transaction: replays are rare,
		// and the position, which attempts and deliveries show, is the
		// fast way. An event pruned meanwhile is caught below.
		err := s.db.queryRow(ctx, `SELECT seq FROM events WHERE id = ? AND app_id = ?`, r.FromEventID, caller.AppID).Scan(&seq)
		if isNoRows(err) {
			return nil, tidings.Errorf(tidings.ENotFound, "event %q is not in the log (it may have been removed by retention)", r.FromEventID)
		} else if err != nil {
			return nil, err
		}
	}
	var w *tidings.WebhookEndpoint
	err = s.db.updateAside(ctx, func(tx *Tx) error {
		var err error
		if w, err = tx.findWebhook(caller.AppID, id); err != nil {
			return err
		}
		var pruned int64
		if err := tx.queryRow(`SELECT COALESCE(MAX(value), 0) FROM meta WHERE key = 'pruned_seq'`, nil, &pruned); err != nil {
			return err
		}
		var last sql.NullInt64
		if err := tx.queryRow(`SELECT MAX(seq) FROM events`, nil, &last); err != nil {
			return err
		}
		switch {
		case seq <= pruned:
			return tidings.Errorf(tidings.EResyncRequired, "events up to %d are no longer kept: replay from %d or later", pruned, pruned+1)
		case seq > last.Int64+1:
			return tidings.Errorf(tidings.EInvalid, "fromSeq %d is past the newest event (%d)", seq, last.Int64)
		}
		w.LastSeq = seq - 1
		return tx.saveWebhook(w)
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

// AllWebhooks returns the endpoints of every app (for the dispatcher).
func (s *WebhookService) AllWebhooks(ctx context.Context) ([]*tidings.WebhookEndpoint, error) {
	return s.list(ctx, `SELECT `+webhookColumns+` FROM webhook_endpoints ORDER BY created_at, id`)
}

// WebhookEvents reads the log after a position. With one writer, every
// committed event is final.
func (s *WebhookService) WebhookEvents(ctx context.Context, after int64, limit int) ([]*tidings.Event, int64, error) {
	if limit <= 0 {
		limit = 500
	}
	rows, err := s.db.query(ctx, `SELECT `+eventColumns+` FROM events e WHERE e.seq > ? ORDER BY e.seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, 0, err
	}
	var evs []*tidings.Event
	var actors tidings.Actors
	for rows.Next() {
		e, err := scanEvent(rows, &actors)
		if err != nil {
			rows.Close()
			return nil, 0, err
		}
		evs = append(evs, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	// The pruned mark is read after the events: if retention removed
	// events after `after` by now, those read up to the mark are dropped
	// too, and what remains, above the mark, has no hole.
	pruned, err := NewEventLog(s.db).prunedSeq(ctx)
	if err != nil || pruned <= after {
		return evs, 0, err
	}
	i := 0
	for i < len(evs) && evs[i].Seq <= pruned {
		i++
	}
	return evs[i:], pruned, nil
}

// SaveWebhookProgress stores the dispatcher's progress in one write.
func (s *WebhookService) SaveWebhookProgress(ctx context.Context, progress []tidings.WebhookProgress) error {
	if len(progress) == 0 {
		return nil
	}
	return s.db.updateAside(ctx, func(tx *Tx) error {
		for _, p := range progress {
			var failingSince, missedAt any
			if p.FailingSince != nil {
				failingSince = micros(*p.FailingSince)
			}
			if p.MissedAt != nil {
				missedAt = micros(*p.MissedAt)
			}
			if _, err := tx.exec(`UPDATE webhook_endpoints SET last_seq = ?, failing = ?, failing_since = ?,
				missed_up_to = max(missed_up_to, ?), missed_at = COALESCE(?, missed_at)
				WHERE id = ? AND version = ?`,
				p.LastSeq, p.Failing, failingSince, p.MissedUpTo, missedAt, p.EndpointID, p.Version); err != nil {
				return err
			}
			if len(p.Attempts) == 0 {
				continue
			}
			var exists int
			if err := tx.queryRow(`SELECT COUNT(*) FROM webhook_endpoints WHERE id = ?`, []any{p.EndpointID}, &exists); err != nil {
				return err
			}
			if exists == 0 {
				continue // deleted meanwhile
			}
			var n int64
			if err := tx.queryRow(`SELECT COALESCE(MAX(n), 0) FROM webhook_attempts WHERE endpoint_id = ?`, []any{p.EndpointID}, &n); err != nil {
				return err
			}
			attempts := p.Attempts
			if len(attempts) > tidings.WebhookAttemptsKept {
				attempts = attempts[len(attempts)-tidings.WebhookAttemptsKept:]
			}
			for _, a := range attempts {
				n++
				if _, err := tx.exec(`INSERT INTO webhook_attempts (endpoint_id, n, event_id, event_seq, event_name, time, attempt, status, error, latency_us)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, p.EndpointID, n, a.EventID, a.EventSeq, a.EventName, micros(a.Time),
					a.Attempt, a.Status, a.Error, int64(a.LatencyMS*1000)); err != nil {
					return err
				}
			}
			if _, err := tx.exec(`DELETE FROM webhook_attempts WHERE endpoint_id = ? AND n <= ?`,
				p.EndpointID, n-tidings.WebhookAttemptsKept); err != nil {
				return err
			}
		}
		return nil
	})
}
