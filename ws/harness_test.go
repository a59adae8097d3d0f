package ws_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	nethttp "net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lxzan/gws"

	"github.com/tidings/tidings"
	tidingshttp "github.com/tidings/tidings/http"
	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/realtime"
	"github.com/tidings/tidings/sqlite"
	"github.com/tidings/tidings/token"
	"github.com/tidings/tidings/ws"
)

// stack is a whole Tidings server on 127.0.0.1: store, realtime node,
// WebSocket handler and HTTP API.
type stack struct {
	t     testing.TB
	db    *sqlite.DB
	node  *realtime.Node
	ws    *ws.Handler
	srv   *tidingshttp.Server
	apps  *sqlite.AppService
	log   *sqlite.EventLog
	users *sqlite.UserService
	convs *sqlite.ConversationService
	msgs  *sqlite.MessageService
}

// startStack starts a server; configure may change the node and handler
// before they start.
func startStack(t testing.TB, configure func(*realtime.Node, *ws.Handler)) *stack {
	t.Helper()
	return startStackWith(t, func(s *stack) {
		if configure != nil {
			configure(s.node, s.ws)
		}
	})
}

// startStackWith starts a server; configure may change the stack (its
// node, handler and services) before it starts.
func startStackWith(t testing.TB, configure func(*stack)) *stack {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	db := sqlite.NewDB(filepath.Join(t.TempDir(), "tidings.db"))
	db.Logger = logger
	s := &stack{t: t, db: db, apps: sqlite.NewAppService(db), log: sqlite.NewEventLog(db),
		users: sqlite.NewUserService(db), convs: sqlite.NewConversationService(db), msgs: sqlite.NewMessageService(db, 0)}
	s.node = realtime.NewNode()
	db.Publisher = s.node // before Open, as documented
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	s.node.Apps, s.node.Users, s.node.Messages, s.node.Log, s.node.Logger = s.apps, s.users, s.msgs, s.log, logger
	s.ws = &ws.Handler{Node: s.node, Logger: logger}
	s.node.Batcher = s.ws
	if configure != nil {
		configure(s)
	}
	if err := s.node.Open(); err != nil {
		t.Fatal(err)
	}
	s.srv = tidingshttp.NewServer()
	s.srv.Addr = "127.0.0.1:0"
	s.srv.Apps, s.srv.Users, s.srv.Conversations, s.srv.Messages = s.apps, s.users, s.convs, s.node.Messages
	s.srv.Realtime, s.srv.Poller, s.srv.Logger = s.ws, s.node, logger
	s.srv.Limits = s.node.Limits // one budget over both transports, as served
	if err := s.srv.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	for _, app := range []string{"a", "b"} {
		if _, err := s.apps.CreateApp(context.Background(), app, ""); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

var stopOnce sync.Map

func (s *stack) stop() {
	if _, done := stopOnce.LoadOrStore(s, true); done {
		return
	}
	s.node.Close()
	s.ws.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	s.db.Close()
}

func (s *stack) wsURL() string {
	return "ws" + strings.TrimPrefix(s.srv.URL(), "http") + "/v1/realtime"
}

func (s *stack) server(app string) context.Context {
	return tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: app, Server: true})
}

func (s *stack) as(app, user string) context.Context {
	return tidings.NewContextWithCaller(context.Background(), tidings.Caller{AppID: app, UserID: user})
}

func (s *stack) mkUsers(app string, ids ...string) {
	s.t.Helper()
	for _, id := range ids {
		if _, err := s.users.CreateUser(s.server(app), &tidings.User{ID: id}); err != nil {
			s.t.Fatal(err)
		}
	}
}

func (s *stack) token(app, user string) string {
	s.t.Helper()
	a, err := s.apps.FindAppByID(context.Background(), app)
	if err != nil {
		s.t.Fatal(err)
	}
	tok, _, err := token.Mint(a, user, time.Hour, time.Now())
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// conv creates a conversation of owner with the others as members.
func (s *stack) conv(app, owner string, others ...string) string {
	s.t.Helper()
	var ps []tidings.NewParticipant
	for _, o := range others {
		ps = append(ps, tidings.NewParticipant{UserID: o})
	}
	c, err := s.convs.CreateConversation(s.as(app, owner), tidings.NewConversation{Participants: ps})
	if err != nil {
		s.t.Fatal(err)
	}
	return c.ID
}

func (s *stack) send(app, from, conv, text string) *tidings.Message {
	s.t.Helper()
	m, _, err := s.msgs.SendMessage(s.as(app, from), conv, tidings.NewMessage{Parts: []tidings.Part{{Type: "text/plain", Data: text}}})
	if err != nil {
		s.t.Fatal(err)
	}
	return m
}

// update is a received update frame with its event decoded.
type update struct {
	protocol.Frame
	ev  tidings.Event
	raw []byte // the frame as the server sent it
}

func (u update) text() string {
	var p tidings.MessagePayload
	json.Unmarshal(u.ev.Payload, &p)
	if p.Message == nil || len(p.Parts) == 0 {
		return ""
	}
	return p.Parts[0].Data
}

// client is a test WebSocket client: it collects what the server sends.
type client struct {
	t       testing.TB
	conn    *gws.Conn
	mu      sync.Mutex
	n       int
	answers map[string]chan protocol.Frame
	updates chan update
	closed  chan struct{}
	code    uint16 // close code from the server
	noPong  atomic.Bool
	pings   atomic.Int64 // pings received from the server
	v2      bool         // speaks tidings.v2: frames are read with protocol.DecodeV2
	// frames are the frames received, as sent, in order.
	framesMu sync.Mutex
	frames   [][]byte
}

// dialV2 is dial asking for tidings.v2 only.
func dialV2(t testing.TB, s *stack) *client {
	t.Helper()
	h := nethttp.Header{}
	h.Set("Sec-WebSocket-Protocol", protocol.SubprotocolV2)
	c, err := tryDial(t, s, h)
	if err != nil {
		t.Fatal(err)
	}
	if !c.v2 {
		t.Fatalf("the server chose %q", c.conn.SubProtocol())
	}
	return c
}

// received returns the frames received so far, in order.
func (c *client) received() [][]byte {
	c.framesMu.Lock()
	defer c.framesMu.Unlock()
	return slices.Clone(c.frames)
}

func dial(t testing.TB, s *stack) *client {
	t.Helper()
	c, err := tryDial(t, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tryDial(t testing.TB, s *stack, header nethttp.Header) (*client, error) {
	return tryDialURL(t, s.wsURL(), header)
}

func tryDialURL(t testing.TB, url string, header nethttp.Header) (*client, error) {
	c := &client{t: t, answers: map[string]chan protocol.Frame{}, updates: make(chan update, 10000), closed: make(chan struct{})}
	if header == nil {
		header = nethttp.Header{}
	}
	if header.Get("Sec-WebSocket-Protocol") == "" {
		header.Set("Sec-WebSocket-Protocol", protocol.Subprotocol)
	}
	conn, _, err := gws.NewClient((*clientEvents)(c), &gws.ClientOption{Addr: url, RequestHeader: header,
		ReadMaxPayloadSize: 16 << 20})
	if err != nil {
		return nil, err
	}
	c.conn = conn
	c.v2 = conn.SubProtocol() == protocol.SubprotocolV2
	go conn.ReadLoop()
	t.Cleanup(func() { conn.WriteClose(1000, nil) })
	return c, nil
}

type clientEvents client

func (e *clientEvents) OnOpen(*gws.Conn) {}
func (e *clientEvents) OnClose(_ *gws.Conn, err error) {
	c := (*client)(e)
	if ce, ok := err.(*gws.CloseError); ok {
		c.code = ce.Code
	}
	close(c.closed)
}
func (e *clientEvents) OnPing(conn *gws.Conn, p []byte) {
	c := (*client)(e)
	c.pings.Add(1)
	if !c.noPong.Load() {
		conn.WritePong(p)
	}
}
func (e *clientEvents) OnPong(*gws.Conn, []byte) {}
func (e *clientEvents) OnMessage(_ *gws.Conn, m *gws.Message) {
	c := (*client)(e)
	defer m.Close()
	for _, line := range bytes.Split(m.Bytes(), []byte("\n")) {
		c.framesMu.Lock()
		c.frames = append(c.frames, bytes.Clone(line))
		c.framesMu.Unlock()
		var f protocol.Frame
		var err error
		if c.v2 {
			f, err = protocol.DecodeV2(line)
		} else {
			err = json.Unmarshal(line, &f)
		}
		if err != nil {
			c.t.Errorf("server sent a frame that cannot be read: %q: %v", line, err)
			continue
		}
		switch f.Type {
		case protocol.TypeAnswer:
			c.mu.Lock()
			ch := c.answers[f.ID]
			c.mu.Unlock()
			if ch != nil {
				ch <- f
			}
		case protocol.TypeUpdate:
			u := update{Frame: f, raw: bytes.Clone(line)}
			if err := json.Unmarshal(f.Event, &u.ev); err != nil {
				c.t.Errorf("update with a bad event: %s", line)
			}
			c.updates <- u
		default:
			c.t.Errorf("unexpected frame %s", line)
		}
	}
}

// command sends a command and waits for its answer.
func (c *client) command(account, name string, data any) protocol.Frame {
	c.t.Helper()
	c.mu.Lock()
	c.n++
	id := fmt.Sprint(c.n)
	ch := make(chan protocol.Frame, 1)
	c.answers[id] = ch
	c.mu.Unlock()
	raw, _ := json.Marshal(data)
	c.write(protocol.Frame{Type: protocol.TypeCommand, ID: id, Command: name, Account: account, Data: raw})
	select {
	case f := <-ch:
		return f
	case <-c.closed:
		// The reader hands over an answer before it sees the close frame
		// that follows it; when both are there, select picks either.
		select {
		case f := <-ch:
			return f
		default:
		}
		c.t.Fatalf("connection closed (code %d) while waiting for the answer to %s", c.code, name)
	case <-time.After(10 * time.Second):
		c.t.Fatalf("no answer to %s", name)
	}
	return protocol.Frame{}
}

func (c *client) write(f protocol.Frame) {
	b, _ := json.Marshal(f)
	c.conn.WriteMessage(gws.OpcodeText, b)
}

// auth authenticates an account and fails the test on error. It returns
// once the account is live: the frames of a connection are handled one at
// a time, so the answer to a ping sent after the auth comes once its
// replay is done (live-only updates are dropped during a replay).
func (c *client) auth(account, tok string, args protocol.AuthArgs) protocol.AuthResult {
	c.t.Helper()
	args.Token = tok
	f := c.command(account, protocol.CmdAuth, args)
	if f.Error != nil {
		c.t.Fatalf("auth: %s: %s", f.Error.Code, f.Error.Message)
	}
	var r protocol.AuthResult
	json.Unmarshal(f.Result, &r)
	c.command(account, protocol.CmdPing, nil)
	return r
}

func (c *client) reply(account, ref string) {
	c.write(protocol.Frame{Type: protocol.TypeReply, Account: account, Ref: ref})
}

// next returns the next update, failing after a while.
func (c *client) next() update {
	c.t.Helper()
	select {
	case u := <-c.updates:
		return u
	case <-time.After(10 * time.Second):
		c.t.Fatal("no update came")
	}
	return update{}
}

// nextNamed skips updates until one named name.
func (c *client) nextNamed(name string) update {
	c.t.Helper()
	for {
		if u := c.next(); u.ev.Name == name {
			return u
		}
	}
}

// none checks that no durable update comes within a short while.
func (c *client) none() {
	c.t.Helper()
	deadline := time.After(300 * time.Millisecond)
	for {
		select {
		case u := <-c.updates:
			if u.Ref != "" {
				c.t.Fatalf("unexpected update %s (ref %s)", u.ev.Name, u.Ref)
			}
		case <-deadline:
			return
		}
	}
}

// waitClosed waits for the server to close the connection and returns the code.
func (c *client) waitClosed() uint16 {
	c.t.Helper()
	select {
	case <-c.closed:
		return c.code
	case <-time.After(15 * time.Second):
		c.t.Fatal("the server did not close the connection")
	}
	return 0
}

// pending returns the updates received so far, without waiting. An update
// the server sent before the answer to a command is pending once the
// command returns: frames of a connection arrive in order.
func (c *client) pending() []update {
	var us []update
	for {
		select {
		case u := <-c.updates:
			us = append(us, u)
		default:
			return us
		}
	}
}

// until returns the updates that came before the next one named name, and
// that one.
func (c *client) until(name string) ([]update, update) {
	c.t.Helper()
	var before []update
	for {
		u := c.next()
		if u.ev.Name == name {
			return before, u
		}
		before = append(before, u)
	}
}

// hangUp closes the connection once the server has processed everything
// sent before (a ping's answer comes after it): closing at once could
// lose frames still unread by the server.
func (c *client) hangUp() {
	c.t.Helper()
	c.command("", protocol.CmdPing, nil)
	c.conn.WriteClose(1000, nil)
	c.waitClosed()
}
