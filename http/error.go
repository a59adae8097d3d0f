package http

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/ratelimit"
)

// statusOf maps each error code to its HTTP status.
var statusOf = map[string]int{
	tidings.EInvalid:          http.StatusBadRequest,
	tidings.EInvalidJSON:      http.StatusBadRequest,
	tidings.ETooLarge:         http.StatusRequestEntityTooLarge,
	tidings.EUnauthenticated:  http.StatusUnauthorized,
	tidings.EForbidden:        http.StatusForbidden,
	tidings.ENotFound:         http.StatusNotFound,
	tidings.EConflict:         http.StatusConflict,
	tidings.EUnsupportedType:  http.StatusUnsupportedMediaType,
	tidings.EMethodNotAllowed: http.StatusMethodNotAllowed,
	tidings.ERateLimited:      http.StatusTooManyRequests,
	tidings.EUnavailable:      http.StatusServiceUnavailable,
	tidings.EResyncRequired:   http.StatusGone,
	tidings.EInternal:         http.StatusInternalServerError,
}

// errorResponse is the body of every error response.
type errorResponse struct {
	Error errorBody `json:"error"`
}

// errorBody is the error of an errorResponse: a code (one of the
// tidings.E* constants) and a human-readable message.
type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Ref is set with resync_required: the newest ref, to resume from
	// once the client has rebuilt its state.
	Ref string `json:"ref,omitempty"`
}

// retryAfter is an error that tells when to try again (Retry-After).
type retryAfter interface{ RetryAfter() time.Duration }

// resumer is an error that tells from which ref to resume.
type resumer interface{ ResumeRef() string }

// writeError writes err in the error shape. A *tidings.Error is shown as
// it is; any other error (and any internal one) is logged with the
// request id and shown as a generic internal error.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := tidings.ErrorCode(err), tidings.ErrorMessage(err)
	status, known := statusOf[code]
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody will read the answer.
		s.logger().LogAttrs(r.Context(), slog.LevelInfo, "request canceled by the client",
			requestAttrs(r)...)
		code, msg, status = tidings.EUnavailable, "request canceled", http.StatusServiceUnavailable
	case !known || code == tidings.EInternal:
		s.logger().LogAttrs(r.Context(), slog.LevelError, "internal error",
			append(requestAttrs(r), errAttr(err))...)
		code, msg, status = tidings.EInternal, "internal error", http.StatusInternalServerError
	}
	if code == tidings.EUnauthenticated {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	var limited *ratelimit.Error
	var ra retryAfter
	switch {
	case errors.As(err, &limited):
		w.Header().Set("Retry-After", strconv.Itoa(limited.RetryAfterSeconds()))
	case errors.As(err, &ra) && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable):
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(ra.RetryAfter().Seconds())), 10))
	}
	body := errorBody{Code: code, Message: msg}
	var rr resumer
	if errors.As(err, &rr) {
		body.Ref = rr.ResumeRef()
	}
	s.writeJSON(w, r, status, errorResponse{Error: body})
}

// writeJSON writes v as a JSON response with the given status.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.logger().LogAttrs(r.Context(), slog.LevelError, "encoding a response",
			append(requestAttrs(r), errAttr(err))...)
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
