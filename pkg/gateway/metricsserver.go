package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// DefaultMetricsAddress is where the gateway serves its own Prometheus
// metrics: loopback, beside Traefik's (traefik.DefaultMetricsAddress).
const DefaultMetricsAddress = "127.0.0.1:8083"

// DefaultMetricsURL is the URL of the metrics at DefaultMetricsAddress.
const DefaultMetricsURL = "http://" + DefaultMetricsAddress + metricsPath

const metricsPath = "/metrics"

// Bounds of the metrics server: a scrape of ten thousand workloads is a few
// megabytes.
const (
	metricsReadTimeout     = 10 * time.Second
	metricsWriteTimeout    = 30 * time.Second
	metricsShutdownTimeout = 2 * time.Second
)

// MetricsServer serves a Prometheus registry at /metrics on a loopback
// address, and whatever else the gateway serves there for Traefik alone
// (Handle).
type MetricsServer struct {
	address  string
	gatherer prometheus.Gatherer
	log      zerolog.Logger
	ready    chan struct{}
	addr     string
	mux      *http.ServeMux
}

// NewMetricsServer checks that address is a loopback host:port: the byte
// totals are the node's billing data, not the Internet's.
func NewMetricsServer(address string, gatherer prometheus.Gatherer, log zerolog.Logger) (*MetricsServer, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("metrics address %q: %w", address, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("metrics address %q: not a loopback address; give one such as %s", address, DefaultMetricsAddress)
	}
	return &MetricsServer{
		address:  address,
		gatherer: gatherer,
		log:      log.With().Str("component", "metrics").Logger(),
		ready:    make(chan struct{}),
		mux:      http.NewServeMux(),
	}, nil
}

// Handle serves handler for pattern beside /metrics, such as the HTTP-01
// challenge answers Traefik forwards (certs.Manager.Handler). Call it
// before Run.
func (s *MetricsServer) Handle(pattern string, handler http.Handler) {
	s.mux.Handle(pattern, handler)
}

// Ready is closed once the server listens; Addr is set by then.
func (s *MetricsServer) Ready() <-chan struct{} { return s.ready }

// Addr is the address the server listens on, once Ready.
func (s *MetricsServer) Addr() string { return s.addr }

// Run serves until ctx ends.
func (s *MetricsServer) Run(ctx context.Context) error {
	l, err := net.Listen("tcp", s.address)
	if err != nil {
		return fmt.Errorf("serving metrics: %w", err)
	}
	s.addr = l.Addr().String()
	close(s.ready)
	s.mux.Handle(metricsPath, promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{ErrorLog: logAdapter{s.log}}))
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: metricsReadTimeout,
		ReadTimeout:       metricsReadTimeout,
		WriteTimeout:      metricsWriteTimeout,
		MaxHeaderBytes:    16 << 10,
	}
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(l) }()
	s.log.Info().Str("address", s.addr).Msg("serving the gateway's metrics")
	select {
	case err := <-errs:
		return fmt.Errorf("serving metrics on %s: %w", s.addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), metricsShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errs; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving metrics on %s: %w", s.addr, err)
	}
	return nil
}

// logAdapter gives promhttp's error log to zerolog.
type logAdapter struct{ log zerolog.Logger }

func (l logAdapter) Println(v ...any) { l.log.Error().Msg(fmt.Sprint(v...)) }
