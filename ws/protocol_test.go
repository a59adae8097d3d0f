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
// way: not cut in the middle of a frame, nor reset.
func TestSlowReaderThatRepliesGetsACleanCloseFrame(t *testing.T) {
	s := startStack(t, func(_ *realtime.Node, h *ws.Handler) { h.WriteQueue = 8 })
	s.mkUsers("a", "alice", "bob")
	conv := s.conv("a", "alice", "bob")
	// A receive buffer larger than loopback's segments: a smaller one
	// stalls TCP itself for seconds (zero window probes).
	bob, status := handshake(t, s, nil, 256<<10)
	if bob == nil {
		t.Fatalf("handshake: %d", status)
	}
	auth, _ := json.Marshal(protocol.Frame{Type: protocol.TypeCommand, ID: "1", Command: protocol.CmdAuth,
		Data: json.RawMessage(fmt.Sprintf(`{"token":%q,"device":"slow"}`, s.token("a", "bob")))})
	if err := bob.writeText(auth); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	defer close(stop)
	go func() {
		big := strings.Repeat("x", 48<<10)
		for i := 0; i < 5000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s.msgs.SendMessage(s.as("a", "alice"), conv, tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: fmt.Sprint(i, " ", big)}}})
		}
	}()

	bob.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		op, p, err := bob.readFrame()
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
				if err := bob.writeText(reply); err != nil {
					t.Fatalf("reply: %v", err)
				}
			}
		}
		time.Sleep(20 * time.Millisecond) // a slow reader
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
			var p struct {
				ProfileID string `json:"profileId"`
				Seq       int64  `json:"seq"`
				MessageID string `json:"messageId"`
			}
			if err := json.Unmarshal(u.ev.Payload, &p); err != nil {
				t.Fatal(err)
			}
			if p.ProfileID != "bob" || p.Seq != m.Seq || p.MessageID != m.ID {
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
