package gateway

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/rs/zerolog"
	ptypes "github.com/traefik/paerser/types"

	"github.com/threefoldtech/gateway/internal/dnsclient"
	"github.com/threefoldtech/gateway/pkg/zosnet"
)

// DefaultLogLevel is the default Options.Log.Level.
const DefaultLogLevel = "info"

// Values of PublicOptions.Source.
const (
	// PublicSourceNetwork reads the node's public identity from zos's
	// network daemon when no public.* flag gives it, and follows its
	// changes.
	PublicSourceNetwork = "network"
	// PublicSourceFlags takes the node's public identity from the flags
	// only: a node without zos's network daemon.
	PublicSourceFlags = "flags"
	// DefaultPublicSource is the default PublicOptions.Source.
	DefaultPublicSource = PublicSourceNetwork
)

// Options are the gateway's own flags, at the top of its command line:
// where it is served, its state, the node's public identity, the backend
// policy, the pace of its loops, its metrics endpoint and its logs. Flags,
// GATEWAY_* environment variables or the configuration file fill them
// (paerser); the daemon hands them to Config, BusConfig and
// NewMetricsServer.
type Options struct {
	// Broker is BusConfig.Broker. Default DefaultBroker.
	Broker string `description:"Redis broker of zbus: unix:///path/to/socket or tcp://[password@]host:port." json:"broker,omitempty" toml:"broker,omitempty" yaml:"broker,omitempty"`
	// Root is the module's state folder. Default DefaultRoot.
	Root string `description:"Folder of the module's state: proxy/ holds the routes as Traefik files (routes in 64 group files by a hash of the wlID), traefik/ the static configuration, Traefik's ACME storage (the wildcard of the gateway domain) and the certificate files it serves, certs/ the ACME account and certificates of user domains." json:"root,omitempty" toml:"root,omitempty" yaml:"root,omitempty"`
	// Workers is Config.Workers and BusConfig.Workers. Default
	// DefaultWorkers.
	Workers uint `description:"Calls served in parallel." json:"workers,omitempty" toml:"workers,omitempty" yaml:"workers,omitempty"`
	// Resolver is the DNS server of DNSResolver, host[:port]. Default: the
	// system's (ResolverServer).
	Resolver string `description:"DNS server (host[:port]) asked for the records of user domains. Default: the first name server of /etc/resolv.conf." json:"resolver,omitempty" toml:"resolver,omitempty" yaml:"resolver,omitempty"`
	// Public is the node's public identity.
	Public PublicOptions `description:"The node's public identity." json:"public,omitempty" toml:"public,omitempty" yaml:"public,omitempty"`
	// Routes sets the pace of the module's loops over the routes.
	Routes RoutesOptions `description:"The routes folder."  json:"routes,omitempty" toml:"routes,omitempty" yaml:"routes,omitempty"`
	// Backends is the backend policy.
	Backends BackendsOptions `description:"Backend policy." json:"backends,omitempty" toml:"backends,omitempty" yaml:"backends,omitempty"`
	// Metrics is the gateway's own Prometheus endpoint.
	Metrics MetricsOptions `description:"The gateway's own Prometheus endpoint." json:"metrics,omitempty" toml:"metrics,omitempty" yaml:"metrics,omitempty"`
	// Log is the gateway's logging.
	Log LogOptions `description:"Logging." json:"log,omitempty" toml:"log,omitempty" yaml:"log,omitempty"`
}

// PublicOptions are the public.* flags: the node's public identity.
type PublicOptions struct {
	// Domain is Config.Domain. Empty disables name proxies.
	Domain string `description:"Gateway domain: name proxies are served at <name>.<domain>. Empty disables name proxies." json:"domain,omitempty" toml:"domain,omitempty" yaml:"domain,omitempty"`
	// IPv4 is the node's public IPv4 address, one of Config.PublicIPs.
	IPv4 string `description:"Public IPv4 of the node. User domains must resolve to the node's public IPs." json:"ipv4,omitempty" toml:"ipv4,omitempty" yaml:"ipv4,omitempty"`
	// IPv6 is the node's public IPv6 address, one of Config.PublicIPs.
	IPv6 string `description:"Public IPv6 of the node." json:"ipv6,omitempty" toml:"ipv6,omitempty" yaml:"ipv6,omitempty"`
	// Source says where Domain, IPv4 and IPv6 come from when none of them
	// is set: PublicSourceNetwork or PublicSourceFlags. Default
	// DefaultPublicSource.
	Source string `description:"Where the domain and public IPs come from when none of --public.domain, --public.ipv4, --public.ipv6 is given: network (zos's network daemon, module network on --broker, asked at start and every --public.interval; a change restarts the gateway with the new values) or flags (none: no name proxies, no FQDN proxies)." json:"source,omitempty" toml:"source,omitempty" yaml:"source,omitempty"`
	// Interval is how often the network daemon is asked for changes
	// (zosnet.PublicSourceConfig.Interval). Default zosnet.DefaultInterval
	// (30s).
	Interval ptypes.Duration `description:"How often zos's network daemon is asked whether the domain or the public IPs changed (--public.source=network)." json:"interval,omitempty" toml:"interval,omitempty" yaml:"interval,omitempty"`
}

// FromNetwork tells whether the node's public identity is read from zos's
// network daemon: Source is PublicSourceNetwork and no flag gives any of
// it. A flag given wins, and then the flags are the whole identity.
func (o PublicOptions) FromNetwork() bool {
	return o.Source == PublicSourceNetwork && o.Domain == "" && o.IPv4 == "" && o.IPv6 == ""
}

// RoutesOptions are the routes.* flags.
type RoutesOptions struct {
	// Sweep is Config.SweepInterval. Default DefaultSweepInterval (5s).
	Sweep ptypes.Duration `description:"How often proxy/ is swept: whatever appeared there that the gateway did not write is moved to proxy-quarantine/." json:"sweep,omitempty" toml:"sweep,omitempty" yaml:"sweep,omitempty"`
	// Status is Config.StatusInterval. Default DefaultStatusInterval (15s).
	Status ptypes.Duration `description:"How often the status of every route (served, certificate, backends' health) is read from Traefik for List." json:"status,omitempty" toml:"status,omitempty" yaml:"status,omitempty"`
}

// BackendsOptions are the backends.* flags.
type BackendsOptions struct {
	// Allow are the networks of Config.Allow, as CIDR strings.
	Allow []string `description:"Networks (CIDR, comma separated) admitted as backends although the default policy refuses them (loopback, link-local, the node's own IPs...)." json:"allow,omitempty" toml:"allow,omitempty" yaml:"allow,omitempty"`
}

// MetricsOptions are the metrics.* flags.
type MetricsOptions struct {
	// Address is the address of NewMetricsServer, which must be loopback.
	// Default DefaultMetricsAddress ("127.0.0.1:8083").
	Address string `description:"Loopback address of the gateway's Prometheus endpoint (/metrics): per-workload byte totals and the module's health." json:"address,omitempty" toml:"address,omitempty" yaml:"address,omitempty"`
}

// LogOptions are the log.* flags.
type LogOptions struct {
	// Level is the level of the gateway's logs (LogLevel). Default
	// DefaultLogLevel ("info").
	Level string `description:"Log level: debug, info, warn, error." json:"level,omitempty" toml:"level,omitempty" yaml:"level,omitempty"`
}

// SetDefaults sets every option to its default; paerser calls it before it
// applies the flags.
func (o *Options) SetDefaults() {
	*o = Options{
		Broker:  DefaultBroker,
		Root:    DefaultRoot,
		Workers: DefaultWorkers,
		Public:  PublicOptions{Source: DefaultPublicSource, Interval: ptypes.Duration(zosnet.DefaultInterval)},
		Routes:  RoutesOptions{Sweep: ptypes.Duration(DefaultSweepInterval), Status: ptypes.Duration(DefaultStatusInterval)},
		Metrics: MetricsOptions{Address: DefaultMetricsAddress},
		Log:     LogOptions{Level: DefaultLogLevel},
	}
}

// Validate checks the options; each error is one line that names the flag.
// Unlike Config and BusConfig, whose zero values mean the defaults, a zero
// or empty value given as a flag is an error.
func (o Options) Validate() error {
	_, err := o.parse()
	return err
}

// PublicIPs returns the node's public addresses, Public.IPv4 then
// Public.IPv6, those that are set. Call it on valid options.
func (o Options) PublicIPs() []netip.Addr {
	p, _ := o.parse()
	return p.publicIPs
}

// AllowedNetworks returns Backends.Allow as masked prefixes. Call it on
// valid options.
func (o Options) AllowedNetworks() []netip.Prefix {
	p, _ := o.parse()
	return p.allow
}

// LogLevel returns Log.Level. Call it on valid options.
func (o Options) LogLevel() zerolog.Level {
	p, _ := o.parse()
	return p.level
}

// ResolverServer returns Resolver as host:port or, when it is empty, the
// first name server of /etc/resolv.conf.
func (o Options) ResolverServer() (string, error) {
	if o.Resolver != "" {
		return dnsclient.ServerAddress(o.Resolver), nil
	}
	server, err := dnsclient.SystemServer()
	if err != nil {
		return "", fmt.Errorf("--resolver not set and %w", err)
	}
	return server, nil
}

// parsedOptions are the values of Options that are parsed to be checked.
type parsedOptions struct {
	publicIPs []netip.Addr
	allow     []netip.Prefix
	level     zerolog.Level
}

// parse checks the options and returns the values it parsed on the way.
func (o Options) parse() (parsedOptions, error) {
	var p parsedOptions
	if o.Workers == 0 {
		return p, fmt.Errorf("--workers must be at least 1")
	}
	if o.Root == "" {
		return p, fmt.Errorf("--root must not be empty")
	}
	if !strings.HasPrefix(o.Broker, "unix://") && !strings.HasPrefix(o.Broker, "tcp://") {
		return p, fmt.Errorf("--broker %q: expected unix:///path or tcp://host:port", o.Broker)
	}
	for _, a := range []struct {
		flag, value string
		want4       bool
	}{{"--public.ipv4", o.Public.IPv4, true}, {"--public.ipv6", o.Public.IPv6, false}} {
		if a.value == "" {
			continue
		}
		ip, err := netip.ParseAddr(a.value)
		if err != nil {
			return p, fmt.Errorf("%s %q: not an IP address", a.flag, a.value)
		}
		if ip.Is4() != a.want4 {
			return p, fmt.Errorf("%s %q: wrong address family", a.flag, a.value)
		}
		p.publicIPs = append(p.publicIPs, ip)
	}
	if o.Public.Source != PublicSourceNetwork && o.Public.Source != PublicSourceFlags {
		return p, fmt.Errorf("--public.source %q: expected %s or %s", o.Public.Source, PublicSourceNetwork, PublicSourceFlags)
	}
	if o.Public.Interval <= 0 {
		return p, fmt.Errorf("--public.interval must be positive")
	}
	for _, v := range o.Backends.Allow {
		prefix, err := netip.ParsePrefix(strings.TrimSpace(v))
		if err != nil {
			return p, fmt.Errorf("--backends.allow %q: not a CIDR network", v)
		}
		p.allow = append(p.allow, prefix.Masked())
	}
	if _, _, err := net.SplitHostPort(o.Metrics.Address); err != nil {
		return p, fmt.Errorf("--metrics.address %q: expected [host]:port", o.Metrics.Address)
	}
	if o.Routes.Status <= 0 {
		return p, fmt.Errorf("--routes.status must be positive")
	}
	if o.Routes.Sweep <= 0 {
		return p, fmt.Errorf("--routes.sweep must be positive")
	}
	level, err := zerolog.ParseLevel(o.Log.Level)
	if err != nil || o.Log.Level == "" {
		return p, fmt.Errorf("--log.level %q: expected debug, info, warn or error", o.Log.Level)
	}
	p.level = level
	return p, nil
}
