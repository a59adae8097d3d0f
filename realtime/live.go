package realtime

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
)

// Live-only updates: typing indicators and presence. They are never
// stored nor replayed, carry no ref and need no reply.

type typingKey struct {
	convKey
	user string
}

// typingState is a typing indicator that is on: until when, and who types.
type typingState struct {
	until   time.Time
	profile tidings.Profile
}

// liveEvent makes a live-only event.
func (n *Node) liveEvent(app, name string, actor *tidings.Profile, convID string, payload any) *tidings.Event {
	body, _ := json.Marshal(payload)
	return &tidings.Event{ID: tidings.NewID(), AppID: app, Name: name, Time: n.Now().UTC().Truncate(time.Microsecond),
		Actor: actor, ConversationID: convID, Payload: body}
}

// liveFrame encodes a live-only update for one account, in tidings.v2
// when v2.
func (n *Node) liveFrame(v2 bool, account, app, name string, actor *tidings.Profile, convID string, payload any) []byte {
	ev := n.liveEvent(app, name, actor, convID, payload)
	if v2 {
		body, _ := encodeEventV2(ev)
		return updateFrameV2(account, 0, true, body.others)
	}
	body, _ := encodeEvent(ev)
	return updateFrame(account, 0, true, body.others)
}

// broadcast sends a live-only event to sessions, encoded once.
func (n *Node) broadcast(ev *tidings.Event, targets []*Session) {
	if len(targets) == 0 {
		return
	}
	fs := framesFor(ev, nil)
	for _, s := range targets {
		s.deliver(0, fs.get(s))
	}
	n.metrics.deliveries.Add(float64(len(targets)))
}

// othersLocked returns the sessions of a conversation but those of user.
func (n *Node) othersLocked(ck convKey, user string) []*Session {
	var out []*Session
	for s := range n.convs[ck].all() {
		if s.user != user {
			out = append(out, s)
		}
	}
	return out
}

// lockFollowing locks n.mu and says whether s follows conversation ck in
// the index. The index follows the events as they are dispatched: a
// conversation created, or a participant added, just before the command
// that asks (through the REST API, say) may not be in it yet. So when s
// is not there, the events published so far are dispatched first and the
// index asked again. n.mu is held on return either way.
func (n *Node) lockFollowing(s *Session, ck convKey) bool {
	n.mu.Lock()
	if n.convs[ck].has(s) {
		return true
	}
	n.mu.Unlock() // dispatch takes it
	var stop <-chan struct{}
	if n.ctx != nil {
		stop = n.ctx.Done()
	}
	select {
	case <-n.afterDispatch():
	case <-stop:
	}
	n.mu.Lock()
	return n.convs[ck].has(s)
}

// setTyping starts or stops the typing indicator of s's user in a
// conversation they take part in. Starting again refreshes it; it stops by
// itself after TypingTimeout.
func (n *Node) setTyping(s *Session, convID string, on bool) error {
	ck := convKey{s.app, convID}
	if !n.lockFollowing(s, ck) {
		n.mu.Unlock()
		return tidings.Errorf(tidings.ENotFound, "conversation %q not found", convID)
	}
	if n.clustered() {
		// Every node, this one too, takes it from the broker.
		n.mu.Unlock()
		return n.publishTyping(ck, s.user, s.profile, on)
	}
	targets, changed := n.typingLocked(ck, s.user, s.profile, on)
	n.mu.Unlock()
	if changed {
		n.tellTyping(ck, s.user, s.profile, on, targets)
	}
	return nil
}

// SetTyping is typing.start and typing.stop for clients without a
// WebSocket connection (the REST API): the same indicator, whose typer
// holds no session here, so that only its expiry or a stop ends it.
func (n *Node) SetTyping(ctx context.Context, caller tidings.Caller, convID string, on bool) error {
	profile, err := n.participant(ctx, caller, convID)
	if err != nil {
		return err
	}
	ck := convKey{caller.AppID, convID}
	if n.clustered() {
		return n.publishTyping(ck, caller.UserID, profile, on)
	}
	n.mu.Lock()
	targets, changed := n.typingLocked(ck, caller.UserID, profile, on)
	n.mu.Unlock()
	if changed {
		n.tellTyping(ck, caller.UserID, profile, on, targets)
	}
	return nil
}

// typingLocked turns user's indicator in ck on (refreshing it) or off,
// and says whether that changed it and, if so, whom to tell. n.mu is held.
func (n *Node) typingLocked(ck convKey, user string, profile tidings.Profile, on bool) (targets []*Session, changed bool) {
	tk := typingKey{ck, user}
	_, was := n.typing[tk]
	if on {
		n.typing[tk] = typingState{until: n.Now().Add(n.TypingTimeout), profile: profile}
	} else {
		delete(n.typing, tk)
	}
	if on == was {
		return nil, false
	}
	return n.othersLocked(ck, user), true
}

// tellTyping sends the typing update of user to targets.
func (n *Node) tellTyping(ck convKey, user string, profile tidings.Profile, on bool, targets []*Session) {
	name := protocol.EventTypingOff
	if on {
		name = protocol.EventTyping
	}
	n.broadcast(n.liveEvent(ck.app, name, &profile, ck.conv, protocol.TypingPayload{ConversationID: ck.conv, ProfileID: user}), targets)
}

// participant checks in the store that the caller takes part in the
// conversation (a caller without a session has no place in the index),
// and returns their profile.
func (n *Node) participant(ctx context.Context, caller tidings.Caller, convID string) (tidings.Profile, error) {
	ms, err := n.Log.UserConversations(ctx, caller.AppID, caller.UserID)
	if err != nil {
		return tidings.Profile{}, err
	}
	if !slices.ContainsFunc(ms, func(m tidings.Membership) bool { return m.ConversationID == convID }) {
		return tidings.Profile{}, tidings.Errorf(tidings.ENotFound, "conversation %q not found", convID)
	}
	server := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: caller.AppID, Server: true})
	u, err := n.Users.FindUserByID(server, caller.UserID)
	if err != nil {
		return tidings.Profile{}, err
	}
	return u.Summary(), nil
}

// setTypingOff ends a user's typing indicator, if on.
func (n *Node) setTypingOff(app, convID, user string) {
	n.mu.Lock()
	tk := typingKey{convKey{app, convID}, user}
	st, ok := n.typing[tk]
	if !ok {
		n.mu.Unlock()
		return
	}
	delete(n.typing, tk)
	targets := n.othersLocked(tk.convKey, user)
	n.mu.Unlock()
	n.broadcast(n.liveEvent(app, protocol.EventTypingOff, &st.profile, convID, protocol.TypingPayload{ConversationID: convID, ProfileID: user}), targets)
}

// expireTyping ends the typing indicators not refreshed in time.
func (n *Node) expireTyping(now time.Time) {
	n.mu.Lock()
	var expired []typingKey
	for tk, st := range n.typing {
		if now.After(st.until) {
			expired = append(expired, tk)
		}
	}
	n.mu.Unlock()
	for _, tk := range expired {
		n.setTypingOff(tk.app, tk.conv, tk.user)
	}
}

// stopTypingOf ends the typing indicators of a session's user when they
// have no session left (in a cluster with a PresenceStore: on any node).
func (n *Node) stopTypingOf(s *Session) {
	n.mu.Lock()
	if n.liveSessionsLocked(userKey{s.app, s.user}) > 0 || s.stayed {
		n.mu.Unlock()
		return
	}
	var mine []typingKey
	var profiles []tidings.Profile
	for tk, st := range n.typing {
		if tk.app == s.app && tk.user == s.user {
			mine = append(mine, tk)
			profiles = append(profiles, st.profile)
		}
	}
	n.mu.Unlock()
	for i, tk := range mine {
		if n.clustered() {
			// Its indicator is on in every node.
			n.publishTyping(tk.convKey, tk.user, profiles[i], false)
		} else {
			n.setTypingOff(tk.app, tk.conv, tk.user)
		}
	}
}

// peersLocked returns the sessions of other users who share a
// conversation with s's user: those who see their presence. Conversations
// with more than PresenceLimit online sessions do not count.
func (n *Node) peersLocked(s *Session) []*Session {
	seen := make(map[*Session]struct{})
	var out []*Session
	for _, ck := range s.subs {
		if n.convs[ck].len() > n.PresenceLimit {
			continue
		}
		for p := range n.convs[ck].all() {
			if _, ok := seen[p]; !ok && p.user != s.user {
				seen[p] = struct{}{}
				out = append(out, p)
			}
		}
	}
	return out
}

// presenceOf says which participants of a conversation that s's user takes
// part in are online now, and which are typing in it: what a client shows
// when it opens the conversation, before presence and typing updates come.
func (n *Node) presenceOf(ctx context.Context, s *Session, convID string) (protocol.PresenceResult, error) {
	ck := convKey{s.app, convID}
	if !n.lockFollowing(s, ck) {
		n.mu.Unlock()
		return protocol.PresenceResult{}, tidings.Errorf(tidings.ENotFound, "conversation %q not found", convID)
	}
	res := n.presenceLocked(ck, s.user)
	n.mu.Unlock()
	return res, n.onlineElsewhere(ctx, s.app, s.user, convID, &res)
}

// Presence is presence.get for clients without a WebSocket connection
// (the REST API).
func (n *Node) Presence(ctx context.Context, caller tidings.Caller, convID string) (protocol.PresenceResult, error) {
	if _, err := n.participant(ctx, caller, convID); err != nil {
		return protocol.PresenceResult{}, err
	}
	n.mu.Lock()
	res := n.presenceLocked(convKey{caller.AppID, convID}, caller.UserID)
	n.mu.Unlock()
	return res, n.onlineElsewhere(ctx, caller.AppID, caller.UserID, convID, &res)
}

// presenceGetMax is the most participants of a conversation whose
// presence on other nodes presence.get asks the PresenceStore about.
const presenceGetMax = tidings.MaxParticipantPage

// onlineElsewhere adds to res, in a cluster with a PresenceStore and
// Conversations, the participants online on other nodes (of the first
// presenceGetMax participants), but those who hide their presence from
// others.
func (n *Node) onlineElsewhere(ctx context.Context, app, viewer, convID string, res *protocol.PresenceResult) error {
	if n.PresenceStore == nil || n.Conversations == nil {
		return nil
	}
	cctx := tidings.NewContextWithCaller(ctx, tidings.Caller{AppID: app, UserID: viewer})
	page, err := n.Conversations.ListParticipants(cctx, convID, tidings.ParticipantFilter{Limit: presenceGetMax})
	if err != nil {
		return err
	}
	var ids []string
	for _, p := range page.Participants {
		if !slices.Contains(res.Online, p.UserID) {
			ids = append(ids, p.UserID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	online, err := n.PresenceStore.Online(ctx, app, ids)
	if err != nil || len(online) == 0 {
		return err
	}
	hidden := make(map[string]bool)
	if store := n.lastSeenStore(); store != nil {
		ps, err := store.UsersPresence(ctx, app, online)
		if err != nil {
			return err
		}
		for _, p := range ps {
			hidden[p.UserID] = p.Hidden
		}
	}
	for _, u := range online {
		if u == viewer || !hidden[u] {
			res.Online = append(res.Online, u)
		}
	}
	slices.Sort(res.Online)
	return nil
}

// presenceLocked lists who is online in ck, as viewer may see them (not
// those who hide their presence from others), and who types in it. n.mu
// is held.
func (n *Node) presenceLocked(ck convKey, viewer string) protocol.PresenceResult {
	res := protocol.PresenceResult{Online: []string{}, Typing: []string{}}
	for p := range n.convs[ck].all() {
		if !p.poll && !slices.Contains(res.Online, p.user) && (p.user == viewer || !n.hiddenLocked(userKey{p.app, p.user})) {
			res.Online = append(res.Online, p.user)
		}
	}
	now := n.Now()
	for tk, st := range n.typing {
		if tk.convKey == ck && st.until.After(now) {
			res.Typing = append(res.Typing, tk.user)
		}
	}
	slices.Sort(res.Online)
	slices.Sort(res.Typing)
	return res
}
