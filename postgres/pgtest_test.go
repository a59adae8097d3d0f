package postgres

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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
	name := fmt.Sprintf("tidings_test_%d_%d", os.Getpid(), time.Now().UnixNano())
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
	cfg, err := pgxpool.ParseConfig(u.String())
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
