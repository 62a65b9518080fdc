package traefik

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
)

// RoutesDirName is the folder under the module's root that holds the routes;
// Traefik's file provider watches it.
const RoutesDirName = "proxy"

// legacyStagingDir is the staging folder of traefik/ earlier versions
// left under the root.
const legacyStagingDir = ".traefik-staging"

// fileProviderSuffix ends the names Traefik gives the routers and services of
// its file provider in its API.
const fileProviderSuffix = "@file"

// Routes publishes the gateway's routes for Traefik's file provider, in the
// layout of layout.go: <root>/proxy/routes~NN.yaml, the group files, each
// holding the routes whose ID hashes to it, every router, middleware and
// service named after its route; <root>/proxy/gateway~anchor.yaml, the
// reserved file of the anchor router; and, only while ImportDone removes
// the files routes were imported from, <root>/proxy/+converting.yaml, the
// hold file (imports.go). Everything else found in <root>/proxy is moved to
// <root>/proxy-quarantine. It is the only place that knows this layout.
//
// What it publishes is derived: the gateway's store holds the routes as
// callers asked for them, and Reset writes the folder from them at start.
// Routes never reads its own files back to learn what the routes are; it
// reads them only to notice a change made behind its back.
//
// Traefik's file provider loads more than the gateway writes (files in
// subfolders, hidden files, .yml and .toml files, links), and one file it
// cannot parse makes it refuse the whole folder, so that no later change is
// applied. Only the files of the layout may therefore stay in the folder,
// holding only what the gateway wrote.
//
// Routes keeps the group files in memory as it last wrote or read them, with
// their stamps: a write rewrites a group without reading it, and a sweep
// reads again only a file that changed behind its back.
type Routes struct {
	dir        *Dir
	quarantine string
	// holding is set between HoldReloads and its release.
	holding atomic.Bool

	mu sync.Mutex
	// groups are the group files as the gateway last wrote or read them.
	groups [NumGroups]group
	// anchor is the anchor the gateway publishes.
	anchor anchor
	// pending are entries moved to quarantine by a write, that the next
	// Sweep returns.
	pending []Quarantined
	// reads counts the group files read, for the tests.
	reads int
}

// group is one group file as the gateway last wrote or read it.
type group struct {
	// routes holds the configuration of each route in the file.
	routes map[string]*Configuration
	// encoded holds the routes as last written, encoded (encode.go): a
	// route whose configuration is the same pointer is not encoded again.
	encoded map[string]*encoded
	// stamp is the file's when it held routes; zero when there is no file
	// or it is not known.
	stamp Stamp
	// stale is set when the file lacks a route of routes, or held
	// something else that is now in quarantine: it must be written again.
	stale bool
}

// anchor is the reserved file as the gateway last wrote it.
type anchor struct {
	// data is the file's content; nil when there must be no file.
	data []byte
	// stamp is the file's when it held data; zero otherwise.
	stamp Stamp
}

// OpenRoutes opens the routes folder of the module rooted at root, creating
// it when needed. The quarantine folder is created when first needed.
func OpenRoutes(root string) (*Routes, error) {
	dir, err := OpenDir(filepath.Join(root, RoutesDirName))
	if err != nil {
		return nil, err
	}
	// The staging folder of traefik/ that earlier versions kept: nothing
	// is staged there any more.
	if err := os.RemoveAll(filepath.Join(root, legacyStagingDir)); err != nil {
		return nil, fmt.Errorf("removing %s: %w", legacyStagingDir, err)
	}
	return &Routes{
		dir:        dir,
		quarantine: filepath.Join(filepath.Dir(dir.Path()), QuarantineDirName),
	}, nil
}

// Path returns the folder Traefik's file provider must watch.
func (r *Routes) Path() string { return r.dir.Path() }

// QuarantinePath returns the folder entries that are not routes are moved to.
func (r *Routes) QuarantinePath() string { return r.quarantine }

// Publish makes cfg the configuration of route id, replacing any earlier
// one, by writing the route's group file again. Every element of cfg must be
// named id. Once it returns the route is live and Traefik sees one change;
// the write does not wait for the disk (writeGroup). What the group
// file held that the gateway did not write is moved to quarantine first
// (the next Sweep returns it). Any error means nothing changed.
func (r *Routes) Publish(id string, cfg *Configuration) error {
	return r.PublishEach(map[string]*Configuration{id: cfg})[id]
}

// PublishEach makes each configuration of cfgs the configuration of its
// route, as Publish does, writing each group file that changes once. It
// returns the error of each route it could not publish (nil when it
// published them all): the routes of one group file succeed or fail
// together, and each route is live or unchanged.
func (r *Routes) PublishEach(cfgs map[string]*Configuration) map[string]error {
	var failed map[string]error
	fail := func(id string, err error) {
		if failed == nil {
			failed = make(map[string]error)
		}
		failed[id] = err
	}
	byGroup := make(map[int][]string)
	for id, cfg := range cfgs {
		if err := checkName(id); err != nil {
			fail(id, err)
			continue
		}
		if err := checkNamed(id, cfg); err != nil {
			fail(id, err)
			continue
		}
		byGroup[GroupOf(id)] = append(byGroup[GroupOf(id)], id)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	errs := make(map[int]error, len(byGroup))
	var wg sync.WaitGroup
	var emu sync.Mutex
	for n, ids := range byGroup {
		if err := r.refresh(n); err != nil {
			errs[n] = err
			continue
		}
		routes := maps.Clone(r.groups[n].routes)
		if routes == nil {
			routes = make(map[string]*Configuration, len(ids))
		}
		for _, id := range ids {
			routes[id] = cfgs[id]
		}
		// Each group file is synced on its own: in parallel, the file
		// system commits the syncs together.
		wg.Go(func() {
			if err := r.writeGroup(n, routes, false); err != nil {
				emu.Lock()
				errs[n] = err
				emu.Unlock()
			}
		})
	}
	wg.Wait()
	for n, err := range errs {
		for _, id := range byGroup[n] {
			fail(id, err)
		}
	}
	return failed
}

// Unpublish removes route id from its group file, and the file with its
// last route. A route that is not there is not an error. As for Publish,
// it does not wait for the disk; any error means nothing changed.
func (r *Routes) Unpublish(id string) error {
	if err := checkName(id); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := GroupOf(id)
	if err := r.refresh(n); err != nil {
		return err
	}
	if _, ok := r.groups[n].routes[id]; !ok {
		return nil
	}
	routes := maps.Clone(r.groups[n].routes)
	delete(routes, id)
	return r.writeGroup(n, routes, false)
}

// PublishAnchor makes cfg the content of the reserved file, or removes it
// when cfg is nil. A file that holds exactly cfg is left as it is, so a
// restart costs Traefik no reload; one that holds something else than the
// anchor router and the default certificate is moved to quarantine first (the next Sweep returns it).
// Sweep writes the file again if it changes behind the gateway's back.
func (r *Routes) PublishAnchor(cfg *Configuration) error {
	var want []byte
	if cfg != nil {
		if err := checkAnchor(cfg); err != nil {
			return err
		}
		var err error
		if want, err = Marshal(cfg); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	path := r.dir.File(anchorFile)
	data, st, err := r.dir.readStamped(anchorFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err == nil && want != nil && bytes.Equal(data, want):
		r.anchor = anchor{data: want, stamp: st}
		return nil
	case err == nil && isAnchor(data):
		// Written by the gateway for another domain, or before it lost
		// its domain.
		if want == nil {
			err := r.dir.Remove(anchorFile)
			if err == nil || errors.Is(err, ErrNotDurable) {
				r.anchor = anchor{}
			}
			return err
		}
	default:
		moved := r.move([]Quarantined{{Name: anchorFile + FileExt, Reason: "the reserved file of the anchor router holds something else than the anchor router"}})
		r.pending = append(r.pending, moved...)
		if len(moved) > 0 && moved[0].Err != nil {
			return fmt.Errorf("writing %s: moving aside what is there: %w", path, moved[0].Err)
		}
	}
	r.anchor = anchor{data: want}
	if want == nil {
		return nil
	}
	return r.writeAnchor()
}

// isAnchor tells whether data reads back as what the reserved file may
// hold, and nothing else.
func isAnchor(data []byte) bool {
	cfg, err := Unmarshal(data)
	return err == nil && checkAnchor(cfg) == nil
}

// checkAnchor refuses a configuration of the reserved file that holds more
// than the anchor router (AnchorName), the challenge router and service
// (ChallengeName), the default certificate of the default store and
// certificates, or none of them.
func checkAnchor(cfg *Configuration) error {
	tls := cfg.TLS
	if tls != nil {
		if len(tls.Stores) > 1 || (len(tls.Stores) == 1 && (tls.Stores[DefaultStore] == nil || tls.Stores[DefaultStore].DefaultCertificate == nil)) {
			return fmt.Errorf("the reserved file's tls section may only set the default certificate of the %q store, and certificates", DefaultStore)
		}
		if slices.Contains(tls.Certificates, nil) {
			return errors.New("the reserved file lists an empty certificate")
		}
	}
	rest := *cfg
	rest.TLS = nil
	if rest.HTTP == nil && rest.TCP == nil {
		if tls == nil || (len(tls.Stores) == 0 && len(tls.Certificates) == 0) {
			return errors.New("the reserved file holds neither the anchor router nor a certificate")
		}
		return nil
	}
	for name := range Split(&rest) {
		if name != AnchorName && name != ChallengeName {
			return fmt.Errorf("the reserved file holds %q: only %q and %q may be named there", name, AnchorName, ChallengeName)
		}
	}
	return nil
}

// writeAnchor writes r.anchor.data to the reserved file.
func (r *Routes) writeAnchor() error {
	st, err := r.dir.writeStamped(anchorFile, r.anchor.data)
	if err != nil && !errors.Is(err, ErrNotDurable) {
		return err
	}
	r.anchor.stamp = st
	return err
}

// readGroup reads group file n and splits it into routes.
func (r *Routes) readGroup(n int) (map[string]*Configuration, Stamp, error) {
	r.reads++
	data, st, err := r.dir.readStamped(groupName(n))
	if err != nil {
		return nil, Stamp{}, err
	}
	cfg, err := unmarshalRoutes(data)
	if err != nil {
		return nil, Stamp{}, err
	}
	return Split(cfg), st, nil
}

// unmarshalRoutes reads back a file of routes. A tls section is refused:
// only the reserved file may set Traefik's TLS stores.
func unmarshalRoutes(data []byte) (*Configuration, error) {
	cfg, err := Unmarshal(data)
	if err != nil {
		return nil, err
	}
	if cfg.TLS != nil {
		return nil, errors.New("a tls section, which only " + anchorFile + FileExt + " may hold")
	}
	return cfg, nil
}

// Locate returns the group file of route id, for an operator to look at.
func (r *Routes) Locate(id string) string { return r.dir.File(GroupName(id)) }

// Published tells whether route id is in its group file as the gateway
// wrote it: a group file changed or removed behind its back does not count.
func (r *Routes) Published(id string) (bool, error) {
	if err := checkName(id); err != nil {
		return false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := GroupOf(id)
	g := &r.groups[n]
	if _, ok := g.routes[id]; !ok || g.stale || g.stamp == (Stamp{}) {
		return false, nil
	}
	st, exists, err := r.dir.stat(groupName(n))
	if err != nil {
		return false, err
	}
	return exists && st == g.stamp, nil
}

// writeGroup makes group file n hold routes, or removes it when there are
// none, and keeps them as the group's. The file and the folder are synced
// when sync is set; otherwise the write is volatile: the store is what
// survives a crash, and Reset writes the group again at start. An error
// that wraps ErrNotDurable means the change took place.
func (r *Routes) writeGroup(n int, routes map[string]*Configuration, sync bool) error {
	g := &r.groups[n]
	name := groupName(n)
	if len(routes) == 0 {
		// No empty file: Traefik would parse it at every reload, and a
		// grep of the folder finds only live routes.
		_, exists, err := r.dir.stat(name)
		if err == nil && exists {
			if sync {
				err = r.dir.Remove(name)
			} else {
				err = r.dir.removeNoSync(name)
			}
		}
		if err != nil && !errors.Is(err, ErrNotDurable) {
			return err
		}
		*g = group{}
		return err
	}
	encs := make(map[string]*encoded, len(routes))
	for id, cfg := range routes {
		e := g.encoded[id]
		if e == nil || e.cfg != cfg {
			var err error
			if e, err = encodeRoute(id, cfg); err != nil {
				return fmt.Errorf("encoding route %q: %w", id, err)
			}
		}
		encs[id] = e
	}
	write := r.dir.writeStamped
	if !sync {
		// The store holds what the file is derived from: a power cut
		// that loses this write is repaired by Reset at the next start.
		write = r.dir.writeStampedVolatile
	}
	st, err := write(name, encodeGroup(encs))
	if err != nil && !errors.Is(err, ErrNotDurable) {
		return err
	}
	*g = group{routes: routes, encoded: encs, stamp: st}
	return err
}
