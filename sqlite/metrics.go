package sqlite

import "github.com/prometheus/client_golang/prometheus"

// metrics of one DB; register them with Collectors.
type metrics struct {
	batchSize prometheus.Histogram
	commits   prometheus.Counter
	// commitTime is the COMMIT statement's time (writing the WAL, and
	// its fsync)
	commitTime prometheus.Histogram
	// writeTime is a job's, from its queuing to its commit, by whether
	// it sends messages; writeSend and writeOther are its two series,
	// resolved once
	writeTime             *prometheus.HistogramVec
	writeSend, writeOther prometheus.Observer
	// holdTime is how long the checkpointer held the writer (walMu) so
	// that the WAL could start again.
	holdTime prometheus.Histogram
	// checkpoints run by the checkpointer's goroutine
	checkpoints prometheus.Counter
	// reruns: batches run again, each job in a savepoint, after a job
	// failed once it had written
	reruns prometheus.Counter
	// restartsMissed: holds after which the WAL could not start again,
	// reads using it having held on past restartWait
	restartsMissed prometheus.Counter
	// journalMoved: messages moved from the message journal into
	// messages, by why they moved (see journal.go)
	journalMoved *prometheus.CounterVec
	// clientIDChecks: sends with a client id not in the journal, by how
	// they were found new or not (see clientfilter.go)
	clientIDChecks *prometheus.CounterVec
	// its two counters, resolved once
	clientIDFiltered, clientIDLooked prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tidings_store_write_batch_jobs",
			Help:    "Write jobs committed together in one SQLite transaction (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tidings_store_commit_seconds",
			Help:    "Time of each SQLite COMMIT: writing the transaction's pages to the WAL, and their fsync.",
			Buckets: latencyBuckets,
		}),
		writeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tidings_store_write_seconds",
			Help:    "Time of each write committed, from its queuing for the writer to its commit, by job: send (a message a user sent: the store's share of its latency) or other (a mark, a cursor save, a change to a conversation, a message sent through the server API...).",
			Buckets: latencyBuckets,
		}, []string{"job"}),
		holdTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tidings_store_checkpoint_hold_seconds",
			Help:    "Time the checkpointer held the SQLite writer between two transactions, to checkpoint what was left so that the WAL starts again from its beginning: writes wait meanwhile.",
			Buckets: latencyBuckets,
		}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidings_store_commits_total",
			Help: "SQLite write transactions committed.",
		}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidings_store_checkpoints_total",
			Help: "SQLite WAL checkpoints run (off the writer, from a connection of their own).",
		}),
		reruns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidings_store_batch_reruns_total",
			Help: "Write batches run again, each job in a savepoint of its own, because a job failed after it had written (a job refused before it wrote is not undone and costs no rerun).",
		}),
		journalMoved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_store_journal_moved_total",
			Help: "Messages moved from the message journal, where sends store them, into the messages table, by why: due (their conversation's first waited the move delay, or too many waited), write (before a write that may read them), read (a reader of their conversation asked), idle (the writer had nothing else to do, or the database closed). The fewer moves for the same messages, the fewer pages written.",
		}, []string{"why"}),
		clientIDChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_store_client_id_checks_total",
			Help: "Sends with a client id that the message journal does not hold, by how the store checked that no earlier message has it: filter (known new from memory, without a read), index (looked for in the database: the filter said it may be there, or its start-up read of the stored client ids is not done).",
		}, []string{"by"}),
		restartsMissed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidings_store_wal_restarts_missed_total",
			Help: "Checkpoints that held the writer so that the WAL would start again from its beginning, and could not start it: reads that used it went on past the wait (20 ms).",
		}),
	}
	m.writeSend = m.writeTime.WithLabelValues("send")
	m.writeOther = m.writeTime.WithLabelValues("other")
	m.clientIDFiltered = m.clientIDChecks.WithLabelValues(clientIDByFilter)
	m.clientIDLooked = m.clientIDChecks.WithLabelValues(clientIDByIndex)
	return m
}

// latencyBuckets are the bounds of the store's time histograms: 250 µs
// to about 4 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.00025, 2, 15)

// Collectors returns the store's Prometheus metrics, to be registered by
// the program that serves /metrics.
func (db *DB) Collectors() []prometheus.Collector {
	m := db.metrics
	return []prometheus.Collector{m.batchSize, m.commits, m.commitTime, m.writeTime, m.holdTime, m.checkpoints, m.restartsMissed, m.reruns, m.journalMoved, m.clientIDChecks}
}
