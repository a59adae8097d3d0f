package ws

import (
	"io"
	"net"
	"testing"
	"time"
)

// A connection the server has closed (its close frame and FIN sent) stays
// open, reading, while the peer goes on sending (replies to the updates
// it is still reading): past one linger after the close, the peer's
// writes are not reset, and it reads to the end (what was written, then
// EOF). Cut at one linger, as before, its writes met a reset, and its
// system dropped what it had not read yet: the close frame first.
func TestLingerGoesOnWhileThePeerSends(t *testing.T) {
	const linger = 300 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- nc
	}()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	nc := <-accepted
	if nc == nil {
		t.Fatal("no connection accepted")
	}
	c := newLingerConn(nc, linger)
	defer c.shut()
	if _, err := c.Write([]byte("the close frame")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// The server's reader reads on, as gws's read loop does, until the
	// connection is closed for good.
	read := make(chan error, 1)
	go func() {
		buf := make([]byte, 64)
		for {
			if _, err := c.Read(buf); err != nil {
				read <- err
				return
			}
		}
	}()
	// Replies for two lingers, without reading.
	for end := time.Now().Add(2 * linger); time.Now().Before(end); time.Sleep(linger / 10) {
		if _, err := peer.Write([]byte("reply")); err != nil {
			t.Fatalf("a reply after the close: %v", err)
		}
	}
	got, err := io.ReadAll(peer)
	if err != nil || string(got) != "the close frame" {
		t.Fatalf("the peer read %q, %v; want the close frame, then EOF", got, err)
	}
	// Once the peer has gone quiet, or after maxLingers lingers at most,
	// the server closes for good.
	select {
	case <-read:
	case <-time.After(maxLingers*linger + 10*time.Second):
		t.Fatal("the server's reads went on past maxLingers lingers")
	}
}
