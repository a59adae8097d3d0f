package ws_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	nethttp "net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/realtime"
	"github.com/tidings/tidings/ws"
)

// Promises of docs/protocol.md, each checked against the real server.

// "Updates that were sent but not acknowledged ... are sent again the next
// time the device resumes": also for a device whose first auth asked for
// "latest", and whose cursor therefore never came from a reply.
func TestNewDeviceStartingAtLatestGetsUnacknowledgedUpdatesAgain(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	s.send("a", "alice", conv, "history")

	bob := dial(t, s)
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "fresh", ResumeAfter: "latest"})
	for i := range 3 {
		s.send("a", "alice", conv, fmt.Sprint(i))
	}
	if got := textsUntil(bob, "2"); !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Fatalf("live, bob got %v", got)
	}
	bob.hangUp() // no reply sent

	bob = dial(t, s)
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "fresh"})
	if got := textsUntil(bob, "2"); !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Fatalf("resuming from the device's cursor bob got %v, want the three unacknowledged", got)
	}

	// The same through polling: a poll after=latest records where the
	// device starts, and the next poll from the cursor returns what was
	// not acknowledged.
	tok := s.token("a", "bob")
	us, last := s.poll(tok, "device=pollfresh&after=latest")
	if len(us) != 0 || last != s.lastRef() {
		t.Fatalf("a poll after latest returned %d updates and lastRef %q, want none and the newest ref %s", len(us), last, s.lastRef())
	}
	s.send("a", "alice", conv, "polled")
	us, _ = s.poll(tok, "device=pollfresh&after="+last)
	if got := texts(us); !slices.Equal(got, []string{"polled"}) {
		t.Fatalf("poll after %s: %v", last, got)
	}
	us, _ = s.poll(tok, "device=pollfresh")
	if got := texts(us); !slices.Equal(got, []string{"polled"}) {
		t.Fatalf("poll from the cursor of a device that started at latest: %v, want the unacknowledged message", got)
	}
}

// An expired token is refused at once on every transport: the REST API,
// polling and replies answer 401, the socket's auth unauthenticated. No
// grace period after exp.
func TestExpiredTokenIsRefusedOnEveryTransport(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "bob")
	// Expired two seconds ago, well within the 30 s leeway there was.
	expired := s.tokenFor("a", "bob", 3*time.Second, time.Now().Add(-5*time.Second))
	fresh := s.token("a", "bob")

	rest := func(method, path, tok, body string) int {
		t.Helper()
		req, _ := nethttp.NewRequest(method, s.srv.URL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := pollClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/me", ""},
		{"GET", "/v1/conversations", ""},
		{"GET", "/v1/realtime/poll?device=d", ""},
		{"POST", "/v1/realtime/replies", `{"ref":"1","device":"d"}`},
	} {
		if got := rest(c.method, c.path, fresh, c.body); got >= 400 {
			t.Fatalf("%s %s with a fresh token: %d", c.method, c.path, got)
		}
		if got := rest(c.method, c.path, expired, c.body); got != nethttp.StatusUnauthorized {
			t.Errorf("%s %s with an expired token: %d, want 401", c.method, c.path, got)
		}
	}
	c := dial(t, s)
	wantError(t, c.command("", protocol.CmdAuth, protocol.AuthArgs{Token: expired}), tidings.EUnauthenticated)

	// A token verified (and cached) while valid is refused once it expires.
	short := s.tokenFor("a", "bob", 2*time.Second, time.Now())
	if got := rest("GET", "/v1/me", short, ""); got != nethttp.StatusOK {
		t.Fatalf("GET /v1/me with a valid token: %d", got)
	}
	waitFor(t, "the token to expire", func() bool { return rest("GET", "/v1/me", short, "") == nethttp.StatusUnauthorized })
	if got := rest("GET", "/v1/realtime/poll?device=d", short, ""); got != nethttp.StatusUnauthorized {
		t.Errorf("poll with a token expired a moment ago: %d, want 401", got)
	}
}

// A slow reader that replies to each update, as the protocol advises, is
// closed with a clean close frame 4009 after the frames already on their
// way: not cut in the middle of a frame, nor reset. Updates come live, or
// replayed when the first sends race the auth.
func TestSlowReaderThatRepliesGetsACleanCloseFrame(t *testing.T) {
	s := startStack(t, func(_ *realtime.Node, h *ws.Handler) { h.WriteQueue = 8 })
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	bob := slowReader(t, s, "slow")

	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; i < 5000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			sendBig(s, conv, i)
		}
	}()
	readSlowlyUntilClosed(t, s, bob)
}

// A slow reader whose missed updates are replayed, and that reads nothing
// for a while, is closed with a clean close frame 4009 too: the write
// under way times out (the peer took nothing for the write timeout), and
// the rest waits ahead of the close frame for one more. The replay, which
// waits for room meanwhile, leaves that to the write: when it gave up on
// its own, at about the same time, the close frame was cut (CI, 2026-12-04:
// the replies met a reset).
func TestSlowReaderOfAReplayGetsACleanCloseFrame(t *testing.T) {
	s := startStack(t, func(_ *realtime.Node, h *ws.Handler) {
		h.WriteQueue = 8
		h.WriteTimeout = 3 * time.Second // short, with room for a busy machine
	})
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	away := dial(t, s)
	away.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "slow"})
	away.hangUp()
	// More than the socket buffers hold (4 MiB on Linux, at most).
	for i := range 150 {
		sendBig(s, conv, i)
	}
	readSlowlyUntilClosed(t, s, slowReader(t, s, "slow"))
}

// slowReader connects as bob's device with a receive buffer larger than
// loopback's segments (a smaller one stalls TCP itself for seconds: zero
// window probes), and authenticates without waiting for the answer.
func slowReader(t *testing.T, s *stack, device string) *rawConn {
	t.Helper()
	c, status := handshake(t, s, nil, 256<<10)
	if c == nil {
		t.Fatalf("handshake: %d", status)
	}
	auth, _ := json.Marshal(protocol.Frame{Type: protocol.TypeCommand, ID: "1", Command: protocol.CmdAuth,
		Data: json.RawMessage(fmt.Sprintf(`{"token":%q,"device":%q}`, s.token("a", "bob"), device))})
	if err := c.writeText(auth); err != nil {
		t.Fatal(err)
	}
	return c
}

// sendBig sends alice's message i of 48 KiB.
func sendBig(s *stack, conv string, i int) {
	big := strings.Repeat("x", 48<<10)
	s.msgs.SendMessage(s.as("a", "alice"), conv, tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: fmt.Sprint(i, " ", big)}}})
}

// readSlowlyUntilClosed reads a frame and replies, then stops reading
// until the server has given up on the reader (whatever the machine's
// speed, the queue overflows or the write stalls then), and reads and
// replies on: its replies reach a server that has closed its side, and
// the close frame must still come, whole, with 4009.
func readSlowlyUntilClosed(t *testing.T, s *stack, c *rawConn) {
	t.Helper()
	paused := false
	c.SetReadDeadline(time.Now().Add(90 * time.Second))
	for {
		op, p, err := c.readFrame()
		if err != nil {
			t.Fatalf("the connection ended without a close frame: %v", err)
		}
		if op == 8 {
			if len(p) < 2 {
				t.Fatalf("close frame without a code")
			}
			if code := binary.BigEndian.Uint16(p); code != protocol.CloseSlowConsumer {
				t.Fatalf("closed with %d (%s), want %d", code, p[2:], protocol.CloseSlowConsumer)
			}
			return
		}
		if op != 1 {
			t.Fatalf("unexpected opcode %d", op)
		}
		for _, line := range bytes.Split(p, []byte("\n")) {
			var f protocol.Frame
			if err := json.Unmarshal(line, &f); err != nil {
				t.Fatalf("a frame that is not JSON (cut?): %.60q", line)
			}
			if f.Type == protocol.TypeUpdate && f.Ref != "" {
				reply, _ := json.Marshal(protocol.Frame{Type: protocol.TypeReply, Ref: f.Ref})
				if err := c.writeText(reply); err != nil {
					t.Fatalf("reply: %v", err)
				}
			}
		}
		if !paused {
			paused = true
			deadline := time.Now().Add(60 * time.Second)
			for s.metric("tidings_realtime_slow_consumers_total") == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the server never gave up on a reader that stopped reading")
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}

// A replay to a client that reads, while the client sends commands, is
// paced by the connection: it is not closed as a slow consumer (the
// protocol gives up only after 10 s with nothing draining), and no answer
// is lost.
func TestReplayWithCommandsMeanwhileIsNotASlowConsumer(t *testing.T) {
	s := startStack(t, func(_ *realtime.Node, h *ws.Handler) { h.WriteQueue = 8 })
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	bob := dial(t, s)
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "d"})
	bob.hangUp()
	const backlog = 400
	for i := range backlog {
		s.send("a", "alice", conv, fmt.Sprint(i))
	}

	bob = dial(t, s)
	bob.command("", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "bob"), Device: "d"})
	// Commands while the replay runs: each is answered.
	for i := range 30 {
		if f := bob.command("", protocol.CmdPing, nil); f.Error != nil {
			t.Fatalf("ping %d: %+v", i, f.Error)
		}
	}
	for i := 0; i < backlog; {
		var u update
		select {
		case u = <-bob.updates:
		case <-bob.closed:
			t.Fatalf("closed with %d while replaying message %d", bob.code, i)
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d was not replayed", i)
		}
		if u.ev.Name != tidings.EventMessageSent {
			continue
		}
		if got := u.text(); got != fmt.Sprint(i) {
			t.Fatalf("replayed %q, want %d", got, i)
		}
		i++
	}
}

// "Sending also moves the sender's own delivered and read marks to the new
// message": the conversationMessage.sent update stands for it (its
// profileId and seq are the sender's new marks), with no read update of
// its own, so a send costs one update per receiver, not two.
func TestSendingMovesTheSendersReadMark(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	alice := dial(t, s)
	alice.auth("", s.token("a", "alice"), protocol.AuthArgs{Device: "laptop"})
	tablet := dial(t, s)
	tablet.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "tablet"})
	phone := dial(t, s)
	phone.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "phone"})
	durable := func(c *client) update { // skips presence and typing
		t.Helper()
		for {
			if u := c.next(); u.Ref != "" {
				return u
			}
		}
	}

	for i, text := range []string{"one", "two"} {
		ans := phone.command("", protocol.CmdSend, sendArgs(conv, text))
		wantOK(t, ans)
		var m tidings.Message
		json.Unmarshal(ans.Result, &m)
		for _, c := range []*client{alice, tablet, phone} {
			u := durable(c)
			if u.ev.Name != tidings.EventMessageSent {
				t.Fatalf("send %d: update %s, want %s first and alone", i, u.ev.Name, tidings.EventMessageSent)
			}
			var p tidings.Message
			if err := json.Unmarshal(u.ev.Payload, &p); err != nil {
				t.Fatal(err)
			}
			if p.Sender.ID != "bob" || p.Seq != m.Seq || p.ID != m.ID {
				t.Fatalf("send %d: sent payload %+v, want bob's mark at message %d (%s)", i, p, m.Seq, m.ID)
			}
		}
		// The server's marks agree with what the update says.
		st, err := s.msgs.MarkRead(s.as("a", "bob"), conv, 1) // does not move back
		if err != nil || st.ReadSeq != m.Seq || st.DeliveredSeq != m.Seq || st.UnreadCount != 0 {
			t.Fatalf("send %d: bob's status %+v, %v; want read and delivered at %d", i, st, err, m.Seq)
		}
	}
	// No read update follows: the next update anyone gets is the next change.
	wantOK(t, alice.command("", protocol.CmdMarkRead, protocol.MarkArgs{ConversationID: conv, Seq: 2}))
	for _, c := range []*client{alice, tablet, phone} {
		if u := durable(c); u.ev.Name != tidings.EventMessageRead || u.ev.UserID != "alice" {
			t.Fatalf("after the sends: %s of %q, want alice's read update", u.ev.Name, u.ev.UserID)
		}
	}
}

// The error codes of docs/protocol.md ("Errors"), each for the command
// that the table there names; after each, the connection stays open.
func TestErrorCodesOfCommands(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "alice", "bob", "carol")
	conv := s.conv("a", "alice", "bob")
	other := s.conv("a", "alice", "carol") // private, bob takes no part
	raw := func(v string) json.RawMessage { return json.RawMessage(v) }
	cases := []struct {
		name, account, command string
		data                   any
		code                   string
	}{
		{"unknown command", "", "message.fly", nil, tidings.EInvalid},
		{"unknown field", "", protocol.CmdTypingStart, raw(`{"conversationId":"` + conv + `","speed":1}`), tidings.EInvalidJSON},
		{"wrong type", "", protocol.CmdMarkRead, raw(`{"conversationId":"` + conv + `","seq":"one"}`), tidings.EInvalidJSON},
		{"parts missing", "", protocol.CmdSend, raw(`{"conversationId":"` + conv + `"}`), tidings.EInvalid},
		{"no part", "", protocol.CmdSend, raw(`{"conversationId":"` + conv + `","parts":[]}`), tidings.EInvalid},
		{"message too large", "", protocol.CmdSend, sendArgs(conv, strings.Repeat("x", 65<<10)), tidings.ETooLarge},
		{"mark beyond the newest", "", protocol.CmdMarkRead, protocol.MarkArgs{ConversationID: conv, Seq: 99}, tidings.EInvalid},
		{"mark negative", "", protocol.CmdMarkDelivered, protocol.MarkArgs{ConversationID: conv, Seq: -1}, tidings.EInvalid},
		{"send to a private conversation of others", "", protocol.CmdSend, sendArgs(other, "hi"), tidings.ENotFound},
		{"typing in a conversation of others", "", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: other}, tidings.ENotFound},
		{"presence in a conversation of others", "", protocol.CmdPresenceGet, protocol.PresenceArgs{ConversationID: other}, tidings.ENotFound},
		{"command for an account not authenticated", "work", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: conv}, tidings.EUnauthenticated},
		{"logout of an account not authenticated", "work", protocol.CmdLogout, nil, tidings.EUnauthenticated},
		{"auth with a bad device name", "", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "bob"), Device: "a phone"}, tidings.EInvalid},
		{"auth with a bad account name", "my account", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "bob")}, tidings.EInvalid},
		{"auth with a device name of 65", "work", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "bob"), Device: strings.Repeat("d", 65)}, tidings.EInvalid},
		{"auth with an account name of 65", strings.Repeat("w", 65), protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "bob")}, tidings.EInvalid},
		{"auth with a resumeAfter that is not a ref", "work", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "bob"), ResumeAfter: "seven"}, tidings.EInvalid},
		{"auth with a resumeAfter newer than the newest", "work", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "bob"), ResumeAfter: "999999"}, tidings.EResyncRequired},
		{"auth with a malformed token", "work", protocol.CmdAuth, protocol.AuthArgs{Token: "not.a.jwt"}, tidings.EUnauthenticated},
		{"auth without a token", "work", protocol.CmdAuth, protocol.AuthArgs{}, tidings.EUnauthenticated},
		{"auth as another user on a taken account", "", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "alice")}, tidings.EConflict},
	}
	c := dial(t, s)
	c.auth("", s.token("a", "bob"), protocol.AuthArgs{})
	for _, tc := range cases {
		f := c.command(tc.account, tc.command, tc.data)
		if f.Error == nil || f.Error.Code != tc.code {
			t.Errorf("%s: answered %+v %s, want %s", tc.name, f.Error, f.Result, tc.code)
			continue
		}
		if f.Error.Message == "" || (tc.code == tidings.EResyncRequired) != (f.Error.Ref != "") {
			t.Errorf("%s: error %+v: a message, and a ref only with resync_required", tc.name, f.Error)
		}
	}
	// The connection stayed open, and the account is still bob's.
	if f := c.command("", protocol.CmdPing, nil); f.Error != nil || !strings.Contains(string(f.Result), `"time"`) {
		t.Fatalf("ping after the errors: %+v %s", f.Error, f.Result)
	}
	wantOK(t, c.command("", protocol.CmdTypingStart, protocol.TypingArgs{ConversationID: conv}))
}

// Close codes not covered elsewhere: 4005 (idle) and 1007 (invalid UTF-8).
func TestIdleAndInvalidTextCloseCodes(t *testing.T) {
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) {
		fastTicks(n)
		n.IdleTimeout = time.Second
	})
	s.mkUsers("a", "bob")

	// Ping commands keep a connection from being idle; silence does not.
	busy, idle := dial(t, s), dial(t, s)
	busy.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "busy"})
	idle.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "idle"})
	deadline := time.Now().Add(15 * time.Second)
	for open := true; open; {
		select {
		case <-idle.closed:
			open = false
		default:
			if time.Now().After(deadline) {
				t.Fatal("the idle connection was not closed")
			}
			busy.command("", protocol.CmdPing, nil)
			time.Sleep(50 * time.Millisecond) // a client pinging more often than the idle timeout
		}
	}
	if idle.code != protocol.CloseIdle {
		t.Fatalf("the idle connection closed with %d, want %d", idle.code, protocol.CloseIdle)
	}
	wantOK(t, busy.command("", protocol.CmdPing, nil))

	// Text that is not UTF-8: 1007, by a raw frame (libraries refuse to send it).
	c, status := handshake(t, s, nil, 0)
	if c == nil {
		t.Fatalf("handshake: %d", status)
	}
	if err := c.writeText([]byte{'"', 0xff, 0xfe, '"'}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		op, p, err := c.readFrame()
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		if op == 8 {
			if len(p) < 2 || binary.BigEndian.Uint16(p) != 1007 {
				t.Fatalf("close frame %q, want 1007", p)
			}
			break
		}
	}
}

// "Connecting": the handshake's answers, by request.
func TestHandshakePromises(t *testing.T) {
	s := startStack(t, nil)
	cases := []struct {
		name     string
		path     string
		header   map[string]string
		status   int
		selected string // Sec-WebSocket-Protocol of a 101
	}{
		{"offers tidings.v1", "/v1/realtime", map[string]string{"Sec-WebSocket-Protocol": "chat, tidings.v1"}, 101, "tidings.v1"},
		{"offers no subprotocol", "/v1/realtime", nil, 101, ""},
		{"offers tidings.v2", "/v1/realtime", map[string]string{"Sec-WebSocket-Protocol": "tidings.v2"}, 101, "tidings.v2"},
		{"offers both", "/v1/realtime", map[string]string{"Sec-WebSocket-Protocol": "tidings.v1, tidings.v2"}, 101, "tidings.v2"},
		{"offers both, v2 first", "/v1/realtime", map[string]string{"Sec-WebSocket-Protocol": "tidings.v2, tidings.v1"}, 101, "tidings.v2"},
		{"query parameters are ignored", "/v1/realtime?token=x&v=2", nil, 101, ""},
		{"offers only others", "/v1/realtime", map[string]string{"Sec-WebSocket-Protocol": "chat"}, 400, ""},
		{"wrong version", "/v1/realtime", map[string]string{"Sec-WebSocket-Version": "8"}, 400, ""},
		{"not an upgrade", "/v1/realtime", map[string]string{"Upgrade": "", "Connection": "keep-alive"}, 400, ""},
		{"a foreign origin", "/v1/realtime", map[string]string{"Origin": "https://elsewhere.example"}, 403, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := nethttp.NewRequest("GET", s.srv.URL()+tc.path, nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			for k, v := range tc.header {
				if v == "" {
					req.Header.Del(k)
				} else {
					req.Header.Set(k, v)
				}
			}
			resp, err := pollClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); tc.status == 101 && got != tc.selected {
				t.Fatalf("selected subprotocol %q, want %q", got, tc.selected)
			}
			if tc.status == 101 && resp.Header.Get("Sec-WebSocket-Extensions") != "" {
				t.Fatalf("negotiated %q: the server does not compress", resp.Header.Get("Sec-WebSocket-Extensions"))
			}
		})
	}
}

// "Polling transport": the parameters' ranges and the credentials.
func TestPollParameterPromises(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "bob")
	tok := s.token("a", "bob")
	for _, tc := range []struct {
		query  string
		status int
	}{
		{"wait=0&limit=1", 200},
		{"limit=1000", 200},
		{"wait=61", 400},
		{"wait=-1", 400},
		{"limit=0", 400},
		{"limit=1001", 400},
		{"device=a%20phone", 400},
		{"device=" + strings.Repeat("d", 64), 200},
		{"device=" + strings.Repeat("d", 65), 400},
		{"after=seven", 400},
		{"after=999999", 410},
	} {
		status, e := s.pollError(tok, tc.query)
		if status != tc.status {
			t.Errorf("poll?%s: %d (%+v), want %d", tc.query, status, e, tc.status)
		}
		if status == 410 && (e.Code != tidings.EResyncRequired || e.Ref != s.lastRef()) {
			t.Errorf("poll?%s: %+v, want resync_required with the newest ref", tc.query, e)
		}
	}
}

// "reply": a ref beyond the last one sent acknowledges up to the last one
// sent only; a reply for an account not on the connection is ignored;
// replies do not count against the command rate limit.
func TestReplyPromises(t *testing.T) {
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) {
		n.CommandRate = 0.01 // no refill to speak of during the test
		n.CommandBurst = 4
	})
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	bob := dial(t, s)
	bob.auth("", s.token("a", "bob"), protocol.AuthArgs{Device: "d"}) // auth and ping: 2 commands

	s.send("a", "alice", conv, "A")
	bob.nextNamed(tidings.EventMessageSent) // A
	for range 50 {
		bob.reply("work", "1")               // an account not on the connection
		bob.reply("", "9223372036854775807") // beyond anything sent
	}
	wantOK(t, bob.command("", protocol.CmdPing, nil)) // answered once the replies are handled
	s.send("a", "alice", conv, "B")
	if got := textsUntil(bob, "B"); !slices.Equal(got, []string{"B"}) {
		t.Fatalf("live: %v", got)
	}
	// The fourth command of the burst: the replies did not count.
	if f := bob.command("", protocol.CmdPing, nil); f.Error != nil {
		t.Fatalf("a command after 100 replies: %+v", f.Error)
	}
	bob.conn.WriteClose(1000, nil)
	bob.waitClosed()

	// The replies acknowledged up to what was sent then: B comes again.
	again := dial(t, s)
	again.command("", protocol.CmdAuth, protocol.AuthArgs{Token: s.token("a", "bob"), Device: "d"})
	if got := textsUntil(again, "B"); !slices.Equal(got, []string{"B"}) {
		t.Fatalf("resumed: %v, want B alone", got)
	}
}

// "Connections per user": a poll in progress counts, as a connection does,
// and a poll beyond the limit is refused.
func TestAWaitingPollCountsAsAConnection(t *testing.T) {
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) { n.MaxConnsPerUser = 1 })
	s.mkUsers("a", "bob")
	tok := s.token("a", "bob")
	done := make(chan error, 1)
	go func() {
		_, _, err := s.pollE(tok, "device=web&wait=20")
		done <- err
	}()
	waitFor(t, "the poll to wait", func() bool { return s.metric("tidings_realtime_sessions") == 1 })
	if status, e := s.pollError(tok, "device=other"); status != nethttp.StatusTooManyRequests || e.Code != tidings.ERateLimited {
		t.Fatalf("a second poll: %d %+v, want 429 rate_limited", status, e)
	}
	c := dial(t, s)
	wantError(t, c.command("", protocol.CmdAuth, protocol.AuthArgs{Token: tok}), tidings.ERateLimited)
	if code := c.waitClosed(); code != protocol.CloseTooManyConns {
		t.Fatalf("closed with %d, want %d", code, protocol.CloseTooManyConns)
	}
	// The poll ends with an update; then bob may connect.
	s.mkUsers("a", "alice")
	s.conv("a", "alice", "bob")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the poll's session to end", func() bool { return s.metric("tidings_realtime_sessions") == 0 })
	dial(t, s).auth("", tok, protocol.AuthArgs{})
}

// The socket words a bad command as the REST API words a bad body: what
// to fix, never Go's own error text.
func TestBadCommandDataIsWordedForPeople(t *testing.T) {
	s := startStack(t, nil)
	s.mkUsers("a", "bob")
	c := dial(t, s)
	c.auth("", s.token("a", "bob"), protocol.AuthArgs{})
	for _, tc := range []struct {
		command, data, want string
	}{
		{protocol.CmdSend, `{"conversationId":"c","text":"hi"}`, `unknown field "text"`},
		{protocol.CmdMarkRead, `{"conversationId":"c","seq":"one"}`, `field "seq" must be an integer, not string`},
		{protocol.CmdSend, `[1]`, `the command's data must be an object, not array`},
	} {
		f := c.command("", tc.command, json.RawMessage(tc.data))
		if f.Error == nil || f.Error.Code != tidings.EInvalidJSON || f.Error.Message != tc.want {
			t.Errorf("%s %s: answered %+v, want invalid_json %q", tc.command, tc.data, f.Error, tc.want)
		}
		if f.Error != nil && strings.Contains(f.Error.Message, "json:") {
			t.Errorf("%s %s: Go's error text reaches the user: %q", tc.command, tc.data, f.Error.Message)
		}
	}
}

// A frame the protocol forbids (text that is not UTF-8, a binary frame)
// closes the connection, and what the client sent after it is not acted
// on: a send right behind a bad frame stores nothing.
func TestBadFrameEndsTheCommands(t *testing.T) {
	// The server lingers for the peer's close for WriteTimeout: the send
	// would have time to be stored meanwhile.
	s := startStack(t, func(_ *realtime.Node, h *ws.Handler) { h.WriteTimeout = time.Second })
	s.mkUsers("a", "bob", "carol")
	for _, tc := range []struct {
		name   string
		device string
		bad    []byte
		code   uint16
	}{
		{"text that is not UTF-8", "utf8", maskedFrame(0x1, []byte{'"', 0xff, 0xfe, '"'}), 1007},
		{"a binary frame", "binary", maskedFrame(0x2, []byte(`{"type":"command","id":"9","name":"ping"}`)), protocol.CloseBadFrame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conv := s.conv("a", "bob", "carol")
			c := rawAuth(t, s, "bob", tc.device)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if op, p, err := c.readFrame(); err != nil || op != 1 || !strings.Contains(string(p), `"id":"1"`) || strings.Contains(string(p), `"error"`) {
				t.Fatalf("auth answer: op %d %q %v", op, p, err)
			}
			args, _ := json.Marshal(protocol.SendArgs{ConversationID: conv, Parts: json.RawMessage(`[{"type":"text/plain","data":"after the bad frame"}]`)})
			send, _ := json.Marshal(protocol.Frame{Type: protocol.TypeCommand, ID: "2", Command: protocol.CmdSend, Data: args})
			// Both in one write: the send is read before the close.
			if _, err := c.Write(append(append([]byte(nil), tc.bad...), maskedFrame(0x1, send)...)); err != nil {
				t.Fatal(err)
			}
			for {
				op, p, err := c.readFrame()
				if err != nil {
					t.Fatalf("no close frame: %v", err)
				}
				if op == 1 {
					t.Fatalf("a frame after the bad one was answered: %s", p)
				}
				if op == 8 {
					if len(p) < 2 || binary.BigEndian.Uint16(p) != tc.code {
						t.Fatalf("close frame %q, want %d", p, tc.code)
					}
					break
				}
			}
			// The client stays silent and keeps its socket open: the server
			// ends the connection after its linger (a second), time enough
			// for a send it had taken to be stored.
			waitFor(t, "the connection to end", func() bool { return s.metric("tidings_realtime_connections") == 0 })
			c.Close()
			page, err := s.msgs.ListMessages(s.as("a", "bob"), conv, tidings.MessageFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Messages) != 0 {
				t.Fatalf("the send after the bad frame stored %d message(s)", len(page.Messages))
			}
		})
	}
}
