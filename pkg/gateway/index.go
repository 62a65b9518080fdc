package gateway

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/rs/zerolog"

	"github.com/threefoldtech/gateway/pkg/traefik"
)

// index maps workload IDs to routes and domains to their holder. It is not
// safe for concurrent use: the module guards it.
type index struct {
	byID   map[string]route
	byFQDN map[string]string
	// disputed holds domains that several files claimed at load, with
	// their wlIDs. The files are in quarantine; nobody gets the domains
	// until an operator resolves the conflict and restarts.
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

// only returns the values of m whose key is a workload the index holds.
func (x *index) only(m map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for id, v := range m {
		if _, ok := x.byID[id]; ok {
			out[id] = v
		}
	}
	return out
}

// loadIndex rebuilds the index from the published routes. It leaves out,
// and returns with the reason why, each route it cannot read back, each
// route with a backend at one of the node's own addresses (policy.Own),
// every route of a domain that several claim, and a route published twice
// (by an interrupted conversion of the layout) in two different ways; the
// caller moves them to quarantine. Loading goes on past them.
func loadIndex(routes Publisher, domain string, policy Policy, log zerolog.Logger) (*index, map[string]string, error) {
	x := newIndex()
	rejected := make(map[string]string)
	byID := make(map[string]route)
	err := routes.Load(func(id string, cfg *traefik.Configuration, err error) {
		var r route
		if err == nil {
			r, err = parseRoute(id, cfg, domain)
		}
		if err == nil {
			err = checkOwn(r, policy)
		}
		if _, done := rejected[id]; done {
			return
		}
		if err != nil {
			rejected[id] = "not a route of this gateway: " + err.Error()
			delete(byID, id)
			return
		}
		if first, ok := byID[id]; ok && !reflect.DeepEqual(first, r) {
			rejected[id] = "published twice, in two different ways: an interrupted conversion of the layout left a route file beside its group file, and one of them was changed since"
			delete(byID, id)
			return
		}
		byID[id] = r
	})
	if err != nil {
		return nil, nil, err
	}
	claims := make(map[string][]route)
	for _, r := range byID {
		claims[r.fqdn] = append(claims[r.fqdn], r)
	}
	for fqdn, rs := range claims {
		if len(rs) == 1 {
			x.put(rs[0])
			continue
		}
		ids := make([]string, len(rs))
		for i, r := range rs {
			ids[i] = r.id
		}
		slices.Sort(ids)
		x.disputed[fqdn] = ids
		for _, id := range ids {
			rejected[id] = "one of several route files that claim " + fqdn + " (" + strings.Join(ids, ", ") + ")"
		}
		log.Error().Str("fqdn", fqdn).Strs("wlIDs", ids).Msg("several route files claim one domain; none is indexed, all go to quarantine, and the domain is refused to new calls until an operator restores one and restarts the gateway")
	}
	return x, rejected, nil
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
