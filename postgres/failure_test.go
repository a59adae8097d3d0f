package postgres

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tidings/tidings"
)

// TestRetryCutTransaction: a transaction whose connection is killed
// before its commit runs again once, on another connection, and its change
// is made once.
func TestRetryCutTransaction(t *testing.T) {
	db := fixture(t, nil)
	ctx := context.Background()
	attempts := 0
	err := db.update(ctx, func(tx *Tx) error {
		attempts++
		if _, err := tx.exec(`INSERT INTO meta (key, value) VALUES ('test', 1)`); err != nil {
			return err
		}
		if attempts == 1 {
			var pid int
			if err := tx.queryRow(`SELECT pg_backend_pid()`).Scan(&pid); err != nil {
				return err
			}
			if _, err := db.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
				return err
			}
		}
		_, err := tx.emitEvent("a", tidings.EventProfileUpdate, nil, "", "x", map[string]int{"attempt": attempts})
		return err
	})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if attempts != 2 {
		t.Errorf("%d attempts, want 2", attempts)
	}
	var n int
	if err := db.queryRow(ctx, `SELECT count(*) FROM meta WHERE key = 'test'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d rows, %v; want the change made once", n, err)
	}
	// A transaction cut twice is answered unavailable.
	err = db.update(ctx, func(tx *Tx) error {
		var pid int
		if err := tx.queryRow(`SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			return err
		}
		if _, err := db.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
			return err
		}
		_, err := tx.exec(`SELECT 1`)
		return err
	})
	if tidings.ErrorCode(err) != tidings.EUnavailable {
		t.Errorf("a transaction cut twice: %v, want unavailable", err)
	}
}

// proxy forwards TCP connections to the test server, and can stop (close
// everything, refuse new connections) and start again on the same port:
// the server going away and coming back, without touching the shared
// server.
type proxy struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
	// cutCommit, when set, makes the proxy drop a connection when its
	// client sends a commit, before the server sees it.
	cutCommit atomic.Bool
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target}
	p.start("127.0.0.1:0")
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) start(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln {
				// stop ran between the Accept and here: this
				// connection must not outlive it.
				p.mu.Unlock()
				c.Close()
				s.Close()
				continue
			}
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { p.forward(s, c); s.Close(); c.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
}

// forward copies what the client says to the server, unless it is a
// commit to cut.
func (p *proxy) forward(server, client net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			if p.cutCommit.Load() && bytes.Contains(buf[:n], []byte("commit\x00")) {
				return
			}
			if _, err := server.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestUnavailable: while the server cannot be reached, calls fail with
// EUnavailable; they work again by themselves once it is back.
func TestUnavailable(t *testing.T) {
	u, err := url.Parse(freshDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, u.Host)
	u.Host = p.addr
	db := NewDB(u.String())
	db.Logger = discard()
	db.Publisher = &recorder{}
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	apps := NewAppService(db)
	if _, err := apps.CreateApp(ctx, "a", "app a"); err != nil {
		t.Fatal(err)
	}
	p.stop()
	_, err = apps.CreateApp(ctx, "b", "app b")
	wantUnavailable(t, "create an app", err)
	_, err = apps.FindAppByID(ctx, "a")
	wantUnavailable(t, "find an app", err)
	_, err = NewEventLog(db).LastEventSeq(ctx)
	wantUnavailable(t, "last event seq", err)
	wantUnavailable(t, "ping", db.Ping(ctx))

	p.start(p.addr)
	waitFor(t, "the database to answer again", func() bool {
		_, err := apps.FindAppByID(ctx, "a")
		return err == nil
	})
	if _, err := apps.CreateApp(ctx, "b", "app b"); err != nil {
		t.Errorf("create an app once the server is back: %v", err)
	}
	db.Close()
	wantUnavailable(t, "ping after Close", db.Ping(ctx))
	_, err = apps.FindAppByID(ctx, "a")
	wantUnavailable(t, "find an app after Close", err)
}

func wantUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	if code := tidings.ErrorCode(err); code != tidings.EUnavailable {
		t.Errorf("%s: %v (code %q), want unavailable", what, err, code)
	}
}

// TestCommitCut: a transaction whose connection is lost while its commit
// is on the way has an unknown outcome: it is answered unavailable, and
// not run again (it might have been committed).
func TestCommitCut(t *testing.T) {
	u, err := url.Parse(freshDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	p := newProxy(t, u.Host)
	u.Host = p.addr
	q := u.Query()
	q.Set("sslmode", "disable") // the proxy reads the commit
	u.RawQuery = q.Encode()
	db := NewDB(u.String())
	db.Logger = discard()
	if err := db.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	runs := 0
	p.cutCommit.Store(true)
	err = db.update(ctx, func(tx *Tx) error {
		runs++
		_, err := tx.exec(`INSERT INTO meta (key, value) VALUES ('cut', 1)`)
		return err
	})
	p.cutCommit.Store(false)
	wantUnavailable(t, "a commit cut on its way", err)
	if runs != 1 {
		t.Errorf("the transaction ran %d times, want once: it may have been committed", runs)
	}
	var n int
	waitFor(t, "the database to answer", func() bool {
		return db.queryRow(ctx, `SELECT count(*) FROM meta WHERE key = 'cut'`).Scan(&n) == nil
	})
	if n != 0 {
		t.Errorf("the cut commit was made (%d rows): the proxy let it through", n)
	}
}
