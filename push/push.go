// Package push sends push notifications to the devices of users who are
// not connected: Web Push (RFC 8030, with VAPID and RFC 8291 encryption),
// Apple Push Notification service (HTTP/2, token auth) and Firebase Cloud
// Messaging (HTTP v1), behind one Provider interface.
//
// A Dispatcher receives the store's published events (it is a
// tidings.EventPublisher, as the realtime node is), and for each message
// sent pushes to the participants who have no live connection, coalescing
// the messages of one conversation that come within a short window.
// Pushes are best effort: they never hold up a message, and one lost (the
// server stopped within the window, a push service failed) is not sent
// again.
package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/tidings/tidings"
)

// Notification is one push to one user: the newest message of a
// conversation, and how many came together.
type Notification struct {
	AppID          string
	UserID         string
	ConversationID string
	MessageID      string // the newest message
	Seq            int64  // its seq
	SenderID       string
	Title          string // the sender's display name
	Body           string // the alert
	Badge          int64  // the user's unread count over all conversations
	Count          int    // the messages it tells of
}

// Provider sends notifications to targets of one kind.
type Provider interface {
	// Send pushes n to t, for the app configured by cfg. It returns an
	// error wrapping ErrGone when the service says the target no longer
	// exists: the dispatcher then removes it.
	Send(ctx context.Context, cfg *tidings.PushConfig, t *tidings.PushTarget, n *Notification) error
}

// ErrGone says that a target is no longer valid (expired subscription,
// unregistered token).
var ErrGone = errors.New("push: the target is gone")

// data is what every provider passes to the client besides the visible
// alert: the ids to open the conversation with.
func (n *Notification) data() map[string]string {
	return map[string]string{
		"appId":          n.AppID,
		"conversationId": n.ConversationID,
		"messageId":      n.MessageID,
		"seq":            strconv.FormatInt(n.Seq, 10),
		"senderId":       n.SenderID,
		"count":          strconv.Itoa(n.Count),
	}
}

// webPayload is the JSON a Web Push carries (what web/static/sw.js reads).
type webPayload struct {
	Title          string `json:"title"`
	Body           string `json:"body"`
	Badge          int64  `json:"badge"`
	Count          int    `json:"count"`
	AppID          string `json:"appId"`
	ConversationID string `json:"conversationId"`
	MessageID      string `json:"messageId"`
	Seq            int64  `json:"seq"`
	SenderID       string `json:"senderId"`
}

func (n *Notification) webJSON() []byte {
	b, _ := json.Marshal(webPayload{Title: n.Title, Body: n.Body, Badge: n.Badge, Count: n.Count, AppID: n.AppID,
		ConversationID: n.ConversationID, MessageID: n.MessageID, Seq: n.Seq, SenderID: n.SenderID})
	return b
}

// statusError reads what a push service answered with a failure status.
func statusError(service string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	return fmt.Errorf("push: %s answered %s: %s", service, resp.Status, body)
}

// drain empties and closes a response body so that its connection is
// reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
