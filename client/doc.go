// Package client is the Go SDK of Tidings: a connection to a Tidings
// server for one user, or several on one connection, with the realtime
// updates delivered to listeners and typed helpers for the REST API.
//
// # Logging in
//
// A Client is configured once, by New: the server's base URL, and options
// such as the user's access token (WithToken) or a function that gets one
// (WithTokenProvider), the device name (WithDevice), the connection mode
// (WithMode), the reconnection backoff, the HTTP client, the logger, a
// cursor store. A client created without a token logs in later with Login
// or LoginWith.
//
// Access tokens are JWTs minted by the application's backend. The client
// reads their expiry (without verifying them: only the server can) and,
// with a token provider, gets a new token a margin before the expiry
// (WithRefreshMargin) and authenticates it on the open connection, which
// the server takes as a token refresh: the connection is not interrupted.
//
// # Accounts
//
// One realtime connection carries one or more accounts: each is a user,
// authenticated with its own token on its own device, such as a personal
// and a work profile shown side by side. The user of Login (or WithToken,
// WithTokenProvider) is the account named "default" (DefaultAccount), and
// the methods of Client act as that user. AddAccount adds another, under
// a name of its choosing, with its credentials and, optionally, its
// device and cursor store:
//
//	work, err := c.AddAccount(ctx, "work", client.WithTokenProvider(workToken), client.WithCursorStore(workCursor))
//	…
//	work.Socket().SendMessage(ctx, "standup", msg) // as the work user
//
// An *Account has the REST methods and Socket of Client, acting as its
// user, and UserID, TokenExpiry, LastRef, WaitConnected and Logout.
// Accounts lists them. Each account has its own stream of updates, refs
// and cursor, and its token is refreshed on its own; the updates of all
// the accounts reach the same listeners, EventInfo.Account naming the
// account of each. When the connection is opened again, every account is
// authenticated again, one after the other, each resuming after the last
// update of its own the listeners processed. When the server ends one
// account (account.closed: its token expired), that account alone is
// authenticated again. Logging an account out (Account.Logout; Logout for
// the default one) leaves the others connected and receiving; once the
// last one is logged out the connection ends, and is not reopened.
//
// # Connection modes
//
// In auto mode (the default), the client opens the realtime connection as
// soon as it is logged in. When the network drops it reconnects by itself,
// waiting between attempts with exponential backoff and jitter (Backoff),
// and resumes after the last update the application processed, so nothing
// is lost even when the server's stored cursor lags. The application says
// when it goes to the background (EnterBackground): the connection is
// closed at once, and opened again by EnterForeground.
//
// In manual mode (WithMode(ManualMode)), the application calls Connect,
// Disconnect and Ping. Errors say what is wrong: ErrNotLoggedIn,
// ErrAlreadyConnected, ErrNotConnected, ErrClosed, or the server's *Error.
// A connection the application opened is reconnected after a network
// failure while the application is in the foreground. In the background it
// is kept only while the application pings at least every 30 seconds
// (WithBackgroundTimeout), and dropped after.
//
// Status returns the state of the connection (StatusDisconnected,
// StatusConnecting, StatusConnected, StatusReconnecting, StatusClosed),
// AddStatusListener reports its changes, and WaitConnected waits for it.
// Listeners are told that the client is connected before they get the
// first update of that connection (the replay of what came while it was
// away), on the same goroutine as the updates.
//
// # Updates
//
// AddEventListener registers listeners of updates; several may be
// registered, and each gets every update, once, in the order of its
// account's stream, as a typed event (*MessageSent, *ParticipantTyping…
// or *UnknownEvent for events newer than this SDK). Updates carry a ref;
// the client drops an update whose ref is not after the last one its
// account processed (a replay overlapping what came before a
// reconnection). With a cursor store (WithCursorStore, FileCursor) the
// last processed ref survives a restart of the program, which then resumes
// where it stopped. When the server no longer keeps the updates after that
// ref, listeners get a ResyncRequired event: rebuild the state from the
// REST API.
//
// # Acknowledgements
//
// The client acknowledges an update to the server (a reply, which moves
// the server's cursor of the account's device) only once every listener
// has returned: a program that crashes in a listener gets the update
// again. Replies are cumulative, so the client sends few: at most one per
// account every 250 milliseconds, or every 64 updates when they come
// faster, acknowledging every update processed up to then (the cursor
// store is saved just before). The reply waiting is sent at once before
// the connection is closed (Disconnect, EnterBackground in auto mode,
// Close) or the account logged out, and Close waits a moment for the
// server to confirm it, so that the next connection of the same user and
// device does not get the updates processed again. A reply lost with a
// connection is sent again on the next.
//
// # REST API and commands
//
// The methods of Client named after the REST API (CreateConversation,
// ListMessages, UploadFile…) call it as the logged-in user and return the
// domain types of package tidings; failures are *Error values carrying the
// server's error code (tidings.ENotFound…), usable with errors.As or
// ErrorCode. Socket gives the commands of the realtime connection:
// sending messages, typing indicators, delivered and read marks.
//
// # Push notifications
//
// While the application has no connection, its user's messages come as
// push notifications (docs/push.md). RegisterPushTarget registers the
// device's APNs or FCM token (again whenever the platform gives a new
// one), DeletePushTarget removes it at logout; SetPushEnabled and
// MuteConversation are the user's settings. A push carries the ids of
// the conversation and message to open; the updates themselves come, as
// always, from the connection once the application opens it.
//
// A Client is safe for concurrent use. Close stops every goroutine it
// started.
package client
