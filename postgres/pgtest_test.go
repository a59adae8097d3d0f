package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tidings/tidings"
)

// testServer is the PostgreSQL server the tests and benchmarks use.
func testServer() string {
	if s := os.Getenv("TIDINGS_TEST_POSTGRES"); s != "" {
		return s
	}
	return "postgres://postgres@127.0.0.1:5432/test"
}

// freshDB creates a database of its own on the test server, returns a
// pool of up to maxConns connections to it, and drops it when tb ends. It
// skips tb when the server cannot be reached.
func freshDB(tb testing.TB, maxConns int) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(freshDSN(tb))
	if err != nil {
		tb.Fatal(err)
	}
	cfg.MaxConns = int32(maxConns)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// freshDSN creates a database of its own on the test server, returns its
// URL, and drops it when tb ends (closing the connections still open to
// it). It skips tb when the server cannot be reached.
func freshDSN(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, testServer())
	if err != nil {
		msg := fmt.Sprintf("PostgreSQL is not reachable at %s (set TIDINGS_TEST_POSTGRES to another server): %v", testServer(), err)
		if os.Getenv("TIDINGS_REQUIRE_SERVICES") == "1" {
			tb.Fatalf("%s (TIDINGS_REQUIRE_SERVICES=1)", msg)
		}
		tb.Skip(msg)
	}
	defer admin.Close(context.Background())
	name := fmt.Sprintf("tidings_test_%d_%d", os.Getpid(), dbCounter.Add(1))
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, testServer())
		if err != nil {
			tb.Logf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(testServer())
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// dbCounter names the databases of one test process apart (tests run in
// parallel: the time alone could repeat).
var dbCounter atomic.Int64

// openDB opens a DB on a fresh database, closed when tb ends. pub may be
// nil.
func openDB(tb testing.TB, pub tidings.EventPublisher) *DB {
	tb.Helper()
	db := NewDB(freshDSN(tb))
	db.Publisher = pub
	db.Logger = discard()
	if err := db.Open(); err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
