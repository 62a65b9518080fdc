package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	ptypes "github.com/traefik/paerser/types"

	"github.com/threefoldtech/gateway/internal/dnsclient"
	"github.com/threefoldtech/gateway/pkg/acmedns"
	"github.com/threefoldtech/gateway/pkg/certs"
	"github.com/threefoldtech/gateway/pkg/gateway"
	"github.com/threefoldtech/gateway/pkg/meter"
	"github.com/threefoldtech/gateway/pkg/traefik"
)

// Configuration is the command line of the gateway. Flags, GATEWAY_*
// environment variables and --configfile fill it, as in Traefik.
type Configuration struct {
	ConfigFile string   `description:"Configuration file (YAML or TOML) to read the other options from." json:"-" toml:"-" yaml:"-"`
	Broker     string   `description:"Redis broker of zbus: unix:///path/to/socket or tcp://[password@]host:port." json:"broker,omitempty" toml:"broker,omitempty" yaml:"broker,omitempty"`
	Root       string   `description:"Folder of the module's state: proxy/ holds the routes as Traefik files (routes in 64 group files by a hash of the wlID), traefik/ the static configuration, Traefik's ACME storage (the wildcard of the gateway domain) and the certificate files it serves, certs/ the ACME account and certificates of user domains." json:"root,omitempty" toml:"root,omitempty" yaml:"root,omitempty"`
	Workers    uint     `description:"Calls served in parallel." json:"workers,omitempty" toml:"workers,omitempty" yaml:"workers,omitempty"`
	Resolver   string   `description:"DNS server (host[:port]) asked for the records of user domains. Default: the first name server of /etc/resolv.conf." json:"resolver,omitempty" toml:"resolver,omitempty" yaml:"resolver,omitempty"`
	Public     Public   `description:"The node's public identity." json:"public,omitempty" toml:"public,omitempty" yaml:"public,omitempty"`
	Routes     Routes   `description:"The routes folder."  json:"routes,omitempty" toml:"routes,omitempty" yaml:"routes,omitempty"`
	Backends   Backends `description:"Backend policy." json:"backends,omitempty" toml:"backends,omitempty" yaml:"backends,omitempty"`
	Traefik    Traefik  `description:"The Traefik process and its entry points." json:"traefik,omitempty" toml:"traefik,omitempty" yaml:"traefik,omitempty"`
	ACME       ACME     `description:"Certificates." json:"acme,omitempty" toml:"acme,omitempty" yaml:"acme,omitempty"`
	DNS        DNS      `description:"The embedded DNS server of the _acme-challenge zone." json:"dns,omitempty" toml:"dns,omitempty" yaml:"dns,omitempty"`
	Metering   Metering `description:"Byte counting of every route, for billing." json:"metering,omitempty" toml:"metering,omitempty" yaml:"metering,omitempty"`
	Metrics    Metrics  `description:"The gateway's own Prometheus endpoint." json:"metrics,omitempty" toml:"metrics,omitempty" yaml:"metrics,omitempty"`
	Log        Log      `description:"Logging." json:"log,omitempty" toml:"log,omitempty" yaml:"log,omitempty"`
}

// Metering configures the byte counters of routes.
type Metering struct {
	Table    string          `description:"nftables table (family inet) that counts the bytes of each backend address; the gateway creates it and leaves it in place when it stops, so that counting goes on." json:"table,omitempty" toml:"table,omitempty" yaml:"table,omitempty"`
	Interval ptypes.Duration `description:"How often the counters are read and the totals saved: at most this much traffic is lost if the node loses power." json:"interval,omitempty" toml:"interval,omitempty" yaml:"interval,omitempty"`
}

// Metrics configures the gateway's own Prometheus endpoint.
type Metrics struct {
	Address string `description:"Loopback address of the gateway's Prometheus endpoint (/metrics): per-workload byte totals and the module's health." json:"address,omitempty" toml:"address,omitempty" yaml:"address,omitempty"`
}

// Public is the node's public identity.
type Public struct {
	Domain string `description:"Gateway domain: name proxies are served at <name>.<domain>. Empty disables name proxies." json:"domain,omitempty" toml:"domain,omitempty" yaml:"domain,omitempty"`
	IPv4   string `description:"Public IPv4 of the node. User domains must resolve to the node's public IPs." json:"ipv4,omitempty" toml:"ipv4,omitempty" yaml:"ipv4,omitempty"`
	IPv6   string `description:"Public IPv6 of the node." json:"ipv6,omitempty" toml:"ipv6,omitempty" yaml:"ipv6,omitempty"`
}

// Routes configures the routes folder.
type Routes struct {
	Sweep  ptypes.Duration `description:"How often proxy/ is swept: whatever appeared there that the gateway did not write is moved to proxy-quarantine/." json:"sweep,omitempty" toml:"sweep,omitempty" yaml:"sweep,omitempty"`
	Status ptypes.Duration `description:"How often the status of every route (served, certificate, backends' health) is read from Traefik for List." json:"status,omitempty" toml:"status,omitempty" yaml:"status,omitempty"`
}

// Backends is the backend policy.
type Backends struct {
	Allow []string `description:"Networks (CIDR, comma separated) admitted as backends although the default policy refuses them (loopback, link-local, the node's own IPs...)." json:"allow,omitempty" toml:"allow,omitempty" yaml:"allow,omitempty"`
}

// Traefik configures the Traefik process.
type Traefik struct {
	Binary      string          `description:"Traefik binary to run." json:"binary,omitempty" toml:"binary,omitempty" yaml:"binary,omitempty"`
	Managed     bool            `description:"Run and supervise Traefik. False leaves it to an outside supervisor (see zinit/traefik.yaml)." json:"managed,omitempty" toml:"managed,omitempty" yaml:"managed,omitempty"`
	Web         string          `description:"Address of the plain HTTP entry point; it redirects to HTTPS." json:"web,omitempty" toml:"web,omitempty" yaml:"web,omitempty"`
	WebSecure   string          `description:"Address of the HTTPS entry point." json:"websecure,omitempty" toml:"websecure,omitempty" yaml:"websecure,omitempty"`
	Metrics     string          `description:"Address of the Prometheus metrics and ping entry point; never public." json:"metrics,omitempty" toml:"metrics,omitempty" yaml:"metrics,omitempty"`
	Throttle    ptypes.Duration `description:"Traefik's providersThrottleDuration: how long it waits after a change before reloading." json:"throttle,omitempty" toml:"throttle,omitempty" yaml:"throttle,omitempty"`
	Debug       bool            `description:"Serve Go's profiles of Traefik at /debug/pprof/ on the metrics entry point (loopback only), to find where its time goes." json:"debug,omitempty" toml:"debug,omitempty" yaml:"debug,omitempty"`
	ReadTimeout ptypes.Duration `description:"readTimeout of the web and websecure entry points: the time a client has to send its TLS ClientHello and request head, and each whole request, body included. It bounds slow or silent clients, and uploads too: a request body still streaming at its end is cut (Traefik has no timeout of the head alone). Server-sent events, websockets and passthrough routes are not cut. 0: no timeout, and slow clients hold connections forever." json:"readtimeout,omitempty" toml:"readtimeout,omitempty" yaml:"readtimeout,omitempty"`
}

// ACME configures certificates.
type ACME struct {
	Email          string          `description:"E-mail of the ACME account." json:"email,omitempty" toml:"email,omitempty" yaml:"email,omitempty"`
	CAServer       string          `description:"ACME directory URL." json:"caserver,omitempty" toml:"caserver,omitempty" yaml:"caserver,omitempty"`
	CACertificates []string        `description:"PEM files of extra roots to trust for the ACME server (a private CA such as Pebble)." json:"cacertificates,omitempty" toml:"cacertificates,omitempty" yaml:"cacertificates,omitempty"`
	BackoffMin     ptypes.Duration `description:"Wait after the first failed attempt to get a user domain's certificate; it doubles after each failure in a row." json:"backoffmin,omitempty" toml:"backoffmin,omitempty" yaml:"backoffmin,omitempty"`
	BackoffMax     ptypes.Duration `description:"Longest wait between two attempts to get a user domain's certificate." json:"backoffmax,omitempty" toml:"backoffmax,omitempty" yaml:"backoffmax,omitempty"`
	KeepRetired    ptypes.Duration `description:"How long the certificate of a user domain no longer routed is kept, never served nor renewed, so that a route set again meanwhile gets it back without a new order." json:"keepretired,omitempty" toml:"keepretired,omitempty" yaml:"keepretired,omitempty"`
}

// DNS configures the embedded DNS server.
type DNS struct {
	Address string `description:"UDP and TCP address of the DNS server that answers the _acme-challenge zone delegated to the node." json:"address,omitempty" toml:"address,omitempty" yaml:"address,omitempty"`
	API     string `description:"Loopback address where Traefik presents and cleans DNS-01 challenges (lego's httpreq provider)." json:"api,omitempty" toml:"api,omitempty" yaml:"api,omitempty"`
}

// Log configures logging.
type Log struct {
	Level string `description:"Log level: debug, info, warn, error." json:"level,omitempty" toml:"level,omitempty" yaml:"level,omitempty"`
}

// defaultLogLevel is the log level of an empty command line.
const defaultLogLevel = "info"

// defaultConfiguration is what an empty command line means. Each default is
// the one of the package that uses the value.
func defaultConfiguration() *Configuration {
	return &Configuration{
		Broker:  gateway.DefaultBroker,
		Root:    gateway.DefaultRoot,
		Workers: gateway.DefaultWorkers,
		Routes:  Routes{Sweep: ptypes.Duration(gateway.DefaultSweepInterval), Status: ptypes.Duration(gateway.DefaultStatusInterval)},
		Traefik: Traefik{
			Binary:      traefik.DefaultBinary,
			Managed:     true,
			Web:         traefik.DefaultWebAddress,
			WebSecure:   traefik.DefaultWebSecureAddress,
			Metrics:     traefik.DefaultMetricsAddress,
			Throttle:    ptypes.Duration(traefik.DefaultThrottle),
			ReadTimeout: ptypes.Duration(traefik.DefaultReadTimeout),
		},
		ACME: ACME{
			CAServer:    traefik.DefaultACMECAServer,
			BackoffMin:  ptypes.Duration(certs.DefaultBackoffMin),
			BackoffMax:  ptypes.Duration(certs.DefaultBackoffMax),
			KeepRetired: ptypes.Duration(certs.DefaultKeepRetired),
		},
		DNS:      DNS{Address: acmedns.DefaultAddress, API: acmedns.DefaultAPIAddress},
		Metering: Metering{Table: meter.DefaultTable, Interval: ptypes.Duration(meter.DefaultInterval)},
		Metrics:  Metrics{Address: gateway.DefaultMetricsAddress},
		Log:      Log{Level: defaultLogLevel},
	}
}

// settings are the checked values of a Configuration.
type settings struct {
	publicIPs []netip.Addr
	allow     []netip.Prefix
	// resolver is --resolver as host:port, or "" for the system's.
	resolver string
}

// check validates the configuration; each error is one line that names the
// flag.
func (c *Configuration) check() (settings, error) {
	var s settings
	if c.Workers == 0 {
		return s, fmt.Errorf("--workers must be at least 1")
	}
	if c.Root == "" {
		return s, fmt.Errorf("--root must not be empty")
	}
	if !strings.HasPrefix(c.Broker, "unix://") && !strings.HasPrefix(c.Broker, "tcp://") {
		return s, fmt.Errorf("--broker %q: expected unix:///path or tcp://host:port", c.Broker)
	}
	for flag, v := range map[string]string{"--public.ipv4": c.Public.IPv4, "--public.ipv6": c.Public.IPv6} {
		if v == "" {
			continue
		}
		ip, err := netip.ParseAddr(v)
		if err != nil {
			return s, fmt.Errorf("%s %q: not an IP address", flag, v)
		}
		if want4 := flag == "--public.ipv4"; ip.Is4() != want4 {
			return s, fmt.Errorf("%s %q: wrong address family", flag, v)
		}
		s.publicIPs = append(s.publicIPs, ip)
	}
	for _, v := range c.Backends.Allow {
		p, err := netip.ParsePrefix(strings.TrimSpace(v))
		if err != nil {
			return s, fmt.Errorf("--backends.allow %q: not a CIDR network", v)
		}
		s.allow = append(s.allow, p.Masked())
	}
	for flag, v := range map[string]string{
		"--traefik.web": c.Traefik.Web, "--traefik.websecure": c.Traefik.WebSecure,
		"--traefik.metrics": c.Traefik.Metrics, "--dns.address": c.DNS.Address, "--dns.api": c.DNS.API,
		"--metrics.address": c.Metrics.Address,
	} {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return s, fmt.Errorf("%s %q: expected [host]:port", flag, v)
		}
	}
	if c.Resolver != "" {
		s.resolver = dnsclient.ServerAddress(c.Resolver)
	}
	if c.Traefik.Throttle < 0 {
		return s, fmt.Errorf("--traefik.throttle must not be negative")
	}
	if c.Routes.Status <= 0 {
		return s, fmt.Errorf("--routes.status must be positive")
	}
	if c.Routes.Sweep <= 0 {
		return s, fmt.Errorf("--routes.sweep must be positive")
	}
	if c.Metering.Interval <= 0 {
		return s, fmt.Errorf("--metering.interval must be positive")
	}
	if c.Metering.Table == "" {
		return s, fmt.Errorf("--metering.table must not be empty")
	}
	if c.Traefik.ReadTimeout < 0 {
		return s, fmt.Errorf("--traefik.readtimeout must not be negative (0 means no timeout)")
	}
	if c.ACME.BackoffMin <= 0 || c.ACME.BackoffMax < c.ACME.BackoffMin {
		return s, fmt.Errorf("--acme.backoffmin %s and --acme.backoffmax %s: need 0 < backoffmin <= backoffmax", time.Duration(c.ACME.BackoffMin), time.Duration(c.ACME.BackoffMax))
	}
	if c.ACME.KeepRetired < 0 {
		return s, fmt.Errorf("--acme.keepretired must not be negative")
	}
	return s, nil
}
