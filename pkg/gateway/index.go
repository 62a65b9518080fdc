package gateway

import (
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
	// disputed holds domains that several files claimed at load. Nobody
	// gets them until an operator resolves the conflict and restarts.
	disputed map[string][]string
}

func newIndex() *index {
	return &index{
		byID:     make(map[string]route),
		byFQDN:   make(map[string]string),
		disputed: make(map[string][]string),
	}
}

// holder returns who holds fqdn, if anyone.
func (x *index) holder(fqdn string) (string, bool) {
	if ids, ok := x.disputed[fqdn]; ok {
		return strings.Join(ids, " and ") + " (conflicting files, see the log)", true
	}
	id, ok := x.byFQDN[fqdn]
	return id, ok
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

// loadIndex rebuilds the index from the published routes. A route it cannot
// read back, and every route of a domain that several claim, is logged and
// left untouched; loading goes on.
func loadIndex(routes Publisher, domain string, log zerolog.Logger) (*index, error) {
	x := newIndex()
	claims := make(map[string][]route)
	err := routes.Load(func(id string, cfg *traefik.Configuration, err error) {
		var r route
		if err == nil {
			r, err = parseRoute(id, cfg, domain)
		}
		if err != nil {
			log.Error().Err(err).Str("file", routes.Locate(id)).Msg("skipping a proxy file that is not a route of this gateway; it is left untouched")
			return
		}
		claims[r.fqdn] = append(claims[r.fqdn], r)
	})
	if err != nil {
		return nil, err
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
		log.Error().Str("fqdn", fqdn).Strs("wlIDs", ids).Msg("several proxy files claim one domain; none is indexed and the domain is refused to new calls until the extra files are removed and the gateway restarted")
	}
	return x, nil
}
