package client_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/client"
	"github.com/tidings/tidings/protocol"
)

// fakeServer speaks the realtime protocol as a test scripts it, to make
// the server misbehave in ways the real one does only by accident:
// overlapping replays, resyncs, unknown events.
type fakeServer struct {
	t   testing.TB
	srv *httptest.Server
	// onAuth answers the n-th auth (from 0) of the connection, and may send
	// updates after.
	onAuth func(fc *fakeConn, n int, args protocol.AuthArgs)

	mu sync.Mutex
	// onCommand, when set, handles the commands but auth instead of an
	// empty answer.
	onCommand func(fc *fakeConn, f protocol.Frame)
	auths     []protocol.AuthArgs
	replies   []string
	frames    []protocol.Frame // the commands and replies received, in order
	conns     []*gws.Conn
	changed   chan struct{}
}

type fakeConn struct {
	s       *fakeServer
	ws      *gws.Conn
	id      string // the id of the auth command being answered
	account string // the account of the command ("" for the default one)
}

func newFakeServer(t testing.TB, onAuth func(fc *fakeConn, n int, args protocol.AuthArgs)) *fakeServer {
	s := &fakeServer{t: t, onAuth: onAuth, changed: make(chan struct{})}
	up := gws.NewUpgrader((*fakeEvents)(s), &gws.ServerOption{SubProtocols: []string{protocol.Subprotocol}})
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/me" { // the user of the token, for Login and AddAccount
			cl := strings.Split(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), ".")
			var claims struct {
				Sub string `json:"sub"`
			}
			if len(cl) == 3 {
				b, _ := base64.RawURLEncoding.DecodeString(cl[1])
				json.Unmarshal(b, &claims)
			}
			json.NewEncoder(w).Encode(tidings.User{ID: claims.Sub, DisplayName: claims.Sub})
			return
		}
		socket, err := up.Upgrade(w, r)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, socket)
		s.mu.Unlock()
		socket.ReadLoop()
	}))
	t.Cleanup(func() {
		s.mu.Lock()
		for _, c := range s.conns {
			c.NetConn().Close()
		}
		s.mu.Unlock()
		s.srv.Close()
	})
	return s
}

func (s *fakeServer) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitFor waits until cond holds of the auths and replies received.
func (s *fakeServer) waitFor(what string, cond func(auths []protocol.AuthArgs, replies []string) bool) {
	s.t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		ok, ch := cond(slices.Clone(s.auths), slices.Clone(s.replies)), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			s.t.Fatalf("timed out waiting for %s (auths %+v, replies %v)", what, s.auths, s.replies)
		}
	}
}

type fakeEvents fakeServer

func (e *fakeEvents) OnOpen(*gws.Conn)                   {}
func (e *fakeEvents) OnClose(*gws.Conn, error)           {}
func (e *fakeEvents) OnPing(c *gws.Conn, payload []byte) { c.WritePong(payload) }
func (e *fakeEvents) OnPong(*gws.Conn, []byte)           {}
func (e *fakeEvents) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	s := (*fakeServer)(e)
	var f protocol.Frame
	if err := json.Unmarshal(m.Bytes(), &f); err != nil {
		s.t.Errorf("the client sent a frame that is not JSON: %q", m.Bytes())
		return
	}
	fc := &fakeConn{s: s, ws: c, id: f.ID, account: f.Account}
	s.mu.Lock()
	s.frames = append(s.frames, f)
	s.mu.Unlock()
	switch {
	case f.Type == protocol.TypeReply:
		s.mu.Lock()
		s.replies = append(s.replies, f.Ref)
		s.notify()
		s.mu.Unlock()
	case f.Type == protocol.TypeCommand && f.Command == protocol.CmdAuth:
		var a protocol.AuthArgs
		json.Unmarshal(f.Data, &a)
		s.mu.Lock()
		n := len(s.auths)
		s.auths = append(s.auths, a)
		s.notify()
		s.mu.Unlock()
		s.onAuth(fc, n, a)
	case f.Type == protocol.TypeCommand:
		s.mu.Lock()
		on := s.onCommand
		s.mu.Unlock()
		if on != nil {
			on(fc, f)
			return
		}
		fc.answer(struct{}{})
	}
}

func (fc *fakeConn) answer(result any) {
	r, _ := json.Marshal(result)
	b, _ := json.Marshal(protocol.Frame{Type: protocol.TypeAnswer, ID: fc.id, Result: r})
	fc.ws.WriteMessage(gws.OpcodeText, b)
}

func (fc *fakeConn) fail(code, ref string) {
	b, _ := json.Marshal(protocol.Frame{Type: protocol.TypeAnswer, ID: fc.id, Error: &protocol.Error{Code: code, Message: "no", Ref: ref}})
	fc.ws.WriteMessage(gws.OpcodeText, b)
}

func (fc *fakeConn) ok(resumedAfter string) {
	fc.okAs("alice", "default", resumedAfter)
}

// okAs answers an auth of user, on device.
func (fc *fakeConn) okAs(user, device, resumedAfter string) {
	account := fc.account
	if account == "" {
		account = client.DefaultAccount
	}
	fc.answer(protocol.AuthResult{Account: account, AppID: testApp, UserID: user, Device: device,
		ExpiresAt: time.Now().Add(time.Hour).UTC().Format(time.RFC3339), ResumedAfter: resumedAfter})
}

// forAccount returns the update frame f for another account.
func forAccount(account string, f []byte) []byte {
	var fr protocol.Frame
	json.Unmarshal(f, &fr)
	fr.Account = account
	b, _ := json.Marshal(fr)
	return b
}

// replyFrames returns the replies received, in order.
func (s *fakeServer) replyFrames() []protocol.Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []protocol.Frame
	for _, f := range s.frames {
		if f.Type == protocol.TypeReply {
			out = append(out, f)
		}
	}
	return out
}

// send writes frames in one WebSocket message, separated by '\n'.
func (fc *fakeConn) send(frames ...[]byte) {
	fc.ws.WriteMessage(gws.OpcodeText, bytes.Join(frames, []byte("\n")))
}

// messageFrame is the update of a message sent, with the given ref.
func messageFrame(ref int64, text string) []byte {
	m := &tidings.Message{ID: fmt.Sprintf("msg%d", ref), ConversationID: "conv", Seq: ref, Sender: tidings.Profile{ID: "bob"},
		Parts: []tidings.Part{{Type: "text/plain", Data: text}}}
	return eventFrame(ref, tidings.EventMessageSent, tidings.NewMessagePayload(m, ""))
}

func eventFrame(ref int64, name string, payload any) []byte {
	p, _ := json.Marshal(payload)
	ev, _ := json.Marshal(tidings.Event{Seq: ref, ID: fmt.Sprint("ev", ref), AppID: testApp, Name: name, Time: time.Now(),
		ConversationID: "conv", Payload: p})
	f := protocol.Frame{Type: protocol.TypeUpdate, Account: "default", Event: ev}
	if ref > 0 {
		f.Ref = protocol.FormatRef(ref)
	}
	b, _ := json.Marshal(f)
	return b
}

// fakeToken is a token whose claims the client can read (the fake server
// checks nothing).
func fakeToken(user string) string {
	enc := base64.RawURLEncoding.EncodeToString
	claims, _ := json.Marshal(map[string]any{"sub": user, "app": testApp, "exp": time.Now().Add(time.Hour).Unix()})
	return enc([]byte(`{"alg":"HS256"}`)) + "." + enc(claims) + ".c2ln"
}

func TestDuplicatesAcrossReconnectionAreDropped(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t, func(fc *fakeConn, n int, a protocol.AuthArgs) {
		switch n {
		case 0:
			fc.ok("0")
			// Several frames in one message, and an event from the future.
			fc.send(messageFrame(1, "m000"), messageFrame(2, "m001"),
				eventFrame(0, "future.thing", map[string]string{"x": "y"}), messageFrame(3, "m002"))
		default:
			// The server resumes too early: 2 and 3 again.
			fc.ok("1")
			fc.send(messageFrame(2, "m001"), messageFrame(3, "m002"))
			fc.send(messageFrame(4, "m003"))
		}
	})
	c := newClient(t, s.srv.URL, client.WithToken(fakeToken("alice")), fastBackoff)
	rec := newRecorder()
	c.AddEventListener(rec.listen)
	s.waitFor("the reply to ref 3", func(_ []protocol.AuthArgs, replies []string) bool { return slices.Contains(replies, "3") })
	if c.LastRef() != "3" {
		t.Fatalf("LastRef %q", c.LastRef())
	}
	// Drop the connection: the client resumes after the last ref it processed.
	s.mu.Lock()
	s.conns[0].WriteClose(protocol.CloseGoingAway, nil)
	s.mu.Unlock()
	got := rec.waitTexts(t, "conv", 4)
	checkSequence(t, got, 4)
	s.waitFor("the reply to ref 4", func(_ []protocol.AuthArgs, replies []string) bool { return slices.Contains(replies, "4") })
	s.mu.Lock()
	auths := slices.Clone(s.auths)
	s.mu.Unlock()
	if len(auths) != 2 || auths[0].ResumeAfter != "" || auths[1].ResumeAfter != "3" || auths[1].Device != "default" {
		t.Fatalf("auths %+v", auths)
	}
	var unknown *client.UnknownEvent
	for _, e := range rec.all() {
		if u, ok := e.(*client.UnknownEvent); ok {
			unknown = u
		}
	}
	if unknown == nil || unknown.Name != "future.thing" || string(unknown.Payload) != `{"x":"y"}` || unknown.Ref != "" {
		t.Fatalf("unknown event %+v", unknown)
	}
	if evs := rec.all(); len(evs) != 5 || evs[2] != client.Event(unknown) {
		t.Fatalf("events %d, the unknown one not third", len(evs))
	}
}

// memCursor is a CursorStore in memory.
type memCursor struct {
	mu    sync.Mutex
	cur   client.Cursor
	saves int
}

func (m *memCursor) LoadCursor(context.Context) (client.Cursor, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur, nil
}

func (m *memCursor) SaveCursor(_ context.Context, c client.Cursor) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cur = c
	m.saves++
	return nil
}

func (m *memCursor) ref() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur.Ref
}

func TestResyncRequired(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t, func(fc *fakeConn, n int, a protocol.AuthArgs) {
		switch n {
		case 0: // what follows the stored cursor was pruned
			fc.fail(tidings.EResyncRequired, "10")
		case 1:
			fc.ok(a.ResumeAfter)
			fc.send(messageFrame(11, "m000"))
		case 2: // the server was restored from a backup: ref 11 is newer than its newest
			fc.fail(tidings.EResyncRequired, "20")
		case 3:
			fc.ok("20")
			fc.send(messageFrame(21, "m001"))
		}
	})
	store := &memCursor{cur: client.Cursor{AppID: testApp, UserID: "alice", Device: "default", Ref: "5"}}
	c := newClient(t, s.srv.URL, client.WithToken(fakeToken("alice")), client.WithCursorStore(store), fastBackoff)
	rec := newRecorder()
	var lastRefSeen []string
	c.AddEventListener(func(e client.Event) {
		if _, ok := e.(*client.ResyncRequired); ok {
			lastRefSeen = append(lastRefSeen, c.LastRef())
		}
		rec.listen(e)
	})
	s.waitFor("the reply to ref 11", func(_ []protocol.AuthArgs, replies []string) bool { return slices.Contains(replies, "11") })
	s.mu.Lock()
	s.conns[1].WriteClose(protocol.CloseGoingAway, nil)
	s.mu.Unlock()
	got := rec.waitTexts(t, "conv", 2)
	checkSequence(t, got, 2)
	s.mu.Lock()
	auths := slices.Clone(s.auths)
	s.mu.Unlock()
	var resumes []string
	for _, a := range auths {
		resumes = append(resumes, a.ResumeAfter)
	}
	if !slices.Equal(resumes, []string{"5", "10", "11", "20"}) {
		t.Fatalf("resumed after %v", resumes)
	}
	var resyncs []string
	for _, e := range rec.all() {
		if r, ok := e.(*client.ResyncRequired); ok {
			resyncs = append(resyncs, r.Ref)
			if r.Name != client.EventResyncRequired {
				t.Errorf("resync event name %q", r.Name)
			}
		}
	}
	if !slices.Equal(resyncs, []string{"10", "20"}) || !slices.Equal(lastRefSeen, []string{"5", "11"}) {
		t.Fatalf("resyncs %v, seen with last refs %v", resyncs, lastRefSeen)
	}
	s.waitFor("the reply to ref 21", func(_ []protocol.AuthArgs, replies []string) bool { return slices.Contains(replies, "21") })
	if store.ref() != "21" || c.LastRef() != "21" {
		t.Fatalf("cursor %q, last ref %q", store.ref(), c.LastRef())
	}
}

func TestSlowListenersDoNotMakeTheQueueGrow(t *testing.T) {
	t.Parallel()
	const n = 20
	s := newFakeServer(t, func(fc *fakeConn, _ int, a protocol.AuthArgs) {
		after, _ := protocol.ParseRef(a.ResumeAfter)
		fc.ok(fmt.Sprint(after))
		for ref := after + 1; ref <= n; ref++ {
			fc.send(messageFrame(ref, fmt.Sprintf("m%03d", ref-1)))
		}
	})
	c := newClient(t, s.srv.URL, client.WithToken(fakeToken("alice")), client.WithMaxQueue(5), fastBackoff)
	release := make(chan struct{})
	rec := newRecorder()
	c.AddEventListener(func(e client.Event) {
		<-release
		rec.listen(e)
	})
	// The first update blocks the listener; the queue fills and the client
	// drops the connection, then tries again.
	s.waitFor("a reconnection", func(auths []protocol.AuthArgs, _ []string) bool { return len(auths) >= 2 })
	close(release)
	checkSequence(t, rec.waitTexts(t, "conv", n), n)
}

func TestUpdatesWaitForAListener(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t, func(fc *fakeConn, _ int, a protocol.AuthArgs) {
		fc.ok("0")
		fc.send(messageFrame(1, "m000"), messageFrame(2, "m001"))
		fc.send(messageFrame(3, "m002"))
	})
	var statuses statusLog
	c := newClient(t, s.srv.URL, client.WithToken(fakeToken("alice")), client.WithStatusListener(statuses.listen))
	waitConnected(t, c)
	if err := c.Ping(ctxT(t)); err != nil { // answered after the updates
		t.Fatal(err)
	}
	// Status changes are not held.
	waitFor(t, "the status changes", func() bool { return statuses.count(client.StatusConnected) == 1 })
	if ch := statuses.all(); ch[0].Status != client.StatusConnecting {
		t.Errorf("first status change %v", ch)
	}
	s.mu.Lock()
	replies := slices.Clone(s.replies)
	s.mu.Unlock()
	if len(replies) > 0 || c.LastRef() != "" {
		t.Fatalf("updates acknowledged with no listener: %v", replies)
	}
	rec := newRecorder()
	c.AddEventListener(rec.listen)
	checkSequence(t, rec.waitTexts(t, "conv", 3), 3)
	s.waitFor("the reply to ref 3", func(_ []protocol.AuthArgs, replies []string) bool { return slices.Contains(replies, "3") })
}

// A program that stops after the updates it wanted (a listener removes
// itself, then the program closes the client) has them acknowledged, and
// only them: the next connection of the device does not get them again.
func TestCloseAcknowledgesWhatWasProcessed(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t, func(fc *fakeConn, _ int, a protocol.AuthArgs) {
		fc.ok("0")
		// In one message, so that the second is queued while the first is
		// delivered.
		fc.send(messageFrame(1, "m000"), messageFrame(2, "m001"))
	})
	c := newClient(t, s.srv.URL, client.WithToken(fakeToken("alice")))
	got := make(chan string, 2)
	var mu sync.Mutex
	var remove func()
	mu.Lock()
	remove = c.AddEventListener(func(e client.Event) {
		if m, ok := e.(*client.MessageSent); ok {
			mu.Lock()
			remove() // the updates after this one wait, unacknowledged
			mu.Unlock()
			got <- m.Message.Parts[0].Data
		}
	})
	mu.Unlock()
	if text := next(got); text != "m000" {
		t.Fatalf("got %q, want m000", text)
	}
	c.Close()
	s.waitFor("the reply to ref 1", func(_ []protocol.AuthArgs, replies []string) bool { return slices.Contains(replies, "1") })
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.replies, "2") {
		t.Errorf("an update no listener processed was acknowledged: replies %v", s.replies)
	}
}

// TestParticipantEventsWithoutReasonDecode: events stored by servers older
// than the payloads' reason still decode, with Reason empty.
func TestParticipantEventsWithoutReasonDecode(t *testing.T) {
	t.Parallel()
	s := newFakeServer(t, func(fc *fakeConn, n int, a protocol.AuthArgs) {
		fc.ok("0")
		fc.send(eventFrame(1, tidings.EventParticipantAdded, map[string]string{"conversationId": "conv", "profileId": "carol", "role": "member"}),
			eventFrame(2, tidings.EventParticipantRemoved, map[string]string{"conversationId": "conv", "profileId": "carol"}))
	})
	c := newClient(t, s.srv.URL, client.WithToken(fakeToken("alice")), fastBackoff)
	rec := newRecorder()
	c.AddEventListener(rec.listen)
	if pa := waitEvent[*client.ParticipantAdded](t, rec, nil); pa.ProfileID != "carol" || pa.Role != tidings.RoleMember || pa.Reason != "" {
		t.Errorf("participantAdded without reason: %+v", pa)
	}
	if pr := waitEvent[*client.ParticipantRemoved](t, rec, nil); pr.ProfileID != "carol" || pr.Reason != "" {
		t.Errorf("participantRemoved without reason: %+v", pr)
	}
}

// A conversationMessage.sent update without the event's id (since
// 2026-12 it is the message's, sent once, in the payload) gives listeners
// the message's id as the event's; one stored earlier, with an id of its
// own, keeps it.
func TestSentMessageEventIDIsTheMessageIDWhenLeftOut(t *testing.T) {
	t.Parallel()
	compact := eventFrame(1, tidings.EventMessageSent, map[string]any{"id": "m1", "seq": 1, "sender": map[string]string{"id": "bob"}})
	compact = bytes.Replace(compact, []byte(`"id":"ev1",`), nil, 1)
	if bytes.Contains(compact, []byte(`"ev1"`)) {
		t.Fatalf("the event's id is still in %s", compact)
	}
	s := newFakeServer(t, func(fc *fakeConn, n int, a protocol.AuthArgs) {
		fc.ok("0")
		fc.send(compact, eventFrame(2, tidings.EventMessageSent, map[string]any{"id": "m2", "seq": 2, "sender": map[string]string{"id": "bob"}}))
	})
	c := newClient(t, s.srv.URL, client.WithToken(fakeToken("alice")), fastBackoff)
	rec := newRecorder()
	c.AddEventListener(rec.listen)
	if ms := waitEvent(t, rec, func(e *client.MessageSent) bool { return e.Message.ID == "m1" }); ms.ID != "m1" || ms.Ref != "1" {
		t.Errorf("a sent message without its event's id: event id %q, ref %q; want m1, 1", ms.ID, ms.Ref)
	}
	if ms := waitEvent(t, rec, func(e *client.MessageSent) bool { return e.Message.ID == "m2" }); ms.ID != "ev2" {
		t.Errorf("a sent message with its event's id: event id %q, want ev2", ms.ID)
	}
}

// Concurrent sends of one client are pipelined on its connection: the
// server has every one of them before it answers any, and each answer,
// whatever its order, goes to its own call.
func TestConcurrentSendsArePipelined(t *testing.T) {
	t.Parallel()
	const n = 8
	s := newFakeServer(t, func(fc *fakeConn, _ int, _ protocol.AuthArgs) { fc.ok("0") })
	var held []*fakeConn
	var heldArgs []protocol.SendArgs
	s.mu.Lock()
	s.onCommand = func(fc *fakeConn, f protocol.Frame) {
		var a protocol.SendArgs
		json.Unmarshal(f.Data, &a)
		s.mu.Lock()
		held, heldArgs = append(held, fc), append(heldArgs, a)
		all := len(held) == n
		s.mu.Unlock()
		if all { // answer the last first
			for i := n - 1; i >= 0; i-- {
				held[i].answer(tidings.Message{ID: "id-" + heldArgs[i].ClientID, ConversationID: heldArgs[i].ConversationID,
					ClientID: heldArgs[i].ClientID, Seq: int64(i + 1)})
			}
		}
	}
	s.mu.Unlock()
	c := newClient(t, s.srv.URL, client.WithToken(fakeToken("alice")), fastBackoff)
	waitConnected(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	errs := make(chan error, n)
	for i := range n {
		go func() {
			id := fmt.Sprint("c", i)
			m, err := c.Socket().SendMessage(ctx, "conv", tidings.NewMessage{ClientID: id,
				Parts: []tidings.Part{{Type: "text/plain", Data: "hi"}}})
			if err == nil && (m.ClientID != id || m.ID != "id-"+id) {
				err = fmt.Errorf("send %s got the answer of %s", id, m.ClientID)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err) // a deadline: the sends waited for each other
		}
	}
}
