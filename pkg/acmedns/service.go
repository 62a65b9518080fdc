package acmedns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// DefaultAPIAddress is where the Service's httpreq API listens when
// ServiceConfig.APIAddress is empty.
const DefaultAPIAddress = "127.0.0.1:8053"

// CredentialsFileName is the usual name of ServiceConfig.CredentialsFile.
const CredentialsFileName = "httpreq.credentials"

// Settings of lego's httpreq provider, in seconds.
const (
	// legoPollingInterval is short: the value is visible the moment it is
	// presented, there is no propagation to wait for.
	legoPollingInterval = 1
	// legoPropagationTimeout bounds how long lego looks for a value that
	// does not show, before it gives up on the order.
	legoPropagationTimeout = 60
)

// delegationCheckTimeout bounds the delegation check of Service.Run.
const delegationCheckTimeout = 10 * time.Second

// ServiceConfig configures a Service.
type ServiceConfig struct {
	// Domain is the gateway domain, e.g. "gw.example"; the service answers
	// for the zone "_acme-challenge.<Domain>.". Required.
	Domain string
	// Address is the host:port of the DNS server, UDP and TCP alike.
	// Default DefaultAddress (":53"). Port 0 lets the system pick one.
	Address string
	// APIAddress is the host:port of the httpreq API Traefik presents
	// values to; the host must be a loopback IP address. Default
	// DefaultAPIAddress ("127.0.0.1:8053"). Port 0 lets the system pick one.
	APIAddress string
	// CredentialsFile keeps the httpreq username and password (JSON, mode
	// 0600); it is created when missing, and its folder with it (mode
	// 0700). Kept so that a Traefik started before a gateway restart can
	// still present values. Required.
	CredentialsFile string
	// Resolver is the DNS server (host[:port], port 53 when missing) Run
	// asks, once, whether the challenge zone is delegated to NodeIPs.
	// Empty: no check.
	Resolver string
	// NodeIPs are the node's public IP addresses, which the delegation must
	// point at. Empty: no check.
	NodeIPs []netip.Addr
	// MaxTCPConns is how many TCP connections the DNS server holds at
	// once. Default DefaultMaxTCPConns (128), lowered to a quarter of the
	// process's open-file limit (see Config.MaxTCPConns).
	MaxTCPConns int
	// MaxTCPConnsPerSource is how many of them one IPv4 address or IPv6
	// /64 may hold. Default DefaultMaxTCPConnsPerSource (8).
	MaxTCPConnsPerSource int
	// Logger receives the events of the service and of its servers.
	Logger zerolog.Logger
	// Registry receives the DNS server's query counter,
	// gateway_dns_queries_total (see HandlerConfig.Registry). Nil: no
	// metrics are registered.
	Registry prometheus.Registerer
}

// Service is the challenge zone of a gateway domain put together: a Store,
// the DNS Server that answers from it, and the httpreq API (APIServer with
// an HTTPReqHandler) through which Traefik fills it, with credentials kept
// in a file.
type Service struct {
	life       lifecycle
	domain     string
	address    string // of the DNS server, as configured
	apiAddress string // as configured
	resolver   string
	nodeIPs    []netip.Addr
	user, pass string
	dns        *Server
	api        *APIServer
	log        zerolog.Logger
}

// NewService validates cfg, fills its defaults and loads the httpreq
// credentials, creating them when the file does not exist. It listens on
// nothing yet: call Run.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	}
	if cfg.APIAddress == "" {
		cfg.APIAddress = DefaultAPIAddress
	}
	if cfg.CredentialsFile == "" {
		return nil, errors.New("validating acme dns service config: credentials file is required")
	}
	store, err := NewStore(StoreConfig{})
	if err != nil {
		return nil, err
	}
	dnsServer, err := New(Config{
		Domain: cfg.Domain, Address: cfg.Address, Store: store,
		MaxTCPConns: cfg.MaxTCPConns, MaxTCPConnsPerSource: cfg.MaxTCPConnsPerSource,
		Logger: cfg.Logger, Registry: cfg.Registry,
	})
	if err != nil {
		return nil, err
	}
	user, pass, err := LoadOrCreateCredentials(cfg.CredentialsFile)
	if err != nil {
		return nil, err
	}
	handler, err := NewHTTPReqHandler(HTTPReqConfig{
		Domain: cfg.Domain, Store: store, Username: user, Password: pass, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	api, err := NewAPIServer(APIConfig{Address: cfg.APIAddress, Handler: handler, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return &Service{
		life:       newLifecycle("acme dns service"),
		domain:     cfg.Domain,
		address:    cfg.Address,
		apiAddress: cfg.APIAddress,
		resolver:   cfg.Resolver,
		nodeIPs:    slices.Clone(cfg.NodeIPs),
		user:       user,
		pass:       pass,
		dns:        dnsServer,
		api:        api,
		log:        cfg.Logger.With().Str("component", "acmedns").Logger(),
	}, nil
}

// Env returns the environment of lego's httpreq provider in Traefik, as
// KEY=value. Before Ready is closed the endpoint is the configured API
// address; then it is the bound one, which differs with port 0.
func (s *Service) Env() []string {
	endpoint := s.api.Addr()
	if endpoint == "" {
		endpoint = s.apiAddress
	}
	return []string{
		"HTTPREQ_ENDPOINT=http://" + endpoint,
		"HTTPREQ_USERNAME=" + s.user,
		"HTTPREQ_PASSWORD=" + s.pass,
		"HTTPREQ_POLLING_INTERVAL=" + strconv.Itoa(legoPollingInterval),
		"HTTPREQ_PROPAGATION_TIMEOUT=" + strconv.Itoa(legoPropagationTimeout),
		// lego would otherwise follow CNAMEs through the host's resolvers.
		"LEGO_DISABLE_CNAME_SUPPORT=true",
	}
}

// Resolvers returns the DNS servers, as ip:port, at which lego checks that
// a presented value is visible: the service's own DNS server, reached on
// loopback when it listens on all addresses. The port is the configured
// one before Ready is closed, the bound one after.
func (s *Service) Resolvers() []string {
	host, port, _ := net.SplitHostPort(s.address) // checked by New
	if addr := s.dns.Addr(); addr != "" {
		_, port, _ = net.SplitHostPort(addr)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return []string{net.JoinHostPort(host, port)}
}

// Ready returns a channel closed once the DNS server and the API both
// listen. It is never closed if Run fails before that.
func (s *Service) Ready() <-chan struct{} { return s.life.Ready() }

// Run serves DNS and the API until ctx ends or Close is called, then
// returns nil; if either server fails, it stops the other and returns the
// error. Once the DNS server listens, and only then, since a resolver
// following the delegation asks it, Run checks the delegation once and logs
// the outcome. A Service runs once.
func (s *Service) Run(ctx context.Context) error {
	return s.life.run(ctx, s.serve)
}

// Close stops a running service and waits for Run to return. It is safe
// to call more than once, and before Run (Run then returns at once).
func (s *Service) Close() error {
	return s.life.Close()
}

// serve runs both servers until ctx ends or one fails.
func (s *Service) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2) // room for both, so neither blocks
	var wg sync.WaitGroup
	wg.Go(func() { errs <- s.dns.Run(ctx) })
	wg.Go(func() { errs <- s.api.Run(ctx) })

	dnsReady, apiReady := s.dns.Ready(), s.api.Ready()
	ready := false
	var first error
	for running := 2; running > 0; {
		select {
		case <-dnsReady:
			dnsReady = nil
			if s.resolver != "" && len(s.nodeIPs) > 0 && ctx.Err() == nil {
				wg.Go(func() { s.checkDelegation(ctx) })
			}
		case <-apiReady:
			apiReady = nil
		case err := <-errs:
			running--
			if err != nil && first == nil {
				first = err
			}
			// Half a service is no use: stop the other part too.
			cancel()
		}
		if dnsReady == nil && apiReady == nil && !ready {
			ready = true
			s.life.listening(s.dns.Addr())
		}
	}
	wg.Wait()
	return first
}

// checkDelegation warns when _acme-challenge.<domain> is not delegated to
// the node: the most common reason a name proxy serves an invalid
// certificate.
func (s *Service) checkDelegation(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, delegationCheckTimeout)
	defer cancel()
	err := CheckDelegation(ctx, s.resolver, s.domain, s.nodeIPs)
	switch {
	case errors.Is(err, ErrNotDelegated):
		s.log.Warn().Err(err).Str("resolver", s.resolver).Msg("the _acme-challenge zone is not delegated to this node: the wildcard certificate of name proxies cannot be issued (see docs/DNS.md)")
	case err != nil:
		s.log.Warn().Err(err).Str("resolver", s.resolver).Msg("could not check the delegation of the _acme-challenge zone")
	default:
		s.log.Info().Str("domain", s.domain).Msg("_acme-challenge delegation points at this node")
	}
}
