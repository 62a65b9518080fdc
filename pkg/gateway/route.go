package gateway

import (
	"net/netip"
	"time"

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
	id   string
	fqdn string
	kind Kind
	// name is the label of a name proxy under the gateway domain.
	name        string
	backends    []Backend
	passthrough bool
	// contract is the bus contract the route was set through.
	contract string
	// network is the tenant's private network the backends are in, empty
	// for backends Traefik reaches directly.
	network string
	// via maps each target (targets) of a route with a network to the
	// address Traefik connects to (Networks.Attach).
	via map[netip.AddrPort]netip.AddrPort
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
	cfg := r.renderRoute()
	if renderExtra != nil {
		renderExtra(r.id, cfg)
	}
	return cfg
}

// renderExtra, when set, changes what every route renders into: the tests
// use it to show that a change of the rendering costs no route on upgrade.
var renderExtra func(id string, cfg *traefik.Configuration)

// renderRoute builds the Traefik configuration of a route as this version
// renders it.
func (r route) renderRoute() *traefik.Configuration {
	if r.passthrough {
		tcpServers := make([]traefik.TCPServer, len(r.backends))
		httpServers := make([]traefik.Server, len(r.backends))
		for i, b := range r.backends {
			tcpServers[i] = traefik.TCPServer{Address: r.reach(b.Addr).String()}
			httpServers[i] = traefik.Server{URL: "http://" + r.reach(netip.AddrPortFrom(b.Addr.Addr(), challengePort)).String()}
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
		servers[i] = traefik.Server{URL: r.dialed(b).String(false)}
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
