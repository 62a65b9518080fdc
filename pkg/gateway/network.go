package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Networks carries the traffic of routes whose backends are private IPs of
// a tenant's network (RouteRequest.Network) into that network, which on a
// node lives in a network namespace of its own. What it sets up lives in the
// kernel, so that connections outlive the gateway.
type Networks interface {
	// Check tells whether wlID may use network: it exists and belongs to
	// the workload's twin. An unknown network is an error that names it.
	// Nothing is set up.
	Check(wlID, network string) error
	// Attach makes targets, addresses inside network, the user network
	// named network of the twin of wlID, reachable from Traefik, and
	// returns, for each target, the address Traefik connects to. For one
	// wlID it replaces what an earlier Attach made; a target it had keeps
	// its address, so that open connections are not cut.
	Attach(wlID, network string, targets []netip.AddrPort) (map[netip.AddrPort]netip.AddrPort, error)
	// Detach removes what Attach made for wlID; nothing is not an error.
	Detach(wlID string) error
}

// ErrNoNetworks refuses a route with a private network on a gateway that
// cannot reach them.
var ErrNoNetworks = errors.New("this gateway cannot reach private networks (no network daemon)")

// targets returns the addresses of r's backends Traefik must reach: each
// backend, and port 80 of each for a passthrough route's HTTP-01
// challenges.
func (r route) targets() []netip.AddrPort {
	addrs := make([]netip.AddrPort, 0, 2*len(r.backends))
	for _, b := range r.backends {
		addrs = append(addrs, b.Addr)
		if r.passthrough {
			addrs = append(addrs, netip.AddrPortFrom(b.Addr.Addr(), challengePort))
		}
	}
	slices.SortFunc(addrs, netip.AddrPort.Compare)
	return slices.Compact(addrs)
}

// reach returns the address Traefik connects to for target a.
func (r route) reach(a netip.AddrPort) netip.AddrPort {
	if v, ok := r.via[a]; ok {
		return v
	}
	return a
}

// dialed returns b as Traefik reaches it.
func (r route) dialed(b Backend) Backend {
	if v, ok := r.via[b.Addr]; ok {
		b.Addr, b.PortGiven = v, true
	}
	return b
}

// checkNetwork refuses a route whose network the gateway cannot use.
func (m *Module) checkNetwork(r route) error {
	if r.network == "" {
		return nil
	}
	if m.cfg.Networks == nil {
		return fieldError("network", r.network, "%s", ErrNoNetworks)
	}
	if err := m.cfg.Networks.Check(r.id, r.network); err != nil {
		return fieldError("network", r.network, "%s", err)
	}
	return nil
}

// attach sets r.via for a route with a private network.
func (m *Module) attach(r *route) error {
	if r.network == "" {
		return nil
	}
	if m.cfg.Networks == nil {
		return fieldError("network", r.network, "%s", ErrNoNetworks)
	}
	via, err := m.cfg.Networks.Attach(r.id, r.network, r.targets())
	if err != nil {
		return fmt.Errorf("network %q of route %q: %w", r.network, r.id, err)
	}
	for _, t := range r.targets() {
		if _, ok := via[t]; !ok {
			return fmt.Errorf("network %q of route %q: backend %s not reachable", r.network, r.id, t)
		}
	}
	r.via = via
	return nil
}

// networkHook ends what a private network's route set up once the route
// is gone or no longer uses it, and gives a route whose change did not take
// place its old setup back.
type networkHook struct{ m *Module }

// Prepare sets up the private network of each route that has one, before
// it is metered and rendered.
func (h networkHook) Prepare(cs []change) error {
	for i := range cs {
		if cs[i].deleted || cs[i].new.network == "" {
			continue
		}
		if err := h.m.attach(&cs[i].new); err != nil {
			h.Rollback(cs[:i])
			return err
		}
	}
	return nil
}

func (h networkHook) Commit(cs []change, _ time.Time) {
	for _, c := range cs {
		if c.held && c.old.network != "" && (c.deleted || c.new.network == "") {
			h.detach(c.old.id)
		}
	}
}

func (h networkHook) Rollback(cs []change) {
	for _, c := range cs {
		switch {
		case c.deleted:
		case c.held && c.old.network != "":
			old := c.old
			if err := h.m.attach(&old); err != nil {
				h.m.log.Error().Err(err).Str("wlID", old.id).Msg("setting back the private network of a route that could not be written")
			}
		case c.new.network != "":
			h.detach(c.new.id)
		}
	}
}

func (h networkHook) detach(id string) {
	if err := h.m.cfg.Networks.Detach(id); err != nil {
		h.m.log.Error().Err(err).Str("wlID", id).Msg("ending the private network of a route")
	}
}
