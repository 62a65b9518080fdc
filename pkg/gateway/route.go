package gateway

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"time"

	"github.com/threefoldtech/gateway/internal/dnsname"
	"github.com/threefoldtech/gateway/pkg/traefik"
)

// acmeChallengePath is where HTTP-01 challenges are answered.
const acmeChallengePath = "/.well-known/acme-challenge/"

// challengePort is the port of a passthrough backend that receives the
// HTTP-01 challenges for its name.
const challengePort = 80

// Health checking of routes with several backends (docs/API.md). A route
// with one backend has none: there is no other server to send traffic to.
const (
	// healthFailureWindow is how long an HTTP backend that failed
	// healthMaxFailedAttempts requests in a row rests.
	healthFailureWindow = 10 * time.Second
	// healthMaxFailedAttempts is how many requests in a row must fail on an
	// HTTP backend (unreachable, or a 5xx answer) before it rests.
	healthMaxFailedAttempts = 3
	// healthTCPInterval is how often Traefik connects to each backend of a
	// passthrough route.
	healthTCPInterval = 5 * time.Second
	// healthTCPTimeout bounds that connection.
	healthTCPTimeout = 2 * time.Second
)

// route is one validated route: what the index holds and a file renders.
type route struct {
	id          string
	fqdn        string
	kind        Kind
	backends    []Backend
	passthrough bool
}

// acme tells whether the route needs a certificate of its own from the
// gateway: an FQDN proxy that terminates TLS.
func (r route) acme() bool { return r.kind == KindFQDN && !r.passthrough }

// proxy returns the route as the bus shows it.
func (r route) proxy() Proxy {
	backends := make([]string, len(r.backends))
	for i, b := range r.backends {
		backends[i] = b.String(r.passthrough)
	}
	return Proxy{WorkloadID: r.id, FQDN: r.fqdn, Kind: r.kind, Backends: backends, TLSPassthrough: r.passthrough}
}

// hostRule is the only rule shape the gateway writes for HTTP.
func hostRule(fqdn string) string { return "Host(`" + fqdn + "`)" }

// sniRule is the only rule shape the gateway writes for TCP.
func sniRule(fqdn string) string { return "HostSNI(`" + fqdn + "`)" }

// challengeRule matches HTTP-01 challenges for fqdn on the web entry point.
func challengeRule(fqdn string) string {
	return hostRule(fqdn) + " && PathPrefix(`" + acmeChallengePath + "`)"
}

// render builds the Traefik configuration of a route.
//
// Router and service share the workload ID as name. A passthrough route also
// gets an HTTP router on the web entry point that sends HTTP-01 challenges for
// its name to the backend's port 80, so the backend can get its own
// certificate although the entry point redirects everything else to HTTPS.
func (r route) render() *traefik.Configuration {
	if r.passthrough {
		tcpServers := make([]traefik.TCPServer, len(r.backends))
		httpServers := make([]traefik.Server, len(r.backends))
		for i, b := range r.backends {
			tcpServers[i] = traefik.TCPServer{Address: b.Addr.String()}
			httpServers[i] = traefik.Server{URL: "http://" + netip.AddrPortFrom(b.Addr.Addr(), challengePort).String()}
		}
		var health *traefik.TCPHealthCheck
		if len(r.backends) > 1 {
			health = &traefik.TCPHealthCheck{
				Interval: traefik.Duration(healthTCPInterval),
				Timeout:  traefik.Duration(healthTCPTimeout),
			}
		}
		return &traefik.Configuration{
			TCP: &traefik.TCPConfiguration{
				Routers: map[string]*traefik.TCPRouter{r.id: {
					EntryPoints: []string{traefik.EntryPointWebSecure},
					Rule:        sniRule(r.fqdn),
					Service:     r.id,
					TLS:         &traefik.RouterTCPTLSConfig{Passthrough: true},
				}},
				Services: map[string]*traefik.TCPService{r.id: {
					LoadBalancer: &traefik.TCPServersLoadBalancer{Servers: tcpServers, HealthCheck: health},
				}},
			},
			HTTP: &traefik.HTTPConfiguration{
				Routers: map[string]*traefik.Router{r.id: {
					EntryPoints: []string{traefik.EntryPointWeb},
					Rule:        challengeRule(r.fqdn),
					Service:     r.id,
				}},
				Services: map[string]*traefik.Service{r.id: {
					LoadBalancer: &traefik.ServersLoadBalancer{Servers: httpServers},
				}},
			},
		}
	}

	// TLS with no resolver. A name proxy gets the wildcard certificate the
	// anchor (renderAnchor) obtains, from Traefik's store by SNI: a
	// resolver on every router would make Traefik's ACME provider scan all
	// certificates for each one at every reload. An FQDN proxy gets the
	// certificate the gateway obtains for its domain (Config.Certificates),
	// listed in the reserved file, by SNI too; the domain it names marks
	// the route as an FQDN proxy when it is read back.
	tls := &traefik.RouterTLSConfig{}
	if r.kind == KindFQDN {
		tls.Domains = []traefik.Domain{{Main: r.fqdn}}
	}
	servers := make([]traefik.Server, len(r.backends))
	for i, b := range r.backends {
		servers[i] = traefik.Server{URL: b.String(false)}
	}
	cfg := &traefik.Configuration{
		HTTP: &traefik.HTTPConfiguration{
			Routers: map[string]*traefik.Router{r.id: {
				EntryPoints: []string{traefik.EntryPointWebSecure},
				Rule:        hostRule(r.fqdn),
				Service:     r.id,
				TLS:         tls,
			}},
			Services: map[string]*traefik.Service{r.id: {
				LoadBalancer: &traefik.ServersLoadBalancer{Servers: servers},
			}},
		},
	}
	if len(r.backends) > 1 {
		// A request that cannot reach a backend goes to the next one, so
		// no client sees the failure that rests a dead backend. Middleware
		// names are a namespace of their own: the workload ID is free.
		cfg.HTTP.Middlewares = map[string]*traefik.Middleware{r.id: {
			Retry: &traefik.Retry{Attempts: len(r.backends) + 1},
		}}
		cfg.HTTP.Routers[r.id].Middlewares = []string{r.id}
		cfg.HTTP.Services[r.id].LoadBalancer.PassiveHealthCheck = &traefik.PassiveHealthCheck{
			FailureWindow:     traefik.Duration(healthFailureWindow),
			MaxFailedAttempts: healthMaxFailedAttempts,
		}
	}
	return cfg
}

// renderLegacy builds the configuration the one-file-per-route layout gave a
// name proxy that terminates TLS: its router carried the DNS-01 resolver
// and the wildcard of domain. Such a route is still read back at start, and
// written again in the current shape.
func (r route) renderLegacy(domain string) *traefik.Configuration {
	cfg := r.render()
	cfg.HTTP.Routers[r.id].TLS = &traefik.RouterTLSConfig{
		CertResolver: traefik.ResolverDNS,
		Domains:      []traefik.Domain{{Main: domain, SANs: []string{"*." + domain}}},
	}
	return cfg
}

// renderLegacyFQDN builds the configuration earlier versions gave an FQDN
// proxy that terminates TLS: its router carried Traefik's HTTP-01 resolver.
// Such a route is still read back at start, and written again in the
// current shape.
func (r route) renderLegacyFQDN() *traefik.Configuration {
	cfg := r.render()
	cfg.HTTP.Routers[r.id].TLS.CertResolver = traefik.ResolverHTTP
	return cfg
}

// anchorPath is the path of the anchor router's rule: no client asks for
// it, and no route can serve the gateway domain itself.
const anchorPath = "/.well-known/gateway-anchor/"

// renderAnchor builds the content of the reserved file: the anchor router
// of domain (traefik.AnchorName), the one router that carries the DNS-01
// resolver and the wildcard certificate of domain, so that Traefik obtains
// and renews it once for every name proxy; the router and service that send
// HTTP-01 challenges to challengeURL (traefik.ChallengeName), for the
// certificates of user domains; the default certificate of Traefik's TLS
// store, cert; and the certificates of user domains, users. It is nil when
// there is none of them.
func renderAnchor(domain string, cert *traefik.TLSCertificate, users []*traefik.TLSCertificate, challengeURL string) *traefik.Configuration {
	cfg := &traefik.Configuration{}
	http := &traefik.HTTPConfiguration{}
	if domain != "" {
		http.Routers = map[string]*traefik.Router{traefik.AnchorName: {
			EntryPoints: []string{traefik.EntryPointWebSecure},
			Rule:        hostRule(domain) + " && PathPrefix(`" + anchorPath + "`)",
			Service:     traefik.ServiceNoop,
			TLS: &traefik.RouterTLSConfig{
				CertResolver: traefik.ResolverDNS,
				Domains:      []traefik.Domain{{Main: domain, SANs: []string{"*." + domain}}},
			},
		}}
	}
	if challengeURL != "" {
		// Any name: the challenge handler answers only the tokens of its
		// orders, for their domains. A passthrough route's challenge router
		// (challengeRule) is longer, so of higher priority, and wins for
		// its name; this one beats the redirect to HTTPS (priority 1).
		if http.Routers == nil {
			http.Routers = make(map[string]*traefik.Router)
		}
		http.Routers[traefik.ChallengeName] = &traefik.Router{
			EntryPoints: []string{traefik.EntryPointWeb},
			Rule:        "PathPrefix(`" + acmeChallengePath + "`)",
			Service:     traefik.ChallengeName,
		}
		http.Services = map[string]*traefik.Service{traefik.ChallengeName: {
			LoadBalancer: &traefik.ServersLoadBalancer{Servers: []traefik.Server{{URL: challengeURL}}},
		}}
	}
	if len(http.Routers) > 0 {
		cfg.HTTP = http
	}
	if cert != nil || len(users) > 0 {
		cfg.TLS = &traefik.TLSConfiguration{Certificates: users}
		if cert != nil {
			cfg.TLS.Stores = map[string]*traefik.TLSStore{traefik.DefaultStore: {DefaultCertificate: cert}}
		}
	}
	if cfg.HTTP == nil && cfg.TLS == nil {
		return nil
	}
	return cfg
}

// parseRoute reads back a configuration the gateway wrote for workload id.
// It accepts only what render produces: the route it finds is rendered again
// and must give the same configuration, so a file edited by hand or written
// by something else is never taken for a route.
func parseRoute(id string, cfg *traefik.Configuration, domain string) (route, error) {
	if err := ValidateWorkloadID(id); err != nil {
		return route{}, err
	}
	r := route{id: id}
	var legacy func(route) *traefik.Configuration
	switch {
	case cfg.TCP != nil:
		rt, ok := cfg.TCP.Routers[id]
		svc, ok2 := cfg.TCP.Services[id]
		if !ok || !ok2 || rt == nil || svc == nil || svc.LoadBalancer == nil {
			return route{}, fmt.Errorf("no TCP router and service named %q", id)
		}
		fqdn, ok := unwrap(rt.Rule, "HostSNI(`", "`)")
		if !ok {
			return route{}, fmt.Errorf("unexpected TCP rule %q", rt.Rule)
		}
		r.passthrough = true
		r.fqdn = fqdn
		for _, s := range svc.LoadBalancer.Servers {
			b, err := ParseBackend("server", s.Address, true)
			if err != nil {
				return route{}, err
			}
			r.backends = append(r.backends, b)
		}
	case cfg.HTTP != nil:
		rt, ok := cfg.HTTP.Routers[id]
		svc, ok2 := cfg.HTTP.Services[id]
		if !ok || !ok2 || rt == nil || svc == nil || svc.LoadBalancer == nil {
			return route{}, fmt.Errorf("no HTTP router and service named %q", id)
		}
		fqdn, ok := unwrap(rt.Rule, "Host(`", "`)")
		if !ok {
			return route{}, fmt.Errorf("unexpected HTTP rule %q", rt.Rule)
		}
		r.fqdn = fqdn
		for _, s := range svc.LoadBalancer.Servers {
			b, err := ParseBackend("server", s.URL, false)
			if err != nil {
				return route{}, err
			}
			r.backends = append(r.backends, b)
		}
		if rt.TLS != nil {
			fqdnTLS := len(rt.TLS.Domains) > 0
			switch {
			case rt.TLS.CertResolver == "" && !fqdnTLS:
				r.kind = KindName
			case rt.TLS.CertResolver == "":
				r.kind = KindFQDN
			case rt.TLS.CertResolver == traefik.ResolverDNS:
				r.kind = KindName
				legacy = func(r route) *traefik.Configuration {
					// The wildcard certificate names the domain the
					// route was written for.
					return r.renderLegacy(strings.SplitN(r.fqdn, ".", 2)[1])
				}
			case rt.TLS.CertResolver == traefik.ResolverHTTP:
				r.kind = KindFQDN
				legacy = route.renderLegacyFQDN
			}
		}
	default:
		return route{}, fmt.Errorf("no routers")
	}
	norm, err := NormalizeFQDN(r.fqdn)
	if err != nil || norm != r.fqdn {
		return route{}, fmt.Errorf("unexpected domain %q", r.fqdn)
	}
	if r.kind == "" {
		r.kind = KindFQDN
		if domain != "" && dnsname.IsUnder(r.fqdn, domain) {
			r.kind = KindName
		}
	}
	if len(r.backends) == 0 || len(r.backends) > MaxBackends {
		return route{}, fmt.Errorf("%d backends", len(r.backends))
	}
	want := r.render()
	if legacy != nil {
		want = legacy(r)
	}
	if !reflect.DeepEqual(want, cfg) {
		return route{}, fmt.Errorf("configuration differs from what the gateway writes for this route")
	}
	return r, nil
}

// unwrap returns s without prefix and suffix, if it has both and nothing in
// between could end the quoted value early.
func unwrap(s, prefix, suffix string) (string, bool) {
	if !strings.HasPrefix(s, prefix) || !strings.HasSuffix(s, suffix) || len(s) < len(prefix)+len(suffix) {
		return "", false
	}
	v := s[len(prefix) : len(s)-len(suffix)]
	if strings.ContainsAny(v, "`()&|!, ") {
		return "", false
	}
	return v, true
}
