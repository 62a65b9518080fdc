// Package privnet carries Traefik's connections into tenants' private
// networks, each of which lives in a network namespace of its own on a zos
// node, without a process in the data path: a veth pair joins the gateway's
// namespace to the tenant's, and each backend of a route gets a port on the
// tenant's end that an nftables table there translates to the backend.
// Everything lives in the kernel, so connections outlive the gateway; the
// allocation of links and ports is kept in the gateway's store, so that the
// same route gets the same addresses after a restart or a reboot.
package privnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/rs/zerolog"
	"github.com/vishvananda/netns"

	"github.com/threefoldtech/gateway/pkg/store"
	"github.com/threefoldtech/gateway/pkg/zosnet"
)

// Defaults of Config.
const (
	// DefaultNetnsDir is where iproute2, and zos, mount named network
	// namespaces.
	DefaultNetnsDir = "/var/run/netns"
	// DefaultHostNamespace is the gateway's own network namespace, where
	// the Traefik it runs connects from.
	DefaultHostNamespace = "/proc/self/ns/net"
	// DefaultTable is the nftables table (family ip) the gateway owns in
	// each tenant namespace it reaches.
	DefaultTable = "gateway_privnet"
)

// DefaultLinkRange is where the link networks are carved from: a /30 per
// tenant network (16,384 of them). It is inside 100.64.0.0/10, the shared
// address space of RFC 6598, which zos gives no tenant network (they are
// private /16s, RFC 1918) and, at 100.64.0.0/16, away from zos's own
// 100.127.0.0/16.
var DefaultLinkRange = netip.MustParsePrefix("100.64.0.0/16")

// storeBucket is the store's bucket of this package, stateKey its one key.
const (
	storeBucket = "privnet"
	stateKey    = "state"
)

// Daemon is what the gateway asks zos's network daemon;
// zosnet.Networker implements it.
type Daemon interface {
	// GetNet returns the IP range of a network, or an error for an
	// unknown one.
	GetNet(ctx context.Context, id zosnet.NetID) (net.IPNet, error)
	// Namespace returns the name of the network's namespace.
	Namespace(ctx context.Context, id zosnet.NetID) (string, error)
}

var _ Daemon = (*zosnet.Networker)(nil)

// Config configures Networks.
type Config struct {
	// Daemon is zos's network daemon. Required.
	Daemon Daemon
	// Store keeps the allocation of links and ports. Required.
	Store *store.Store
	// NetnsDir is where the tenants' namespaces are mounted. Default
	// DefaultNetnsDir.
	NetnsDir string
	// HostNamespace is the path of the namespace Traefik runs in. Default
	// DefaultHostNamespace.
	HostNamespace string
	// LinkRange is the IPv4 range the link networks are carved from; it
	// must clash with no tenant network, nor with an address of the
	// gateway's namespace. Default DefaultLinkRange.
	LinkRange netip.Prefix
	// Table is the nftables table in each tenant namespace. Default
	// DefaultTable.
	Table string
	// Logger receives the package's logs.
	Logger zerolog.Logger
}

// Networks implements the core's Networks (pkg/gateway) for zos's tenant
// networks. Its methods are safe for concurrent use.
type Networks struct {
	daemon Daemon
	store  *store.Store
	links  linkRange
	path   dataPath
	host   netns.NsHandle
	log    zerolog.Logger

	mu sync.Mutex
	// st is the allocation, as the store holds it.
	st state
}

// New returns Networks for cfg, with the allocation the store holds. It
// sets nothing up: the core attaches every route at its start.
func New(cfg Config) (*Networks, error) {
	if cfg.Daemon == nil || cfg.Store == nil {
		return nil, errors.New("private networks need the network daemon and the store")
	}
	if cfg.NetnsDir == "" {
		cfg.NetnsDir = DefaultNetnsDir
	}
	if cfg.HostNamespace == "" {
		cfg.HostNamespace = DefaultHostNamespace
	}
	if !cfg.LinkRange.IsValid() {
		cfg.LinkRange = DefaultLinkRange
	}
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if !cfg.LinkRange.Addr().Is4() || cfg.LinkRange.Bits() > 30 {
		return nil, fmt.Errorf("link range %s is not an IPv4 range of at least a /30", cfg.LinkRange)
	}
	host, err := netns.GetFromPath(cfg.HostNamespace)
	if err != nil {
		return nil, fmt.Errorf("opening the gateway's network namespace %s: %w", cfg.HostNamespace, err)
	}
	links := linkRange(cfg.LinkRange.Masked())
	n, err := newNetworks(cfg, &kernel{host: host, netnsDir: cfg.NetnsDir, table: cfg.Table, links: links})
	if err != nil {
		host.Close()
		return nil, err
	}
	n.host = host
	return n, nil
}

// newNetworks returns Networks over data path p; cfg has its defaults.
func newNetworks(cfg Config, p dataPath) (*Networks, error) {
	n := &Networks{
		daemon: cfg.Daemon,
		store:  cfg.Store,
		links:  linkRange(cfg.LinkRange.Masked()),
		path:   p,
		host:   netns.None(),
		log:    cfg.Logger.With().Str("component", "privnet").Logger(),
	}
	if err := n.load(); err != nil {
		return nil, err
	}
	return n, nil
}

// Close releases the gateway's namespace handle. What was set up stays.
func (n *Networks) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.host.IsOpen() {
		return n.host.Close()
	}
	return nil
}

// network returns the ID and the IP range of the network named network of
// wlID's twin.
func (n *Networks) network(wlID, network string) (zosnet.NetID, netip.Prefix, error) {
	twin, err := zosnet.TwinOf(wlID)
	if err != nil {
		return "", netip.Prefix{}, fmt.Errorf("network %q: %w", network, err)
	}
	id := zosnet.NetworkID(twin, network)
	ipnet, err := n.daemon.GetNet(context.Background(), id)
	if err != nil {
		return "", netip.Prefix{}, fmt.Errorf("network %q of twin %d (%s): %w", network, twin, id, err)
	}
	addr, ok := netip.AddrFromSlice(ipnet.IP)
	ones, _ := ipnet.Mask.Size()
	if !ok || ipnet.Mask == nil {
		return "", netip.Prefix{}, fmt.Errorf("network %q of twin %d (%s): the network daemon gave no IP range", network, twin, id)
	}
	return id, netip.PrefixFrom(addr.Unmap(), ones).Masked(), nil
}

// Check tells whether network exists for the twin of wlID: the network ID
// derives from both, so a network the daemon knows under it is the twin's.
func (n *Networks) Check(wlID, network string) error {
	_, _, err := n.network(wlID, network)
	return err
}

// Attach makes targets, IPv4 addresses inside network, reachable from the
// gateway's namespace, and returns the address Traefik connects to for each.
func (n *Networks) Attach(wlID, network string, targets []netip.AddrPort) (map[netip.AddrPort]netip.AddrPort, error) {
	id, prefix, err := n.network(wlID, network)
	if err != nil {
		return nil, err
	}
	for _, t := range targets {
		if a := t.Addr().Unmap(); !a.Is4() || !prefix.Contains(a) {
			return nil, fmt.Errorf("backend %s is not in network %q (%s)", t, network, prefix)
		}
	}
	ns, err := n.daemon.Namespace(context.Background(), id)
	if err != nil {
		return nil, fmt.Errorf("namespace of network %q (%s): %w", network, id, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	next, err := n.st.attach(wlID, id, ns, targets, n.links.size())
	if err != nil {
		return nil, fmt.Errorf("network %q: %w", network, err)
	}
	if err := n.applyLocked(next, id); err != nil {
		return nil, fmt.Errorf("network %q: %w", network, err)
	}
	return n.st.via(wlID, n.links), nil
}

// Detach removes the ports of wlID, and the link of its network once no
// route uses it.
func (n *Networks) Detach(wlID string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.st.Routes[wlID]; !ok {
		return nil
	}
	return n.applyLocked(n.st.detach(wlID), "")
}

// applyLocked makes the kernel follow next, then keeps next: the links
// next drops are removed, the tables of the networks whose translations
// change are written again, and the link of network touch (the one just
// attached) is made sure of, in case its namespace was made again. n.mu is
// held.
func (n *Networks) applyLocked(next state, touch zosnet.NetID) error {
	for id, l := range n.st.Links {
		if nl, ok := next.Links[id]; ok && nl.Index == l.Index && nl.Namespace == l.Namespace {
			continue
		}
		if err := n.path.remove(*l); err != nil {
			return err
		}
		n.log.Info().Str("network", string(id)).Str("namespace", l.Namespace).Str("link", l.ifname()).Msg("link removed: no route uses it")
	}
	for id, l := range next.Links {
		ms := next.mappings(id)
		old, had := n.st.Links[id]
		if id != touch && had && *old == *l && equalMappings(n.st.mappings(id), ms) {
			continue
		}
		if err := n.path.ensure(*l, ms); err != nil {
			return err
		}
	}
	if err := n.save(next); err != nil {
		return err
	}
	n.st = next
	return nil
}

func equalMappings(a, b []mapping) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// load reads the allocation from the store.
func (n *Networks) load() error {
	var data []byte
	if err := n.store.View(func(tx *store.Tx) error {
		data = store.Get(tx, storeBucket, []byte(stateKey))
		return nil
	}); err != nil {
		return fmt.Errorf("reading the private networks' allocation: %w", err)
	}
	n.st = state{}.clone()
	if data == nil {
		return nil
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("reading the private networks' allocation: %w", err)
	}
	n.st = st.clone()
	return nil
}

// save writes st to the store.
func (n *Networks) save(st state) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding the private networks' allocation: %w", err)
	}
	if err := n.store.Update(func(tx *store.Tx) error { return store.Put(tx, storeBucket, []byte(stateKey), data) }); err != nil {
		return fmt.Errorf("saving the private networks' allocation: %w", err)
	}
	return nil
}
