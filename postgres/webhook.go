package postgres

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tidings/tidings"
)

// WebhookService implements tidings.WebhookService (the API's side) and
// tidings.WebhookStore (the dispatcher's) on the webhook_endpoints and
// webhook_attempts tables, as SQLite's does. The events delivered are the
// event log's own rows: webhooks add no write to the events'
// transactions.
//
// What differs from SQLite is what several writers need: WebhookEvents
// returns final events only (as LogTail.Final), and the changes that set
// an endpoint's position (creation, replay) and each transaction of
// EventLog.Prune queue on one lock (retentionLock), so that a prune never
// removes events after the position of an endpoint in good standing,
// whatever runs at the same time on other nodes.
type WebhookService struct{ db *DB }

var (
	_ tidings.WebhookService = (*WebhookService)(nil)
	_ tidings.WebhookStore   = (*WebhookService)(nil)
)

func NewWebhookService(db *DB) *WebhookService { return &WebhookService{db: db} }

// retentionLock is the advisory lock (in the two-key space, apart from
// the conversations' one-key locks) that each transaction of Prune takes
// exclusively, and the changes that set an endpoint's position (creation,
// replay) shared: a prune reads the endpoints' positions after those
// committed before it, and they read the pruned mark after the prunes
// committed before them. Taken first, before the transaction has an id.
const retentionLockA, retentionLockB = migrationLockA, 2

const webhookColumns = `app_id, id, url, secret, events, disabled, failing, failing_since, last_seq,
	missed_up_to, missed_at, version, created_at, updated_at`

func scanWebhook(row interface{ Scan(...any) error }) (*tidings.WebhookEndpoint, error) {
	var w tidings.WebhookEndpoint
	var failingSince, missedAt *time.Time
	if err := row.Scan(&w.AppID, &w.ID, &w.URL, &w.Secret, &w.Events, &w.Disabled, &w.Failing, &failingSince, &w.LastSeq,
		&w.MissedUpTo, &missedAt, &w.Version, &w.CreatedAt, &w.UpdatedAt); err != nil {
		return nil, err
	}
	if w.Events == nil {
		w.Events = []string{}
	}
	w.FailingSince, w.MissedAt = fromNullTime(failingSince), fromNullTime(missedAt)
	w.CreatedAt, w.UpdatedAt = w.CreatedAt.UTC(), w.UpdatedAt.UTC()
	return &w, nil
}

func webhookNotFound(id string) error {
	return tidings.Errorf(tidings.ENotFound, "webhook endpoint %q not found", id)
}

// CreateWebhook creates an endpoint at the final horizon, once what was
// committed when it was called is final (usually at once; as long as the
// longest transaction then running otherwise): the events committed
// before are at or below its position, those committed after it was made
// above, so it receives those and only those (as on SQLite).
func (s *WebhookService) CreateWebhook(ctx context.Context, nw tidings.NewWebhook) (*tidings.WebhookEndpoint, error) {
	caller, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	if err := nw.Validate(); err != nil {
		return nil, err
	}
	final, err := s.db.settled(ctx)
	if err != nil {
		return nil, err
	}
	var w *tidings.WebhookEndpoint
	err = s.db.update(ctx, func(tx *Tx) error {
		w = &tidings.WebhookEndpoint{ID: tidings.NewID(), AppID: caller.AppID, URL: nw.URL, Secret: nw.Secret,
			Events: nw.Events, Disabled: nw.Disabled, Version: 1, CreatedAt: tx.now, UpdatedAt: tx.now}
		if err := tx.lockRetention(true); err != nil {
			return err
		}
		// The app's row, locked, counts its endpoints one creation at a
		// time.
		if err := tx.queryRow(`SELECT 1 FROM apps WHERE id = $1 FOR NO KEY UPDATE`, caller.AppID).Scan(nil); isNoRows(err) {
			return tidings.Errorf(tidings.ENotFound, "app %q not found", caller.AppID)
		} else if err != nil {
			return err
		}
		var n int
		if err := tx.queryRow(`SELECT count(*) FROM webhook_endpoints WHERE app_id = $1`, caller.AppID).Scan(&n); err != nil {
			return err
		}
		if err := tidings.CheckWebhookCount(n); err != nil {
			return err
		}
		// Never behind what retention removed: it would count as missed.
		pruned, err := tx.prunedSeq()
		if err != nil {
			return err
		}
		w.LastSeq = max(final, pruned)
		_, err = tx.exec(`INSERT INTO webhook_endpoints (app_id, id, url, secret, events, disabled, last_seq, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)`, w.AppID, w.ID, w.URL, w.Secret, w.Events, w.Disabled, w.LastSeq, tx.now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

// lockRetention takes retentionLock until the transaction ends: shared,
// or exclusive (Prune).
func (tx *Tx) lockRetention(shared bool) error {
	q := `SELECT pg_advisory_xact_lock($1, $2)`
	if shared {
		q = `SELECT pg_advisory_xact_lock_shared($1, $2)`
	}
	_, err := tx.exec(q, retentionLockA, retentionLockB)
	return err
}

// prunedSeq is the newest position removed by retention, as the
// transaction sees it.
func (tx *Tx) prunedSeq() (int64, error) {
	var seq int64
	err := tx.queryRow(`SELECT coalesce(max(value), 0) FROM meta WHERE key = 'pruned_seq'`).Scan(&seq)
	return seq, err
}

func (s *WebhookService) ListWebhooks(ctx context.Context) ([]*tidings.WebhookEndpoint, error) {
	caller, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	return s.list(ctx, `SELECT `+webhookColumns+` FROM webhook_endpoints WHERE app_id = $1 ORDER BY created_at, id`, caller.AppID)
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
			return nil, s.db.mapError(err)
		}
		list = append(list, w)
	}
	return list, s.db.mapError(rows.Err())
}

func (s *WebhookService) FindWebhook(ctx context.Context, id string) (*tidings.WebhookEndpoint, error) {
	caller, err := serverCaller(ctx)
	if err != nil {
		return nil, err
	}
	w, err := scanWebhook(s.db.queryRow(ctx, `SELECT `+webhookColumns+` FROM webhook_endpoints WHERE app_id = $1 AND id = $2`, caller.AppID, id))
	if isNoRows(err) {
		return nil, webhookNotFound(id)
	}
	return w, err
}

// findWebhook reads an endpoint of the app within the transaction and
// locks its row until the transaction ends.
func (tx *Tx) findWebhook(appID, id string) (*tidings.WebhookEndpoint, error) {
	w, err := scanWebhook(tx.queryRow(`SELECT `+webhookColumns+` FROM webhook_endpoints WHERE app_id = $1 AND id = $2 FOR NO KEY UPDATE`, appID, id))
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
	_, err := tx.exec(`UPDATE webhook_endpoints SET url = $1, events = $2, disabled = $3, failing = false, failing_since = NULL,
		last_seq = $4, version = $5, updated_at = $6 WHERE app_id = $7 AND id = $8`,
		w.URL, w.Events, w.Disabled, w.LastSeq, w.Version, tx.now, w.AppID, w.ID)
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
	err = s.db.update(ctx, func(tx *Tx) error {
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

// DeleteWebhook removes the endpoint; its attempts go with it (ON DELETE
// CASCADE).
func (s *WebhookService) DeleteWebhook(ctx context.Context, id string) error {
	caller, err := serverCaller(ctx)
	if err != nil {
		return err
	}
	return s.db.update(ctx, func(tx *Tx) error {
		tag, err := tx.exec(`DELETE FROM webhook_endpoints WHERE app_id = $1 AND id = $2`, caller.AppID, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return webhookNotFound(id)
		}
		return nil
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
		FROM webhook_attempts WHERE endpoint_id = $1 ORDER BY n DESC LIMIT $2`, id, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	list := []*tidings.WebhookAttempt{}
	for rows.Next() {
		a := tidings.WebhookAttempt{EndpointID: id}
		var latency int64
		if err := rows.Scan(&a.EventID, &a.EventSeq, &a.EventName, &a.Time, &a.Attempt, &a.Status, &a.Error, &latency); err != nil {
			return nil, s.db.mapError(err)
		}
		a.Time, a.LatencyMS = a.Time.UTC(), float64(latency)/1000
		list = append(list, &a)
	}
	return list, s.db.mapError(rows.Err())
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
		// A scan of the log (events are not indexed by id: an index would
		// cost every event a write for a rare request), outside the
		// transaction. An event pruned meanwhile is caught below.
		err := s.db.queryRow(ctx, `SELECT seq FROM events WHERE id = $1 AND app_id = $2`, r.FromEventID, caller.AppID).Scan(&seq)
		if isNoRows(err) {
			return nil, tidings.Errorf(tidings.ENotFound, "event %q is not in the log (it may have been removed by retention)", r.FromEventID)
		} else if err != nil {
			return nil, err
		}
	}
	var w *tidings.WebhookEndpoint
	err = s.db.update(ctx, func(tx *Tx) error {
		if err := tx.lockRetention(true); err != nil {
			return err
		}
		var err error
		if w, err = tx.findWebhook(caller.AppID, id); err != nil {
			return err
		}
		pruned, err := tx.prunedSeq()
		if err != nil {
			return err
		}
		var last int64
		if err := tx.queryRow(`SELECT coalesce(max(seq), 0) FROM events`).Scan(&last); err != nil {
			return err
		}
		switch {
		case seq <= pruned:
			return tidings.Errorf(tidings.EResyncRequired, "events up to %d are no longer kept: replay from %d or later", pruned, pruned+1)
		case seq > last+1:
			return tidings.Errorf(tidings.EInvalid, "fromSeq %d is past the newest event (%d)", seq, last)
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

// WebhookEvents reads the log after a position, up to the final horizon
// only (as LogTail.Final): an event still being committed below a
// position returned would otherwise be skipped by the endpoints moving
// past it. As EventLog's readers, it first waits until what was committed
// when it was called is final (at once when no other transaction runs; as
// long as the longest one then running otherwise, or until ctx ends), so
// that an event committed before the call is returned by it. Never call it
// inside a write transaction: it would wait for itself.
func (s *WebhookService) WebhookEvents(ctx context.Context, after int64, limit int) ([]*tidings.Event, int64, error) {
	if limit <= 0 {
		limit = 500
	}
	final, err := s.db.settled(ctx)
	if err != nil {
		return nil, 0, err
	}
	var evs []*tidings.Event
	if final > after {
		// Read after the step that found final: every event up to it is
		// visible to this statement's snapshot.
		rows, err := s.db.query(ctx, `SELECT `+eventColumns+` FROM events e
			WHERE e.seq > $1 AND e.seq <= $2 ORDER BY e.seq LIMIT $3`, after, final, limit)
		if err != nil {
			return nil, 0, err
		}
		var actors tidings.Actors
		for rows.Next() {
			e, err := scanEvent(rows, &actors)
			if err != nil {
				rows.Close()
				return nil, 0, s.db.mapError(err)
			}
			evs = append(evs, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, 0, s.db.mapError(err)
		}
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

// SaveWebhookProgress stores the dispatcher's progress in one transaction
// of one round trip. Each endpoint's row is locked first, so that a
// deletion running at the same time either comes first (nothing is then
// saved for it) or waits; and saves from two nodes (a lease changing
// hands) number their attempts one after the other.
func (s *WebhookService) SaveWebhookProgress(ctx context.Context, progress []tidings.WebhookProgress) error {
	if len(progress) == 0 {
		return nil
	}
	// Rows locked in one order, whatever the caller's, so that two saves
	// never deadlock.
	progress = slices.Clone(progress)
	slices.SortFunc(progress, func(a, b tidings.WebhookProgress) int { return strings.Compare(a.EndpointID, b.EndpointID) })
	return s.db.update(ctx, func(tx *Tx) error {
		b := &pgx.Batch{}
		for _, p := range progress {
			b.Queue(`SELECT 1 FROM webhook_endpoints WHERE id = $1 FOR NO KEY UPDATE`, p.EndpointID)
			b.Queue(`UPDATE webhook_endpoints SET last_seq = $1, failing = $2, failing_since = $3,
				missed_up_to = greatest(missed_up_to, $4), missed_at = coalesce($5, missed_at)
				WHERE id = $6 AND version = $7`,
				p.LastSeq, p.Failing, p.FailingSince, p.MissedUpTo, p.MissedAt, p.EndpointID, p.Version)
			attempts := p.Attempts
			if len(attempts) == 0 {
				continue
			}
			if len(attempts) > tidings.WebhookAttemptsKept {
				attempts = attempts[len(attempts)-tidings.WebhookAttemptsKept:]
			}
			var (
				ids, names, errs  = make([]string, len(attempts)), make([]string, len(attempts)), make([]string, len(attempts))
				seqs, latencies   = make([]int64, len(attempts)), make([]int64, len(attempts))
				times             = make([]time.Time, len(attempts))
				numbers, statuses = make([]int32, len(attempts)), make([]int32, len(attempts))
			)
			for i, a := range attempts {
				ids[i], names[i], errs[i] = a.EventID, a.EventName, a.Error
				seqs[i], latencies[i], times[i] = a.EventSeq, int64(a.LatencyMS*1000), a.Time
				numbers[i], statuses[i] = int32(a.Attempt), int32(a.Status)
			}
			// Nothing for an endpoint deleted meanwhile.
			b.Queue(`INSERT INTO webhook_attempts (endpoint_id, n, event_id, event_seq, event_name, time, attempt, status, error, latency_us)
				SELECT $1, last.n + a.ord, a.event_id, a.event_seq, a.event_name, a.time, a.attempt, a.status, a.error, a.latency_us
				FROM (SELECT coalesce(max(n), 0) AS n FROM webhook_attempts WHERE endpoint_id = $1) AS last,
					unnest($2::text[], $3::bigint[], $4::text[], $5::timestamptz[], $6::int[], $7::int[], $8::text[], $9::bigint[])
					WITH ORDINALITY AS a (event_id, event_seq, event_name, time, attempt, status, error, latency_us, ord)
				WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $1)`,
				p.EndpointID, ids, seqs, names, times, numbers, statuses, errs, latencies)
			b.Queue(`DELETE FROM webhook_attempts WHERE endpoint_id = $1
				AND n <= (SELECT max(n) FROM webhook_attempts WHERE endpoint_id = $1) - $2`, p.EndpointID, tidings.WebhookAttemptsKept)
		}
		return tx.tx.SendBatch(tx.ctx, b).Close()
	})
}
