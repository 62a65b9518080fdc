package gateway

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/threefoldtech/gateway/pkg/store"
	"github.com/threefoldtech/gateway/pkg/traefik"
)

// metaBucket holds what the store knows of itself.
const metaBucket = "meta"

// importedKey is set, in the transaction that stores them, once the routes
// an earlier version left in the routes folder are imported: the import
// runs until it is.
var importedKey = []byte("imported")

// Recover brings the module up from disk, once, before it serves: at the
// first start with a store it imports the routes earlier versions
// published; it loads the routes of the store, meters them, tells the
// certificates which domains are routed, and makes the routes folder hold
// exactly what they render to now, whatever an earlier version or a crash
// left there. What is published and is no route of the store goes to
// quarantine (the sweep).
func (m *Module) Recover() error {
	policy, err := m.policy()
	if err != nil {
		return err
	}
	imp, err := m.importOnce()
	if err != nil {
		return err
	}
	reasons := make(map[string]string)
	for k, why := range imp.refused {
		reasons[strings.TrimSuffix(k, traefik.FileExt)] = "not imported: " + why
	}

	var refused []route
	byID := make(map[string]route)
	err = m.store.View(func(tx *store.Tx) error {
		return loadRoutes(tx, func(id string, rec record, err error) {
			var r route
			if err == nil {
				r, err = rec.route(id, m.cfg.Domain)
			}
			if err != nil {
				// Left in the store as it is: a later gateway may read it.
				m.log.Error().Err(err).Str("wlID", id).Msg("a route of the store cannot be served by this gateway; it stays in the store, unserved")
				return
			}
			if err := checkOwn(r, policy); err != nil {
				reasons[id] = "not a route this gateway serves any more: " + err.Error()
				refused = append(refused, r)
				return
			}
			byID[id] = r
		})
	})
	if err != nil {
		return fmt.Errorf("loading the routes of the store: %w", err)
	}
	// Outside the store's transaction: Networks keeps its allocation in
	// the store too.
	for id, r := range byID {
		if err := m.attach(&r); err != nil {
			// Left in the store: the network may come back.
			m.log.Error().Err(err).Str("wlID", id).Msg("a route of the store cannot reach its private network; it is not served until it is set again")
			delete(byID, id)
			continue
		}
		byID[id] = r
	}
	if err := m.refuse(refused, reasons); err != nil {
		return err
	}

	x := newIndex()
	maps.Copy(x.disputed, imp.disputed)
	claims := make(map[string][]string)
	for id, r := range byID {
		claims[r.fqdn] = append(claims[r.fqdn], id)
	}
	for fqdn, ids := range claims {
		if len(ids) == 1 {
			x.put(byID[ids[0]])
			continue
		}
		// The gateway domain changed under name proxies and one now
		// takes a user's domain: nobody gets it.
		slices.Sort(ids)
		x.disputed[fqdn] = ids
		m.log.Error().Str("fqdn", fqdn).Strs("wlIDs", ids).Msg("several routes of the store claim one domain; none is served, and the domain is refused to new calls until an operator deletes all but one and restarts the gateway")
	}
	for fqdn, ids := range imp.disputed {
		m.log.Error().Str("fqdn", fqdn).Strs("wlIDs", ids).Msg("several route files claimed one domain; none was imported, and the domain is refused to new calls until an operator restores one and restarts the gateway")
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	m.idx = x
	if m.cfg.Certificates != nil {
		domains := map[string]string{}
		for _, r := range x.byID {
			if r.acme() {
				domains[r.fqdn] = twinOf(r.id)
			}
		}
		m.cfg.Certificates.SetWanted(domains)
	}
	if m.meter != nil {
		routes := make(map[string][]netip.AddrPort, len(x.byID))
		for id, r := range x.byID {
			routes[id] = r.meterAddrs()
		}
		if err := m.meter.Reset(routes); err != nil {
			return fmt.Errorf("metering the routes of the store: %w", err)
		}
	}
	cfgs := make(map[string]*traefik.Configuration, len(x.byID))
	for id, r := range x.byID {
		cfgs[id] = r.render()
	}
	release := func() error { return nil }
	if slices.ContainsFunc(imp.files, func(f traefik.Importable) bool { return !f.Group }) {
		// The old files and the groups both change: Traefik reads the
		// folder once, when both are done.
		if release, err = m.routes.HoldReloads(); err != nil {
			return err
		}
	}
	changed, err := m.routes.Reset(cfgs)
	if err == nil {
		err = m.routes.ImportDone(imp.files)
	}
	if rerr := release(); rerr != nil {
		// The sweep moves it; Traefik then reads the folder.
		m.log.Error().Err(rerr).Msg("letting Traefik reload the routes folder again")
	}
	if err != nil {
		return fmt.Errorf("publishing the routes of the store: %w", err)
	}
	if changed > 0 {
		m.log.Info().Int("files", changed).Msg("routes folder written from the store")
	}
	m.mu.Unlock()
	err = m.publishAnchor()
	m.mu.Lock()
	if err != nil {
		return fmt.Errorf("publishing the anchor of the wildcard certificate and the default certificate: %w", err)
	}
	m.sweepLocked(reasons)
	m.log.Info().Int("routes", len(x.byID)).Msg("routes loaded")
	return nil
}

// importOnce imports, at the first start with a store, the routes the
// routes folder holds in a shape the gateway or zos wrote: they are stored,
// their domains reserved, and each file they came from is kept, bytes
// intact, in proxy-imported/. It returns what it imported; nothing once the
// store says the import is done.
func (m *Module) importOnce() (imported, error) {
	done := false
	if err := m.store.View(func(tx *store.Tx) error {
		done = store.Get(tx, metaBucket, importedKey) != nil
		return nil
	}); err != nil {
		return imported{}, fmt.Errorf("reading the store: %w", err)
	}
	if done {
		return imported{}, nil
	}
	files, err := m.routes.Importables()
	if err != nil {
		return imported{}, fmt.Errorf("importing the routes folder: %w", err)
	}
	imp := importRoutes(files, m.cfg.Domain)
	if err := m.routes.KeepImported(imp.files); err != nil {
		return imported{}, fmt.Errorf("importing the routes folder: %w", err)
	}
	routes := slices.Collect(maps.Values(imp.routes))
	stamp, _ := json.Marshal(map[string]int{"routes": len(routes)})
	if err := m.store.Update(func(tx *store.Tx) error {
		if err := putRoutes(tx, routes); err != nil {
			return err
		}
		return store.Put(tx, metaBucket, importedKey, stamp)
	}); err != nil {
		return imported{}, fmt.Errorf("storing the imported routes: %w", err)
	}
	if len(routes) > 0 || len(imp.refused) > 0 {
		m.log.Info().Int("routes", len(routes)).Int("files", len(imp.files)).Int("refused", len(imp.refused)).
			Str("kept_in", traefik.ImportedDirName).Msg("routes imported from the routes folder into the store")
	}
	for k, why := range imp.refused {
		m.log.Error().Str("entry", k).Str("reason", why).Msg("not imported from the routes folder")
	}
	return imp, nil
}

// refuse moves routes of the store the gateway no longer serves to
// quarantine, published configuration and record alike, and deletes them
// from the store.
func (m *Module) refuse(routes []route, reasons map[string]string) error {
	if len(routes) == 0 {
		return nil
	}
	ids := make([]string, len(routes))
	for i, r := range routes {
		ids[i] = r.id
		if _, err := m.routes.Quarantine(r.id, reasons[r.id]); err != nil {
			return fmt.Errorf("moving route %q aside: %w", r.id, err)
		}
		m.log.Error().Str("wlID", r.id).Str("reason", reasons[r.id]).Msg("route of the store refused: deleted from the store and moved to quarantine")
	}
	return m.store.Update(func(tx *store.Tx) error { return deleteRoutes(tx, ids...) })
}
