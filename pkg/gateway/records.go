package gateway

import (
	"encoding/json"
	"fmt"

	"github.com/threefoldtech/gateway/pkg/store"
)

// routesBucket is the store's bucket of routes, keyed by workload ID.
const routesBucket = "routes"

// recordVersion is the version of the records this gateway writes. A later
// gateway reads every earlier version; an earlier one leaves a record of a
// later version alone (recover.go).
const recordVersion = 1

// record is a route as its caller asked for it, the way the store keeps it:
// the source the routes folder is derived from. Fields are only ever added,
// with omitempty, so that an earlier gateway's records read back as they
// were written.
type record struct {
	Version int `json:"version"`
	// Kind is KindName or KindFQDN.
	Kind Kind `json:"kind"`
	// Name is the label under the gateway domain of a name proxy, as
	// normalized; the route's domain follows the gateway domain.
	Name string `json:"name,omitempty"`
	// FQDN is the route's domain when it was set: the user's domain of an
	// FQDN proxy, Name under the gateway domain of then for a name proxy.
	FQDN string `json:"fqdn"`
	// Backends are the backends as validated, in the form the caller's
	// contract uses.
	Backends []string `json:"backends"`
	// TLSPassthrough is set when the backends terminate TLS.
	TLSPassthrough bool `json:"tlsPassthrough,omitempty"`
	// Contract is the bus contract the route was set through.
	Contract string `json:"contract,omitempty"`
	// Network is the tenant's private network of the backends.
	Network string `json:"network,omitempty"`
}

// record returns the record of r.
func (r route) record() record {
	backends := make([]string, len(r.backends))
	for i, b := range r.backends {
		backends[i] = b.String(r.passthrough)
	}
	return record{
		Version:        recordVersion,
		Kind:           r.kind,
		Name:           r.name,
		FQDN:           r.fqdn,
		Backends:       backends,
		TLSPassthrough: r.passthrough,
		Contract:       r.contract,
		Network:        r.network,
	}
}

// route returns the route of record rec of workload id under the gateway
// domain of now (empty: the domain the name proxy was set under).
func (rec record) route(id, domain string) (route, error) {
	if rec.Version < 1 || rec.Version > recordVersion {
		return route{}, fmt.Errorf("record version %d, this gateway reads 1 to %d", rec.Version, recordVersion)
	}
	if err := ValidateWorkloadID(id); err != nil {
		return route{}, err
	}
	r := route{id: id, kind: rec.Kind, name: rec.Name, fqdn: rec.FQDN, passthrough: rec.TLSPassthrough, contract: rec.Contract, network: rec.Network}
	switch rec.Kind {
	case KindName:
		if rec.Name == "" {
			return route{}, fmt.Errorf("a name proxy without a name")
		}
		if domain != "" {
			r.fqdn = rec.Name + "." + domain
		}
	case KindFQDN:
	default:
		return route{}, fmt.Errorf("unknown kind %q", rec.Kind)
	}
	if norm, err := normalizeDomain(r.kind, r.fqdn); err != nil || norm != r.fqdn {
		return route{}, fmt.Errorf("domain %q is not a domain name", r.fqdn)
	}
	if len(rec.Backends) == 0 || len(rec.Backends) > MaxBackends {
		return route{}, fmt.Errorf("%d backends", len(rec.Backends))
	}
	for _, s := range rec.Backends {
		b, err := ParseBackend("backend", s, rec.TLSPassthrough)
		if err != nil {
			return route{}, err
		}
		r.backends = append(r.backends, b)
	}
	return r, nil
}

// putRoutes writes the records of routes in one transaction.
func putRoutes(tx *store.Tx, routes []route) error {
	for _, r := range routes {
		data, err := json.Marshal(r.record())
		if err != nil {
			return fmt.Errorf("encoding the record of route %q: %w", r.id, err)
		}
		if err := store.Put(tx, routesBucket, []byte(r.id), data); err != nil {
			return fmt.Errorf("storing route %q: %w", r.id, err)
		}
	}
	return nil
}

// deleteRoutes removes the records of ids.
func deleteRoutes(tx *store.Tx, ids ...string) error {
	for _, id := range ids {
		if err := store.Delete(tx, routesBucket, []byte(id)); err != nil {
			return fmt.Errorf("deleting the record of route %q: %w", id, err)
		}
	}
	return nil
}

// loadRoutes calls fn with each record of the store and its workload ID.
func loadRoutes(tx *store.Tx, fn func(id string, rec record, err error)) error {
	return store.ForEach(tx, routesBucket, func(k, v []byte) error {
		var rec record
		err := json.Unmarshal(v, &rec)
		fn(string(k), rec, err)
		return nil
	})
}
