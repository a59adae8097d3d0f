package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/tidings/tidings"
)

// The log of the users whose access may have ended (tidings.AccessLog):
// the table access_changes, which triggers on users write (migration
// 0012), one writer at a time, so that its seqs are in commit order.

var _ tidings.AccessLog = (*UserService)(nil)

// AccessLogHead returns the seq of the newest entry of the log, 0 if it
// never had one.
func (s *UserService) AccessLogHead(ctx context.Context) (int64, error) {
	var head int64
	if err := s.db.queryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM access_changes`).Scan(&head); err != nil {
		return 0, fmt.Errorf("sqlite: access log head: %w", err)
	}
	return head, nil
}

// AccessChangesSince returns the users of the entries after seq after (at
// most limit), and whether the log still holds every entry after it. The
// entries are read before the log's bounds: entries go oldest first, so
// when none after after is gone at the second read, none was at the
// first.
func (s *UserService) AccessChangesSince(ctx context.Context, after int64, limit int) ([]tidings.UserRef, int64, bool, error) {
	rows, err := s.db.query(ctx, `SELECT seq, app_id, user_id FROM access_changes WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, after, false, fmt.Errorf("sqlite: access log: %w", err)
	}
	var users []tidings.UserRef
	next := after
	for rows.Next() {
		var u tidings.UserRef
		if err := rows.Scan(&next, &u.AppID, &u.UserID); err != nil {
			rows.Close()
			return nil, after, false, fmt.Errorf("sqlite: access log: %w", err)
		}
		users = append(users, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, after, false, fmt.Errorf("sqlite: access log: %w", err)
	}
	var oldest, newest sql.NullInt64
	if err := s.db.queryRow(ctx, `SELECT (SELECT MIN(seq) FROM access_changes), (SELECT MAX(seq) FROM access_changes)`).Scan(&oldest, &newest); err != nil {
		return nil, after, false, fmt.Errorf("sqlite: access log bounds: %w", err)
	}
	return users, next, logComplete(after, oldest, newest), nil
}

// logComplete says whether a log whose entries are now oldest to newest
// (NULL: none) holds every entry after after: nothing after it went
// (oldest entries go first; the newest never does), and after is not
// beyond the newest (a log made again).
func logComplete(after int64, oldest, newest sql.NullInt64) bool {
	if !oldest.Valid {
		return after == 0
	}
	return oldest.Int64 <= after+1 && after <= newest.Int64
}
