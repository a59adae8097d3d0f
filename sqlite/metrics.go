package sqlite

import "github.com/prometheus/client_golang/prometheus"

// metrics of one DB; register them with Collectors.
type metrics struct {
	batchSize prometheus.Histogram
	commits   prometheus.Counter
	// checkpoints run by the checkpointer's goroutine
	checkpoints prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tidings_store_write_batch_jobs",
			Help:    "Write jobs committed together in one SQLite transaction (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidings_store_commits_total",
			Help: "SQLite write transactions committed.",
		}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidings_store_checkpoints_total",
			Help: "SQLite WAL checkpoints run (off the writer, from a connection of their own).",
		}),
	}
}

// Collectors returns the store's Prometheus metrics, to be registered by
// the program that serves /metrics.
func (db *DB) Collectors() []prometheus.Collector {
	return []prometheus.Collector{db.metrics.batchSize, db.metrics.commits, db.metrics.checkpoints}
}
