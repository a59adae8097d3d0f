package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"
	"unsafe"

	"github.com/tidings/tidings"
)

// text returns b as a string without copying it, for an argument of a
// statement: the driver copies a text argument into SQLite as it binds
// it. b must not change afterwards (the callers' are never written
// again).
func text(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// partsText returns a message's parts as the messages and the journal
// store them: their JSON, as encoding/json writes it.
func partsText(parts []tidings.Part) string {
	return text(tidings.AppendPartsJSON(make([]byte, 0, tidings.PartsSize(parts)), parts))
}

// callerFrom returns the caller of ctx, or EUnauthenticated.
func callerFrom(ctx context.Context) (tidings.Caller, error) {
	c, ok := tidings.CallerFromContext(ctx)
	if !ok {
		return c, tidings.Errorf(tidings.EUnauthenticated, "no credentials")
	}
	return c, nil
}

// userCaller returns the caller of ctx if it is a user of an app.
func userCaller(ctx context.Context) (tidings.Caller, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return c, err
	}
	if !c.IsUser() {
		return c, tidings.Errorf(tidings.EForbidden, "this needs a user access token, not the server key")
	}
	return c, nil
}

// actingCaller returns the caller of ctx if it is a user of an app, or
// the app's server acting as itself (tidings.RoleServer).
func actingCaller(ctx context.Context) (tidings.Caller, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return c, err
	}
	if !c.Server && !c.IsUser() {
		return c, tidings.Errorf(tidings.EForbidden, "this needs a user access token or the server key")
	}
	return c, nil
}

// serverCaller returns the caller of ctx if it is an app server.
func serverCaller(ctx context.Context) (tidings.Caller, error) {
	c, err := callerFrom(ctx)
	if err != nil {
		return c, err
	}
	if !c.Server {
		return c, tidings.Errorf(tidings.EForbidden, "this needs the app's server key")
	}
	return c, nil
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func fromNullMicros(us sql.NullInt64) *time.Time {
	if !us.Valid {
		return nil
	}
	t := fromMicros(us.Int64)
	return &t
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// clampLimit applies the default (50) and maximum (200) page sizes.
func clampLimit(n int) int {
	switch {
	case n <= 0:
		return 50
	case n > 200:
		return 200
	}
	return n
}
