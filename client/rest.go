package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tidings/tidings"
)

// The REST API: typed helpers for the routes of the server that a user
// may call, returning the domain types of package tidings. Failures are
// *Error values (with the code and message of the server's error shape),
// or ErrNotLoggedIn and ErrClosed.

// rest calls the API as the account's user and decodes the JSON answer
// into out (unless nil). in, unless nil, is sent as the JSON body.
func (c *Client) rest(ctx context.Context, a *Account, method, path string, query url.Values, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	resp, err := c.send(ctx, a, method, path, query, "application/json", body, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("client: reading the answer of %s %s: %w", method, path, err)
	}
	return nil
}

// send makes a request with the account's token and returns a successful
// response; an error response becomes an *Error. A request refused for
// its token is made again once with a new token, if the provider gives
// one (and the body can be sent again: stream is nil).
func (c *Client) send(ctx context.Context, a *Account, method, path string, query url.Values, contentType string, body []byte, stream io.Reader) (*http.Response, error) {
	switch {
	case c.isClosed():
		return nil, ErrClosed
	case a == nil:
		return nil, ErrNotLoggedIn
	}
	u := c.baseURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	for attempt := 0; ; attempt++ {
		tok, _, err := a.tokens.get(ctx)
		if err != nil {
			return nil, err
		}
		var rd io.Reader = stream
		if stream == nil && body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, rd)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/json")
		if rd != nil {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := c.opts.httpClient.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode < 300 {
			return resp, nil
		}
		apiErr := readError(resp)
		resp.Body.Close()
		if apiErr.Code == tidings.EUnauthenticated && attempt == 0 && stream == nil && !a.tokens.static {
			a.tokens.reject(tok, apiErr)
			continue
		}
		return nil, apiErr
	}
}

// readError reads the error shape of the API:
// {"error": {"code": "...", "message": "..."}}.
func readError(resp *http.Response) *Error {
	var shape struct {
		Error *Error `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &shape) == nil && shape.Error != nil && shape.Error.Code != "" {
		return shape.Error
	}
	code := tidings.EInternal
	switch resp.StatusCode {
	case http.StatusBadRequest:
		code = tidings.EInvalid
	case http.StatusUnauthorized:
		code = tidings.EUnauthenticated
	case http.StatusForbidden:
		code = tidings.EForbidden
	case http.StatusNotFound:
		code = tidings.ENotFound
	case http.StatusConflict:
		code = tidings.EConflict
	case http.StatusRequestEntityTooLarge:
		code = tidings.ETooLarge
	case http.StatusTooManyRequests:
		code = tidings.ERateLimited
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		code = tidings.EUnavailable
	}
	return &Error{Code: code, Message: fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(b)))}
}

func (u *calls) api(ctx context.Context, method, path string, query url.Values, in, out any) error {
	return u.c.rest(ctx, u.account(), method, path, query, in, out)
}

func seg(s string) string { return url.PathEscape(s) }

// apiCall calls the API and decodes its answer into a new T.
func apiCall[T any](ctx context.Context, u *calls, method, path string, query url.Values, in any) (*T, error) {
	var out T
	if err := u.api(ctx, method, path, query, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Users.

// Me returns the profile of the logged-in user.
func (u *calls) Me(ctx context.Context) (*tidings.User, error) {
	return apiCall[tidings.User](ctx, u, "GET", "/v1/me", nil, nil)
}

// GetUser returns a user of the app.
func (u *calls) GetUser(ctx context.Context, userID string) (*tidings.User, error) {
	return apiCall[tidings.User](ctx, u, "GET", "/v1/users/"+seg(userID), nil, nil)
}

// UpdateUser changes the profile of a user (users may change their own
// only, and only the fields their app lets users edit: by default the
// display name and avatar; another is EForbidden, naming it); nil fields
// of upd are left alone.
func (u *calls) UpdateUser(ctx context.Context, userID string, upd tidings.UserUpdate) (*tidings.User, error) {
	return apiCall[tidings.User](ctx, u, "PATCH", "/v1/users/"+seg(userID), nil, upd)
}

// Conversations.

// CreateConversation creates a conversation; the user becomes its owner.
func (u *calls) CreateConversation(ctx context.Context, nc tidings.NewConversation) (*tidings.Conversation, error) {
	return apiCall[tidings.Conversation](ctx, u, "POST", "/v1/conversations", nil, nc)
}

// GetConversation returns a conversation (a deleted one too, to its
// participants).
func (u *calls) GetConversation(ctx context.Context, conversationID string) (*tidings.Conversation, error) {
	return apiCall[tidings.Conversation](ctx, u, "GET", "/v1/conversations/"+seg(conversationID), nil, nil)
}

// ListConversations returns a page of the user's conversations, most
// recently active first; pass the page's NextCursor in f.Cursor for the
// next page.
func (u *calls) ListConversations(ctx context.Context, f tidings.ConversationFilter) (*tidings.ConversationPage, error) {
	q := url.Values{}
	if f.Cursor != "" {
		q.Set("cursor", f.Cursor)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.IncludeDeleted {
		q.Set("includeDeleted", "true")
	}
	return apiCall[tidings.ConversationPage](ctx, u, "GET", "/v1/conversations", q, nil)
}

// UpdateConversation changes a conversation's details; nil fields of upd
// are left alone.
func (u *calls) UpdateConversation(ctx context.Context, conversationID string, upd tidings.ConversationUpdate) (*tidings.Conversation, error) {
	return apiCall[tidings.Conversation](ctx, u, "PATCH", "/v1/conversations/"+seg(conversationID), nil, upd)
}

// DeleteConversation soft-deletes a conversation.
func (u *calls) DeleteConversation(ctx context.Context, conversationID string) error {
	return u.api(ctx, "DELETE", "/v1/conversations/"+seg(conversationID), nil, nil, nil)
}

// UndeleteConversation restores a deleted conversation.
func (u *calls) UndeleteConversation(ctx context.Context, conversationID string) (*tidings.Conversation, error) {
	return apiCall[tidings.Conversation](ctx, u, "POST", "/v1/conversations/"+seg(conversationID)+"/undelete", nil, nil)
}

// Participants.

// ListParticipants returns all the participants of a conversation,
// following the pages of the API.
func (u *calls) ListParticipants(ctx context.Context, conversationID string) ([]*tidings.Participant, error) {
	var all []*tidings.Participant
	q := url.Values{"limit": {strconv.Itoa(tidings.MaxParticipantPage)}}
	for {
		page, err := apiCall[tidings.ParticipantPage](ctx, u, "GET", "/v1/conversations/"+seg(conversationID)+"/participants", q, nil)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Participants...)
		if page.NextCursor == "" {
			return all, nil
		}
		q.Set("cursor", page.NextCursor)
	}
}

// AddParticipant adds a user to a conversation (default role member).
func (u *calls) AddParticipant(ctx context.Context, conversationID string, p tidings.NewParticipant) (*tidings.Participant, error) {
	return apiCall[tidings.Participant](ctx, u, "POST", "/v1/conversations/"+seg(conversationID)+"/participants", nil, p)
}

// UpdateParticipant changes the role of a participant.
func (u *calls) UpdateParticipant(ctx context.Context, conversationID, userID string, role tidings.Role) (*tidings.Participant, error) {
	body := struct {
		Role tidings.Role `json:"role"`
	}{role}
	return apiCall[tidings.Participant](ctx, u, "PATCH", "/v1/conversations/"+seg(conversationID)+"/participants/"+seg(userID), nil, body)
}

// RemoveParticipant removes a participant (removing oneself is leaving).
func (u *calls) RemoveParticipant(ctx context.Context, conversationID, userID string) error {
	return u.api(ctx, "DELETE", "/v1/conversations/"+seg(conversationID)+"/participants/"+seg(userID), nil, nil, nil)
}

// Join makes the user a member of a public conversation.
func (u *calls) Join(ctx context.Context, conversationID string) (*tidings.Participant, error) {
	return apiCall[tidings.Participant](ctx, u, "POST", "/v1/conversations/"+seg(conversationID)+"/join", nil, nil)
}

// Leave removes the user from a conversation.
func (u *calls) Leave(ctx context.Context, conversationID string) error {
	return u.api(ctx, "POST", "/v1/conversations/"+seg(conversationID)+"/leave", nil, nil, nil)
}

// Messages.

// SendMessage sends a message through the REST API (see Socket for the
// realtime connection). Sending again with the same m.ClientID returns the
// first message instead of sending a new one: give one to make retries
// safe.
func (u *calls) SendMessage(ctx context.Context, conversationID string, m tidings.NewMessage) (*tidings.Message, error) {
	return apiCall[tidings.Message](ctx, u, "POST", "/v1/conversations/"+seg(conversationID)+"/messages", nil, m)
}

// ListMessages returns a page of a conversation's history, in ascending
// seq order: the newest f.Limit messages before f.Before, the oldest after
// f.After, or the newest.
func (u *calls) ListMessages(ctx context.Context, conversationID string, f tidings.MessageFilter) (*tidings.MessagePage, error) {
	q := url.Values{}
	if f.Before != nil {
		q.Set("before", strconv.FormatInt(*f.Before, 10))
	}
	if f.After != nil {
		q.Set("after", strconv.FormatInt(*f.After, 10))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return apiCall[tidings.MessagePage](ctx, u, "GET", "/v1/conversations/"+seg(conversationID)+"/messages", q, nil)
}

// GetMessage returns one message.
func (u *calls) GetMessage(ctx context.Context, conversationID, messageID string) (*tidings.Message, error) {
	return apiCall[tidings.Message](ctx, u, "GET", "/v1/conversations/"+seg(conversationID)+"/messages/"+seg(messageID), nil, nil)
}

// EditMessage replaces the parts (and metadata, if set) of the user's own
// message.
func (u *calls) EditMessage(ctx context.Context, conversationID, messageID string, e tidings.MessageEdit) (*tidings.Message, error) {
	return apiCall[tidings.Message](ctx, u, "PATCH", "/v1/conversations/"+seg(conversationID)+"/messages/"+seg(messageID), nil, e)
}

// DeleteMessage deletes a message.
func (u *calls) DeleteMessage(ctx context.Context, conversationID, messageID string) error {
	return u.api(ctx, "DELETE", "/v1/conversations/"+seg(conversationID)+"/messages/"+seg(messageID), nil, nil, nil)
}

type markRequest struct {
	Seq int64 `json:"seq"`
}

// MarkDelivered moves the user's delivered mark to seq (0: the newest
// message).
func (u *calls) MarkDelivered(ctx context.Context, conversationID string, seq int64) (*tidings.MessageStatus, error) {
	return apiCall[tidings.MessageStatus](ctx, u, "POST", "/v1/conversations/"+seg(conversationID)+"/delivered", nil, markRequest{seq})
}

// MarkRead moves the user's read mark (and delivered mark) to seq (0: the
// newest message).
func (u *calls) MarkRead(ctx context.Context, conversationID string, seq int64) (*tidings.MessageStatus, error) {
	return apiCall[tidings.MessageStatus](ctx, u, "POST", "/v1/conversations/"+seg(conversationID)+"/read", nil, markRequest{seq})
}

// Files.

// UploadFile uploads the content of r as a file of the conversation, to
// be sent in a message part with its FileID. contentType is the file's
// media type (e.g. "image/png"); empty, the file is stored as
// application/octet-stream.
func (u *calls) UploadFile(ctx context.Context, conversationID, name, contentType string, r io.Reader) (*tidings.File, error) {
	resp, err := u.c.send(ctx, u.account(), "POST", "/v1/conversations/"+seg(conversationID)+"/files",
		url.Values{"name": {name}}, contentType, nil, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var f tidings.File
	if err := json.NewDecoder(resp.Body).Decode(&f); err != nil {
		return nil, fmt.Errorf("client: reading the answer of an upload: %w", err)
	}
	return &f, nil
}

// DownloadFile returns the content of a file, which the caller must
// close, and what the response says of the file (its ID, ConversationID,
// Name, Type and Size).
func (u *calls) DownloadFile(ctx context.Context, conversationID, fileID string) (io.ReadCloser, *tidings.File, error) {
	resp, err := u.c.send(ctx, u.account(), "GET", "/v1/conversations/"+seg(conversationID)+"/files/"+seg(fileID), nil, "", nil, nil)
	if err != nil {
		return nil, nil, err
	}
	f := &tidings.File{ID: fileID, ConversationID: conversationID, Type: resp.Header.Get("Content-Type"), Size: resp.ContentLength}
	if _, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition")); err == nil {
		f.Name = params["filename"]
	}
	return resp.Body, f, nil
}
