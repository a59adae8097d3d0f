package realtime

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// Presence: a user is online while they hold a WebSocket session here
// (polls do not count). Their coming online and going offline goes to the
// users who share a small conversation with them (peersLocked) and to the
// sessions that subscribed to them by id (presence.subscribe), once per
// session even when both. A user may hide their presence
// (User.PresenceHidden): the others then see them offline and never seen.
// When a user's last session ends, the time is kept in memory and stored
// with the cursors, about once a second and on shutdown (flushLastSeen).

// presenceState is a user who has a live (not poll) session here.
type presenceState struct {
	hidden bool   // their privacy switch, as last read or dispatched
	gen    uint64 // profile updates dispatched since it was made
	online bool   // whether their coming online was told
}

// lastSeenStore returns where last seen times are kept: LastSeen, else
// Users when it keeps them too, else nil (not kept).
func (n *Node) lastSeenStore() tidings.LastSeenStore {
	if n.LastSeen != nil {
		return n.LastSeen
	}
	ps, _ := n.Users.(tidings.LastSeenStore)
	return ps
}

// hiddenLocked says whether a user online here hides their presence.
func (n *Node) hiddenLocked(uk userKey) bool {
	p := n.people[uk]
	return p != nil && p.hidden
}

// presenceTargetsLocked returns the sessions told of the presence of s's
// user, each once: the peers of s (unless the user hides their presence)
// and the sessions subscribed to the user (only the user's own when
// hidden).
func (n *Node) presenceTargetsLocked(s *Session, hidden bool) []*Session {
	var out []*Session
	if !hidden {
		out = n.peersLocked(s)
	}
	watchers := n.watchers[userKey{s.app, s.user}]
	if len(watchers) == 0 {
		return out
	}
	seen := make(map[*Session]struct{}, len(out))
	for _, p := range out {
		seen[p] = struct{}{}
	}
	for w := range watchers {
		if _, ok := seen[w]; !ok && (!hidden || w.user == s.user) {
			out = append(out, w)
		}
	}
	return out
}

// presenceTargetsOfLocked is presenceTargetsLocked for a user who may
// hold no session here (presence told by another node): the peers are
// the sessions of the conversations given, of at most PresenceLimit
// online sessions here.
func (n *Node) presenceTargetsOfLocked(app, user string, convs []string, hidden bool) []*Session {
	seen := make(map[*Session]struct{})
	var out []*Session
	if !hidden {
		for _, conv := range convs {
			m := n.convs[convKey{app, conv}]
			if m.len() > n.PresenceLimit {
				continue
			}
			for p := range m.all() {
				if _, ok := seen[p]; !ok && p.user != user {
					seen[p] = struct{}{}
					out = append(out, p)
				}
			}
		}
	}
	for w := range n.watchers[userKey{app, user}] {
		if _, ok := seen[w]; !ok && (!hidden || w.user == user) {
			seen[w] = struct{}{}
			out = append(out, w)
		}
	}
	return out
}

// tellPresence sends the presence of a user to targets.
func (n *Node) tellPresence(app string, profile tidings.Profile, online bool, lastSeen time.Time, targets []*Session) {
	if len(targets) == 0 {
		return
	}
	p := protocol.PresencePayload{ProfileID: profile.ID, Status: protocol.PresenceOffline}
	if online {
		p.Status = protocol.PresenceOnline
	} else if !lastSeen.IsZero() {
		p.LastSeenAt = lastSeen.UTC().Format(time.RFC3339Nano)
	}
	n.broadcast(n.liveEvent(app, protocol.EventPresence, &profile, "", p), targets)
}

// presenceSetting follows a user's privacy switch in their profile
// updates, and tells those who see them when it turns: offline (never
// seen) when hidden, online when shown again, if they are online.
func (n *Node) presenceSetting(ev *tidings.Event) {
	var pp tidings.ProfilePayload
	if err := json.Unmarshal(ev.Payload, &pp); err != nil || pp.User == nil {
		return
	}
	uk := userKey{ev.AppID, pp.ProfileID}
	n.mu.Lock()
	st := n.people[uk]
	if st == nil {
		n.mu.Unlock()
		return
	}
	st.gen++
	if st.hidden == pp.User.PresenceHidden {
		n.mu.Unlock()
		return
	}
	st.hidden = pp.User.PresenceHidden
	hidden := st.hidden
	var targets []*Session
	if st.online && n.clustered() {
		// Told by every node that holds a session of the user, to the
		// others' sessions on every node (the peers of one of its
		// sessions, which all share the user's conversations).
		for _, s := range n.users[uk] {
			if !s.poll {
				convs := convIDs(s)
				n.mu.Unlock()
				n.publishLive(tidings.LiveUpdate{AppID: ev.AppID, Name: protocol.EventPresence, UserIDs: []string{uk.user}},
					livePresence{Profile: pp.User.Summary(), Online: !hidden, Conversations: convs, Others: true})
				return
			}
		}
	}
	if st.online {
		for _, s := range n.users[uk] {
			if !s.poll {
				// What the others saw changes; the user's own view does not.
				for _, t := range n.presenceTargetsLocked(s, false) {
					if t.user != uk.user {
						targets = append(targets, t)
					}
				}
				break
			}
		}
	}
	n.mu.Unlock()
	n.tellPresence(ev.AppID, pp.User.Summary(), !hidden, time.Time{}, targets)
}

// subscribePresence subscribes s to the presence of users by id and
// answers the command itself: the answer is written before any update
// about them, so that updates that follow it are newer than it.
func (n *Node) subscribePresence(ctx context.Context, s *Session, id string, ids []string) error {
	if n.MaxPresenceSubscriptions <= 0 {
		return tidings.Errorf(tidings.EInvalid, "presence subscriptions are turned off on this server")
	}
	if len(ids) == 0 {
		return tidings.Errorf(tidings.EInvalid, "userIds must list at least one user")
	}
	if len(ids) > n.MaxPresenceSubscriptions {
		return tidings.Errorf(tidings.EInvalid, "userIds lists %d users: an account may subscribe to the presence of at most %d", len(ids), n.MaxPresenceSubscriptions)
	}
	want := make([]string, 0, len(ids))
	asked := make(map[string]bool, len(ids))
	for _, u := range ids {
		if !asked[u] {
			asked[u] = true
			want = append(want, u)
		}
	}
	store := n.lastSeenStore()
	if store == nil {
		return tidings.Errorf(tidings.EInternal, "this server keeps no presence")
	}
	found, err := store.UsersPresence(ctx, s.app, want)
	if err != nil {
		return err
	}
	byID := make(map[string]tidings.UserPresence, len(found))
	for _, p := range found {
		byID[p.UserID] = p
	}
	// In a cluster, those online on other nodes too.
	var elsewhere map[string]bool
	if n.PresenceStore != nil && len(found) > 0 {
		known := make([]string, 0, len(found))
		for _, p := range found {
			known = append(known, p.UserID)
		}
		online, err := n.PresenceStore.Online(ctx, s.app, known)
		if err != nil {
			return err
		}
		elsewhere = make(map[string]bool, len(online))
		for _, u := range online {
			elsewhere[u] = true
		}
	}
	res := protocol.PresenceSubscribeResult{Users: []protocol.UserPresence{}, Unknown: []string{}}
	n.mu.Lock()
	if !slices.Contains(n.users[userKey{s.app, s.user}], s) {
		n.mu.Unlock()
		return tidings.Errorf(tidings.EUnauthenticated, "account %q is not authenticated on this connection", s.account)
	}
	added := 0
	for _, u := range want {
		if _, ok := byID[u]; ok {
			if _, ok := s.watching[u]; !ok {
				added++
			}
		}
	}
	if len(s.watching)+added > n.MaxPresenceSubscriptions {
		have := len(s.watching)
		n.mu.Unlock()
		return tidings.Errorf(tidings.EInvalid, "an account may subscribe to the presence of at most %d users: it has %d, and %d more would pass the limit (unsubscribe some first)",
			n.MaxPresenceSubscriptions, have, added)
	}
	if s.watching == nil {
		s.watching = make(map[string]struct{})
	}
	for _, u := range want {
		p, ok := byID[u]
		if !ok {
			res.Unknown = append(res.Unknown, u)
			continue
		}
		uk := userKey{s.app, u}
		s.watching[u] = struct{}{}
		w := n.watchers[uk]
		if w == nil {
			w = make(map[*Session]struct{})
			n.watchers[uk] = w
		}
		w[s] = struct{}{}
		res.Users = append(res.Users, n.presenceOfLocked(uk, p, s.user, elsewhere[u]))
	}
	ok := s.client.t.Write(encodeAnswer(s.client.v2, id, res, nil))
	n.mu.Unlock()
	if !ok {
		s.client.SlowConsumer()
	}
	return nil
}

// presenceOfLocked is a user's presence as viewer may see it: st is what
// the store has of them, which the node's state completes (online now,
// the privacy switch as last dispatched, last seen not stored yet);
// elsewhere says the user is online on another node of a cluster.
func (n *Node) presenceOfLocked(uk userKey, st tidings.UserPresence, viewer string, elsewhere bool) protocol.UserPresence {
	up := protocol.UserPresence{UserID: uk.user, Status: protocol.PresenceOffline}
	hidden := st.Hidden
	p := n.people[uk]
	if p != nil {
		hidden = p.hidden
	}
	if hidden && viewer != uk.user {
		return up
	}
	if p != nil && p.online || elsewhere {
		up.Status = protocol.PresenceOnline
	}
	seen := st.LastSeenAt
	if t := n.lastSeen[uk]; t.After(seen) {
		seen = t
	}
	if !seen.IsZero() {
		up.LastSeenAt = seen.UTC().Format(time.RFC3339Nano)
	}
	return up
}

// unsubscribePresence ends the subscriptions of s to users.
func (n *Node) unsubscribePresence(s *Session, ids []string) error {
	if len(ids) == 0 {
		return tidings.Errorf(tidings.EInvalid, "userIds must list at least one user")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, u := range ids {
		n.unwatchLocked(s, u)
	}
	return nil
}

// unwatchLocked ends the subscription of s to a user, if any.
func (n *Node) unwatchLocked(s *Session, user string) {
	if _, ok := s.watching[user]; !ok {
		return
	}
	delete(s.watching, user)
	uk := userKey{s.app, user}
	if w := n.watchers[uk]; w != nil {
		delete(w, s)
		if len(w) == 0 {
			delete(n.watchers, uk)
		}
	}
}

// flushLastSeen stores the last seen times noted since the last flush,
// in one write (a few for very many). Those it could not store stay for
// the next flush.
func (n *Node) flushLastSeen(ctx context.Context) error {
	store := n.lastSeenStore()
	n.mu.Lock()
	if len(n.lastSeen) == 0 || store == nil {
		n.mu.Unlock()
		return nil
	}
	seen := make([]tidings.LastSeen, 0, len(n.lastSeen))
	for uk, t := range n.lastSeen {
		seen = append(seen, tidings.LastSeen{AppID: uk.app, UserID: uk.user, At: t})
	}
	n.mu.Unlock()
	// Kept in memory until stored: subscribe answers read them meanwhile.
	if err := store.SaveLastSeen(ctx, seen); err != nil {
		if ctx.Err() == nil {
			n.Logger.Error("save last seen", "err", err, "count", len(seen))
		}
		return err
	}
	n.mu.Lock()
	for _, ls := range seen {
		uk := userKey{ls.AppID, ls.UserID}
		if n.lastSeen[uk].Equal(ls.At) {
			delete(n.lastSeen, uk)
		}
	}
	n.mu.Unlock()
	return nil
}
