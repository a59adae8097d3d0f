package postgres

import (
	"context"
	"fmt"

	"github.com/tidings/tidings"
)

// The log of the users whose access may have ended (tidings.AccessLog):
// the table access_changes, which triggers on users write (migration
// 0008) in seq order (see there).

var _ tidings.AccessLog = (*UserService)(nil)

// AccessLogHead returns the seq of the newest entry of the log, 0 if it
// never had one.
func (s *UserService) AccessLogHead(ctx context.Context) (int64, error) {
	var head int64
	if err := s.db.queryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM access_changes`).Scan(&head); err != nil {
		return 0, fmt.Errorf("postgres: access log head: %w", err)
	}
	return head, nil
}

// AccessChangesSince returns the users of the entries after seq after (at
// most limit), and whether the log still holds every entry after it. The
// entries are read before the log's bounds: entries go oldest first, so
// when none after after is gone at the second read, none was at the
// first. A seq lost to a rolled-back transaction can make the log look
// incomplete (the caller reads all its users once), never complete when
// it is not.
func (s *UserService) AccessChangesSince(ctx context.Context, after int64, limit int) ([]tidings.UserRef, int64, bool, error) {
	rows, err := s.db.query(ctx, `SELECT seq, app_id, user_id FROM access_changes WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, after, false, fmt.Errorf("postgres: access log: %w", err)
	}
	var users []tidings.UserRef
	next := after
	for rows.Next() {
		var u tidings.UserRef
		if err := rows.Scan(&next, &u.AppID, &u.UserID); err != nil {
			rows.Close()
			return nil, after, false, fmt.Errorf("postgres: access log: %w", err)
		}
		users = append(users, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, after, false, fmt.Errorf("postgres: access log: %w", s.db.mapError(err))
	}
	var oldest, newest *int64
	if err := s.db.queryRow(ctx, `SELECT MIN(seq), MAX(seq) FROM access_changes`).Scan(&oldest, &newest); err != nil {
		return nil, after, false, fmt.Errorf("postgres: access log bounds: %w", err)
	}
	complete := after == 0
	if oldest != nil {
		complete = *oldest <= after+1 && after <= *newest
	}
	return users, next, complete, nil
}
