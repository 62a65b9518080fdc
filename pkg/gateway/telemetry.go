package gateway

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// The methods of the object, as metric labels.
const (
	methodSetNamedProxy    = "SetNamedProxy"
	methodSetFQDNProxy     = "SetFQDNProxy"
	methodDeleteNamedProxy = "DeleteNamedProxy"
	methodList             = "List"
	methodMetrics          = "Metrics"
)

// publishBuckets are the bounds, in seconds, of the time from a Set to
// Traefik serving the route: one reload takes tens of milliseconds on an
// empty node and seconds with ten thousand routes.
var publishBuckets = []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64}

// telemetry holds the module's own Prometheus metrics (docs/OPERATIONS.md
// lists them).
type telemetry struct {
	calls        *prometheus.CounterVec
	errors       *prometheus.CounterVec
	quarantined  prometheus.Counter
	publish      prometheus.Histogram
	publishLost  prometheus.Counter
	routes       *prometheus.Desc
	traffic      *prometheus.Desc
	meterFailing *prometheus.Desc
}

func newTelemetry() *telemetry {
	return &telemetry{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_calls_total",
			Help: "Calls of the gateway object, by method.",
		}, []string{"method"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_call_errors_total",
			Help: "Calls of the gateway object that returned an error, by method.",
		}, []string{"method"}),
		quarantined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_quarantined_total",
			Help: "Entries of the routes folder the gateway did not write, moved to quarantine.",
		}),
		publish: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gateway_route_publish_seconds",
			Help:    "Time from a Set call that created a route to Traefik serving it, as the gateway observes it on Traefik's API.",
			Buckets: publishBuckets,
		}),
		publishLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gateway_route_publish_unobserved_total",
			Help: "Routes created that Traefik's API did not show as served within the observation window.",
		}),
		routes: prometheus.NewDesc("gateway_routes",
			"Routes the gateway holds, by kind and TLS mode.", []string{"kind", "passthrough"}, nil),
		traffic: prometheus.NewDesc("gateway_workload_bytes_total",
			"Bytes a workload's route carried between Traefik and its backends (docs/API.md), by direction: request is towards the backends.",
			[]string{"workload", "direction"}, nil),
		meterFailing: prometheus.NewDesc("gateway_metering_up",
			"1 when the byte counters could be read at this scrape, 0 when not (the gateway's log says why).", nil, nil),
	}
}

// register adds the module's metrics to reg; the routes and traffic
// figures are read from m at each scrape.
func (t *telemetry) register(reg prometheus.Registerer, m *Module) error {
	for _, c := range []prometheus.Collector{t.calls, t.errors, t.quarantined, t.publish, t.publishLost, moduleCollector{t, m}} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering the gateway's metrics: %w", err)
		}
	}
	return nil
}

// called counts one call of method and, if err is not nil, its error.
func (t *telemetry) called(method string, err error) {
	t.calls.WithLabelValues(method).Inc()
	if err != nil {
		t.errors.WithLabelValues(method).Inc()
	}
}

// moduleCollector reads the route count and the traffic totals at scrape.
type moduleCollector struct {
	t *telemetry
	m *Module
}

func (c moduleCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.t.routes
	ch <- c.t.traffic
	ch <- c.t.meterFailing
}

func (c moduleCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct {
		kind        Kind
		passthrough bool
	}
	counts := map[key]int{}
	for _, kind := range []Kind{KindName, KindFQDN} {
		counts[key{kind, false}], counts[key{kind, true}] = 0, 0
	}
	c.m.mu.Lock()
	for _, r := range c.m.idx.byID {
		counts[key{r.kind, r.passthrough}]++
	}
	c.m.mu.Unlock()
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.t.routes, prometheus.GaugeValue, float64(n), string(k.kind), strconv.FormatBool(k.passthrough))
	}

	totals, err := c.m.meter.Totals()
	up := 1.0
	if err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(c.t.meterFailing, prometheus.GaugeValue, up)
	for id, tr := range totals {
		ch <- prometheus.MustNewConstMetric(c.t.traffic, prometheus.CounterValue, float64(tr.Tx), id, "request")
		ch <- prometheus.MustNewConstMetric(c.t.traffic, prometheus.CounterValue, float64(tr.Rx), id, "response")
	}
}
