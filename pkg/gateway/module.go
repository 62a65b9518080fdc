package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/threefoldtech/gateway/internal/dnsname"
	"github.com/threefoldtech/gateway/pkg/certs"
	"github.com/threefoldtech/gateway/pkg/store"
	"github.com/threefoldtech/gateway/pkg/traefik"
)

// ErrNoDomain is returned by SetNamedProxy on a gateway without a domain.
var ErrNoDomain = errors.New("name proxies need a gateway domain (--public.domain)")

// ErrNoPublicIP is returned by SetFQDNProxy on a gateway without public IPs.
var ErrNoPublicIP = errors.New("fqdn proxies need a public IP of the node (--public.ipv4 or --public.ipv6)")

// Config is what a Module needs.
type Config struct {
	// Store keeps the routes as callers asked for them; Routes is derived
	// from it. Required.
	Store *store.Store
	// Routes is where routes are published. Required.
	Routes Publisher
	// Domain is the gateway domain that name proxies live under. Empty
	// disables name proxies.
	Domain string
	// PublicIPs are the node's public addresses. User domains must resolve
	// to them and only them; backends may not point at them.
	PublicIPs []netip.Addr
	// Allow admits backend networks the default policy refuses. It never
	// admits the node's own addresses, loopback ones excepted.
	Allow []netip.Prefix
	// NodeAddrs returns the addresses of the node's interfaces, read at
	// each call and at start: a backend there is refused, and a route
	// found at start with one is quarantined. Default InterfaceAddrs.
	NodeAddrs func() ([]netip.Addr, error)
	// NodeNets returns the networks the kernel delivers to the node itself
	// (its local routes, AnyIP included), read as NodeAddrs is. Default
	// LocalNets.
	NodeNets func() ([]netip.Prefix, error)
	// Resolver checks user domains. Required for FQDN proxies.
	Resolver Resolver
	// LookupTimeout bounds the DNS check of a user domain. Default
	// DefaultLookupTimeout.
	LookupTimeout time.Duration
	// Workers is how many calls the bus serves in parallel (BusConfig's
	// Workers). At most Workers-1 domain checks, and at least one, run at
	// once; a call that finds them all busy is refused at once, so that a
	// slow resolver never holds every worker. Default DefaultWorkers.
	Workers uint
	// SweepInterval is how often Run moves to quarantine what appeared
	// among the published routes without the module writing it. Default
	// DefaultSweepInterval.
	SweepInterval time.Duration
	// Networks carries routes into tenants' private networks. Nil refuses
	// routes with a network (ErrNoNetworks).
	Networks Networks
	// Meter counts the bytes of each route. Nil when the node cannot
	// meter: Metrics then fails with MeterUnavailable.
	Meter Meter
	// MeterUnavailable says why Meter is nil.
	MeterUnavailable error
	// Probe, when set, tells when Traefik serves a new route, for the
	// gateway_route_publish_seconds metric.
	Probe RouteProbe
	// DefaultCertificate, when set, gives the certificate Traefik presents
	// to a client whose SNI matches none it has (traefik.DefaultCertificate);
	// the module publishes it at start and again, within SweepInterval,
	// when it changes.
	DefaultCertificate DefaultCertificate
	// Certificates, when set, obtains the certificates of the user domains
	// of FQDN proxies that terminate TLS (certs.Manager): the module tells
	// it which domains are routed, and publishes the certificates it has in
	// the reserved file, through CertificateFiles. Without it those routes
	// are served with the default certificate.
	Certificates Certificates
	// CertificateFiles keeps the files of the certificates the reserved
	// file names. Required with Certificates.
	CertificateFiles CertificateInstaller
	// ChallengeURL is where Traefik sends the HTTP-01 challenges of every
	// name no passthrough route claims: the server of Certificates'
	// handler, the gateway's metrics server, e.g. "http://127.0.0.1:8083".
	// Required with Certificates.
	ChallengeURL string
	// Status, when set, tells how Traefik serves the routes: List returns
	// it with each route, read every StatusInterval by Run.
	Status StatusSource
	// StatusInterval is how often Run reads the status. Default
	// DefaultStatusInterval.
	StatusInterval time.Duration
	// Registry receives the module's metrics. Nil registers none.
	Registry prometheus.Registerer
	// Logger receives the module's logs.
	Logger zerolog.Logger
}

// DefaultCertificate gives the default certificate of Traefik's TLS store;
// traefik.DefaultCertificate is the implementation the daemon uses.
type DefaultCertificate interface {
	// Current returns the certificate to configure now.
	Current() (*traefik.TLSCertificate, error)
}

// Certificates obtains the certificates of user domains; certs.Manager is
// the implementation the daemon uses.
type Certificates interface {
	// Want and Unwant say a domain's route needs a certificate, or no
	// longer does; owner is the twin whose route it is (twinOf), among
	// whom the account's orders are shared.
	Want(owner string, domains ...string)
	Unwant(domains ...string)
	// SetWanted says which domains need one, all of them, each with its
	// owner.
	SetWanted(wanted map[string]string)
	// Certificates returns the certificates to serve.
	Certificates() []certs.Certificate
	// Status tells where a domain's certificate stands.
	Status(domain string) certs.Status
}

// CertificateInstaller makes certificates into files Traefik reads;
// traefik.CertificateFiles is the implementation the daemon uses.
type CertificateInstaller interface {
	// Install makes files of pairs and returns them.
	Install(pairs []traefik.PEMPair) ([]*traefik.TLSCertificate, error)
	// Prune removes the files of the certificates but keep.
	Prune(keep []*traefik.TLSCertificate) error
}

// DefaultLookupTimeout bounds the DNS check of a user domain. A resolver
// answers in well under a second, a cold recursion in one or two; a check
// that takes longer fails and the caller tries again, rather than holding a
// bus worker.
const DefaultLookupTimeout = 3 * time.Second

// DefaultSweepInterval is how often Run sweeps the published routes.
const DefaultSweepInterval = 5 * time.Second

// ErrChecksBusy refuses an FQDN proxy while every slot for domain checks is
// taken.
var ErrChecksBusy = errors.New("too many domain checks in flight, try again")

// ErrNoMeter is what Metrics returns without a Meter and a reason.
var ErrNoMeter = errors.New("no meter configured")

// Module is the gateway's core: it takes routes as requests (SetRoute,
// DeleteRoute), keeps them in the store, and derives what Traefik serves
// from them. Each bus contract is an adapter in front of it (contract*.go).
type Module struct {
	cfg    Config
	store  *store.Store
	routes Publisher
	meter  Meter
	// hooks follow every change of the routes (hooks.go).
	hooks []Hook
	log   zerolog.Logger
	t     *telemetry
	seen  *observer

	// checks holds a token per domain check in flight.
	checks chan struct{}

	// mu serialises changes: the check that the domain is free, the
	// store's commit, the file write and the index update of one call (or
	// of one batch of Sets, commit.go) happen as one step, and a sweep sees
	// no write without its index update.
	mu  sync.Mutex
	idx *index

	// queue holds the Sets waiting to be committed, leading is set while
	// one of their callers commits batches (commit.go).
	qmu     sync.Mutex
	queue   []*pending
	leading bool
	// failing are the entries the last sweep could not move, logged once.
	failing map[string]bool
	// defaultCert is the default certificate last published, anchor the
	// reserved file as last published, anchorDone set once it was.
	defaultCert *traefik.TLSCertificate
	anchor      *traefik.Configuration
	anchorDone  bool
	// userCerts are the files of the certificates of user domains, made
	// again while certsStale, which certsChanged sets. Only New and Run
	// touch them.
	userCerts    []*traefik.TLSCertificate
	certsStale   bool
	certsChanged chan struct{}
	// userMarks are the files of userCerts as installed: a sweep that finds
	// one changed (deleted, cut by hand) installs them again.
	userMarks map[string]fileMark
	// served holds the domains whose certificate the reserved file names,
	// with files found whole by the last sweep: List shows no other.
	served atomic.Pointer[map[string]bool]

	// status is the last reading of the routes' status, nil when there is
	// none.
	status atomic.Pointer[statusView]
}

// New checks cfg and wires the module; Recover then brings it up from
// what the store and the routes folder hold.
func New(cfg Config) (*Module, error) {
	if cfg.Routes == nil {
		return nil, fmt.Errorf("a publisher of routes is required")
	}
	if cfg.Store == nil {
		return nil, fmt.Errorf("a store is required")
	}
	if cfg.Domain != "" {
		d, err := NormalizeFQDN(cfg.Domain)
		if err != nil {
			return nil, fmt.Errorf("gateway domain: %w", err)
		}
		cfg.Domain = d
	}
	if cfg.NodeAddrs == nil {
		cfg.NodeAddrs = InterfaceAddrs
	}
	if cfg.NodeNets == nil {
		cfg.NodeNets = LocalNets
	}
	if cfg.LookupTimeout == 0 {
		cfg.LookupTimeout = DefaultLookupTimeout
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.StatusInterval == 0 {
		cfg.StatusInterval = DefaultStatusInterval
	}
	if cfg.SweepInterval < 0 || cfg.LookupTimeout < 0 || cfg.StatusInterval < 0 {
		return nil, fmt.Errorf("the sweep interval and the lookup timeout must not be negative")
	}
	if cfg.Certificates != nil && (cfg.CertificateFiles == nil || cfg.ChallengeURL == "") {
		return nil, fmt.Errorf("certificates of user domains need CertificateFiles and a ChallengeURL")
	}
	if cfg.Meter == nil && cfg.MeterUnavailable == nil {
		cfg.MeterUnavailable = ErrNoMeter
	}
	t := newTelemetry()
	m := &Module{
		cfg:          cfg,
		store:        cfg.Store,
		routes:       cfg.Routes,
		meter:        cfg.Meter,
		log:          cfg.Logger.With().Str("component", "gateway").Logger(),
		t:            t,
		seen:         newObserver(cfg.Probe, t),
		checks:       make(chan struct{}, max(1, int(cfg.Workers)-1)),
		failing:      make(map[string]bool),
		certsChanged: make(chan struct{}, 1),
		certsStale:   true,
		idx:          newIndex(),
	}
	if cfg.Networks != nil {
		// First: the others see the addresses Traefik connects to.
		m.hooks = append(m.hooks, networkHook{m})
	}
	if m.meter != nil {
		m.hooks = append(m.hooks, meterHook{m})
	}
	if cfg.Certificates != nil {
		m.hooks = append(m.hooks, certsHook{cfg.Certificates})
	}
	m.hooks = append(m.hooks, observerHook{m.seen})
	if cfg.Registry != nil {
		if err := t.register(cfg.Registry, m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// publishAnchor publishes the reserved file as it renders with the default
// certificate and the certificates of user domains now; it writes only when
// that changed. A default certificate that cannot be had is logged and
// leaves the last one (at start, none: Traefik makes its own); the next
// sweep tries again. It is called by New, then by Run alone.
func (m *Module) publishAnchor() error {
	var cert *traefik.TLSCertificate
	var certErr error
	if m.cfg.DefaultCertificate != nil {
		cert, certErr = m.cfg.DefaultCertificate.Current()
	}
	users := m.userCertificates()
	m.mu.Lock()
	defer m.mu.Unlock()
	if certErr != nil {
		m.log.Error().Err(certErr).Msg("the default certificate cannot be had; Traefik presents the last one, or one of its own, until it can")
		cert = m.defaultCert
	}
	cfg := renderAnchor(m.cfg.Domain, cert, users, m.cfg.ChallengeURL)
	if m.anchorDone && reflect.DeepEqual(cfg, m.anchor) {
		return nil
	}
	if err := m.routes.PublishAnchor(cfg); err != nil && !errors.Is(err, traefik.ErrNotDurable) {
		return err
	}
	if m.anchorDone && cert != nil && !reflect.DeepEqual(cert, m.defaultCert) {
		m.log.Info().Str("cert", cert.CertFile).Msg("default certificate changed")
	}
	m.defaultCert, m.anchor, m.anchorDone = cert, cfg, true
	if m.cfg.CertificateFiles != nil {
		// Named no more, the files of replaced and retired certificates
		// go.
		if err := m.cfg.CertificateFiles.Prune(users); err != nil {
			m.log.Warn().Err(err).Msg("removing the files of certificates no longer served")
		}
	}
	return nil
}

// userCertificates returns the files of the certificates of user domains,
// made again from Certificates when CertificatesChanged said they changed.
func (m *Module) userCertificates() []*traefik.TLSCertificate {
	if m.cfg.Certificates == nil {
		return nil
	}
	if !m.certsStale {
		return m.userCerts
	}
	var files []*traefik.TLSCertificate
	stale := false
	served := map[string]bool{}
	marks := map[string]fileMark{}
	for _, c := range m.cfg.Certificates.Certificates() {
		certPEM, err1 := os.ReadFile(c.CertFile)
		keyPEM, err2 := os.ReadFile(c.KeyFile)
		if err := errors.Join(err1, err2); err != nil {
			m.log.Error().Err(err).Str("fqdn", c.Domain).Msg("reading a certificate; its domain gets the default certificate")
			stale = true
			continue
		}
		// One at a time, to know which domains are served.
		installed, err := m.cfg.CertificateFiles.Install([]traefik.PEMPair{{Name: c.Domain, Cert: certPEM, Key: keyPEM}})
		if err != nil || len(installed) != 1 {
			m.log.Error().Err(err).Str("fqdn", c.Domain).Msg("installing a certificate for Traefik; its domain gets the default certificate")
			stale = true
			continue
		}
		files = append(files, installed[0])
		served[c.Domain] = true
		marks[installed[0].CertFile], marks[installed[0].KeyFile] = installedMark(installed[0].CertFile), installedMark(installed[0].KeyFile)
	}
	// Left stale, the next sweep reads them again.
	m.userCerts, m.userMarks, m.certsStale = files, marks, stale
	m.served.Store(&served)
	return files
}

// checkUserCertificates tells whether a file of the certificates the
// reserved file names is no longer as installed: deleted, cut or replaced
// by hand. Only Run calls it.
func (m *Module) checkUserCertificates() bool {
	for path, mark := range m.userMarks {
		if markOf(path) != mark {
			m.log.Error().Str("file", path).Msg("a certificate file Traefik reads was deleted or changed; it is installed again")
			return true
		}
	}
	return false
}

// fileMark is what a file looked like, to notice that it changed without
// reading it.
type fileMark struct {
	size    int64
	modTime time.Time
}

// installedMark returns the mark of path just installed. A file removed
// meanwhile (by hand, between the write and this look) gets a mark no file
// has, so that the next check installs it again rather than take its
// absence for what was installed.
func installedMark(path string) fileMark {
	mk := markOf(path)
	if mk == (fileMark{}) {
		mk.size = -1
	}
	return mk
}

// markOf returns the mark of path; the zero mark when it is not a file.
func markOf(path string) fileMark {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return fileMark{}
	}
	return fileMark{size: fi.Size(), modTime: fi.ModTime()}
}

// CertificatesChanged tells the module that the certificates of user
// domains changed: Run publishes them. It never blocks (Config.Certificates
// calls it from any goroutine, the module's own calls included).
func (m *Module) CertificatesChanged() {
	select {
	case m.certsChanged <- struct{}{}:
	default:
	}
}

// Run moves to quarantine, every SweepInterval, whatever appeared among the
// published routes that the module did not write, and watches new routes
// until Traefik serves them, until ctx ends.
func (m *Module) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { m.seen.run(ctx) })
	if m.cfg.Status != nil {
		wg.Go(func() { m.watchStatus(ctx) })
	}
	t := time.NewTicker(m.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			m.sweep()
			if m.checkUserCertificates() {
				m.certsStale = true
			}
			if err := m.publishAnchor(); err != nil {
				m.log.Error().Err(err).Msg("publishing the default certificate")
			}
		case <-m.certsChanged:
			m.certsStale = true
			if err := m.publishAnchor(); err != nil {
				m.log.Error().Err(err).Msg("publishing the certificates of user domains")
			}
		}
	}
}

// sweep moves to quarantine every published entry that is not a route of
// the index and logs each.
func (m *Module) sweep() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweepLocked(nil)
}

// sweepLocked is sweep with the module's lock held; reasons gives the
// reason of an entry Recover refused.
func (m *Module) sweepLocked(reasons map[string]string) {
	moved, err := m.routes.Sweep(func(id string) bool {
		_, ok := m.idx.byID[id]
		return ok
	})
	if err != nil {
		m.log.Error().Err(err).Msg("sweeping the published routes")
		return
	}
	failing := make(map[string]bool)
	for _, q := range moved {
		if r, ok := reasons[q.ID]; ok {
			q.Reason = r
		}
		if q.Err != nil {
			failing[q.Name] = true
			if m.failing[q.Name] {
				continue
			}
		}
		m.logQuarantined(q)
	}
	m.failing = failing
}

// logQuarantined logs one entry moved to quarantine, or that could not be.
func (m *Module) logQuarantined(q traefik.Quarantined) {
	ev := m.log.Error().Str("entry", q.Name)
	if q.Group != "" {
		// A route taken out of this group file.
		ev = ev.Str("group", q.Group)
	}
	ev = ev.Str("reason", q.Reason)
	if q.Err != nil {
		ev.Err(q.Err).Msg("cannot move an entry that is not a route of the gateway out of the routes folder; Traefik still reads it")
		return
	}
	m.t.quarantined.Inc()
	ev.Str("moved_to", q.Path).Int("in_quarantine", q.Count).
		Msg("moved an entry that is not a route of the gateway to quarantine")
}

// policy returns the backend policy with the node's addresses as they are
// now: an address added since the start (a bridge, a VPN) counts.
func (m *Module) policy() (Policy, error) {
	addrs, err := m.cfg.NodeAddrs()
	if err != nil {
		return Policy{}, fmt.Errorf("checking backends against the node's addresses: %w", err)
	}
	nets, err := m.cfg.NodeNets()
	if err != nil {
		return Policy{}, fmt.Errorf("checking backends against the node's local routes: %w", err)
	}
	own := make([]netip.Addr, 0, len(m.cfg.PublicIPs)+len(addrs))
	own = append(append(own, m.cfg.PublicIPs...), addrs...)
	return Policy{Allow: m.cfg.Allow, Own: own, OwnNets: nets}, nil
}

// parseBackends validates the backends of a call against the policy of now.
func (m *Module) parseBackends(values []string, passthrough bool) ([]Backend, error) {
	policy, err := m.policy()
	if err != nil {
		return nil, err
	}
	return ParseBackends(values, passthrough, policy)
}

// RouteRequest is a route as a caller asks for it, whatever bus contract
// it came through: the adapters (contract*.go) turn their arguments into
// one.
type RouteRequest struct {
	// WorkloadID names the route.
	WorkloadID string
	// Kind is KindName (Name under the gateway domain) or KindFQDN (FQDN).
	Kind Kind
	// Name is the label of a name proxy under the gateway domain.
	Name string
	// FQDN is the domain of an FQDN proxy, which the caller owns.
	FQDN string
	// Backends are where traffic goes (docs/API.md).
	Backends []string
	// TLSPassthrough passes TLS through to the backends.
	TLSPassthrough bool
	// Contract names the bus contract of the call, kept with the route.
	Contract string
	// Network, when set, names the tenant's private network the backends
	// are IPs of (Config.Networks).
	Network string
}

// SetRoute checks req and publishes its route, replacing the one its
// workload had; it returns the route's domain. Any error means nothing
// changed.
func (m *Module) SetRoute(ctx context.Context, req RouteRequest) (fqdn string, err error) {
	switch req.Kind {
	case KindName:
		defer func() { m.t.called(methodSetNamedProxy, err) }()
		return m.setName(req)
	case KindFQDN:
		defer func() { m.t.called(methodSetFQDNProxy, err) }()
		return m.setFQDN(ctx, req)
	}
	return "", fmt.Errorf("route kind %q: expected %q or %q", req.Kind, KindName, KindFQDN)
}

// setName sets a route at req.Name under the gateway domain.
func (m *Module) setName(req RouteRequest) (string, error) {
	if m.cfg.Domain == "" {
		return "", ErrNoDomain
	}
	if err := ValidateWorkloadID(req.WorkloadID); err != nil {
		return "", err
	}
	label, err := NormalizePrefix(req.Name)
	if err != nil {
		return "", err
	}
	// The name must stay a domain name, or the route could not be served.
	if n := len(label) + 1 + len(m.cfg.Domain); n > dnsname.MaxLength {
		return "", fieldError("prefix", req.Name, "the name under the gateway domain would be %d bytes, and a domain name has at most %d: the prefix may have at most %d bytes",
			n, dnsname.MaxLength, max(0, dnsname.MaxLength-1-len(m.cfg.Domain)))
	}
	bs, err := m.parseBackends(req.Backends, req.TLSPassthrough)
	if err != nil {
		return "", err
	}
	r := route{id: req.WorkloadID, fqdn: label + "." + m.cfg.Domain, kind: KindName, name: label, backends: bs, passthrough: req.TLSPassthrough, contract: req.Contract, network: req.Network}
	if err := m.checkNetwork(r); err != nil {
		return "", err
	}
	if err := m.commit(r); err != nil {
		return "", err
	}
	return r.fqdn, nil
}

// setFQDN sets a route at req.FQDN. The domain must resolve to the node's
// public IPs only: a record elsewhere would make HTTP-01 fail later.
func (m *Module) setFQDN(_ context.Context, req RouteRequest) (string, error) {
	if len(m.cfg.PublicIPs) == 0 {
		return "", ErrNoPublicIP
	}
	if err := ValidateWorkloadID(req.WorkloadID); err != nil {
		return "", err
	}
	name, err := NormalizeFQDN(req.FQDN)
	if err != nil {
		return "", err
	}
	if m.cfg.Domain != "" && dnsname.IsUnder(name, m.cfg.Domain) {
		return "", fieldError("fqdn", req.FQDN, "is the gateway domain %s or under it: use SetNamedProxy", m.cfg.Domain)
	}
	bs, err := m.parseBackends(req.Backends, req.TLSPassthrough)
	if err != nil {
		return "", err
	}
	r := route{id: req.WorkloadID, fqdn: name, kind: KindFQDN, backends: bs, passthrough: req.TLSPassthrough, contract: req.Contract, network: req.Network}
	if err := m.checkNetwork(r); err != nil {
		return "", err
	}
	if err := m.checkPointsHere(name); err != nil {
		return "", err
	}
	return name, m.commit(r)
}

// checkPointsHere asks the resolver for the A and AAAA records of fqdn and
// accepts it only if there is one and each is a public IP of the node. A
// check holds a bus worker while it waits: when Workers-1 are waiting, it
// refuses at once, so that other calls are still served.
func (m *Module) checkPointsHere(fqdn string) error {
	if m.cfg.Resolver == nil {
		return fmt.Errorf("no resolver configured to check fqdn %q", fqdn)
	}
	select {
	case m.checks <- struct{}{}:
		defer func() { <-m.checks }()
	default:
		return fmt.Errorf("checking the DNS records of fqdn %q: %w (at most %d at once)", fqdn, ErrChecksBusy, cap(m.checks))
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

// DeleteRoute removes the route of wlID, of either kind, and frees its
// domain. An unknown wlID is not an error; a file published under it that
// the module did not write is moved to quarantine, not deleted.
func (m *Module) DeleteRoute(_ context.Context, wlID string) (err error) {
	defer func() { m.t.called(methodDeleteNamedProxy, err) }()
	if err := ValidateWorkloadID(wlID); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old, held := m.idx.byID[wlID]
	if !held {
		qs, err := m.routes.Quarantine(wlID, "found under a wlID the gateway was deleting but does not hold; the gateway did not write it")
		for _, q := range qs {
			m.logQuarantined(q)
		}
		if err != nil {
			return fmt.Errorf("deleting route %q: moving aside what is there: %w", wlID, err)
		}
		return nil
	}
	cs := []change{{old: old, held: true, deleted: true}}
	if err := prepareHooks(m.hooks, cs); err != nil {
		return fmt.Errorf("deleting route %q: %w", wlID, err)
	}
	rollback := func() {
		for _, h := range m.hooks {
			h.Rollback(cs)
		}
	}
	if err := m.store.Update(func(tx *store.Tx) error { return deleteRoutes(tx, wlID) }); err != nil {
		rollback()
		return fmt.Errorf("deleting route %q: %w", wlID, err)
	}
	if err := m.routes.Unpublish(wlID); err != nil {
		// Traefik still serves it: so does the store.
		if serr := m.store.Update(func(tx *store.Tx) error { return putRoutes(tx, []route{old}) }); serr != nil {
			m.log.Error().Err(serr).Str("wlID", wlID).Msg("route still published, but deleted from the store: the next start unpublishes it")
		}
		rollback()
		return fmt.Errorf("deleting route %q: %w", wlID, err)
	}
	m.idx.remove(wlID)
	for _, h := range m.hooks {
		h.Commit(cs, time.Now())
	}
	m.log.Info().Str("wlID", wlID).Msg("route deleted")
	return nil
}

// List returns every route, sorted by workload ID, with its status as last
// read from Traefik.
func (m *Module) List(context.Context) ([]Proxy, error) {
	m.t.called(methodList, nil)
	m.mu.Lock()
	list := m.idx.list()
	m.mu.Unlock()
	if view := m.status.Load(); view != nil {
		for i := range list {
			list[i].Status = view.routes[list[i].WorkloadID]
		}
	}
	if m.cfg.Certificates != nil {
		for i := range list {
			p := &list[i]
			if p.Kind == KindFQDN && !p.TLSPassthrough {
				st := m.cfg.Certificates.Status(p.FQDN)
				if served := m.served.Load(); st.Certificate != nil && (served == nil || !(*served)[p.FQDN]) {
					// Held, but not (or not yet) served by Traefik.
					st.Certificate = nil
				}
				p.Status = withACME(p.Status, st)
			}
		}
	}
	return list, nil
}

// Metrics returns, per workload, the bytes its route carried since the
// workload was first set, and those of each workload deleted since the last
// call, for the last time. Totals never go backwards (docs/API.md).
func (m *Module) Metrics(context.Context) (out GatewayMetrics, err error) {
	defer func() { m.t.called(methodMetrics, err) }()
	if m.meter == nil {
		return GatewayMetrics{}, fmt.Errorf("metering is unavailable on this node: %w", m.cfg.MeterUnavailable)
	}
	totals, err := m.meter.Report()
	if err != nil {
		return GatewayMetrics{}, fmt.Errorf("reading the byte counters: %w", err)
	}
	requests := make(map[string]float64, len(totals))
	responses := make(map[string]float64, len(totals))
	for id, t := range totals {
		requests[id] = float64(t.Tx)
		responses[id] = float64(t.Rx)
	}
	return newMetrics(requests, responses), nil
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
