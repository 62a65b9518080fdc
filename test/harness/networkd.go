package harness

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/threefoldtech/zbus"
)

// The types below are zos's (github.com/threefoldtech/zosbase, pkg/network.go
// and pkg/gridtypes), copied field for field and kept apart from
// pkg/zosnet's: zbus puts a struct on the wire as a map keyed by its Go
// field names, so a wrong name in the gateway's copy must fail the test,
// not be copied into the stand-in.

// zosIPNet is zos's gridtypes.IPNet.
type zosIPNet struct{ net.IPNet }

// zosPublicConfig is zos's pkg.PublicConfig.
type zosPublicConfig struct {
	Type   string   `json:"type"`
	IPv4   zosIPNet `json:"ipv4"`
	IPv6   zosIPNet `json:"ipv6"`
	GW4    net.IP   `json:"gw4"`
	GW6    net.IP   `json:"gw6"`
	Domain string   `json:"domain"`
}

// errNoPublicConfig is zos's answer on a node without public configuration.
var errNoPublicConfig = errors.New("no public configuration")

// Networkd stands in for zos's network daemon: it serves GetPublicConfig on
// a test's broker, as module "network", object "network@0.0.1", with zos's
// types.
type Networkd struct {
	mu    sync.Mutex
	cfg   zosPublicConfig
	unset bool
	calls atomic.Int64
}

// networker is the object served: only zos's method names are exported.
type networker struct{ n *Networkd }

// GetPublicConfig is zos's Networker.GetPublicConfig.
func (o networker) GetPublicConfig() (zosPublicConfig, error) {
	o.n.calls.Add(1)
	o.n.mu.Lock()
	defer o.n.mu.Unlock()
	if o.n.unset {
		return zosPublicConfig{}, errNoPublicConfig
	}
	return o.n.cfg, nil
}

// StartNetworkd serves a network daemon on r until the test ends; it
// answers that the node has no public configuration until SetPublic.
func StartNetworkd(t testing.TB, r *Redis) *Networkd {
	t.Helper()
	n := &Networkd{unset: true}
	server, err := zbus.NewRedisServer("network", r.URL(), 1)
	if err != nil {
		t.Fatalf("zbus server of the network daemon: %v", err)
	}
	if err := server.Register(zbus.ObjectID{Name: "network", Version: "0.0.1"}, networker{n}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// zbus notices the end of ctx between its pulls (up to 10 s): the
	// server is not waited for.
	go func() { _ = server.Run(ctx) }()
	t.Cleanup(cancel)
	return n
}

// SetPublic sets the node's public configuration as zos reads it: domain,
// and addresses in CIDR form as on the public interface ("" for none).
func (n *Networkd) SetPublic(t testing.TB, domain, ipv4, ipv6 string) {
	t.Helper()
	cfg := zosPublicConfig{Type: "macvlan", Domain: domain}
	for _, a := range []struct {
		cidr string
		to   *zosIPNet
	}{{ipv4, &cfg.IPv4}, {ipv6, &cfg.IPv6}} {
		if a.cidr == "" {
			continue
		}
		ip, ipnet, err := net.ParseCIDR(a.cidr)
		if err != nil {
			t.Fatalf("SetPublic: %v", err)
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4 // netlink's form
		}
		ipnet.IP = ip
		a.to.IPNet = *ipnet
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cfg, n.unset = cfg, false
}

// Calls returns how many GetPublicConfig calls were answered.
func (n *Networkd) Calls() int64 { return n.calls.Load() }
