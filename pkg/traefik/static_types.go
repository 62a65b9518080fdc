package traefik

import (
	"fmt"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/threefoldtech/gateway/internal/quote"
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
	ServersTransport      *ServersTransport               `yaml:"serversTransport,omitempty"`
	EntryPoints           map[string]*EntryPoint          `yaml:"entryPoints,omitempty"`
	Providers             *Providers                      `yaml:"providers,omitempty"`
	API                   *StaticAPI                      `yaml:"api,omitempty"`
	Metrics               *Metrics                        `yaml:"metrics,omitempty"`
	Ping                  *Ping                           `yaml:"ping,omitempty"`
	Log                   *TraefikLog                     `yaml:"log,omitempty"`
	CertificatesResolvers map[string]*CertificateResolver `yaml:"certificatesResolvers,omitempty"`
}

// ServersTransport configures how Traefik connects to HTTP servers that do
// not name a transport of their own.
type ServersTransport struct {
	// InsecureSkipVerify accepts any certificate from an https:// server.
	InsecureSkipVerify bool `yaml:"insecureSkipVerify,omitempty"`
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
	// ReusePort sets SO_REUSEPORT on the listener, so that a successor can
	// listen on the same address before this Traefik stops.
	ReusePort bool                  `yaml:"reusePort,omitempty"`
	Transport *EntryPointsTransport `yaml:"transport,omitempty"`
	HTTP      *EntryPointHTTPConfig `yaml:"http,omitempty"`
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

// StaticAPI is the api section, Traefik's static.API (the name API is the
// client of the API, in api.go). It enables Traefik's API. Insecure serves it, without a router of the
// dynamic configuration, on the entry point named "traefik" (Traefik creates
// one on ":8080" when none has that name). Dashboard is written even when
// false: Traefik defaults it to true. Debug adds /debug/pprof and
// /debug/vars beside /api.
type StaticAPI struct {
	Insecure  bool `yaml:"insecure,omitempty"`
	Dashboard bool `yaml:"dashboard"`
	Debug     bool `yaml:"debug,omitempty"`
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

// TraefikLog is Traefik's own log. It goes to stdout, which the supervisor
// appends to LogFileName: one file holds Traefik's log and its crashes.
type TraefikLog struct {
	Level   string `yaml:"level,omitempty"`
	Format  string `yaml:"format,omitempty"`
	NoColor bool   `yaml:"noColor,omitempty"`
}

// CertificateResolver obtains certificates for routers naming it.
type CertificateResolver struct {
	ACME *ACMEConfiguration `yaml:"acme,omitempty"`
}

// ACMEConfiguration is an ACME certificate resolver.
type ACMEConfiguration struct {
	Email          string        `yaml:"email,omitempty"`
	CAServer       string        `yaml:"caServer,omitempty"`
	Storage        string        `yaml:"storage"`
	KeyType        string        `yaml:"keyType,omitempty"`
	CACertificates []string      `yaml:"caCertificates,omitempty"`
	DNSChallenge   *DNSChallenge `yaml:"dnsChallenge,omitempty"`
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
// number of seconds. It lets a rendered file be read back into the model,
// which is how the tests check what RenderStatic wrote.
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
		return fmt.Errorf("duration %s: %w", quote.Short(s), err)
	}
	*d = Duration(v)
	return nil
}
