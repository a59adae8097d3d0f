package tidings

import (
	"errors"
	"fmt"
)

// Error codes are stable, machine-readable identifiers of a failure. They
// are part of the public API (HTTP and realtime protocol): never rename one.
const (
	EInvalid          = "invalid_argument"       // input failed validation
	EInvalidJSON      = "invalid_json"           // body is not valid JSON or has unknown fields or wrong types
	ETooLarge         = "too_large"              // body, message or file exceeds a limit
	EUnauthenticated  = "unauthenticated"        // no, bad or expired credentials
	EForbidden        = "forbidden"              // authenticated but not allowed
	ENotFound         = "not_found"              // does not exist, or the caller may not know it exists
	EConflict         = "conflict"               // state does not allow it (already exists, last owner…)
	EUnsupportedType  = "unsupported_media_type" // wrong Content-Type
	EMethodNotAllowed = "method_not_allowed"     // the path exists, not with that method
	ERateLimited      = "rate_limited"           // too many requests
	EUnavailable      = "unavailable"            // shutting down or overloaded; retry later
	EResyncRequired   = "resync_required"        // updates after the given ref are no longer kept: rebuild from the REST API
	EInternal         = "internal"               // a bug or a storage failure; never the client's fault
)

// Error is a failure meant for the API caller: a stable Code and a human
// Message. Any other error reaching the API boundary is reported as
// EInternal and logged, never shown.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("tidings: %s: %s", e.Code, e.Message) }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err if it is or wraps an *Error, and
// EInternal otherwise (and "" for nil).
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EInternal
	}
}

// ErrorMessage returns the human message of err if it is or wraps an
// *Error, and a generic text otherwise so that internals never leak.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
