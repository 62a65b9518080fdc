package traefik

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"

	"github.com/threefoldtech/gateway/internal/dnsname"
	"github.com/threefoldtech/gateway/internal/quote"
)

// Names the gateway's routers refer to.
const (
	// EntryPointWeb is the plain HTTP entry point; it redirects to
	// EntryPointWebSecure except for explicit routers.
	EntryPointWeb = "web"
	// EntryPointWebSecure is the TLS entry point.
	EntryPointWebSecure = "websecure"
	// EntryPointInternal is the loopback-only entry point of Traefik's own
	// endpoints: /metrics, /ping, the API under /api and, with
	// StaticOptions.Debug, /debug/pprof. Its name is the one Traefik serves
	// its API on (api.insecure); without an entry point of that name,
	// Traefik would create one on ":8080", every address.
	EntryPointInternal = "traefik"
	// ResolverHTTP named the resolver that obtained the certificates of
	// user domains by HTTP-01, before the gateway obtained them itself
	// (pkg/certs). It is no longer configured: routes written with it are
	// read back and written again without it, and its storage,
	// LegacyHTTPStorage, is imported once.
	ResolverHTTP = "resolver"
	// ResolverDNS obtains certificates (wildcards included) by DNS-01
	// through lego's httpreq provider.
	ResolverDNS = "dnsresolver"
)

// Defaults of StaticOptions.
const (
	// DefaultWebAddress is the default StaticOptions.WebAddress.
	DefaultWebAddress = ":80"
	// DefaultWebSecureAddress is the default StaticOptions.WebSecureAddress.
	DefaultWebSecureAddress = ":443"
	// DefaultMetricsAddress is the default StaticOptions.MetricsAddress:
	// loopback, as entry point "traefik" (metrics, ping, API) must be.
	DefaultMetricsAddress = "127.0.0.1:8082"
	// DefaultThrottle is the default StaticOptions.Throttle.
	DefaultThrottle = 100 * time.Millisecond
	// DefaultReadTimeout is the default StaticOptions.ReadTimeout: Traefik's
	// own default, and long enough for a slow link to send a TLS ClientHello
	// and a request head many times over. It also bounds request bodies: an
	// upload must be complete within it.
	DefaultReadTimeout = 60 * time.Second
	// DefaultHandoverDrain is the default StaticOptions.HandoverDrain and
	// ProcessConfig.HandoverDrain: ten minutes for the websockets, streams
	// and passthrough connections of a replaced Traefik to end by
	// themselves.
	DefaultHandoverDrain = 10 * time.Minute
	// DefaultACMECAServer is the default StaticOptions.ACMECAServer: Let's
	// Encrypt production.
	DefaultACMECAServer = "https://acme-v02.api.letsencrypt.org/directory"
	// DefaultLogLevel is the default StaticOptions.LogLevel.
	DefaultLogLevel = "INFO"
)

// StaticOptions are the gateway's choices for Traefik's static
// configuration; RenderStatic turns them into the file.
type StaticOptions struct {
	// ProxyDir is the absolute path of the folder the file provider watches
	// (one dynamic-configuration file per route). Required.
	ProxyDir string
	// StateDir is the absolute path of Traefik's state folder (<root>/traefik);
	// the ACME storage files acme-http.json and acme-dns.json, one per
	// resolver, live there. Required.
	StateDir string
	// WebAddress is the listening address of entry point "web", as
	// "[host]:port". Default ":80". Every request on it is redirected to
	// websecure by a router of priority 1, so that any explicit router on web
	// (HTTP-01 challenge routers of passthrough backends) wins.
	WebAddress string
	// WebSecureAddress is the listening address of entry point "websecure".
	// Default ":443".
	WebSecureAddress string
	// MetricsAddress is the listening address of entry point "traefik"
	// (EntryPointInternal), which serves Prometheus metrics at /metrics, the
	// health check at /ping and Traefik's API, read-only and
	// unauthenticated, at /api (APIURL). Default "127.0.0.1:8082". It must
	// not be public: an unspecified host (":8082", "0.0.0.0:8082",
	// "[::]:8082") is refused.
	MetricsAddress string
	// Throttle is Traefik's providersThrottleDuration: how long Traefik waits
	// for more changes before applying the dynamic configuration. Default
	// 100ms (Traefik's own default is 2s).
	Throttle time.Duration
	// ReadTimeout is the readTimeout of entry points "web" and "websecure":
	// how long a client may take, from its connection, to send the TLS
	// ClientHello and the request head, and then, from the start of each
	// request, the whole request with its body. Nil means
	// DefaultReadTimeout, 60s; zero means no timeout. Traefik v3.6 has no
	// timeout of the head alone: a bound on silent or slow clients is also
	// a bound on uploads and on streamed request bodies (gRPC streams
	// included) on the routes Traefik terminates. Responses are never
	// bounded: server-sent events and HTTP/1.1 websockets outlive it, and so
	// do passthrough connections once routed.
	ReadTimeout *time.Duration
	// HandoverDrain is the graceTimeOut of entry points "web" and
	// "websecure": how long a Traefik told to stop (SIGTERM) keeps the
	// connections it holds, websockets, streams and passthrough connections
	// included, while it takes no new one; it exits when the last one ends,
	// or closes those left when HandoverDrain ends. Default
	// DefaultHandoverDrain, 10m; at least shutdownGrace (2s). The
	// internal entry point drains for shutdownGrace.
	HandoverDrain time.Duration
	// ACMEEmail is the contact address of the ACME account. Optional.
	ACMEEmail string
	// ACMECAServer is the ACME directory URL (https). Default Let's Encrypt
	// production, DefaultACMECAServer.
	ACMECAServer string
	// ACMECACertificates are absolute paths of PEM files of CAs trusted for
	// the ACME server's HTTPS certificate (a private CA such as Pebble's),
	// set on both resolvers. Optional: the system roots are used otherwise.
	ACMECACertificates []string
	// DNSResolvers are the "ip:port" DNS servers lego asks whether the
	// challenge TXT record is visible: the gateway's own DNS server, e.g.
	// "127.0.0.1:53". Optional: /etc/resolv.conf otherwise.
	DNSResolvers []string
	// LogLevel is Traefik's log level: TRACE, DEBUG, INFO, WARN, ERROR,
	// FATAL or PANIC. Default "INFO".
	LogLevel string
	// Debug turns on Traefik's api.debug: Go's profiles at /debug/pprof/
	// and expvar at /debug/vars, on the loopback entry point only. Default
	// false; meant for benchmarks, not for nodes.
	Debug bool
}

// logLevels are the levels Traefik accepts (it lowercases them for zerolog).
var logLevels = []string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "PANIC"}

// shutdownGrace bounds how long a stopping Traefik lets requests in flight
// on the internal entry point finish, and is the shortest HandoverDrain.
const shutdownGrace = 2 * time.Second

// certificateKeyType is the key of every issued certificate. Traefik's
// default, RSA4096, takes up to a second to generate here and about 6 ms to
// sign each full handshake; a P-256 key takes well under a millisecond.
const certificateKeyType = "EC256"

// RenderStatic validates opts, fills their defaults and renders Traefik's
// static configuration as YAML.
func RenderStatic(opts StaticOptions) ([]byte, error) {
	cfg, err := buildStatic(opts)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(cfg); err != nil {
		return nil, fmt.Errorf("rendering static configuration: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("rendering static configuration: %w", err)
	}
	return buf.Bytes(), nil
}

// buildStatic fills the defaults of opts, validates them and returns the
// static configuration RenderStatic renders.
func buildStatic(opts StaticOptions) (*StaticConfiguration, error) {
	opts.provision()
	if err := opts.validate(); err != nil {
		return nil, err
	}

	// Traefik v3.6 reads a connection under one deadline, readTimeout: set at
	// accept, it bounds the ClientHello (or the first bytes of a plain
	// request) and, as http.Server.ReadTimeout, the TLS handshake, each
	// request head and each whole request, body included; it has no
	// readHeaderTimeout. Zero leaves a connection that sends nothing, or half
	// a ClientHello, open forever, and enough of them exhaust Traefik's
	// descriptors for every route. A bound also cuts the request bodies still
	// streaming at its end (uploads, gRPC streams). Measured on v3.6.12:
	// server-sent events and HTTP/1.1 websockets are not cut (Go clears the
	// read deadline once the request body is read, or on hijack), nor are
	// passthrough connections (Traefik clears the deadline once it routed
	// the ClientHello); streamed request bodies are, over HTTP/1.1 and
	// HTTP/2, with a 504 or a 499. WriteTimeout stays zero on websecure: it
	// would bound whole responses, downloads and streams included.
	readTimeout := Duration(*opts.ReadTimeout)
	noTimeout := Duration(0)
	// A Traefik being handed over keeps its connections for the drain while
	// its successor takes every new one: an upgrade must not cut tenants'
	// websockets. Only the gateway's own API connections go to the
	// internal entry point: Traefik's default there, 10s, would only delay
	// a stop.
	grace := Duration(shutdownGrace)
	drain := Duration(opts.HandoverDrain)

	var caCerts []string
	if len(opts.ACMECACertificates) > 0 {
		caCerts = append(caCerts, opts.ACMECACertificates...)
	}

	cfg := &StaticConfiguration{
		Global: &Global{},
		// Backends are addressed by IP on the node's private networks:
		// an https:// backend cannot hold a certificate a public CA
		// issued for its address, and no node CA exists to issue one.
		// Its TLS keeps the traffic private; who it is, the route says.
		ServersTransport: &ServersTransport{InsecureSkipVerify: true},
		EntryPoints: map[string]*EntryPoint{
			EntryPointWeb: {
				Address:   opts.WebAddress,
				AsDefault: true,
				ReusePort: true,
				Transport: &EntryPointsTransport{
					LifeCycle:          &LifeCycle{GraceTimeOut: &drain},
					RespondingTimeouts: &RespondingTimeouts{ReadTimeout: &readTimeout},
				},
				HTTP: &EntryPointHTTPConfig{
					Redirections: &Redirections{EntryPoint: &RedirectEntryPoint{
						To:        EntryPointWebSecure,
						Scheme:    "https",
						Permanent: true,
						Priority:  1,
					}},
				},
			},
			EntryPointWebSecure: {
				Address:   opts.WebSecureAddress,
				AsDefault: true,
				ReusePort: true,
				Transport: &EntryPointsTransport{
					LifeCycle: &LifeCycle{GraceTimeOut: &drain},
					RespondingTimeouts: &RespondingTimeouts{
						ReadTimeout:  &readTimeout,
						WriteTimeout: &noTimeout,
					},
				},
			},
			// Not a default entry point: a router that names no entry point
			// must not become reachable on the metrics address.
			EntryPointInternal: {
				Address:   opts.MetricsAddress,
				ReusePort: true,
				Transport: &EntryPointsTransport{LifeCycle: &LifeCycle{GraceTimeOut: &grace}},
			},
		},
		Providers: &Providers{
			ProvidersThrottleDuration: Duration(opts.Throttle),
			File:                      &FileProvider{Directory: filepath.Clean(opts.ProxyDir), Watch: true},
		},
		// Insecure: Traefik routes /api (and /debug with Debug) to its API
		// on the entry point named "traefik", EntryPointInternal, which
		// listens on loopback only; the gateway asks it whether a route is
		// served. No dashboard: the binary is built without the web UI.
		API: &StaticAPI{Insecure: true, Dashboard: false, Debug: opts.Debug},
		Metrics: &Metrics{Prometheus: &Prometheus{
			EntryPoint:           EntryPointInternal,
			AddEntryPointsLabels: true,
			AddServicesLabels:    true,
		}},
		Ping: &Ping{EntryPoint: EntryPointInternal},
		// Stdout: the supervisor appends it to its log file.
		// validate accepts the level in any case; Traefik's own spelling is
		// upper case.
		Log: &TraefikLog{Level: strings.ToUpper(opts.LogLevel), Format: "common", NoColor: true},
		CertificatesResolvers: map[string]*CertificateResolver{
			ResolverDNS: {ACME: &ACMEConfiguration{
				Email:          opts.ACMEEmail,
				CAServer:       opts.ACMECAServer,
				Storage:        filepath.Join(opts.StateDir, acmeDNSStorageName),
				KeyType:        certificateKeyType,
				CACertificates: caCerts,
				DNSChallenge: &DNSChallenge{
					Provider:  "httpreq",
					Resolvers: opts.DNSResolvers,
					// Check the TXT record at the listed resolvers only:
					// otherwise lego also asks the zone's authoritative
					// servers on port 53.
					Propagation: &Propagation{DisableANSChecks: true, RequireAllRNS: true},
				},
			}},
		},
	}
	return cfg, nil
}

// provision fills the defaults of the options left empty.
func (o *StaticOptions) provision() {
	if o.WebAddress == "" {
		o.WebAddress = DefaultWebAddress
	}
	if o.WebSecureAddress == "" {
		o.WebSecureAddress = DefaultWebSecureAddress
	}
	if o.MetricsAddress == "" {
		o.MetricsAddress = DefaultMetricsAddress
	}
	if o.Throttle == 0 {
		o.Throttle = DefaultThrottle
	}
	if o.ReadTimeout == nil {
		o.ReadTimeout = new(DefaultReadTimeout)
	}
	if o.HandoverDrain == 0 {
		o.HandoverDrain = DefaultHandoverDrain
	}
	if o.ACMECAServer == "" {
		o.ACMECAServer = DefaultACMECAServer
	}
	if o.LogLevel == "" {
		o.LogLevel = DefaultLogLevel
	}
}

// validate checks provisioned options. It changes nothing: its errors quote
// each value as the caller gave it, so buildStatic, after it, cleans the
// paths and upper-cases the log level.
func (o StaticOptions) validate() error {
	if err := checkAbsOption("ProxyDir", o.ProxyDir); err != nil {
		return err
	}
	if err := checkAbsOption("StateDir", o.StateDir); err != nil {
		return err
	}

	addrs := []struct{ field, addr string }{
		{"WebAddress", o.WebAddress},
		{"WebSecureAddress", o.WebSecureAddress},
		{"MetricsAddress", o.MetricsAddress},
	}
	hostports := make([][2]string, len(addrs))
	for i, a := range addrs {
		host, port, err := splitEntryPointAddress(a.addr)
		if err != nil {
			return fmt.Errorf("static option %s %s: %w", a.field, quote.Short(a.addr), err)
		}
		hostports[i] = [2]string{host, port}
	}
	if host := hostports[2][0]; hostUnspecified(host) {
		return fmt.Errorf("static option MetricsAddress %s: entry point \"traefik\" serves metrics and Traefik's API unauthenticated and must not listen on every address; give a loopback host such as 127.0.0.1", quote.Short(o.MetricsAddress))
	}
	for i := range addrs {
		for j := i + 1; j < len(addrs); j++ {
			if entryPointsOverlap(hostports[i], hostports[j]) {
				return fmt.Errorf("static options %s %s and %s %s: both listen on port %s", addrs[i].field, quote.Short(addrs[i].addr), addrs[j].field, quote.Short(addrs[j].addr), hostports[i][1])
			}
		}
	}

	if o.Throttle < 0 {
		return fmt.Errorf("static option Throttle %s: must not be negative", o.Throttle)
	}
	if *o.ReadTimeout < 0 {
		return fmt.Errorf("static option ReadTimeout %s: must not be negative (zero means no timeout)", *o.ReadTimeout)
	}
	if o.HandoverDrain < shutdownGrace {
		return fmt.Errorf("static option HandoverDrain %s: must be at least %s", o.HandoverDrain, shutdownGrace)
	}

	if o.ACMEEmail != "" {
		addr, err := mail.ParseAddress(o.ACMEEmail)
		if err != nil || addr.Address != o.ACMEEmail {
			return fmt.Errorf("static option ACMEEmail %s: not a bare e-mail address", quote.Short(o.ACMEEmail))
		}
	}

	u, err := url.Parse(o.ACMECAServer)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("static option ACMECAServer %s: not an https URL", quote.Short(o.ACMECAServer))
	}

	for _, f := range o.ACMECACertificates {
		if f == "" || !filepath.IsAbs(f) {
			return fmt.Errorf("static option ACMECACertificates: %s is not an absolute path", quote.Short(f))
		}
	}

	for _, r := range o.DNSResolvers {
		host, port, err := net.SplitHostPort(r)
		if err != nil || net.ParseIP(host) == nil || !portValid(port) {
			return fmt.Errorf("static option DNSResolvers: %s is not an ip:port address", quote.Short(r))
		}
	}

	if !slices.Contains(logLevels, strings.ToUpper(o.LogLevel)) {
		return fmt.Errorf("static option LogLevel %s: not one of %s", quote.Short(o.LogLevel), strings.Join(logLevels, ", "))
	}
	return nil
}

func checkAbsOption(field, dir string) error {
	switch {
	case dir == "":
		return fmt.Errorf("static option %s: required", field)
	case !filepath.IsAbs(dir):
		return fmt.Errorf("static option %s %s: not an absolute path", field, quote.Short(dir))
	}
	return nil
}

var errNotEntryPointAddress = errors.New(`not a "[host]:port" listening address`)

// splitEntryPointAddress splits a Traefik entry-point address. Traefik would also
// take a "/udp" suffix and port 0; the gateway wants neither. The host is
// empty, an IP address or a host name: anything else, a newline say, could
// be read back by Traefik as another address than the one checked.
func splitEntryPointAddress(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil || !portValid(port) || !hostValid(host) {
		return "", "", errNotEntryPointAddress
	}
	return host, port, nil
}

// hostValid tells whether host is empty, an IP address (with a zone, for a
// link-local one) or a host name of letters, digits and hyphens.
func hostValid(host string) bool {
	if host == "" {
		return true
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	for _, label := range strings.Split(host, ".") {
		if _, err := dnsname.NormalizeLabel(label); err != nil {
			return false
		}
	}
	return true
}

func portValid(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n > 0 && n <= 65535 && strconv.Itoa(n) == port
}

func hostUnspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// entryPointsOverlap tells whether two host:port listeners would clash.
func entryPointsOverlap(a, b [2]string) bool {
	if a[1] != b[1] {
		return false
	}
	return a[0] == b[0] || hostUnspecified(a[0]) || hostUnspecified(b[0])
}

// LogLevel returns Traefik's log level closest to the gateway's.
func LogLevel(l zerolog.Level) string {
	switch l {
	case zerolog.TraceLevel, zerolog.DebugLevel:
		return "DEBUG"
	case zerolog.WarnLevel:
		return "WARN"
	case zerolog.ErrorLevel, zerolog.FatalLevel, zerolog.PanicLevel:
		return "ERROR"
	}
	return DefaultLogLevel
}
