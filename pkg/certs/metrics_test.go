package certs

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newTestManager(t, "", Config{Registry: reg}, nil)
	m.ca.setFail(errValidation)
	m.Want(tenant, domain, "b.example.test")
	m.step(t)
	m.ca.setFail(nil)
	m.step(t)

	want := map[string]float64{
		metricOrders + " result=failed": 1,
		metricOrders + " result=issued": 1,
		metricCertificates:              1,
		metricFailing:                   1,
	}
	got := gather(t, reg)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

// gather returns the values of reg's metrics, keyed by name and labels.
func gather(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			key := f.GetName()
			for _, l := range mt.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			values[key] = value(f.GetType(), mt)
		}
	}
	return values
}

func value(typ dto.MetricType, m *dto.Metric) float64 {
	if typ == dto.MetricType_COUNTER {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}
