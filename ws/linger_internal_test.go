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
	c, peer := tcpPair(t, linger, 0)
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

// tcpPair returns both ends of a loopback TCP connection, the server's
// under a lingerConn of linger; with buf > 0, the socket buffers facing
// each other (the server's send, the peer's receive) are that small.
func tcpPair(t *testing.T, linger time.Duration, buf int) (*lingerConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, _ := ln.Accept()
		accepted <- nc
	}()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	p := peer.(*net.TCPConn)
	nc := <-accepted
	if nc == nil {
		t.Fatal("no connection accepted")
	}
	if buf > 0 {
		p.SetReadBuffer(buf)
		nc.(*net.TCPConn).SetWriteBuffer(buf)
	}
	c := newLingerConn(nc, linger)
	t.Cleanup(c.shut)
	return c, p
}

// A peer that takes a large backlog steadily, though it takes longer than
// one linger to take all of it, gets all of it: it is slow, not stalled.
// Only a peer that takes nothing for a linger is a slow consumer.
func TestDrainGoesOnWhileThePeerReads(t *testing.T) {
	const linger = time.Second
	c, peer := tcpPair(t, linger, 32<<10)
	stalled := make(chan struct{}, 1)
	c.wmu.Lock()
	c.onStalled = func() { stalled <- struct{}{} }
	c.wmu.Unlock()
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	// At most 32 KiB every 20 ms: about 1.6 MB a linger, so the backlog
	// takes two lingers or more, and a chunk of drain's about 40 ms (25
	// times less than a linger: room for a busy machine).
	got := make([]byte, 0, len(data))
	buf := make([]byte, 32<<10)
	peer.SetReadDeadline(time.Now().Add(30 * time.Second))
	for len(got) < len(data) {
		n, err := peer.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", len(got), len(data), err)
		}
		got = append(got, buf[:n]...)
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-stalled:
		t.Fatal("a peer that read all along was taken for a slow consumer")
	default:
	}
	for i := range got {
		if got[i] != data[i] {
			t.Fatalf("byte %d differs", i)
		}
	}
	if c.broken.Load() {
		t.Fatal("the connection is broken")
	}
}
