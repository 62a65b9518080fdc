package privnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/threefoldtech/gateway/pkg/store"
	"github.com/threefoldtech/gateway/pkg/zosnet"
)

// fakeDaemon knows the networks of its map, by (twin, name).
type fakeDaemon struct {
	nets map[zosnet.NetID]string
	// ns names the namespace of a network; default "n-<NetID>".
	ns  map[zosnet.NetID]string
	err error
}

func newFakeDaemon(nets map[string]string) *fakeDaemon {
	d := &fakeDaemon{nets: map[zosnet.NetID]string{}}
	for k, cidr := range nets {
		var twin uint32
		var name string
		fmt.Sscanf(strings.Replace(k, ":", " ", 1), "%d %s", &twin, &name)
		d.nets[zosnet.NetworkID(twin, name)] = cidr
	}
	return d
}

func (d *fakeDaemon) GetNet(_ context.Context, id zosnet.NetID) (net.IPNet, error) {
	if d.err != nil {
		return net.IPNet{}, d.err
	}
	cidr, ok := d.nets[id]
	if !ok {
		return net.IPNet{}, errors.New("network not found")
	}
	_, n, _ := net.ParseCIDR(cidr)
	return *n, nil
}

func (d *fakeDaemon) Namespace(_ context.Context, id zosnet.NetID) (string, error) {
	if ns, ok := d.ns[id]; ok {
		return ns, nil
	}
	return "n-" + string(id), nil
}

// fakePath records what the kernel would be told.
type fakePath struct {
	links   map[uint32][]mapping
	ensured int
	fail    error
}

func (p *fakePath) ensure(l link, ms []mapping) error {
	if p.fail != nil {
		return p.fail
	}
	p.ensured++
	p.links[l.Index] = ms
	return nil
}

func (p *fakePath) remove(l link) error {
	delete(p.links, l.Index)
	return nil
}

func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(filepath.Join(dir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newTestNetworks(t *testing.T, d Daemon, db *store.Store, p dataPath) *Networks {
	t.Helper()
	n, err := newNetworks(Config{Daemon: d, Store: db, LinkRange: DefaultLinkRange, Logger: zerolog.Nop()}, p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNetworks guards the bookkeeping around the data path: errors name the
// network and set up nothing, addresses are kept across a restart, and a
// link goes with its last route.
func TestNetworks(t *testing.T) {
	dir := t.TempDir()
	db := openStore(t, dir)
	d := newFakeDaemon(map[string]string{"7:office": "10.77.0.0/16", "8:office": "10.77.0.0/16"})
	p := &fakePath{links: map[uint32][]mapping{}}
	n := newTestNetworks(t, d, db, p)

	if err := n.Check("7-1-web", "office"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, wlID, network string
		targets             []netip.AddrPort
		want                string
	}{
		// Twin 9 has no network "office": another twin's is not its own.
		{"another twin's network", "9-1-web", "office", nil, `network "office" of twin 9`},
		{"unknown network", "7-1-web", "lab", nil, `network "lab"`},
		{"wlID without a twin", "web", "office", nil, `network "office"`},
		{"backend outside the network", "7-1-web", "office", []netip.AddrPort{ap("10.78.0.5:80")}, `backend 10.78.0.5:80 is not in network "office"`},
		{"IPv6 backend", "7-1-web", "office", []netip.AddrPort{ap("[fd00::5]:80")}, `not in network "office"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.targets == nil {
				if err := n.Check(tc.wlID, tc.network); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Check: %v, want %q", err, tc.want)
				}
			}
			targets := tc.targets
			if targets == nil {
				targets = []netip.AddrPort{ap("10.77.0.5:80")}
			}
			if _, err := n.Attach(tc.wlID, tc.network, targets); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Attach: %v, want %q", err, tc.want)
			}
			if len(p.links) != 0 || p.ensured != 0 {
				t.Fatalf("a refused Attach set up %v", p.links)
			}
		})
	}
	t.Run("no network daemon", func(t *testing.T) {
		d.err = zosnet.ErrNoAnswer
		defer func() { d.err = nil }()
		if err := n.Check("7-1-web", "office"); !errors.Is(err, zosnet.ErrNoAnswer) || !strings.Contains(err.Error(), `network "office"`) {
			t.Fatalf("Check: %v", err)
		}
	})

	targets := []netip.AddrPort{ap("10.77.0.5:80"), ap("10.77.0.6:80")}
	via, err := n.Attach("7-1-web", "office", targets)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(via) != "map[10.77.0.5:80:100.64.0.2:1024 10.77.0.6:80:100.64.0.2:1025]" {
		t.Fatalf("via %v", via)
	}
	// Twin 8's "office" overlaps twin 7's: another link.
	via8, err := n.Attach("8-1-web", "office", targets[:1])
	if err != nil || via8[targets[0]].Addr().String() != "100.64.0.6" {
		t.Fatalf("via %v, %v", via8, err)
	}
	if len(p.links) != 2 {
		t.Fatalf("links %v", p.links)
	}

	// A failing data path changes nothing that is kept.
	p.fail = errors.New("no netlink")
	if _, err := n.Attach("7-2-api", "office", targets[:1]); err == nil {
		t.Fatal("Attach succeeded over a failing data path")
	}
	p.fail = nil

	// A restart: the same addresses from the store.
	n2 := newTestNetworks(t, d, db, p)
	again, err := n2.Attach("7-1-web", "office", targets)
	if err != nil || fmt.Sprint(again) != fmt.Sprint(via) {
		t.Fatalf("after a restart: %v, %v; before %v", again, err, via)
	}
	if _, ok := n2.st.Routes["7-2-api"]; ok {
		t.Fatal("a failed Attach was kept")
	}
	if err := n2.Detach("8-1-web"); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.links[1]; ok || len(p.links) != 1 {
		t.Fatalf("twin 8's link stays after its last route: %v", p.links)
	}
	if err := n2.Detach("8-1-web"); err != nil {
		t.Fatalf("Detach of nothing: %v", err)
	}
}
