package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// presenceSet is the users whose presence an account follows. The server
// keeps an account's subscriptions only as long as its authentication on
// a connection: the client subscribes them again after each
// authentication of the account, before it goes live.
type presenceSet struct {
	mu   sync.Mutex // held across the commands, so that they do not cross
	ids  map[string]struct{}
	conn *conn // the last connection they were subscribed on
}

// SubscribePresence follows the presence of users by id, any users of the
// app, whether or not they share a conversation with the account's user:
// from then on a PresenceUpdate comes when one of them comes online or
// goes offline (once, even if they also share a conversation). It returns
// each one's status now, and the ids that are no user of the app (not
// followed). Each account follows users of its own.
//
// The client remembers the users and subscribes them again each time the
// account is authenticated, on a new connection after a reconnection
// too: it then delivers a PresenceUpdate for each (with no Actor), with
// their status at that time, after the StatusConnected change, so that
// what changed while it was away is known. Called while the account is
// not connected, it returns ErrNotConnected and the users are subscribed
// at its next authentication. When the server refuses (an *Error, such
// as invalid_argument past its limit of 1000 users per account), the
// users of this call are not remembered.
func (s Socket) SubscribePresence(ctx context.Context, userIDs ...string) (*protocol.PresenceSubscribeResult, error) {
	a := s.u.account()
	if a == nil {
		return nil, ErrNotLoggedIn
	}
	p := &a.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ids == nil {
		p.ids = make(map[string]struct{})
	}
	var added []string
	for _, id := range userIDs {
		if _, ok := p.ids[id]; !ok {
			p.ids[id] = struct{}{}
			added = append(added, id)
		}
	}
	raw, err := s.presenceCommand(ctx, a, protocol.CmdPresenceSubscribe, userIDs)
	var res protocol.PresenceSubscribeResult
	if err == nil {
		err = json.Unmarshal(raw, &res)
	}
	var e *Error
	if errors.As(err, &e) {
		for _, id := range added {
			delete(p.ids, id)
		}
	}
	if err != nil {
		return nil, err
	}
	for _, id := range res.Unknown {
		delete(p.ids, id)
	}
	return &res, nil
}

// UnsubscribePresence stops following the presence of users; the client
// forgets them, even when the account is not connected.
func (s Socket) UnsubscribePresence(ctx context.Context, userIDs ...string) error {
	a := s.u.account()
	if a == nil {
		return ErrNotLoggedIn
	}
	p := &a.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range userIDs {
		delete(p.ids, id)
	}
	_, err := s.presenceCommand(ctx, a, protocol.CmdPresenceUnsubscribe, userIDs)
	return err
}

// presenceCommand sends a presence command of account a on the last
// connection its subscriptions were made on: a new connection may not be
// the client's yet, and the account not yet live, once they are made
// there. a.presence.mu is held.
func (s Socket) presenceCommand(ctx context.Context, a *Account, name string, userIDs []string) (json.RawMessage, error) {
	if s.u.c.isClosed() {
		return nil, ErrClosed
	}
	cn := a.presence.conn
	if cn == nil {
		return nil, ErrNotConnected
	}
	cn.mu.Lock()
	ended := cn.ended
	cn.mu.Unlock()
	if ended {
		return nil, ErrNotConnected
	}
	raw, err := cn.command(ctx, a.name, name, protocol.PresenceSubscribeArgs{UserIDs: userIDs})
	if ErrorCode(err) == tidings.EUnauthenticated {
		// The server ended the account on cn (account.closed): its
		// next authentication subscribes the users again.
		return nil, fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	if errors.Is(err, ErrConnectionLost) {
		// Subscribed again on the next connection.
		return nil, err
	}
	return raw, err
}

// PresenceSubscriptions returns the users whose presence the default
// account follows, sorted.
func (c *Client) PresenceSubscriptions() []string {
	a := c.account(DefaultAccount)
	if a == nil {
		return nil
	}
	return a.PresenceSubscriptions()
}

// PresenceSubscriptions returns the users whose presence the account
// follows, sorted.
func (a *Account) PresenceSubscriptions() []string {
	a.presence.mu.Lock()
	defer a.presence.mu.Unlock()
	ids := make([]string, 0, len(a.presence.ids))
	for id := range a.presence.ids {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// resubscribePresence subscribes the users account a follows on cn, once
// a is authenticated there and before it goes live, and queues their
// status as PresenceUpdate events of a, delivered after the connection's
// status change.
func (c *Client) resubscribePresence(ctx context.Context, a *Account, cn *conn) {
	p := &a.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conn = cn
	if len(p.ids) == 0 {
		return
	}
	ids := make([]string, 0, len(p.ids))
	for id := range p.ids {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	raw, err := cn.command(ctx, a.name, protocol.CmdPresenceSubscribe, protocol.PresenceSubscribeArgs{UserIDs: ids})
	var res protocol.PresenceSubscribeResult
	if err == nil {
		err = json.Unmarshal(raw, &res)
	}
	if err != nil {
		c.opts.logger.Warn("tidings: could not subscribe to presence again", "account", a.name, "err", err, "users", len(ids))
		return
	}
	for _, id := range res.Unknown {
		delete(p.ids, id)
	}
	now := c.opts.clock.Now().UTC()
	c.mu.Lock()
	app := a.appID
	c.mu.Unlock()
	for _, up := range res.Users {
		payload, _ := json.Marshal(protocol.PresencePayload{ProfileID: up.UserID, Status: up.Status, LastSeenAt: up.LastSeenAt})
		ev, _ := json.Marshal(tidings.Event{ID: tidings.NewID(), AppID: app, Name: protocol.EventPresence,
			Time: now.Truncate(time.Microsecond), Payload: payload})
		cn.update(&protocol.Frame{Type: protocol.TypeUpdate, Silent: true,
			Account: wireAccount(a.name), Event: ev})
	}
}
