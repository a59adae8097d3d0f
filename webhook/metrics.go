package webhook

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	deliveries *prometheus.CounterVec
	duration   prometheus.Histogram
	failing    *prometheus.GaugeVec
	lag        *prometheus.GaugeVec
	missed     *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_webhook_attempts_total",
			Help: "Webhook delivery attempts, by result: success (a 2xx answer) or failure.",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tidings_webhook_attempt_duration_seconds",
			Help:    "Time from sending a webhook delivery to its answer (or failure).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tidings_webhook_failing_endpoints",
			Help: "Webhook endpoints marked failing (no success for --webhook-fail-after), by app.",
		}, []string{"app"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tidings_webhook_lag_seconds",
			Help: "Age of the oldest event an endpoint of the app is delivering (0 when all are up to date), by app.",
		}, []string{"app"}),
		missed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_webhook_missed_total",
			Help: "Times an endpoint was found to have missed events removed by retention, by app.",
		}, []string{"app"}),
	}
}

// Collectors returns the dispatcher's Prometheus metrics, to be registered
// by the program that serves /metrics.
func (d *Dispatcher) Collectors() []prometheus.Collector {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.metrics == nil {
		d.metrics = newMetrics()
	}
	m := d.metrics
	return []prometheus.Collector{m.deliveries, m.duration, m.failing, m.lag, m.missed}
}
