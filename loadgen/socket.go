package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"

	"github.com/tidings/tidings/protocol"
)

// socket is a lean realtime WebSocket client, made to hold thousands of
// connections in one process: one goroutine per connection reading with a
// small buffer, updates handed over as raw bytes (see frame.go), and JSON
// decoding only for answers to commands.
type socket struct {
	conn     *gws.Conn
	onUpdate func(frame []byte, at time.Time) // called on the reading goroutine

	mu      sync.Mutex
	pending map[string]func(*protocol.Frame)
	nextID  int64

	pings  atomic.Int64
	closed chan struct{}
	err    error // why it closed, set before closed is
}

// wsTarget is where and how the sockets connect: to each of urls in
// turn (the nodes of a cluster, or one server).
type wsTarget struct {
	urls   []string // ws://host:port/v1/realtime
	next   *atomic.Uint64
	dialer *dialer
}

// url returns the URL the next connection goes to.
func (t wsTarget) url() string {
	if len(t.urls) == 1 {
		return t.urls[0]
	}
	return t.urls[(t.next.Add(1)-1)%uint64(len(t.urls))]
}

// subset returns a target with urls[from:to] only.
func (t wsTarget) subset(from, to int) wsTarget {
	return wsTarget{urls: t.urls[from:to], next: new(atomic.Uint64), dialer: t.dialer}
}

// dialSocket opens a realtime connection; onUpdate (may be nil) receives
// each update frame.
func dialSocket(ctx context.Context, t wsTarget, onUpdate func([]byte, time.Time)) (*socket, error) {
	s := &socket{onUpdate: onUpdate, closed: make(chan struct{})}
	target := t.url()
	u, err := parseHostPort(target)
	if err != nil {
		return nil, err
	}
	nc, err := t.dialer.DialContext(ctx, "tcp", u)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set("Sec-WebSocket-Protocol", protocol.Subprotocol)
	conn, _, err := gws.NewClientFromConn((*socketEvents)(s), &gws.ClientOption{
		Addr: target, RequestHeader: h, ReadBufferSize: 2048, HandshakeTimeout: 10 * time.Second,
		NewSession: func() gws.SessionStorage { return noSession{} },
	}, nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	s.conn = conn
	go conn.ReadLoop()
	return s, nil
}

// command sends a command; done (may be nil) is called with its answer,
// on the reading goroutine.
func (s *socket) command(name string, data any, done func(*protocol.Frame)) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.nextID++
	id := strconv.FormatInt(s.nextID, 10)
	if done != nil {
		if s.pending == nil {
			s.pending = make(map[string]func(*protocol.Frame))
		}
		s.pending[id] = done
	}
	s.mu.Unlock()
	b, _ := json.Marshal(protocol.Frame{Type: protocol.TypeCommand, ID: id, Command: name, Data: raw})
	if err := s.conn.WriteMessage(gws.OpcodeText, b); err != nil {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
		return err
	}
	return nil
}

// call sends a command and waits for its answer.
func (s *socket) call(ctx context.Context, name string, data any) (*protocol.Frame, error) {
	ch := make(chan *protocol.Frame, 1)
	if err := s.command(name, data, func(f *protocol.Frame) { ch <- f }); err != nil {
		return nil, err
	}
	select {
	case f := <-ch:
		if f.Error != nil {
			return f, fmt.Errorf("%s: %s: %s", name, f.Error.Code, f.Error.Message)
		}
		return f, nil
	case <-s.closed:
		return nil, fmt.Errorf("%s: the connection closed: %w", name, s.err)
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", name, ctx.Err())
	}
}

// auth authenticates the connection's default account and returns the
// ref it resumed after.
func (s *socket) auth(ctx context.Context, token, device, resumeAfter string) (int64, error) {
	f, err := s.call(ctx, protocol.CmdAuth, protocol.AuthArgs{Token: token, Device: device, ResumeAfter: resumeAfter})
	if err != nil {
		return 0, err
	}
	var r protocol.AuthResult
	if err := json.Unmarshal(f.Result, &r); err != nil {
		return 0, err
	}
	ref, _ := protocol.ParseRef(r.ResumedAfter)
	return ref, nil
}

// close closes the connection normally.
func (s *socket) close() {
	s.conn.WriteClose(1000, nil)
	select {
	case <-s.closed:
	case <-time.After(2 * time.Second):
		s.conn.NetConn().Close()
	}
}

// drop cuts the connection without a close frame, as a lost network does.
func (s *socket) drop() { s.conn.NetConn().Close() }

// socketEvents receives the events of gws.
type socketEvents socket

func (e *socketEvents) OnOpen(*gws.Conn) {}

func (e *socketEvents) OnClose(_ *gws.Conn, err error) {
	s := (*socket)(e)
	if err == nil {
		err = errors.New("closed")
	}
	s.err = err
	close(s.closed)
}

func (e *socketEvents) OnPing(c *gws.Conn, payload []byte) {
	e.pings.Add(1)
	c.WritePong(payload)
}

func (e *socketEvents) OnPong(*gws.Conn, []byte) {}

func (e *socketEvents) OnMessage(_ *gws.Conn, m *gws.Message) {
	defer m.Close()
	s := (*socket)(e)
	at := time.Now()
	eachFrame(m.Bytes(), func(frame []byte) {
		if isUpdate(frame) {
			if s.onUpdate != nil {
				s.onUpdate(frame, at)
			}
			return
		}
		var f protocol.Frame
		if json.Unmarshal(frame, &f) != nil || f.Type != protocol.TypeAnswer {
			return
		}
		s.mu.Lock()
		done := s.pending[f.ID]
		delete(s.pending, f.ID)
		s.mu.Unlock()
		if done != nil {
			done(&f)
		}
	})
}

// closeCode returns the close code the server sent, 0 if none.
func (s *socket) closeCode() int {
	var ce *gws.CloseError
	if errors.As(s.err, &ce) {
		return int(ce.Code)
	}
	return 0
}

// noSession is a gws.SessionStorage that stores nothing: the sockets keep
// their state themselves.
type noSession struct{}

func (noSession) Len() int                               { return 0 }
func (noSession) Load(string) (any, bool)                { return nil, false }
func (noSession) Delete(string)                          {}
func (noSession) Store(string, any)                      {}
func (noSession) Range(func(key string, value any) bool) {}
