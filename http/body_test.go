package http

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tidings/tidings"
)

// slowRequest opens a connection to e's server and sends the head of a
// request announcing a body of length bytes, then sent bytes of it; the
// rest never comes. The connection closes when the test ends.
func (e *env) slowRequest(method, path, cred string, length, sent int) net.Conn {
	e.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL(), "http://"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		method, path, cred, length, strings.Repeat(" ", sent))
	return conn
}

// readResponse reads the response on conn, failing after 10 seconds.
func readResponse(t *testing.T, conn net.Conn) (*http.Response, string) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no response within 10s: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// A body that trickles in is cut off once its time is up, not held until
// the read timeout (2 minutes).
func TestSlowBodyIsCutOff(t *testing.T) {
	e := newEnv(t, func(s *Server) { s.BodyTimeout = 300 * time.Millisecond })
	alice := e.tokenFor(e.acme, "alice")
	conn := e.slowRequest("POST", "/v1/conversations/c1/messages", alice, 1000, 10)
	start := time.Now()
	resp, body := readResponse(t, conn)
	if resp.StatusCode != 400 || !strings.Contains(body, "in time") {
		t.Errorf("answer %d %s; want 400 saying the body did not arrive in time", resp.StatusCode, body)
	}
	t.Logf("cut off after %s", time.Since(start))
}

// Only MaxBodyReads bodies are read at once: the next request waits a
// moment, then is answered 503 with Retry-After; once a body is read, its
// turn goes to the next one.
func TestConcurrentBodiesAreBounded(t *testing.T) {
	e := newEnv(t, func(s *Server) { s.MaxBodyReads = 2 })
	alice := e.tokenFor(e.acme, "alice")
	msg := `{"parts":[{"type":"text/plain","data":"hi"}]}`
	slow1 := e.slowRequest("POST", "/v1/conversations/c1/messages", alice, 1000, 1)
	slow2 := e.slowRequest("POST", "/v1/conversations/c1/messages", alice, 1000, 1)

	// Wait until both hold a turn: then a third is refused.
	var resp response
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp = e.do("POST", "/v1/conversations/c1/messages", msg, bearerHeader(alice)...)
		if resp.StatusCode == 503 || time.Now().After(deadline) {
			break
		}
	}
	if got := wantError(t, resp, 503, tidings.EUnavailable); !strings.Contains(got, "too many request bodies") {
		t.Errorf("message %q", got)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	// Requests without a body are not held up.
	if r := e.do("GET", "/v1/conversations/c1/messages", nil, bearerHeader(alice)...); r.StatusCode != 200 {
		t.Errorf("GET while bodies are read = %d %s", r.StatusCode, r.body)
	}
	// One slow client gives up: its turn is free again.
	slow1.Close()
	deadline = time.Now().Add(20 * time.Second)
	for {
		resp = e.do("POST", "/v1/conversations/c1/messages", msg, bearerHeader(alice)...)
		if resp.StatusCode != 503 || time.Now().After(deadline) {
			break
		}
	}
	if resp.StatusCode != 201 && resp.StatusCode != 200 {
		t.Errorf("send after a turn was freed = %d %s", resp.StatusCode, resp.body)
	}
	_ = slow2
}
