package ws_test

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings/protocol"
	"github.com/tidings/tidings/realtime"
	"github.com/tidings/tidings/ws"
)

// What an idle connection costs the server is mostly its reading
// goroutine: its stack must stay at 2 KiB once the connection has
// authenticated, run a command and acknowledged an update (handling them goes deep, and a stack
// grown once is never halved back to 2 KiB). The clients here are bare
// sockets, read in turn by the test, so that the process's goroutine
// stacks are the server's.
func TestIdleConnectionsReaderKeepsASmallStack(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes stack frames larger")
	}
	// In a process of its own, with goroutines starting at 2 KiB: by
	// default the runtime starts them at the average stack in use, which
	// in a test process depends on the other tests' goroutines.
	if os.Getenv("TIDINGS_STACK_TEST") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestIdleConnectionsReaderKeepsASmallStack$", "-test.v")
		cmd.Env = append(os.Environ(), "TIDINGS_STACK_TEST=1", "GODEBUG=adaptivestackstart=0")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "stacks:") {
			t.Fatalf("%v\n%s", err, out)
		}
		t.Logf("%s", out)
		return
	}
	s := startStack(t, func(n *realtime.Node, _ *ws.Handler) { n.MaxConnsPerUser = 1000 })
	s.mkUsers("a", "bob")
	tok := s.token("a", "bob")
	u, _ := url.Parse(s.srv.URL())

	const n = 400
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, n)
	for i := range conns {
		c := bareDial(t, u.Host)
		conns[i] = c
		auth, _ := json.Marshal(protocol.AuthArgs{Token: tok, Device: fmt.Sprint("d", i)})
		bareCommand(t, c, "1", protocol.CmdAuth, auth)
		bareCommand(t, c, "2", protocol.CmdPing, nil)
		bareSend(t, c, protocol.Frame{Type: protocol.TypeReply, Ref: "1"}) // an acknowledgement
		bareCommand(t, c, "3", protocol.CmdPing, nil)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.StackInuse-before.StackInuse) / n
	t.Logf("goroutine stacks: %.0f bytes a connection", per)
	if per > 3<<10 {
		t.Errorf("goroutine stacks: %.0f bytes an idle connection, want about 2 KiB", per)
	}
	for _, c := range conns {
		c.Close()
	}
}

// bareDial opens a WebSocket on a bare socket.
func bareDial(t *testing.T, host string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /v1/realtime HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", host)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 1) // nothing read past the handshake's answer
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return c
}

// bareSend writes a frame, masked as a client's.
func bareSend(t *testing.T, c net.Conn, f protocol.Frame) {
	t.Helper()
	payload, _ := json.Marshal(f)
	frame := []byte{0x81, 0x80 | 126, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(frame[2:], uint16(len(payload)))
	mask := frame[4:8]
	rand.Read(mask)
	for i, b := range payload {
		frame = append(frame, b^mask[i%4])
	}
	if _, err := c.Write(frame); err != nil {
		t.Fatal(err)
	}
}

// bareCommand sends a command and reads frames until its answer.
func bareCommand(t *testing.T, c net.Conn, id, name string, data json.RawMessage) {
	t.Helper()
	bareSend(t, c, protocol.Frame{Type: protocol.TypeCommand, ID: id, Command: name, Data: data})
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var h [2]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		size := int(h[1] & 0x7f)
		switch size {
		case 126:
			var l [2]byte
			io.ReadFull(c, l[:])
			size = int(binary.BigEndian.Uint16(l[:]))
		case 127:
			var l [8]byte
			io.ReadFull(c, l[:])
			size = int(binary.BigEndian.Uint64(l[:]))
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(c, body); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if h[0]&0x0f == 0x8 {
			t.Fatalf("%s: closed: %q", name, body)
		}
		if h[0]&0x0f == 0x1 && strings.Contains(string(body), fmt.Sprintf(`"id":%q`, id)) {
			if strings.Contains(string(body), `"error"`) {
				t.Fatalf("%s: %s", name, body)
			}
			return
		}
	}
}
