// Package client is the Go SDK of Tidings: a connection to a Tidings
// server for one user, with the realtime updates delivered to listeners
// and typed helpers for the REST API.
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
// registered, and each gets every update, once, in the order of the user's
// stream, as a typed event (*MessageSent, *ParticipantTyping… or
// *UnknownEvent for events newer than this SDK). Updates carry a ref; the
// client drops an update whose ref is not after the last one processed (a
// replay overlapping what came before a reconnection), and acknowledges an
// update to the server only once every listener has returned: a program
// that crashes in a listener gets the update again; Close acknowledges the
// updates processed before it closes the connection. With a cursor store
// (WithCursorStore, FileCursor) the last processed ref survives a restart
// of the program, which then resumes where it stopped. When the server no
// longer keeps the updates after that ref, listeners get a ResyncRequired
// event: rebuild the state from the REST API.
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
// A Client is safe for concurrent use. Close stops every goroutine it
// started.
package client
