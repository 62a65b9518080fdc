package gateway

import (
	"fmt"
	"slices"
	"strings"
)

// index maps workload IDs to routes and domains to their holder. It is not
// safe for concurrent use: the module guards it.
type index struct {
	byID   map[string]route
	byFQDN map[string]string
	// disputed holds domains that several routes claimed when they were
	// imported, with their wlIDs. None was imported; nobody gets the
	// domains until an operator resolves the conflict and restarts.
	disputed map[string][]string
}

func newIndex() *index {
	return &index{
		byID:     make(map[string]route),
		byFQDN:   make(map[string]string),
		disputed: make(map[string][]string),
	}
}

func (x *index) put(r route) {
	if old, ok := x.byID[r.id]; ok {
		delete(x.byFQDN, old.fqdn)
	}
	x.byID[r.id] = r
	x.byFQDN[r.fqdn] = r.id
}

func (x *index) remove(id string) {
	if old, ok := x.byID[id]; ok {
		delete(x.byFQDN, old.fqdn)
		delete(x.byID, id)
	}
}

// list returns the routes sorted by workload ID.
func (x *index) list() []Proxy {
	out := make([]Proxy, 0, len(x.byID))
	for _, r := range x.byID {
		out = append(out, r.proxy())
	}
	slices.SortFunc(out, func(a, b Proxy) int { return strings.Compare(a.WorkloadID, b.WorkloadID) })
	return out
}

// checkOwn refuses a route read back at start whose backends include one of
// the node's own addresses, loopback ones excepted as in Policy.Check: the
// node may have gained the address since the route was set.
func checkOwn(r route, policy Policy) error {
	for _, b := range r.backends {
		if ip := b.Addr.Addr().Unmap(); !ip.IsLoopback() && policy.isOwn(ip) {
			return fmt.Errorf("backend %s is the node's own address: the route would loop into the gateway", b.Addr)
		}
	}
	return nil
}
