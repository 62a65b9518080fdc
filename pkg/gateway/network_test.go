package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/threefoldtech/gateway/pkg/store"
)

// mapNetworks is a Networks that maps each target of a known network to a
// port of 100.64.0.1, the same for a target of one wlID every time.
type mapNetworks struct {
	mu       sync.Mutex
	known    map[string]bool
	ports    map[string]uint16
	attached map[string]bool
	fail     error
}

func newMapNetworks(known ...string) *mapNetworks {
	n := &mapNetworks{known: map[string]bool{}, ports: map[string]uint16{}, attached: map[string]bool{}}
	for _, k := range known {
		n.known[k] = true
	}
	return n
}

func (n *mapNetworks) Check(wlID, network string) error {
	if !n.known[network] {
		return errors.New("no such network of this twin")
	}
	return nil
}

func (n *mapNetworks) Attach(wlID, network string, targets []netip.AddrPort) (map[netip.AddrPort]netip.AddrPort, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fail != nil {
		return nil, n.fail
	}
	out := map[netip.AddrPort]netip.AddrPort{}
	for _, t := range targets {
		key := wlID + "|" + t.String()
		if n.ports[key] == 0 {
			n.ports[key] = uint16(20000 + len(n.ports))
		}
		out[t] = netip.AddrPortFrom(netip.MustParseAddr("100.64.0.1"), n.ports[key])
	}
	n.attached[wlID] = true
	return out, nil
}

func (n *mapNetworks) Detach(wlID string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.attached, wlID)
	return nil
}

// TestPrivateNetworkRoutes guards the seam of private networks: a route
// with a network is published and metered at the addresses Networks gives,
// kept across a restart, and its setup ends with it; an unknown network, or
// a gateway that cannot reach networks, is refused with the network named
// and nothing written.
func TestPrivateNetworkRoutes(t *testing.T) {
	root := t.TempDir()
	nets := newMapNetworks("office")
	book := newBookMeter()
	m, _ := newModuleWith(t, root, func(c *Config) { c.Networks = nets; c.Meter = book })
	req := RouteRequest{WorkloadID: "7-1-web", Kind: KindName, Name: "web", Backends: []string{"http://10.1.0.5:8080"}, Network: "office"}
	if _, err := m.SetRoute(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	mapped := "http://100.64.0.1:20000"
	got := grouped(t, root)["7-1-web"]
	if got == nil || got.HTTP.Services["7-1-web"].LoadBalancer.Servers[0].URL != mapped {
		t.Fatalf("route published as %+v, want its server at %s", got, mapped)
	}
	if fmt.Sprint(book.addrs["7-1-web"]) != "[100.64.0.1:20000]" {
		t.Fatalf("metered %v", book.addrs)
	}
	// The same Set again changes nothing.
	before := snapshot(t, root)
	if _, err := m.SetRoute(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(snapshot(t, root), before) {
		t.Fatal("the same Set of a private network's route wrote files")
	}
	if list, _ := c21(m).List(); len(list) != 1 || list[0].Backends[0] != "http://10.1.0.5:8080" {
		t.Fatalf("List = %+v, want the backend as given", list)
	}

	for _, tc := range []struct {
		name string
		nets Networks
		want string
	}{
		{"unknown network", nets, `network "lab"`},
		{"no network daemon", nil, "cannot reach private networks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m2 := m
			if tc.nets == nil {
				m2, _ = newModuleWith(t, t.TempDir(), nil)
			}
			bad := req
			bad.WorkloadID, bad.Name, bad.Network = "7-2-lab", "lab", "lab"
			_, err := m2.SetRoute(context.Background(), bad)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if grouped(t, root)["7-2-lab"] != nil {
				t.Fatal("a refused route was written")
			}
		})
	}

	// A restart attaches again: the same addresses.
	m3, _ := newModuleWith(t, root, func(c *Config) { c.Networks = nets; c.Meter = newBookMeter() })
	if got := grouped(t, root)["7-1-web"]; got.HTTP.Services["7-1-web"].LoadBalancer.Servers[0].URL != mapped {
		t.Fatalf("after a restart: %+v", got)
	}
	if err := c21(m3).DeleteNamedProxy("7-1-web"); err != nil {
		t.Fatal(err)
	}
	if nets.attached["7-1-web"] {
		t.Fatal("the private network of a deleted route stays attached")
	}
}

// storedNetworks is a Networks that keeps its allocation in the module's
// store, as privnet does; each Attach grows the file, so that bbolt must
// map it again, which waits for every open read transaction.
type storedNetworks struct {
	*mapNetworks
	db *store.Store
}

func (n storedNetworks) Attach(wlID, network string, targets []netip.AddrPort) (map[netip.AddrPort]netip.AddrPort, error) {
	if err := n.db.Update(func(tx *store.Tx) error {
		return store.Put(tx, "networks-test", []byte(fmt.Sprint(time.Now().UnixNano())), make([]byte, 8<<20))
	}); err != nil {
		return nil, err
	}
	return n.mapNetworks.Attach(wlID, network, targets)
}

// TestPrivateNetworkStoreAtStart guards the start of a gateway whose
// Networks writes the store: Recover attaches the routes outside its own
// transaction of the store (inside it, the write waited forever).
func TestPrivateNetworkStoreAtStart(t *testing.T) {
	root := t.TempDir()
	nets := newMapNetworks("office")
	m, _ := newModuleWith(t, root, func(c *Config) {
		c.Store = openStore(t, root)
		c.Networks = storedNetworks{nets, c.Store}
	})
	req := RouteRequest{WorkloadID: "7-1-web", Kind: KindName, Name: "web", Backends: []string{"http://10.1.0.5:8080"}, Network: "office"}
	if _, err := m.SetRoute(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		newModuleWith(t, root, func(c *Config) {
			c.Store = openStore(t, root)
			c.Networks = storedNetworks{nets, c.Store}
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the start attaching a private network's route did not end")
	}
	if got := grouped(t, root)["7-1-web"]; got == nil {
		t.Fatal("the route is not published after the start")
	}
}
