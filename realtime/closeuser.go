package realtime

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// CloseUser ends every session of the user at once, because the app
// deactivated them, revoked their tokens or deleted them (reason, one of
// protocol's Reason constants): each of their accounts gets an
// account.closed update with the reason and leaves its connection, and a
// connection left without accounts closes with the reason's close code
// (protocol.CloseCode); polls in progress end too. In a cluster it goes
// to every node as a live update through the broker (at most once: a
// node that misses it keeps the user's sessions until they reconnect,
// when their token is refused). For a deleted user, the node also forgets
// their acknowledged refs not stored yet and the encoded events it keeps,
// which may name them.
func (n *Node) CloseUser(ctx context.Context, appID, userID, reason string) error {
	if n.clustered() {
		return n.publishLive(tidings.LiveUpdate{AppID: appID, Name: protocol.EventAccountEnds, UserIDs: []string{userID}},
			protocol.AccountClosedPayload{Reason: reason})
	}
	n.closeUser(appID, userID, reason)
	return nil
}

// stillAccepted reads the user again and checks that their token, issued
// at issued, is still accepted (tidings.User.AcceptsToken). ctx is the
// app's server's.
func (n *Node) stillAccepted(ctx context.Context, userID string, issued time.Time) error {
	u, err := n.Users.FindUserByID(ctx, userID)
	if tidings.ErrorCode(err) == tidings.ENotFound {
		return tidings.Errorf(tidings.EUnauthenticated, "the user of this token does not exist")
	}
	if err != nil {
		return err
	}
	return u.AcceptsToken(issued)
}

// applyAccountEnds is CloseUser's live update, on each node of a cluster.
func (n *Node) applyAccountEnds(u tidings.LiveUpdate) {
	var p protocol.AccountClosedPayload
	if err := json.Unmarshal(u.Payload, &p); err != nil {
		n.Logger.Warn("realtime: an account.closed update from another node is not valid", "err", err)
		return
	}
	for _, user := range u.UserIDs {
		n.closeUser(u.AppID, user, p.Reason)
	}
}

// closeUser ends the sessions of the user on this node.
func (n *Node) closeUser(appID, userID, reason string) {
	n.closes.Add(1) // before the sessions are looked for (see auth)
	uk := userKey{appID, userID}
	n.mu.Lock()
	sessions := slices.Clone(n.users[uk])
	n.mu.Unlock()
	deleted := reason == protocol.ReasonUserDeleted
	for _, s := range sessions {
		s.client.endAccount(s, reason, !deleted)
	}
	if deleted {
		n.noteReplies() // none noted after the deletion
		n.acksMu.Lock()
		for k := range n.acks {
			if k.app == appID && k.user == userID {
				delete(n.acks, k)
			}
		}
		n.acksMu.Unlock()
		n.mu.Lock()
		delete(n.lastSeen, uk)
		n.mu.Unlock()
		if n.bodies != nil {
			n.bodies.clear()
		}
		if n.bodiesV2 != nil {
			n.bodiesV2.clear()
		}
	}
	if len(sessions) > 0 {
		n.Logger.Info("realtime: closed the sessions of a user", "app", appID, "user", userID, "reason", reason, "sessions", len(sessions))
	}
}

// endAccount ends the account of session s on the client, telling it why
// with account.closed, and closes the connection if it was its last
// account. flush stores the account's acknowledged ref first.
func (c *Client) endAccount(s *Session, reason string, flush bool) {
	n := c.node
	c.mu.Lock()
	if c.closed || c.accounts.get(s.account) != s {
		c.mu.Unlock()
		n.endSession(s) // not (or no longer) the client's: only the index
		return
	}
	c.accounts.remove(s.account)
	c.checkAt.Store(0)
	none := len(c.accounts) == 0
	c.mu.Unlock()
	n.endSession(s)
	if flush {
		n.flushCursors(context.Background(), s.cursorKey())
	}
	c.t.Write(n.liveFrame(c.v2, s.account, s.app, protocol.EventAccountEnds, nil, "",
		protocol.AccountClosedPayload{Account: s.account, Reason: reason}))
	if none {
		c.close(protocol.CloseCode(reason), closeMessage(reason))
	}
}

func closeMessage(reason string) string {
	switch reason {
	case protocol.ReasonUserDeactivated:
		return "the user was deactivated"
	case protocol.ReasonTokensRevoked:
		return "the user's tokens were revoked: authenticate again with a new token"
	case protocol.ReasonUserDeleted:
		return "the user was deleted"
	}
	return reason
}

// watchAccess runs checkAccess every AccessCheck, and when asked to
// (checkNow: the broker's ranges chain again after a loss). It runs it
// once at once, too: as the node opens it holds no session, so that the
// check only takes the access log's head, and the later checks read only
// what was logged since, instead of the first reading every user.
func (n *Node) watchAccess() {
	defer n.wg.Done()
	t := time.NewTicker(n.AccessCheck)
	defer t.Stop()
	n.checkAccess()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-n.checkNow:
		}
		n.checkAccess()
	}
}

// checkAccess ends the sessions the app no longer allows, as CloseUser
// would have: all of a deleted or deactivated user's, and those whose
// token was issued before the user's tokens were revoked. It is what
// makes CloseUser sure in a cluster, where its update may be lost between
// nodes, and what closes the sessions of a user changed by a command that
// opened the store directly.
//
// When Users keeps a log of the users whose access may have ended
// (tidings.AccessLog), the node reads the users logged since the last
// check and reads again those of them who hold a session here: with
// nothing logged, one read of the log and none of the users (reading
// every user each minute was a quarter of an idle node's CPU at 19,000
// connections). It reads every user of its sessions again (checkUsers)
// the first time, when the log no longer holds all that was logged since
// its last check, and after a check that could not read some user; each
// of those checks takes the log's head first, so that what is logged
// after the head is read at the next check. Without a log, every check
// reads every user.
//
// A user the store cannot read now is read at the next check.
func (n *Node) checkAccess() {
	alog, ok := n.Users.(tidings.AccessLog)
	if !ok {
		n.checkUsers(n.sessionsOf(nil))
		return
	}
	if n.accessKnown && n.checkLogged(alog) {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	head, err := alog.AccessLogHead(ctx)
	cancel()
	// An auth that read its user before the head and indexes its session
	// after the sessions are taken below reads its user again (see auth).
	n.closes.Add(1)
	if n.checkUsers(n.sessionsOf(nil)) == 0 && err == nil {
		n.accessAt, n.accessKnown = head, true
	} else if err != nil && n.ctx.Err() == nil {
		n.Logger.Warn("realtime: could not read the log of users whose access changed; every user is read again at the next check", "err", err)
	}
}

// checkLogged reads the users logged after accessAt and checks those who
// hold a session here (all of an app's, for an entry of the app with no
// user: one of its users was deleted), and moves accessAt on when they
// were all read. false: the log does not hold all that was logged since,
// every user must be read.
func (n *Node) checkLogged(alog tidings.AccessLog) bool {
	at := n.accessAt
	var changed accessChanges
	for {
		ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		users, next, complete, err := alog.AccessChangesSince(ctx, at, accessCheckBatch)
		cancel()
		if err != nil {
			if n.ctx.Err() == nil {
				n.Logger.Warn("realtime: could not read the log of users whose access changed; it is read at the next check", "err", err)
			}
			return true
		}
		if !complete {
			return false
		}
		for _, u := range users {
			changed.add(u)
		}
		at = next
		if len(users) < accessCheckBatch {
			break
		}
	}
	if changed.empty() {
		n.accessAt = at
		return true
	}
	// An auth that read its user before the log was read and indexes its
	// session after the sessions are taken below reads its user again
	// (see auth): the change logged is not read twice.
	n.closes.Add(1)
	if n.checkUsers(n.sessionsOf(&changed)) == 0 {
		n.accessAt = at
	}
	return true
}

// accessChanges is what an access check reads again: users, and every
// user of apps.
type accessChanges struct {
	users map[userKey]bool
	apps  map[string]bool
}

func (c *accessChanges) add(u tidings.UserRef) {
	if u.UserID == "" {
		if c.apps == nil {
			c.apps = make(map[string]bool)
		}
		c.apps[u.AppID] = true
		return
	}
	if c.users == nil {
		c.users = make(map[userKey]bool)
	}
	c.users[userKey{u.AppID, u.UserID}] = true
}

func (c *accessChanges) empty() bool { return len(c.users) == 0 && len(c.apps) == 0 }

// sessionsOf returns the sessions of each user who holds one on this
// node, of only those of only when not nil.
func (n *Node) sessionsOf(only *accessChanges) map[userKey][]*Session {
	n.mu.Lock()
	defer n.mu.Unlock()
	users := make(map[userKey][]*Session)
	add := func(uk userKey) {
		if ss := n.users[uk]; len(ss) > 0 {
			users[uk] = slices.Clone(ss)
		}
	}
	switch {
	case only == nil || len(only.apps) > 0:
		for uk := range n.users {
			if only == nil || only.apps[uk.app] || only.users[uk] {
				add(uk)
			}
		}
	default:
		for uk := range only.users {
			add(uk)
		}
	}
	return users
}

// checkUsers reads each user of users again, and ends the sessions of
// theirs the app no longer allows. It returns how many could not be read
// (all those not read when the node stops). A store that reads many users
// at once (UsersFinder) is asked for accessCheckBatch of them per read,
// else one at a time: with 10,000 users connected, one read per user cost
// more than everything else an idle node does.
func (n *Node) checkUsers(users map[userKey][]*Session) int {
	failed := 0
	var lastErr error
	check := func(uk userKey, u *tidings.User, err error) {
		switch {
		case tidings.ErrorCode(err) == tidings.ENotFound:
			n.closeUser(uk.app, uk.user, protocol.ReasonUserDeleted)
		case err != nil:
			failed, lastErr = failed+1, err
		case u.DeactivatedAt != nil:
			n.closeUser(uk.app, uk.user, protocol.ReasonUserDeactivated)
		default:
			ended := 0
			for _, s := range users[uk] {
				s.mu.Lock()
				issued := s.issued
				s.mu.Unlock()
				// A poll's session has no token time (the REST API
				// verified the caller's token): it lasts one poll.
				if !issued.IsZero() && u.AcceptsToken(issued) != nil {
					s.client.endAccount(s, protocol.ReasonTokensRevoked, true)
					ended++
				}
			}
			if ended > 0 {
				n.Logger.Info("realtime: closed the sessions of a user whose tokens were revoked", "app", uk.app, "user", uk.user, "sessions", ended)
			}
		}
	}
	checked := 0
	if finder, ok := n.Users.(UsersFinder); ok {
		byApp := make(map[string][]string)
		for uk := range users {
			byApp[uk.app] = append(byApp[uk.app], uk.user)
		}
		for app, ids := range byApp {
			for len(ids) > 0 {
				if n.ctx.Err() != nil {
					return len(users) - checked
				}
				chunk := ids[:min(len(ids), accessCheckBatch)]
				ids = ids[len(chunk):]
				ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
				found, err := finder.FindUsersByIDs(tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: app, Server: true}), chunk)
				cancel()
				byID := make(map[string]*tidings.User, len(found))
				for _, u := range found {
					byID[u.ID] = u
				}
				for _, id := range chunk {
					uk := userKey{app, id}
					switch u := byID[id]; {
					case err != nil:
						check(uk, nil, err)
					case u == nil:
						check(uk, nil, tidings.Errorf(tidings.ENotFound, "user %q not found", id))
					default:
						check(uk, u, nil)
					}
				}
				checked += len(chunk)
			}
		}
	} else {
		for uk := range users {
			if n.ctx.Err() != nil {
				return len(users) - checked
			}
			ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
			u, err := n.Users.FindUserByID(tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: uk.app, Server: true}), uk.user)
			cancel()
			check(uk, u, err)
			checked++
		}
	}
	if failed > 0 && n.ctx.Err() == nil {
		n.Logger.Warn("realtime: could not read some users of this node's sessions again; they are read at the next check", "users", failed, "err", lastErr)
	}
	return failed
}

// UsersFinder is a tidings.UserService that reads many users of an app in
// one query: those of the ids that exist, in any order. checkAccess uses
// it when the node's Users has it.
type UsersFinder interface {
	FindUsersByIDs(ctx context.Context, ids []string) ([]*tidings.User, error)
}

// accessCheckBatch is how many users checkAccess reads at once.
const accessCheckBatch = 500
