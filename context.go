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

type queuedKey struct{}

// NewContextWithQueued returns a context whose write calls queued once it
// is queued, when the store queues writes to commit them in order (group
// commit): a write queued after that point commits after it. So a caller
// with writes to make one after another, in order, may start the next one
// as soon as queued is called rather than wait for the commit. A store
// without such a queue does not call it; nor does a write that fails
// before being queued: the caller then waits for the call to return.
func NewContextWithQueued(ctx context.Context, queued func()) context.Context {
	return context.WithValue(ctx, queuedKey{}, queued)
}

// Queued is called by a store once the write of ctx is queued (see
// NewContextWithQueued).
func Queued(ctx context.Context) {
	if f, ok := ctx.Value(queuedKey{}).(func()); ok {
		f()
	}
}

// WithoutQueued returns ctx without the queued call of
// NewContextWithQueued: for a write a store makes on its own account while
// serving ctx (writing what a read needs first), whose queueing says
// nothing of the order of the caller's writes.
func WithoutQueued(ctx context.Context) context.Context {
	return context.WithValue(ctx, queuedKey{}, func() {})
}
