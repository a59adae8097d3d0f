package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// Reads go through statements prepared once per query text and kept: for
// short reads such as the user lookup of every authenticated request,
// parsing the SQL again each time cost more than running it.

// maxReadStmts bounds the statements kept. Queries are constant text or
// built from a few filters, so there are far fewer; past it, a query is
// prepared each time.
const maxReadStmts = 256

type readStmts struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// readStmt returns the statement of query on the read pool, prepared on
// first use.
func (db *DB) readStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	db.reads.mu.Lock()
	defer db.reads.mu.Unlock()
	if s, ok := db.reads.m[query]; ok {
		return s, nil
	}
	if len(db.reads.m) >= maxReadStmts {
		return nil, nil
	}
	s, err := db.read.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if db.reads.m == nil {
		db.reads.m = make(map[string]*sql.Stmt)
	}
	db.reads.m[query] = s
	return s, nil
}

// queryRow runs a read query expected to return at most one row.
func (db *DB) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if s, err := db.readStmt(ctx, query); err == nil && s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return db.read.QueryRowContext(ctx, query, args...) // reports the error, or the cache is full
}

// query runs a read query.
func (db *DB) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	s, err := db.readStmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return db.read.QueryContext(ctx, query, args...)
	}
	return s.QueryContext(ctx, args...)
}

func (db *DB) closeReadStmts() {
	db.reads.mu.Lock()
	defer db.reads.mu.Unlock()
	for _, s := range db.reads.m {
		s.Close()
	}
	db.reads.m = nil
}
