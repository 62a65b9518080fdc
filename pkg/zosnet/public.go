// Package zosnet is the gateway's client of zos's network daemon, which
// zos's modules reach over zbus as module "network", object
// "network@0.0.1" (zos's Networker, zosbase pkg/network.go): the node's
// public configuration, the gateway domain the farmer set and the public
// IPs (public.go), and the private networks of tenants (networker.go).
package zosnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/rs/zerolog"
	"github.com/threefoldtech/zbus"

	"github.com/threefoldtech/gateway/internal/dnsname"
)

// DaemonModule is the zbus module of zos's network daemon.
const DaemonModule = "network"

// DaemonObject is the network daemon's object, zos's Networker.
var DaemonObject = zbus.ObjectID{Name: "network", Version: "0.0.1"}

// Defaults of PublicSourceConfig.
const (
	// DefaultInterval is how often Watch asks the daemon. zos's own stream
	// of the public configuration (PublicAddresses) reads it every 30 s
	// too.
	DefaultInterval = 30 * time.Second
	// DefaultStartWait bounds First: how long a starting gateway waits for
	// a daemon that does not answer (not up yet) before it starts without
	// a domain and public IPs.
	DefaultStartWait = 30 * time.Second
	// DefaultCallTimeout bounds one call to the daemon: zbus waits for an
	// answer forever, and a node without the daemon never answers.
	DefaultCallTimeout = 5 * time.Second
)

// publicRetry is the wait between First's attempts after a quick failure
// (the broker refused the connection).
const publicRetry = time.Second

// ErrNoPublicConfig is the answer of a network daemon that returned an
// error from GetPublicConfig: the node has no public configuration it can
// read ("no public configuration" when the farmer set none). zos's own
// gateway took any such error as "gateway is not supported on this node".
var ErrNoPublicConfig = errors.New("the network daemon has no public configuration for this node")

// errNoAnswer is zbus's way of failing a call it could not make: v1.0.1's
// client returns neither a response nor an error when the broker's
// connection broke or the daemon refused the call (unknown object or
// method).
var errNoAnswer = errors.New("no answer (broker connection lost, or no such object or method)")

// GetPublicConfig asks the network daemon on bus for the node's public
// configuration. An error of the daemon's is ErrNoPublicConfig, wrapped with
// its text; any other error means the daemon did not answer.
func GetPublicConfig(ctx context.Context, bus zbus.Client) (PublicConfig, error) {
	resp, err := bus.RequestContext(ctx, DaemonModule, DaemonObject, "GetPublicConfig")
	if err != nil {
		return PublicConfig{}, fmt.Errorf("asking the network daemon for the public configuration: %w", err)
	}
	return decodePublicConfig(resp)
}

// decodePublicConfig reads the answer to GetPublicConfig.
func decodePublicConfig(resp *zbus.Response) (PublicConfig, error) {
	if resp == nil {
		return PublicConfig{}, fmt.Errorf("asking the network daemon for the public configuration: %w", errNoAnswer)
	}
	if resp.Error != nil {
		return PublicConfig{}, fmt.Errorf("asking the network daemon for the public configuration: %s", *resp.Error)
	}
	if err := resp.CallError(); err != nil {
		return PublicConfig{}, fmt.Errorf("%w: %s", ErrNoPublicConfig, err)
	}
	var cfg PublicConfig
	if err := resp.Unmarshal(&zbus.Loader{&cfg}); err != nil {
		return PublicConfig{}, fmt.Errorf("decoding the network daemon's public configuration: %w", err)
	}
	return cfg, nil
}

// Public is the node's public identity as the gateway uses it: what the
// public.* flags would give.
type Public struct {
	// Domain is the gateway domain, normalized (lower case, no trailing
	// dot); empty when the node has none.
	Domain string
	// IPv4 and IPv6 are the node's public addresses; the zero Addr when it
	// has none of that family.
	IPv4, IPv6 netip.Addr
}

// Addrs returns IPv4 then IPv6, those that are set.
func (p Public) Addrs() []netip.Addr {
	var addrs []netip.Addr
	for _, a := range []netip.Addr{p.IPv4, p.IPv6} {
		if a.IsValid() {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// String returns the flags that would give p, for logs.
func (p Public) String() string {
	return fmt.Sprintf("--public.domain=%q --public.ipv4=%q --public.ipv6=%q", p.Domain, addrString(p.IPv4), addrString(p.IPv6))
}

// addrString is a's text, empty for the zero Addr (whose String is
// "invalid IP").
func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// PublicOf returns the public identity cfg gives. A part the gateway cannot
// use is left out and named in the error: a domain that is not a host name,
// an address of the wrong family, or one no client could reach (link-local,
// unspecified; zos picks the first IPv6 of its public interface, which can
// be link-local). The Public returned is usable even with an error.
func PublicOf(cfg PublicConfig) (Public, error) {
	var p Public
	var errs []error
	if cfg.Domain != "" {
		d, err := dnsname.Normalize(cfg.Domain)
		if err != nil {
			errs = append(errs, fmt.Errorf("domain %q: %w", cfg.Domain, err))
		} else {
			p.Domain = d
		}
	}
	for _, f := range []struct {
		name  string
		ip    net.IP
		want4 bool
		to    *netip.Addr
	}{{"IPv4", cfg.IPv4.IP, true, &p.IPv4}, {"IPv6", cfg.IPv6.IP, false, &p.IPv6}} {
		if len(f.ip) == 0 {
			continue
		}
		a, ok := netip.AddrFromSlice(f.ip)
		a = a.Unmap()
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: %d bytes are no IP address", f.name, len(f.ip)))
		case a.Is4() != f.want4:
			errs = append(errs, fmt.Errorf("%s %s: wrong address family", f.name, a))
		case a.IsUnspecified() || a.IsLinkLocalUnicast():
			errs = append(errs, fmt.Errorf("%s %s: not an address clients can reach", f.name, a))
		default:
			*f.to = a
		}
	}
	return p, errors.Join(errs...)
}

// PublicSourceConfig configures a PublicSource.
type PublicSourceConfig struct {
	// Bus is a zbus client on the node's broker, where the network daemon
	// serves. Required.
	Bus zbus.Client
	// Interval is how often Watch asks. Default DefaultInterval.
	Interval time.Duration
	// StartWait bounds First's wait for a daemon that does not answer.
	// Default DefaultStartWait.
	StartWait time.Duration
	// CallTimeout bounds each call. Default DefaultCallTimeout.
	CallTimeout time.Duration
	// Logger receives what the daemon answered and its failures.
	Logger zerolog.Logger
}

// PublicSource reads the node's public identity from zos's network daemon,
// at start (First) and then by asking again every Interval (Watch).
//
// It polls rather than following the daemon's stream, PublicAddresses: the
// stream is a Redis publication, lost while the gateway is not subscribed
// (during its start, while Redis restarts) and ended silently when the
// broker's connection breaks, and the daemon itself only reads the
// configuration every 30 s to feed it. A call every Interval costs the same,
// sees the configuration whatever happened in between, and fails in the
// open.
type PublicSource struct {
	cfg PublicSourceConfig
	log zerolog.Logger
}

// NewPublicSource checks cfg and fills its defaults.
func NewPublicSource(cfg PublicSourceConfig) (*PublicSource, error) {
	if cfg.Bus == nil {
		return nil, fmt.Errorf("zosnet: a zbus client is required")
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.Interval, DefaultInterval}, {&cfg.StartWait, DefaultStartWait}, {&cfg.CallTimeout, DefaultCallTimeout}} {
		if *d.v < 0 {
			return nil, fmt.Errorf("zosnet: negative duration %s", *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	return &PublicSource{cfg: cfg, log: cfg.Logger.With().Str("component", "public config").Logger()}, nil
}

// Get asks the daemon once and returns the public identity it gave (see
// PublicOf; the parts left out are logged), ErrNoPublicConfig when it
// answered with an error, or why it did not answer.
func (s *PublicSource) Get(ctx context.Context) (Public, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	cfg, err := GetPublicConfig(ctx, s.cfg.Bus)
	if err != nil {
		return Public{}, err
	}
	p, err := PublicOf(cfg)
	if err != nil {
		s.log.Error().Err(err).Msg("parts of the node's public configuration are not used")
	}
	return p, nil
}

// First asks the daemon until it answers, for at most StartWait, and
// returns what it gave: the zero Public when it has no public configuration
// or never answered. It returns an error only when ctx ends.
func (s *PublicSource) First(ctx context.Context) (Public, error) {
	deadline := time.Now().Add(s.cfg.StartWait)
	for attempt := 1; ; attempt++ {
		p, err := s.Get(ctx)
		switch {
		case err == nil:
			s.log.Info().Stringer("public", p).Msg("public configuration from the network daemon")
			return p, nil
		case errors.Is(err, ErrNoPublicConfig):
			s.log.Info().Err(err).Msg("starting without a domain and public IPs: name proxies need a domain, FQDN proxies a public IP")
			return Public{}, nil
		case ctx.Err() != nil:
			return Public{}, ctx.Err()
		}
		left := time.Until(deadline)
		if left <= 0 {
			s.log.Error().Err(err).Int("attempts", attempt).Stringer("waited", s.cfg.StartWait).Stringer("asking_every", s.cfg.Interval).
				Msg("the network daemon does not answer: starting without a domain and public IPs, and starting again with them once it answers")
			return Public{}, nil
		}
		s.log.Warn().Err(err).Int("attempt", attempt).Msg("the network daemon does not answer yet")
		select {
		case <-ctx.Done():
			return Public{}, ctx.Err()
		case <-time.After(min(publicRetry, left)):
		}
	}
}

// Watch asks the daemon every Interval until its answer differs from
// current, and returns the answer. A daemon that does not answer, or
// answers with an error, changes nothing: the node keeps what it has (zos
// reboots a node whose public configuration is removed). Failures are
// logged when they start and when they end. Watch returns ctx's error when
// ctx ends.
func (s *PublicSource) Watch(ctx context.Context, current Public) (Public, error) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	var failing string
	for {
		select {
		case <-ctx.Done():
			return Public{}, ctx.Err()
		case <-t.C:
		}
		p, err := s.Get(ctx)
		if ctx.Err() != nil {
			return Public{}, ctx.Err()
		}
		if err != nil {
			if err.Error() != failing {
				s.log.Warn().Err(err).Stringer("kept", current).Msg("reading the node's public configuration; the gateway keeps what it has")
				failing = err.Error()
			}
			continue
		}
		if failing != "" {
			s.log.Info().Msg("the network daemon answers again")
			failing = ""
		}
		if p != current {
			return p, nil
		}
	}
}
