package client

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// presenceSet is the users whose presence a session follows. The server
// keeps subscriptions only as long as a connection: the client subscribes
// them again on each connection, before it goes live.
type presenceSet struct {
	mu   sync.Mutex // held across the commands, so that they do not cross
	ids  map[string]struct{}
	conn *conn // the last connection they were subscribed on
}

// SubscribePresence follows the presence of users by id, any users of the
// app, whether or not they share a conversation with the user: from then
// on a PresenceUpdate comes when one of them comes online or goes offline
// (once, even if they also share a conversation). It returns each one's
// status now, and the ids that are no user of the app (not followed).
//
// The client remembers the users and subscribes them again on every
// connection, after a reconnection too: it then delivers a PresenceUpdate
// for each (with no Actor), with their status at that time, after the
// StatusConnected change, so that what changed while it was away is
// known. Called while not connected, it returns ErrNotConnected and the
// users are subscribed at the next connection. When the server refuses
// (an *Error, such as invalid_argument past its limit of 1000 users), the
// users of this call are not remembered.
func (s Socket) SubscribePresence(ctx context.Context, userIDs ...string) (*protocol.PresenceSubscribeResult, error) {
	sess := s.c.session()
	if sess == nil {
		return nil, ErrNotLoggedIn
	}
	p := &sess.presence
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
	cn, err := s.c.presenceConn(p)
	if err != nil {
		return nil, err
	}
	raw, err := cn.command(ctx, protocol.CmdPresenceSubscribe, protocol.PresenceSubscribeArgs{UserIDs: userIDs})
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
// forgets them, even when it is not connected.
func (s Socket) UnsubscribePresence(ctx context.Context, userIDs ...string) error {
	sess := s.c.session()
	if sess == nil {
		return ErrNotLoggedIn
	}
	p := &sess.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range userIDs {
		delete(p.ids, id)
	}
	cn, err := s.c.presenceConn(p)
	if err != nil {
		return err
	}
	_, err = cn.command(ctx, protocol.CmdPresenceUnsubscribe, protocol.PresenceSubscribeArgs{UserIDs: userIDs})
	return err
}

// PresenceSubscriptions returns the users whose presence the client
// follows, sorted.
func (c *Client) PresenceSubscriptions() []string {
	sess := c.session()
	if sess == nil {
		return nil
	}
	sess.presence.mu.Lock()
	defer sess.presence.mu.Unlock()
	ids := make([]string, 0, len(sess.presence.ids))
	for id := range sess.presence.ids {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// presenceConn returns the connection to send presence commands on: the
// last one subscribed (it may be authenticated and not yet the client's),
// else the client's. p.mu is held.
func (c *Client) presenceConn(p *presenceSet) (*conn, error) {
	if cn := p.conn; cn != nil {
		cn.mu.Lock()
		ended := cn.ended
		cn.mu.Unlock()
		if !ended {
			return cn, nil
		}
	}
	return c.current()
}

// resubscribePresence subscribes the users a session follows on a new
// connection, once it is authenticated and before it goes live, and
// queues their status as PresenceUpdate events, delivered after the
// connection's status change.
func (c *Client) resubscribePresence(ctx context.Context, sess *session, cn *conn) {
	p := &sess.presence
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
	raw, err := cn.command(ctx, protocol.CmdPresenceSubscribe, protocol.PresenceSubscribeArgs{UserIDs: ids})
	var res protocol.PresenceSubscribeResult
	if err == nil {
		err = json.Unmarshal(raw, &res)
	}
	if err != nil {
		c.opts.logger.Warn("tidings: could not subscribe to presence again", "err", err, "users", len(ids))
		return
	}
	for _, id := range res.Unknown {
		delete(p.ids, id)
	}
	now := c.opts.clock.Now().UTC()
	c.mu.Lock()
	app := sess.appID
	c.mu.Unlock()
	for _, up := range res.Users {
		payload, _ := json.Marshal(protocol.PresencePayload{ProfileID: up.UserID, Status: up.Status, LastSeenAt: up.LastSeenAt})
		ev, _ := json.Marshal(tidings.Event{ID: tidings.NewID(), AppID: app, Name: protocol.EventPresence,
			Time: now.Truncate(time.Microsecond), Payload: payload})
		cn.update(&protocol.Frame{Type: protocol.TypeUpdate, Silent: true, Action: protocol.ActionUpdate, Event: ev})
	}
}
