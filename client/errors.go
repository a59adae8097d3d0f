package client

import (
	"errors"
	"fmt"

	"github.com/tidings/tidings"
)

// Errors of the SDK itself. Test for them with errors.Is.
var (
	// ErrAlreadyConnected is returned by Connect when the realtime
	// connection is already open.
	ErrAlreadyConnected = errors.New("client: already connected")
	// ErrNotConnected is returned by Ping and by the commands of Socket
	// when there is no open realtime connection, and by a Connect whose
	// attempt was abandoned (Disconnect, background) before it succeeded.
	ErrNotConnected = errors.New("client: not connected")
	// ErrNotLoggedIn is returned by Connect and by the REST helpers before
	// Login (or after Logout).
	ErrNotLoggedIn = errors.New("client: not logged in")
	// ErrAlreadyLoggedIn is returned by Login when the client is logged in.
	ErrAlreadyLoggedIn = errors.New("client: already logged in: log out first")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("client: closed")
	// ErrAutoMode is returned by Connect and Disconnect in auto mode, where
	// the client manages the connection itself.
	ErrAutoMode = errors.New("client: the connection is managed by the client in auto mode; use WithMode(ManualMode) to manage it yourself")
	// ErrConnectionLost is returned by a command whose connection ended
	// before its answer came. The command may or may not have been
	// executed: retry it if it is idempotent (for instance a message sent
	// with a ClientID).
	ErrConnectionLost = errors.New("client: connection lost before the answer")
	// ErrBackgroundTimeout is the reason given to status listeners when a
	// manual-mode connection is dropped because the application, in the
	// background, did not ping in time.
	ErrBackgroundTimeout = errors.New("client: no ping in the background for too long")
)

// Error is a failure reported by the server: a failed command answer on
// the realtime connection, or an error response of the REST API. Code is
// one of the tidings.E* codes (tidings.ENotFound…); Ref is set with
// tidings.EResyncRequired (the newest ref).
//
// An *Error also converts to a *tidings.Error with errors.As, so
// tidings.ErrorCode works on the errors of this package.
type Error struct {
	Code    string
	Message string
	Ref     string
}

func (e *Error) Error() string {
	return fmt.Sprintf("tidings: %s: %s", e.Code, e.Message)
}

// As lets errors.As convert an *Error to a *tidings.Error.
func (e *Error) As(target any) bool {
	if t, ok := target.(**tidings.Error); ok {
		*t = &tidings.Error{Code: e.Code, Message: e.Message}
		return true
	}
	return false
}

// ErrorCode returns the code of err if it is or wraps an *Error, and ""
// otherwise.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// CloseError is the reason of a realtime connection's end when the server
// closed it with a close frame: Code is one of the protocol.Close* codes
// (e.g. protocol.CloseGoingAway when the server shuts down).
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("client: connection closed by the server (code %d)", e.Code)
	}
	return fmt.Sprintf("client: connection closed by the server (code %d): %s", e.Code, e.Reason)
}
