package privnet

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/threefoldtech/gateway/pkg/zosnet"
)

// The allocation is data, kept in the store: which link network each
// tenant network has, and which port of it each target of each route has.
// These functions are pure; the kernel work follows from their result.

// firstPort is the lowest port given to a target on a link. Ports below it
// are left alone: nothing of ours listens on the link, but a port under
// 1024 would look like a service of the tenant's namespace.
const firstPort = 1024

// linkSize is the size of one link network: a /30, of which the first host
// address is the gateway's side and the second the tenant's.
const linkSize = 4

// state is what the gateway set up for private networks.
type state struct {
	// Links are the tenant networks with a link, by network ID.
	Links map[zosnet.NetID]*link `json:"links,omitempty"`
	// Routes are the routes attached, by workload ID.
	Routes map[string]*attachment `json:"routes,omitempty"`
}

// link is the veth pair between the gateway's namespace and one tenant
// network's namespace, and the link network on it.
type link struct {
	// Index numbers the link: it names the interfaces and picks the link
	// network inside the link range.
	Index uint32 `json:"index"`
	// Namespace is the tenant network's namespace, under the netns folder.
	Namespace string `json:"namespace"`
}

// attachment is what one route has in its network.
type attachment struct {
	// Network is the tenant network's ID.
	Network zosnet.NetID `json:"network"`
	// Ports maps each target to its port on the link.
	Ports map[netip.AddrPort]uint16 `json:"ports"`
	// Released are the ports of targets the last Attach dropped, kept for
	// the route so that an Attach that puts them back (the core's rollback
	// of a change that did not take place) gets the same addresses.
	Released map[netip.AddrPort]uint16 `json:"released,omitempty"`
}

// mapping is one target reached through a link: the tenant side's Port is
// translated to Target.
type mapping struct {
	Port   uint16
	Target netip.AddrPort
}

// ErrLinksExhausted refuses a network when every link network of the range
// is taken.
var ErrLinksExhausted = errors.New("every link network of the link range is in use")

// ErrPortsExhausted refuses a target when every port of its link is taken.
var ErrPortsExhausted = errors.New("every port of the network's link is in use")

// clone returns a deep copy of s, never nil maps.
func (s state) clone() state {
	out := state{Links: make(map[zosnet.NetID]*link, len(s.Links)), Routes: make(map[string]*attachment, len(s.Routes))}
	for id, l := range s.Links {
		c := *l
		out.Links[id] = &c
	}
	for id, a := range s.Routes {
		out.Routes[id] = &attachment{Network: a.Network, Ports: maps.Clone(a.Ports), Released: maps.Clone(a.Released)}
	}
	return out
}

// attach returns s with wlID attached to network id, living in namespace
// ns, with exactly targets: a target the route had, or released by its
// last Attach, keeps its port; a new one gets the lowest free port of the
// link. The network gets a link if it has none; a link left without routes
// is dropped. links is the number of link networks of the range.
func (s state) attach(wlID string, id zosnet.NetID, ns string, targets []netip.AddrPort, links uint32) (state, error) {
	next := s.clone()
	l, ok := next.Links[id]
	if !ok {
		idx, err := next.freeIndex(links)
		if err != nil {
			return s, err
		}
		l = &link{Index: idx}
		next.Links[id] = l
	}
	l.Namespace = ns

	old := next.Routes[wlID]
	a := &attachment{Network: id, Ports: make(map[netip.AddrPort]uint16, len(targets))}
	next.Routes[wlID] = a
	// Keep before allocating, so that a kept port is never handed out.
	var fresh []netip.AddrPort
	for _, t := range targets {
		if _, dup := a.Ports[t]; dup {
			continue
		}
		if old != nil && old.Network == id {
			if p, ok := old.Ports[t]; ok {
				a.Ports[t] = p
				continue
			}
			if p, ok := old.Released[t]; ok {
				a.Ports[t] = p
				continue
			}
		}
		fresh = append(fresh, t)
	}
	if old != nil && old.Network == id {
		for t, p := range old.Ports {
			if _, kept := a.Ports[t]; !kept {
				if a.Released == nil {
					a.Released = map[netip.AddrPort]uint16{}
				}
				a.Released[t] = p
			}
		}
	}
	used := next.usedPorts(id)
	port := uint16(firstPort)
	for _, t := range fresh {
		for used[port] {
			if port == 65535 {
				return s, ErrPortsExhausted
			}
			port++
		}
		a.Ports[t] = port
		used[port] = true
	}
	next.dropUnused()
	return next, nil
}

// detach returns s without wlID; a link left without routes is dropped.
func (s state) detach(wlID string) state {
	next := s.clone()
	delete(next.Routes, wlID)
	next.dropUnused()
	return next
}

// freeIndex returns the lowest link index no network has.
func (s state) freeIndex(links uint32) (uint32, error) {
	taken := make(map[uint32]bool, len(s.Links))
	for _, l := range s.Links {
		taken[l.Index] = true
	}
	for i := uint32(0); i < links; i++ {
		if !taken[i] {
			return i, nil
		}
	}
	return 0, ErrLinksExhausted
}

// usedPorts returns the ports of network id's link that a route holds or
// keeps released.
func (s state) usedPorts(id zosnet.NetID) map[uint16]bool {
	used := map[uint16]bool{}
	for _, a := range s.Routes {
		if a.Network != id {
			continue
		}
		for _, p := range a.Ports {
			used[p] = true
		}
		for _, p := range a.Released {
			used[p] = true
		}
	}
	return used
}

// dropUnused removes the links no route uses.
func (s state) dropUnused() {
	inUse := map[zosnet.NetID]bool{}
	for _, a := range s.Routes {
		inUse[a.Network] = true
	}
	for id := range s.Links {
		if !inUse[id] {
			delete(s.Links, id)
		}
	}
}

// mappings returns what network id's link translates, by port.
func (s state) mappings(id zosnet.NetID) []mapping {
	var out []mapping
	for _, a := range s.Routes {
		if a.Network != id {
			continue
		}
		for t, p := range a.Ports {
			out = append(out, mapping{Port: p, Target: t})
		}
	}
	slices.SortFunc(out, func(a, b mapping) int { return int(a.Port) - int(b.Port) })
	return out
}

// linkRange is the range the link networks are carved from.
type linkRange netip.Prefix

// size returns how many link networks the range holds.
func (r linkRange) size() uint32 {
	bits := 32 - netip.Prefix(r).Bits()
	if bits >= 32 {
		return 1 << 30
	}
	return uint32(1) << bits / linkSize
}

// addrs returns the gateway's and the tenant's address of link index i, and
// the prefix length of the link network.
func (r linkRange) addrs(i uint32) (gw, tenant netip.Addr, bits int) {
	b := netip.Prefix(r).Masked().Addr().As4()
	base := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	at := func(n uint32) netip.Addr {
		v := base + i*linkSize + n
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	return at(1), at(2), 32 - 2
}

// via returns, for each target of wlID, the address Traefik connects to.
func (s state) via(wlID string, r linkRange) map[netip.AddrPort]netip.AddrPort {
	a := s.Routes[wlID]
	if a == nil {
		return nil
	}
	_, tenant, _ := r.addrs(s.Links[a.Network].Index)
	out := make(map[netip.AddrPort]netip.AddrPort, len(a.Ports))
	for t, p := range a.Ports {
		out[t] = netip.AddrPortFrom(tenant, p)
	}
	return out
}

// ifname returns the name of both interfaces of link l.
func (l link) ifname() string { return fmt.Sprintf("gwpn%d", l.Index) }
