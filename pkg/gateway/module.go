package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/threefoldtech/gateway/internal/dnsname"
	"github.com/threefoldtech/gateway/pkg/traefik"
)

// ErrNoDomain is returned by SetNamedProxy on a gateway without a domain.
var ErrNoDomain = errors.New("name proxies need a gateway domain (--public.domain)")

// ErrNoPublicIP is returned by SetFQDNProxy on a gateway without public IPs.
var ErrNoPublicIP = errors.New("fqdn proxies need a public IP of the node (--public.ipv4 or --public.ipv6)")

// Config is what a Module needs.
type Config struct {
	// Routes is where routes are published and read back. Required.
	Routes Publisher
	// Domain is the gateway domain that name proxies live under. Empty
	// disables name proxies.
	Domain string
	// PublicIPs are the node's public addresses. User domains must resolve
	// to them and only them; backends may not point at them.
	PublicIPs []netip.Addr
	// Allow admits backend networks the default policy refuses.
	Allow []netip.Prefix
	// Resolver checks user domains. Required for FQDN proxies.
	Resolver Resolver
	// LookupTimeout bounds the DNS check of a user domain. Default
	// DefaultLookupTimeout.
	LookupTimeout time.Duration
	// MetricsURL is Traefik's Prometheus endpoint.
	MetricsURL string
	// HTTPClient scrapes MetricsURL. Default: a client with a 5s timeout.
	HTTPClient *http.Client
	// Logger receives the module's logs.
	Logger zerolog.Logger
}

// DefaultLookupTimeout bounds the DNS check of a user domain.
const DefaultLookupTimeout = 5 * time.Second

// metricsTimeout bounds one scrape of Traefik's metrics.
const metricsTimeout = 5 * time.Second

// Module is the gateway object served on zbus.
type Module struct {
	cfg    Config
	routes Publisher
	policy Policy
	log    zerolog.Logger

	// mu serialises changes: the domain check, the file write and the index
	// update of one call happen as one step.
	mu  sync.Mutex
	idx *index
}

var _ Gateway = (*Module)(nil)

// New checks cfg and rebuilds the index from the routes published in
// cfg.Routes.
func New(cfg Config) (*Module, error) {
	if cfg.Routes == nil {
		return nil, fmt.Errorf("a publisher of routes is required")
	}
	if cfg.Domain != "" {
		d, err := NormalizeFQDN(cfg.Domain)
		if err != nil {
			return nil, fmt.Errorf("gateway domain: %w", err)
		}
		cfg.Domain = d
	}
	if cfg.LookupTimeout == 0 {
		cfg.LookupTimeout = DefaultLookupTimeout
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: metricsTimeout}
	}
	log := cfg.Logger.With().Str("component", "gateway").Logger()
	idx, err := loadIndex(cfg.Routes, cfg.Domain, log)
	if err != nil {
		return nil, err
	}
	log.Info().Int("routes", len(idx.byID)).Msg("index loaded")
	return &Module{
		cfg:    cfg,
		routes: cfg.Routes,
		policy: Policy{Allow: cfg.Allow, Own: cfg.PublicIPs},
		log:    log,
		idx:    idx,
	}, nil
}

// SetNamedProxy publishes backends at prefix.<domain> and returns that name.
func (m *Module) SetNamedProxy(wlID string, prefix string, backends []string, TLSPassthrough bool) (string, error) {
	if m.cfg.Domain == "" {
		return "", ErrNoDomain
	}
	if err := ValidateWorkloadID(wlID); err != nil {
		return "", err
	}
	label, err := NormalizePrefix(prefix)
	if err != nil {
		return "", err
	}
	bs, err := ParseBackends(backends, TLSPassthrough, m.policy)
	if err != nil {
		return "", err
	}
	r := route{id: wlID, fqdn: label + "." + m.cfg.Domain, kind: KindName, backends: bs, passthrough: TLSPassthrough}
	if err := m.commit(r); err != nil {
		return "", err
	}
	return r.fqdn, nil
}

// SetFQDNProxy publishes backends at fqdn. The domain must resolve to the
// node's public IPs only: a record elsewhere would make HTTP-01 fail later.
func (m *Module) SetFQDNProxy(wlID string, fqdn string, backends []string, TLSPassthrough bool) error {
	if len(m.cfg.PublicIPs) == 0 {
		return ErrNoPublicIP
	}
	if err := ValidateWorkloadID(wlID); err != nil {
		return err
	}
	name, err := NormalizeFQDN(fqdn)
	if err != nil {
		return err
	}
	if m.cfg.Domain != "" && dnsname.IsUnder(name, m.cfg.Domain) {
		return fieldError("fqdn", fqdn, "is the gateway domain %s or under it: use SetNamedProxy", m.cfg.Domain)
	}
	bs, err := ParseBackends(backends, TLSPassthrough, m.policy)
	if err != nil {
		return err
	}
	if err := m.checkPointsHere(name); err != nil {
		return err
	}
	return m.commit(route{id: wlID, fqdn: name, kind: KindFQDN, backends: bs, passthrough: TLSPassthrough})
}

// checkPointsHere asks the resolver for the A and AAAA records of fqdn and
// accepts it only if there is one and each is a public IP of the node.
func (m *Module) checkPointsHere(fqdn string) error {
	if m.cfg.Resolver == nil {
		return fmt.Errorf("no resolver configured to check fqdn %q", fqdn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.LookupTimeout)
	defer cancel()
	ips, err := m.cfg.Resolver.LookupIPs(ctx, fqdn)
	if err != nil {
		return fmt.Errorf("checking the DNS records of fqdn %q: %w", fqdn, err)
	}
	if len(ips) == 0 {
		return fieldError("fqdn", fqdn, "has no A or AAAA record; point it at %s", joinAddrs(m.cfg.PublicIPs))
	}
	var foreign []netip.Addr
	for _, ip := range ips {
		if !slices.Contains(m.cfg.PublicIPs, ip.Unmap()) {
			foreign = append(foreign, ip)
		}
	}
	if len(foreign) > 0 {
		return fieldError("fqdn", fqdn, "resolves to %s, which is not this node (%s); every A and AAAA record must point at the node",
			joinAddrs(foreign), joinAddrs(m.cfg.PublicIPs))
	}
	return nil
}

// commit checks that r's domain is free or already r's, writes its file and
// updates the index, as one step.
func (m *Module) commit(r route) error {
	cfg := r.render(m.cfg.Domain)
	m.mu.Lock()
	defer m.mu.Unlock()
	if holder, ok := m.idx.holder(r.fqdn); ok && holder != r.id {
		return fmt.Errorf("domain %q already registered by %s", r.fqdn, holder)
	}
	if err := m.routes.Publish(r.id, cfg); err != nil {
		return fmt.Errorf("writing route %q: %w", r.id, err)
	}
	m.idx.put(r)
	m.log.Info().Str("wlID", r.id).Str("fqdn", r.fqdn).Bool("passthrough", r.passthrough).Int("backends", len(r.backends)).Msg("route set")
	return nil
}

// DeleteNamedProxy removes the route of wlID, of either kind, and frees its
// domain. An unknown wlID is not an error.
func (m *Module) DeleteNamedProxy(wlID string) error {
	if err := ValidateWorkloadID(wlID); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.routes.Unpublish(wlID); err != nil {
		return fmt.Errorf("deleting route %q: %w", wlID, err)
	}
	if _, ok := m.idx.byID[wlID]; ok {
		m.idx.remove(wlID)
		m.log.Info().Str("wlID", wlID).Msg("route deleted")
	}
	return nil
}

// List returns every route, sorted by workload ID.
func (m *Module) List() ([]Proxy, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.idx.list(), nil
}

// Metrics returns the bytes Traefik counted per workload. Passthrough
// traffic is not counted: Traefik has no byte counters for TCP routers.
func (m *Module) Metrics() (GatewayMetrics, error) {
	ctx, cancel := context.WithTimeout(context.Background(), metricsTimeout)
	defer cancel()
	bytes, err := traefik.ScrapeServiceBytes(ctx, m.cfg.HTTPClient, m.cfg.MetricsURL)
	if err != nil {
		m.mu.Lock()
		empty := len(m.idx.byID) == 0
		m.mu.Unlock()
		if empty {
			return newMetrics(nil, nil), nil
		}
		return GatewayMetrics{}, fmt.Errorf("reading traefik metrics from %s: %w", m.cfg.MetricsURL, err)
	}
	return newMetrics(bytes.Requests, bytes.Responses), nil
}

// newMetrics fills both names of each direction, each with its own map: the
// caller may change one without the other.
func newMetrics(requests, responses map[string]float64) GatewayMetrics {
	clone := func(m map[string]float64) map[string]float64 {
		out := make(map[string]float64, len(m))
		maps.Copy(out, m)
		return out
	}
	return GatewayMetrics{
		Request:  clone(requests),
		Response: clone(responses),
		Received: clone(requests),
		Sent:     clone(responses),
	}
}

func joinAddrs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}
