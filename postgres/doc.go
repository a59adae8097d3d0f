// Package postgres will implement the Tidings services on PostgreSQL, for
// clusters of several nodes (see docs/cluster.md).
//
// For now it holds the measurements that chose how delivery positions
// (refs) are assigned when several nodes write at once:
// positions_bench_test.go compares a counter row updated by every sending
// transaction with a sequence plus a "persisted up to" watermark, and with
// per-conversation positions only. Its benchmarks run against the
// PostgreSQL named by TIDINGS_TEST_POSTGRES (default
// postgres://postgres@127.0.0.1:5432/test), in a database of their own
// that they drop when done, and are skipped when it cannot be reached.
package postgres
