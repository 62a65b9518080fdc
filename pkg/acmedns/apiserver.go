package acmedns

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"
)

// APIServer timeouts; lego's requests are tiny.
const (
	apiReadTimeout  = 10 * time.Second
	apiWriteTimeout = 10 * time.Second
	apiIdleTimeout  = 60 * time.Second
)

// APIConfig configures an APIServer.
type APIConfig struct {
	// Address is the host:port to listen on. The host must be a loopback IP
	// address ("127.0.0.1", "::1"): the API changes what the gateway
	// answers for its certificate and is only for Traefik on the same host.
	// Port 0 lets the system pick. Required.
	Address string
	// Handler serves the requests, normally an HTTPReqHandler. Required.
	Handler http.Handler
	// Logger receives the server's events.
	Logger zerolog.Logger
}

// APIServer serves the httpreq API to Traefik over HTTP on loopback.
type APIServer struct {
	lifecycle
	address string
	handler http.Handler
	log     zerolog.Logger
}

// NewAPIServer validates cfg and returns an APIServer that is not listening
// yet: call Run.
func NewAPIServer(cfg APIConfig) (*APIServer, error) {
	if err := validateLoopback(cfg.Address); err != nil {
		return nil, fmt.Errorf("validating api server config: %w", err)
	}
	if cfg.Handler == nil {
		return nil, errors.New("validating api server config: handler is required")
	}
	return &APIServer{
		lifecycle: newLifecycle("api server"),
		address:   cfg.Address,
		handler:   cfg.Handler,
		log:       cfg.Logger.With().Str("component", "acmedns-api").Logger(),
	}, nil
}

// validateLoopback checks that address is host:port with a loopback IP
// address as host.
func validateLoopback(address string) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("address %q is not host:port: %w", address, err)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return fmt.Errorf("address %q: host %q is not an IP address (use 127.0.0.1 or ::1)", address, host)
	}
	if !ip.IsLoopback() {
		return fmt.Errorf("address %q: %s is not a loopback address; the API must not be reachable from other hosts", address, host)
	}
	return nil
}

// Run serves until ctx ends or Close is called, then returns nil, or the
// error that stopped it. An APIServer runs once.
func (s *APIServer) Run(ctx context.Context) error {
	return s.run(ctx, s.serve)
}

// serve listens and serves HTTP until ctx ends, then shuts down.
func (s *APIServer) serve(ctx context.Context) error {
	l, err := net.Listen("tcp", s.address)
	if err != nil {
		return fmt.Errorf("running api server: listening on %s: %w", s.address, err)
	}
	addr := l.Addr().String()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: apiReadTimeout,
		ReadTimeout:       apiReadTimeout,
		WriteTimeout:      apiWriteTimeout,
		IdleTimeout:       apiIdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(s.log, "", 0),
	}
	errs := make(chan error, 1)
	go func() { errs <- srv.Serve(l) }()
	s.listening(addr)
	s.log.Info().Str("address", addr).Msg("api server listening")

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-errs:
		runErr = fmt.Errorf("serving api on %s: %w", addr, err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	s.log.Info().Str("address", addr).Msg("api server stopped")
	return runErr
}
