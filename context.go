package tidings

import "context"

// Caller is who makes a request: always within one app, either the app's
// server (the customer's backend, authenticated with the server key) or
// one of its users (authenticated with a user access token).
type Caller struct {
	AppID  string
	UserID string // empty when Server is true
	Server bool
}

// IsUser reports whether the caller is a user (not the app server).
func (c Caller) IsUser() bool { return !c.Server && c.UserID != "" }

type callerKey struct{}

// NewContextWithCaller returns a context that carries the caller.
func NewContextWithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFromContext returns the caller carried by ctx, if any.
func CallerFromContext(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok && c.AppID != ""
}
