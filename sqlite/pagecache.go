package sqlite

import (
	"context"
	"fmt"
	"time"
)

// The write connection's page cache, and why its size follows the
// database's.
//
// At the end of every write transaction SQLite drops from the page cache
// the pages past the end of the database (sqlite3PcacheTruncate). The
// cache remembers the largest page number it has held and looks only when
// that number is past the end; then, unless it is only a few pages past,
// it scans every bucket of its hash table and every page it holds. A
// B-tree balance that reorders sibling pages (balance_nonroot, after a
// page split in the middle of a B-tree, which the sends into thousands of
// conversations cause every few commits) moves a page through the number
// of the lock-byte page, 1 GiB into the file. In a database smaller than
// that, the number is far past the end, and the next commit scans the
// whole cache: a cost that grows with the cache, not with the
// transaction. With a 64 MiB cache, full after a few minutes of sends,
// that was 25 % of the server's CPU in 1:1 rooms (docs/benchmarks.md,
// "The writer's page cache and SQLite's scan of it").
//
// So while the database is smaller than the lock-byte page, the writer's
// cache is small (smallCacheMiB): what it does not hold is read again from
// the file, which the operating system's cache holds, for less than the
// scans cost. The cache's size alone does not bound it: the SQLite that
// modernc builds gives every connection of the process one budget of
// pages (pcache1's shared group), and a cache that is full takes the
// pages the other connections hold unused. With the read connections'
// default 2 MiB each, a writer's cache set to 4 MiB grew to 5,200 pages
// (20 MiB). The read connections' and the checkpointer's caches are
// therefore small too (otherCacheKiB): a read connection's cache is
// dropped at its next read after any commit (WAL), so it held little
// that a next read could use.
//
// Once the database has passed its lock-byte page, no balance leaves a
// number past its end, and the writer's cache is CacheMiB: the last pages
// of thousands of active conversations stay in memory. A database does
// not shrink (nothing vacuums it), so the switch happens once; the
// checkpointer, which reads the database's size after each checkpoint,
// tells the writer, which resizes its cache between two transactions.
//
// The writer's cache is CacheMiB too, whatever the database's size, while
// writes come faster than it commits them: then its batches are large
// (overloadBatch jobs or more) and its commits few (tens a second), so the
// scans cost little, and a large transaction in a small cache writes its
// pages to the WAL before its commit and again at it, and reads again
// from the file the last pages of the conversations it sends to.
// Measured at saturation in 2,000 rooms of 5, three runs against one
// server: 7,226, 5,157 and 4,351 sends a second with 8 MiB; 7,381, 5,492
// and 5,520 with 64 MiB. Once no batch has been that large for
// overloadHold, the cache is small again (SQLite frees what it held past
// the new size).

// otherCacheKiB is the page cache of each read connection and of the
// checkpointer's.
const otherCacheKiB = 128

// smallCacheMiB is the writer's page cache while the database is smaller
// than its lock-byte page. 2 MiB scanned less still, but held less of a
// large transaction's pages (more written per send at saturation, where
// commits are few and large); 8 MiB cost the same as 2 at low rates.
const smallCacheMiB = 8

// overloadBatch is the batch, in jobs, from which the writer is behind
// and its cache large; overloadHold how long it stays large after the
// last such batch.
const (
	overloadBatch = 256
	overloadHold  = 2 * time.Second
)

// lockBytePage is the number of the page that holds SQLite's lock bytes
// (at byte offset 2^30) for a page size.
func lockBytePage(pageSize int64) int64 { return 1<<30/pageSize + 1 }

// sizeCache sets the writer's page cache for a database of pages pages,
// on the write connection, between two transactions (or before the writer
// starts).
func (db *DB) sizeCache(pages int64) error {
	large := pages >= db.largePages || db.overloaded
	mib := smallCacheMiB
	if large {
		mib = db.cacheMiB()
	}
	if _, err := db.wconn.ExecContext(context.Background(), fmt.Sprintf("PRAGMA cache_size = %d", -mib<<10)); err != nil {
		return fmt.Errorf("sqlite: size the page cache: %w", err)
	}
	db.cacheLarge = large
	return nil
}

// cacheMiB is CacheMiB or its default.
func (db *DB) cacheMiB() int {
	if db.CacheMiB <= 0 {
		return 64
	}
	return db.CacheMiB
}

// openCacheSize reads the page size and count on the write connection,
// before the writer starts, and sizes the cache.
func (db *DB) openCacheSize(ctx context.Context) error {
	var pageSize, pages int64
	if err := db.wconn.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&pageSize); err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	if err := db.wconn.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	if db.largePages <= 0 {
		db.largePages = lockBytePage(pageSize)
	}
	db.dbPages.Store(pages)
	return db.sizeCache(pages)
}

// checkSize reads the database's size on the checkpointer's connection,
// after a checkpoint, until the database is large.
func (db *DB) checkSize(ctx context.Context) {
	if db.dbPages.Load() >= db.largePages {
		return
	}
	var pages int64
	if err := db.ckpt.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		db.Logger.Warn("could not read the database's size", "err", err)
		return
	}
	db.dbPages.Store(pages)
}

// resizeCache, on the writer before it runs a batch of jobs, follows the
// size the checkpointer read last and whether the writer is behind.
func (db *DB) resizeCache(jobs int, now time.Time) {
	if jobs >= overloadBatch {
		db.overloadedAt = now
	}
	db.overloaded = !db.overloadedAt.IsZero() && now.Sub(db.overloadedAt) < db.overloadHold
	pages := db.dbPages.Load()
	if (pages >= db.largePages || db.overloaded) == db.cacheLarge {
		return
	}
	if err := db.sizeCache(pages); err != nil {
		db.Logger.Warn("could not resize the page cache", "err", err)
	}
}
