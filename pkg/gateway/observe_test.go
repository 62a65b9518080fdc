package gateway

import (
	"context"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// fakeTraefik serves a route once it was asked about it a few times, as a
// Traefik that reloads after a while would.
type fakeTraefik struct {
	mu    sync.Mutex
	asked map[string]int
	after int
}

func (f *fakeTraefik) RouterServed(_ context.Context, name string, tcp bool) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked[name]++
	return f.asked[name] > f.after, nil
}

func TestObserverMeasuresNewRoutes(t *testing.T) {
	probe := &fakeTraefik{asked: map[string]int{}, after: 2}
	tel := newTelemetry()
	o := newObserver(probe, tel)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.run(ctx) }()
	defer func() { cancel(); <-done }()

	o.created("a", false, time.Now())
	o.created("b", true, time.Now())
	o.created("gone", false, time.Now())
	o.deleted("gone")
	deadline := time.Now().Add(5 * time.Second)
	for histogramCount(t, tel) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d routes observed, want 2", histogramCount(t, tel))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !o.idle() {
		t.Error("routes still pending once served")
	}
	probe.mu.Lock()
	defer probe.mu.Unlock()
	if probe.asked["a"] != 3 || probe.asked["gone"] > 1 {
		t.Errorf("probes %v: want a asked until served (3), gone not after its delete", probe.asked)
	}
}

func histogramCount(t *testing.T, tel *telemetry) uint64 {
	t.Helper()
	m := &dto.Metric{}
	if err := tel.publish.Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}
