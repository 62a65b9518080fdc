package acmedns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// DefaultAddress is where Server listens when Config.Address is empty.
const DefaultAddress = ":53"

// Server timings.
const (
	// bindAttempts is how often Run tries to find a port free for both UDP
	// and TCP when Config.Address asks for port 0.
	bindAttempts = 20
	// shutdownTimeout bounds how long Close waits for queries in flight.
	shutdownTimeout = 2 * time.Second
)

// Config configures a Server.
type Config struct {
	// Domain is the gateway domain, e.g. "gw.example"; the server answers
	// for the zone "_acme-challenge.<Domain>.". Required.
	Domain string
	// Address is the host:port the server listens on, UDP and TCP alike.
	// Default DefaultAddress (":53"). With port 0 the system picks one port
	// free for both.
	Address string
	// Store holds the challenge values to answer. Required; share it with
	// the HTTPReqHandler that fills it.
	Store *Store
	// MaxTCPConns is how many TCP connections the server holds at once;
	// those beyond are closed as soon as accepted. Default
	// DefaultMaxTCPConns (128). New lowers it to a quarter of the process's
	// open-file limit (RLIMIT_NOFILE) when it is above, so that TCP clients
	// never take the descriptors the rest of the gateway needs.
	MaxTCPConns int
	// MaxTCPConnsPerSource is how many of the TCP connections one source,
	// an IPv4 address or an IPv6 /64, may hold at once. Default
	// DefaultMaxTCPConnsPerSource (8); at most MaxTCPConns.
	MaxTCPConnsPerSource int
	// Logger receives the server's events; queries are not logged.
	Logger zerolog.Logger
	// Registry receives the query counter, gateway_dns_queries_total (see
	// HandlerConfig.Registry). Nil: no metrics are registered.
	Registry prometheus.Registerer
}

// Server is the authoritative DNS server of the _acme-challenge zone, over
// UDP and TCP on one address.
//
// Its TCP side holds at most Config.MaxTCPConns connections (default 128),
// at most Config.MaxTCPConnsPerSource (default 8) from one IPv4 address or
// IPv6 /64, and closes the others as soon as it accepts them. A client must
// send its first query within 2 seconds of connecting and each next one
// within 8 seconds of the last answer, read each answer within 2 seconds,
// and is disconnected 30 seconds after connecting however busy.
type Server struct {
	lifecycle
	address   string
	handler   *Handler
	tcpLimits tcpLimits
	log       zerolog.Logger
}

// New validates cfg, fills its defaults and returns a Server that is not
// listening yet: call Run.
func New(cfg Config) (*Server, error) {
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	}
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return nil, fmt.Errorf("validating dns server address %q: %w", cfg.Address, err)
	}
	if err := validateZone(cfg.Domain, cfg.Store); err != nil {
		return nil, fmt.Errorf("validating dns server config: %w", err)
	}
	h, err := NewHandler(HandlerConfig{Domain: cfg.Domain, Store: cfg.Store, Logger: cfg.Logger, Registry: cfg.Registry})
	if err != nil {
		return nil, fmt.Errorf("creating dns handler: %w", err)
	}
	nofile, err := openFileLimit()
	if err != nil {
		h.log.Warn().Err(err).Msg("the dns server's tcp connection limits are not checked against the open-file limit")
	}
	limits, clamped, err := tcpLimitsFor(cfg.MaxTCPConns, cfg.MaxTCPConnsPerSource, nofile)
	if err != nil {
		return nil, fmt.Errorf("validating dns server config: %w", err)
	}
	if clamped {
		h.log.Warn().Uint64("open_file_limit", nofile).
			Int("max_tcp_conns", limits.conns).Int("max_tcp_conns_per_source", limits.perSource).
			Msg("lowering the dns server's tcp connection limits to a quarter of the open-file limit")
	}
	return &Server{
		lifecycle: newLifecycle("dns server"),
		address:   cfg.Address,
		handler:   h,
		tcpLimits: limits,
		log:       h.log,
	}, nil
}

// Run listens and answers queries until ctx ends or Close is called. It
// returns nil then, or the error that stopped it. A Server runs once.
func (s *Server) Run(ctx context.Context) error {
	return s.run(ctx, s.serve)
}

// serve listens, answers over TCP with miekg/dns's server and over UDP
// with the udpServer loop, and stops both when ctx ends or either fails.
func (s *Server) serve(ctx context.Context) error {
	pc, l, err := listen(s.address)
	if err != nil {
		return fmt.Errorf("running dns server: %w", err)
	}
	addr := pc.LocalAddr().String()
	udp, err := newUDPServer(pc.(*net.UDPConn), s.handler, s.log)
	if err != nil {
		pc.Close()
		l.Close()
		return fmt.Errorf("running dns server: %w", err)
	}
	started := make(chan struct{})
	tcp := &dns.Server{
		Listener:          newLimitListener(l, s.tcpLimits, s.log),
		Handler:           s.handler,
		MsgAcceptFunc:     s.handler.acceptCounted,
		MsgInvalidFunc:    s.handler.invalidCounted,
		ReadTimeout:       tcpReadTimeout,
		IdleTimeout:       func() time.Duration { return tcpIdleTimeout },
		NotifyStartedFunc: func() { close(started) },
	}
	errs := make(chan error, 2) // room for both, so neither blocks
	var wg sync.WaitGroup
	wg.Go(func() { errs <- udp.serve() })
	wg.Go(func() { errs <- tcp.ActivateAndServe() })

	var runErr error
	select {
	case <-started:
		// UDP serves from the moment the socket is bound.
		s.listening(addr)
		s.log.Info().Str("address", addr).Str("zone", s.handler.zone).Msg("dns server listening")
		select {
		case <-ctx.Done():
		case err := <-errs:
			runErr = fmt.Errorf("serving dns on %s: %w", addr, orStopped(err))
		}
	case err := <-errs:
		runErr = fmt.Errorf("starting dns server on %s: %w", addr, orStopped(err))
	}

	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	// Fails for a TCP server that did not start; its socket is closed
	// below. Closing the UDP socket ends the UDP loop.
	_ = tcp.ShutdownContext(sctx)
	pc.Close()
	l.Close()
	wg.Wait()
	s.log.Info().Str("address", addr).Msg("dns server stopped")
	return runErr
}

// errStopped stands for a server that stopped without saying why.
var errStopped = errors.New("stopped unexpectedly")

func orStopped(err error) error {
	if err == nil {
		return errStopped
	}
	return err
}

// listen binds UDP and then TCP on the port UDP got. When the port is 0
// and the system gave UDP a port already taken for TCP, it tries again.
func listen(address string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing address %q: %w", address, err)
	}
	attempts := 1
	if port == "0" {
		attempts = bindAttempts
	}
	for i := 0; ; i++ {
		pc, err := net.ListenPacket("udp", address)
		if err != nil {
			return nil, nil, fmt.Errorf("listening on udp %s: %w", address, err)
		}
		udpPort := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(udpPort)))
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if i+1 >= attempts {
			return nil, nil, fmt.Errorf("listening on tcp port %d of %s: %w", udpPort, address, err)
		}
	}
}
