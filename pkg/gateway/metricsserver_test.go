package gateway

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

func TestMetricsServerOnLoopbackOnly(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, addr := range []string{"0.0.0.0:8083", ":8083", "[::]:8083", "198.51.100.7:8083", "localhost:8083", "127.0.0.1"} {
		if _, err := NewMetricsServer(addr, reg, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "metrics address") {
			t.Errorf("NewMetricsServer(%q) = %v, want it refused", addr, err)
		}
	}
}

func TestMetricsServerServesAndStops(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "gateway_test_total", Help: "a test counter"})
	reg.MustRegister(c)
	c.Add(3)
	s, err := NewMetricsServer("127.0.0.1:0", reg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-s.Ready()
	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "gateway_test_total 3") {
		t.Errorf("/metrics lacks the counter:\n%s", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
