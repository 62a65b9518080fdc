package traefik

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The types below copy the names of Traefik's static configuration
// (github.com/traefik/traefik/v3/pkg/config/static), only the parts the
// gateway writes. Traefik fills defaults into every section it finds in the
// file (paerser calls SetDefaults on each struct it creates), so a field
// whose Traefik default is not its zero value and that the gateway wants at
// zero is written without omitempty, or as a pointer.

// StaticConfiguration is Traefik's static configuration file.
type StaticConfiguration struct {
	Global                *Global                         `yaml:"global,omitempty"`
	EntryPoints           map[string]*EntryPoint          `yaml:"entryPoints,omitempty"`
	Providers             *Providers                      `yaml:"providers,omitempty"`
	API                   *API                            `yaml:"api,omitempty"`
	Metrics               *Metrics                        `yaml:"metrics,omitempty"`
	Ping                  *Ping                           `yaml:"ping,omitempty"`
	Log                   *TraefikLog                     `yaml:"log,omitempty"`
	CertificatesResolvers map[string]*CertificateResolver `yaml:"certificatesResolvers,omitempty"`
}

// Global holds Traefik's global switches. Both are written even when false:
// Traefik's command line defaults checkNewVersion to true.
type Global struct {
	CheckNewVersion    bool `yaml:"checkNewVersion"`
	SendAnonymousUsage bool `yaml:"sendAnonymousUsage"`
}

// EntryPoint is one listening address of Traefik.
type EntryPoint struct {
	Address string `yaml:"address"`
	// AsDefault puts the entry point in the list used by routers that name
	// none. Once one entry point has it, only the flagged ones are used.
	AsDefault bool `yaml:"asDefault,omitempty"`
	// AllowACMEByPass lets routers of the dynamic configuration answer
	// /.well-known/acme-challenge/ instead of Traefik's own ACME handler.
	AllowACMEByPass bool                  `yaml:"allowACMEByPass,omitempty"`
	Transport       *EntryPointsTransport `yaml:"transport,omitempty"`
	HTTP            *EntryPointHTTPConfig `yaml:"http,omitempty"`
}

// EntryPointsTransport configures the connections between clients and
// Traefik.
type EntryPointsTransport struct {
	LifeCycle          *LifeCycle          `yaml:"lifeCycle,omitempty"`
	RespondingTimeouts *RespondingTimeouts `yaml:"respondingTimeouts,omitempty"`
}

// LifeCycle bounds how long an entry point drains on shutdown.
type LifeCycle struct {
	GraceTimeOut *Duration `yaml:"graceTimeOut,omitempty"`
}

// RespondingTimeouts are the timeouts of incoming requests. A nil field keeps
// Traefik's default; a zero one disables the timeout.
type RespondingTimeouts struct {
	ReadTimeout  *Duration `yaml:"readTimeout,omitempty"`
	WriteTimeout *Duration `yaml:"writeTimeout,omitempty"`
	IdleTimeout  *Duration `yaml:"idleTimeout,omitempty"`
}

// EntryPointHTTPConfig is the HTTP configuration of an entry point.
type EntryPointHTTPConfig struct {
	Redirections *Redirections `yaml:"redirections,omitempty"`
}

// Redirections is the set of redirections of an entry point.
type Redirections struct {
	EntryPoint *RedirectEntryPoint `yaml:"entryPoint,omitempty"`
}

// RedirectEntryPoint redirects every request of an entry point to another.
type RedirectEntryPoint struct {
	To        string `yaml:"to"`
	Scheme    string `yaml:"scheme,omitempty"`
	Permanent bool   `yaml:"permanent"`
	// Priority of the generated router; Traefik's default is MaxInt-1.
	Priority int `yaml:"priority,omitempty"`
}

// Providers holds the configuration providers.
type Providers struct {
	ProvidersThrottleDuration Duration      `yaml:"providersThrottleDuration,omitempty"`
	File                      *FileProvider `yaml:"file,omitempty"`
}

// FileProvider reads dynamic configuration from the files of Directory.
type FileProvider struct {
	Directory string `yaml:"directory"`
	Watch     bool   `yaml:"watch"`
}

// API enables Traefik's API. Dashboard is written even when false: Traefik
// defaults it to true.
type API struct {
	Dashboard bool `yaml:"dashboard"`
	Insecure  bool `yaml:"insecure,omitempty"`
}

// Metrics holds the metrics exporters.
type Metrics struct {
	Prometheus *Prometheus `yaml:"prometheus,omitempty"`
}

// Prometheus serves metrics in Prometheus' format on EntryPoint at /metrics.
type Prometheus struct {
	EntryPoint           string `yaml:"entryPoint,omitempty"`
	AddEntryPointsLabels bool   `yaml:"addEntryPointsLabels"`
	AddRoutersLabels     bool   `yaml:"addRoutersLabels"`
	AddServicesLabels    bool   `yaml:"addServicesLabels"`
}

// Ping serves /ping on EntryPoint.
type Ping struct {
	EntryPoint string `yaml:"entryPoint,omitempty"`
}

// TraefikLog is Traefik's own log; without FilePath it goes to stdout.
type TraefikLog struct {
	Level    string `yaml:"level,omitempty"`
	Format   string `yaml:"format,omitempty"`
	NoColor  bool   `yaml:"noColor,omitempty"`
	FilePath string `yaml:"filePath,omitempty"`
}

// CertificateResolver obtains certificates for routers naming it.
type CertificateResolver struct {
	ACME *ACMEConfiguration `yaml:"acme,omitempty"`
}

// ACMEConfiguration is an ACME certificate resolver.
type ACMEConfiguration struct {
	Email          string         `yaml:"email,omitempty"`
	CAServer       string         `yaml:"caServer,omitempty"`
	Storage        string         `yaml:"storage"`
	KeyType        string         `yaml:"keyType,omitempty"`
	CACertificates []string       `yaml:"caCertificates,omitempty"`
	HTTPChallenge  *HTTPChallenge `yaml:"httpChallenge,omitempty"`
	DNSChallenge   *DNSChallenge  `yaml:"dnsChallenge,omitempty"`
}

// HTTPChallenge answers HTTP-01 challenges on EntryPoint.
type HTTPChallenge struct {
	EntryPoint string `yaml:"entryPoint"`
}

// DNSChallenge answers DNS-01 challenges through a lego DNS provider.
type DNSChallenge struct {
	Provider    string       `yaml:"provider"`
	Resolvers   []string     `yaml:"resolvers,omitempty"`
	Propagation *Propagation `yaml:"propagation,omitempty"`
}

// Propagation configures lego's check that the TXT record is visible before
// the CA is asked to validate it.
type Propagation struct {
	DisableANSChecks bool `yaml:"disableANSChecks,omitempty"`
	RequireAllRNS    bool `yaml:"requireAllRNS,omitempty"`
}

// Duration is a time.Duration written the way Traefik reads it ("100ms").
// A bare number would be read as seconds.
type Duration time.Duration

// MarshalYAML writes d as a Go duration string.
func (d Duration) MarshalYAML() (any, error) {
	return time.Duration(d).String(), nil
}

// UnmarshalYAML reads d as Traefik does: a Go duration string, or a bare
// number of seconds.
func (d *Duration) UnmarshalYAML(node *yaml.Node) error {
	var s string
	if err := node.Decode(&s); err != nil {
		return err
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		*d = Duration(time.Duration(n) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %s: %w", quoteOpt(s), err)
	}
	*d = Duration(v)
	return nil
}

// Names the gateway's routers refer to.
const (
	// EntryPointWeb is the plain HTTP entry point; it redirects to
	// EntryPointWebSecure except for explicit routers.
	EntryPointWeb = "web"
	// EntryPointWebSecure is the TLS entry point.
	EntryPointWebSecure = "websecure"
	// EntryPointMetrics serves /metrics and /ping, on loopback only.
	EntryPointMetrics = "metrics"
	// ResolverHTTP obtains certificates by HTTP-01 on EntryPointWeb.
	ResolverHTTP = "resolver"
	// ResolverDNS obtains certificates (wildcards included) by DNS-01
	// through lego's httpreq provider.
	ResolverDNS = "dnsresolver"
)

// Defaults of StaticOptions.
const (
	DefaultWebAddress       = ":80"
	DefaultWebSecureAddress = ":443"
	DefaultMetricsAddress   = "127.0.0.1:8082"
	DefaultThrottle         = 100 * time.Millisecond
	DefaultACMECAServer     = "https://acme-v02.api.letsencrypt.org/directory"
	DefaultLogLevel         = "INFO"
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
	// MetricsAddress is the listening address of entry point "metrics", which
	// serves Prometheus metrics at /metrics and the health check at /ping.
	// Default "127.0.0.1:8082". It must not be public: an unspecified host
	// (":8082", "0.0.0.0:8082", "[::]:8082") is refused.
	MetricsAddress string
	// Throttle is Traefik's providersThrottleDuration: how long Traefik waits
	// for more changes before applying the dynamic configuration. Default
	// 100ms (Traefik's own default is 2s).
	Throttle time.Duration
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
}

// logLevels are the levels Traefik accepts (it lowercases them for zerolog).
var logLevels = []string{"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "PANIC"}

// shutdownGrace bounds how long a stopping Traefik lets requests in flight
// finish.
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

// buildStatic validates opts, fills their defaults and returns the static
// configuration RenderStatic renders.
func buildStatic(opts StaticOptions) (*StaticConfiguration, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, err
	}

	// Zero disables the timeout. Traefik v3 defaults readTimeout to 60s and
	// it bounds reading the whole request, body included: a request whose
	// body is still streaming after 60s (a long upload, a gRPC client or
	// bidirectional stream over HTTP/2) gets a 504. Measured on v3.6.12:
	// server-sent events and HTTP/1.1 websockets are not cut (Go clears the
	// read deadline once the body is read, or on hijack), streaming request
	// bodies are, on HTTP/1.1 and HTTP/2 alike. The price of zero: nothing
	// bounds a client that connects and sends its request slowly, or nothing.
	noTimeout := Duration(0)
	// A Traefik being replaced (its static configuration changed) drains
	// for this long before it exits and its successor can start: Traefik's
	// default, 10s, is 10s without a data plane.
	grace := Duration(shutdownGrace)

	var caCerts []string
	if len(opts.ACMECACertificates) > 0 {
		caCerts = append(caCerts, opts.ACMECACertificates...)
	}

	cfg := &StaticConfiguration{
		Global: &Global{},
		EntryPoints: map[string]*EntryPoint{
			EntryPointWeb: {
				Address:   opts.WebAddress,
				AsDefault: true,
				Transport: &EntryPointsTransport{LifeCycle: &LifeCycle{GraceTimeOut: &grace}},
				// Without it Traefik's own challenge router (priority
				// MaxInt) takes every /.well-known/acme-challenge/ path, and
				// passthrough backends could never answer theirs.
				AllowACMEByPass: true,
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
				Transport: &EntryPointsTransport{
					LifeCycle: &LifeCycle{GraceTimeOut: &grace},
					RespondingTimeouts: &RespondingTimeouts{
						ReadTimeout:  &noTimeout,
						WriteTimeout: &noTimeout,
					},
				},
			},
			// Not a default entry point: a router that names no entry point
			// must not become reachable on the metrics address.
			EntryPointMetrics: {
				Address:   opts.MetricsAddress,
				Transport: &EntryPointsTransport{LifeCycle: &LifeCycle{GraceTimeOut: &grace}},
			},
		},
		Providers: &Providers{
			ProvidersThrottleDuration: Duration(opts.Throttle),
			File:                      &FileProvider{Directory: opts.ProxyDir, Watch: true},
		},
		// The binary is built without the web UI; the API is only reachable
		// through a router naming api@internal, and the gateway writes none.
		API: &API{Dashboard: false},
		Metrics: &Metrics{Prometheus: &Prometheus{
			EntryPoint:           EntryPointMetrics,
			AddEntryPointsLabels: true,
			AddServicesLabels:    true,
		}},
		Ping: &Ping{EntryPoint: EntryPointMetrics},
		// Stdout: the supervisor appends it to its log file.
		Log: &TraefikLog{Level: opts.LogLevel, Format: "common", NoColor: true},
		CertificatesResolvers: map[string]*CertificateResolver{
			ResolverHTTP: {ACME: &ACMEConfiguration{
				Email:          opts.ACMEEmail,
				CAServer:       opts.ACMECAServer,
				Storage:        filepath.Join(opts.StateDir, "acme-http.json"),
				KeyType:        certificateKeyType,
				CACertificates: caCerts,
				HTTPChallenge:  &HTTPChallenge{EntryPoint: EntryPointWeb},
			}},
			ResolverDNS: {ACME: &ACMEConfiguration{
				Email:          opts.ACMEEmail,
				CAServer:       opts.ACMECAServer,
				Storage:        filepath.Join(opts.StateDir, "acme-dns.json"),
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

// normalize fills the defaults of o and validates it.
func (o StaticOptions) normalize() (StaticOptions, error) {
	if err := checkAbsOption("ProxyDir", o.ProxyDir); err != nil {
		return o, err
	}
	if err := checkAbsOption("StateDir", o.StateDir); err != nil {
		return o, err
	}
	o.ProxyDir = filepath.Clean(o.ProxyDir)
	o.StateDir = filepath.Clean(o.StateDir)

	if o.WebAddress == "" {
		o.WebAddress = DefaultWebAddress
	}
	if o.WebSecureAddress == "" {
		o.WebSecureAddress = DefaultWebSecureAddress
	}
	if o.MetricsAddress == "" {
		o.MetricsAddress = DefaultMetricsAddress
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
			return o, fmt.Errorf("static option %s %s: %w", a.field, quoteOpt(a.addr), err)
		}
		hostports[i] = [2]string{host, port}
	}
	if host := hostports[2][0]; hostUnspecified(host) {
		return o, fmt.Errorf("static option MetricsAddress %s: the metrics entry point must not listen on every address; give a loopback host such as 127.0.0.1", quoteOpt(o.MetricsAddress))
	}
	for i := range addrs {
		for j := i + 1; j < len(addrs); j++ {
			if entryPointsOverlap(hostports[i], hostports[j]) {
				return o, fmt.Errorf("static options %s %s and %s %s: both listen on port %s", addrs[i].field, quoteOpt(addrs[i].addr), addrs[j].field, quoteOpt(addrs[j].addr), hostports[i][1])
			}
		}
	}

	switch {
	case o.Throttle < 0:
		return o, fmt.Errorf("static option Throttle %s: must not be negative", o.Throttle)
	case o.Throttle == 0:
		o.Throttle = DefaultThrottle
	}

	if o.ACMEEmail != "" {
		addr, err := mail.ParseAddress(o.ACMEEmail)
		if err != nil || addr.Address != o.ACMEEmail {
			return o, fmt.Errorf("static option ACMEEmail %s: not a bare e-mail address", quoteOpt(o.ACMEEmail))
		}
	}

	if o.ACMECAServer == "" {
		o.ACMECAServer = DefaultACMECAServer
	}
	u, err := url.Parse(o.ACMECAServer)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return o, fmt.Errorf("static option ACMECAServer %s: not an https URL", quoteOpt(o.ACMECAServer))
	}

	for _, f := range o.ACMECACertificates {
		if f == "" || !filepath.IsAbs(f) {
			return o, fmt.Errorf("static option ACMECACertificates: %s is not an absolute path", quoteOpt(f))
		}
	}

	for _, r := range o.DNSResolvers {
		host, port, err := net.SplitHostPort(r)
		if err != nil || net.ParseIP(host) == nil || !portValid(port) {
			return o, fmt.Errorf("static option DNSResolvers: %s is not an ip:port address", quoteOpt(r))
		}
	}

	if o.LogLevel == "" {
		o.LogLevel = DefaultLogLevel
	}
	level := strings.ToUpper(o.LogLevel)
	valid := false
	for _, l := range logLevels {
		valid = valid || l == level
	}
	if !valid {
		return o, fmt.Errorf("static option LogLevel %s: not one of %s", quoteOpt(o.LogLevel), strings.Join(logLevels, ", "))
	}
	o.LogLevel = level

	return o, nil
}

func checkAbsOption(field, dir string) error {
	switch {
	case dir == "":
		return fmt.Errorf("static option %s: required", field)
	case !filepath.IsAbs(dir):
		return fmt.Errorf("static option %s %s: not an absolute path", field, quoteOpt(dir))
	}
	return nil
}

var errNotEntryPointAddress = errors.New(`not a "[host]:port" listening address`)

// splitEntryPointAddress splits a Traefik entry-point address. Traefik would also
// take a "/udp" suffix and port 0; the gateway wants neither.
func splitEntryPointAddress(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil || !portValid(port) || strings.ContainsAny(host, "/ ") {
		return "", "", errNotEntryPointAddress
	}
	return host, port, nil
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

// quoteOpt quotes s for an error message, truncated to keep the message short.
func quoteOpt(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strconv.Quote(s)
}
