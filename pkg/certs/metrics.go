package certs

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Names of the Manager's metrics.
const (
	// metricOrders counts finished orders, labelled result: issued,
	// failed or ratelimited.
	metricOrders = "gateway_certs_orders_total"
	// metricCertificates is the number of usable certificates.
	metricCertificates = "gateway_certs_certificates"
	// metricFailing is the number of wanted domains whose last order
	// failed.
	metricFailing = "gateway_certs_failing_domains"
)

// metrics are the Manager's metrics; the zero value counts nothing.
type metrics struct {
	orders       *prometheus.CounterVec
	certificates prometheus.Gauge
	failing      prometheus.Gauge
}

// newMetrics registers the metrics with reg; nil reg: no metrics.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return &metrics{}, nil
	}
	m := &metrics{
		orders: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricOrders,
			Help: "ACME orders of user-domain certificates, by result (issued, failed, ratelimited).",
		}, []string{"result"}),
		certificates: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metricCertificates,
			Help: "User-domain certificates that are wanted and valid.",
		}),
		failing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metricFailing,
			Help: "Wanted user domains whose last order failed.",
		}),
	}
	for _, c := range []prometheus.Collector{m.orders, m.certificates, m.failing} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering certificate metrics: %w", err)
		}
	}
	// Both results show from the start, at zero.
	m.orders.WithLabelValues(resultIssued)
	m.orders.WithLabelValues(resultFailed)
	m.orders.WithLabelValues(resultRateLimited)
	return m, nil
}

// Values of the label result.
const (
	resultIssued = "issued"
	resultFailed = "failed"
	// resultRateLimited: the server refused the order with rateLimited.
	resultRateLimited = "ratelimited"
)

func (m *metrics) order(result string) {
	if m.orders != nil {
		m.orders.WithLabelValues(result).Inc()
	}
}

func (m *metrics) set(certificates, failing int) {
	if m.certificates != nil {
		m.certificates.Set(float64(certificates))
		m.failing.Set(float64(failing))
	}
}
