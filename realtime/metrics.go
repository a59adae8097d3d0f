package realtime

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	connections prometheus.Gauge
	sessions    prometheus.Gauge
	events      prometheus.Counter
	deliveries  prometheus.Counter
	replayed    prometheus.Counter
	slow        prometheus.Counter
	cursors     prometheus.Counter
	// Cluster mode.
	gaps    prometheus.Counter
	tailing prometheus.Gauge
}

func newMetrics() *metrics {
	return &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tidings_realtime_connections", Help: "Open realtime connections."}),
		sessions:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "tidings_realtime_sessions", Help: "Authenticated accounts on realtime connections."}),
		events:      prometheus.NewCounter(prometheus.CounterOpts{Name: "tidings_realtime_events_total", Help: "Durable events fanned out."}),
		deliveries:  prometheus.NewCounter(prometheus.CounterOpts{Name: "tidings_realtime_deliveries_total", Help: "Updates handed to connections (live)."}),
		replayed:    prometheus.NewCounter(prometheus.CounterOpts{Name: "tidings_realtime_replayed_total", Help: "Updates replayed from the event log."}),
		slow:        prometheus.NewCounter(prometheus.CounterOpts{Name: "tidings_realtime_slow_consumers_total", Help: "Connections closed because they read too slowly."}),
		cursors:     prometheus.NewCounter(prometheus.CounterOpts{Name: "tidings_realtime_cursors_stored_total", Help: "Acknowledged refs (one per device) written to the store."}),
		gaps:        prometheus.NewCounter(prometheus.CounterOpts{Name: "tidings_realtime_gap_reads_total", Help: "Reads of final events from the log for what the broker did not bring (cluster mode)."}),
		tailing:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "tidings_realtime_tailer", Help: "1 while this node holds the tailer lease and publishes the final events (cluster mode)."}),
	}
}

// Collectors returns the node's Prometheus metrics.
func (n *Node) Collectors() []prometheus.Collector {
	m := n.metrics
	return []prometheus.Collector{m.connections, m.sessions, m.events, m.deliveries, m.replayed, m.slow, m.cursors, m.gaps, m.tailing}
}
