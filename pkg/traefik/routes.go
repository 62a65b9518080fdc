package traefik

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/threefoldtech/gateway/internal/atomicfile"
)

// RoutesDirName is the folder under the module's root that holds the routes;
// Traefik's file provider watches it.
const RoutesDirName = "proxy"

// QuarantineDirName is the folder under the module's root, beside
// RoutesDirName and never inside it (Traefik loads subfolders), where
// entries of the routes folder that are not routes of the gateway are moved:
// out of Traefik's sight, kept for an operator.
const QuarantineDirName = "proxy-quarantine"

// quarantineTimeLayout stamps the name of a quarantined entry: UTC, sortable,
// no characters a shell or another file system would mind.
const quarantineTimeLayout = "20060102T150405.000000000Z"

// maxQuarantineTries bounds the names tried for one quarantined entry when
// earlier ones exist.
const maxQuarantineTries = 100

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
// named id. Once it returns the route is live, Traefik sees one change, and
// a Sync called after it makes the route survive a crash. What the group
// file held that the gateway did not write is moved to quarantine first
// (the next Sweep returns it). Any error means nothing changed.
func (r *Routes) Publish(id string, cfg *Configuration) error {
	return r.PublishEach(map[string]*Configuration{id: cfg})[id]
}

// PublishEach makes each configuration of cfgs the configuration of its
// route, as Publish does, writing each group file that changes once. It
// returns the error of each route it could not publish (nil when it
// published them all): the routes of one group file succeed or fail
// together, and each route is live or unchanged. As for Publish, a Sync
// after it makes the changes survive a crash.
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
// last route. A route that is not there is not an error. As for Publish, a
// Sync after it makes the removal survive a crash; any error means nothing
// changed.
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

// Sync makes every change Publish and Unpublish made before it was called
// survive a crash: it syncs the folder, one sync for the changes of all
// callers waiting at once (group commit), without holding the lock of the
// routes. An error wraps ErrNotDurable: the changes are live.
func (r *Routes) Sync() error { return r.dir.Sync() }

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

// Quarantined is an entry moved, or to be moved, out of the routes folder:
// a file or folder, or a route taken out of a group file.
type Quarantined struct {
	// Name is the entry's name in the routes folder; for a route taken
	// out of a group file, <id>.yaml, the name it is quarantined under.
	Name string
	// ID is the route the entry holds, if it is one.
	ID string
	// Group is the group file a route was taken out of; empty for an
	// entry of the folder itself.
	Group string
	// Reason says why the entry is not a route the gateway serves.
	Reason string
	// Path is where the entry is now; empty when Err is set.
	Path string
	// Err is why the entry could not be moved: it is still in the routes
	// folder, where Traefik reads it.
	Err error
	// Count is how many entries the quarantine folder held after this one
	// moved there.
	Count int

	// content is what a route taken out of a group file is quarantined
	// with; nil for an entry of the folder, which is moved.
	content []byte
}

// Sweep moves to the quarantine folder everything in the routes folder
// that is not a route keep accepts, in its own group file, as the gateway
// wrote it: folders, hidden entries, links, pipes, files of other names,
// files of the one-file-per-route layout (converted at start only), a hold
// file left behind, routes keep refuses or found in another group, and
// whatever a group file or the
// reserved file holds that the gateway did not write (the file is written
// again without it). It reads the folder once and a group file only if its
// stamp changed, and asks keep about each route it holds, so it is cheap
// enough to run every few seconds on thousands of routes. It returns what
// it moved or failed to move, with what writes moved since the last sweep;
// the error is for a folder it could not list.
func (r *Routes) Sweep(keep func(id string) bool) ([]Quarantined, error) {
	f, err := os.Open(r.dir.Path())
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", r.dir.Path(), err)
	}
	// Unsorted: the order does not matter.
	entries, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", r.dir.Path(), err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var foreign []Quarantined
	var present [NumGroups]bool
	anchorPresent := false
	for _, e := range entries {
		c := classify(e)
		switch c.kind {
		case entryGroup:
			present[c.group] = true
		case entryAnchor:
			anchorPresent = true
		case entryLegacy:
			foreign = append(foreign, Quarantined{Name: e.Name(), ID: c.id,
				Reason: "a route file of the one-file-per-route layout, found while the gateway runs: it converts those at start only"})
		default:
			foreign = append(foreign, Quarantined{Name: e.Name(), Reason: c.why})
		}
	}
	out := r.move(foreign)
	r.sweepAnchor(anchorPresent)
	for n := range NumGroups {
		r.sweepGroup(n, present[n], keep)
	}
	out = append(r.pending, out...)
	r.pending = nil
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// sweepAnchor moves the reserved file to quarantine if it is not what the
// gateway wrote, and writes the anchor again where it is missing.
func (r *Routes) sweepAnchor(present bool) {
	a := &r.anchor
	if present {
		st, _, err := r.dir.stat(anchorFile)
		if err != nil || a.data != nil && st == a.stamp {
			return
		}
		if a.data != nil {
			if data, st, err := r.dir.readStamped(anchorFile); err == nil && bytes.Equal(data, a.data) {
				a.stamp = st
				return
			}
		}
		reason := "the reserved file of the anchor router, changed behind the gateway's back"
		if a.data == nil {
			reason = "the reserved file of the anchor router, which the gateway does not publish"
		}
		moved := r.move([]Quarantined{{Name: anchorFile + FileExt, Reason: reason}})
		r.pending = append(r.pending, moved...)
		if len(moved) > 0 && moved[0].Err != nil {
			return
		}
	}
	a.stamp = Stamp{}
	if a.data != nil {
		// Without it the wildcard certificate is not renewed.
		if err := r.writeAnchor(); err != nil && !errors.Is(err, ErrNotDurable) {
			r.pending = append(r.pending, Quarantined{Name: anchorFile + FileExt, Reason: "writing the anchor router again", Err: err})
		}
	}
}

// sweepGroup reads group file n again if it changed behind the gateway's
// back, and takes out of it the routes keep refuses or that belong to
// another group.
func (r *Routes) sweepGroup(n int, present bool, keep func(id string) bool) {
	g := &r.groups[n]
	if !present {
		// Removed behind the gateway's back: its routes are written
		// again.
		if g.stamp != (Stamp{}) || len(g.routes) > 0 {
			g.stamp, g.stale = Stamp{}, len(g.routes) > 0
		}
	} else if st, _, err := r.dir.stat(groupName(n)); err != nil {
		return
	} else if st != g.stamp || g.stale {
		if err := r.refresh(n); err != nil {
			return
		}
	}
	// In the file, the routes to take out go to quarantine first; without
	// a file they are served nowhere and are only forgotten.
	there := g.stamp != (Stamp{})
	var aside []Quarantined
	var drop []string
	for id := range g.routes {
		var why string
		switch {
		case GroupOf(id) != n:
			why = fmt.Sprintf("a route in group file %s, not in its own %s", groupName(n)+FileExt, GroupName(id)+FileExt)
		case !keep(id):
			why = "not a route the gateway holds"
		default:
			continue
		}
		if there {
			aside = append(aside, r.entry(n, id, g.routes[id], why))
		} else {
			drop = append(drop, id)
		}
	}
	slices.SortFunc(aside, func(a, b Quarantined) int { return strings.Compare(a.ID, b.ID) })
	routes := g.routes
	if len(aside)+len(drop) > 0 {
		routes = maps.Clone(g.routes)
		for _, id := range drop {
			delete(routes, id)
		}
		moved := r.move(aside)
		for _, q := range moved {
			if q.Err == nil {
				delete(routes, q.ID)
				g.stale = true
			}
		}
		r.pending = append(r.pending, moved...)
	}
	if !g.stale {
		g.routes = routes
		return
	}
	if err := r.writeGroup(n, routes, true); err != nil && !errors.Is(err, ErrNotDurable) {
		// Copied to quarantine, but still where Traefik reads them.
		g.routes = routes
		g.stale = true
		r.pending = append(r.pending, Quarantined{Name: groupName(n) + FileExt, Reason: "writing the group file without what went to quarantine", Err: err})
	}
}

// entry returns route id of group n, to be quarantined for why.
func (r *Routes) entry(n int, id string, cfg *Configuration, why string) Quarantined {
	q := Quarantined{Name: id + FileExt, ID: id, Group: groupName(n) + FileExt, Reason: why}
	data, err := Marshal(cfg)
	if err != nil {
		q.Err = err
		return q
	}
	q.content = data
	return q
}

// refresh compares group file n with what the gateway last wrote or read
// there, by its stamp. A file changed behind the gateway's back is read
// again: each route it holds that differs from what the gateway wrote goes
// to quarantine, a file that does not read back goes there whole, and the
// group is marked stale, to be written again. The moves go to r.pending. An
// error means something could not be moved aside: the file must not be
// written over.
func (r *Routes) refresh(n int) error {
	g := &r.groups[n]
	name := groupName(n)
	st, exists, err := r.dir.stat(name)
	if err != nil {
		return err
	}
	if !exists {
		g.stamp = Stamp{}
		return nil
	}
	if st == g.stamp {
		return nil
	}
	routes, st, err := r.readGroup(n)
	if err != nil {
		moved := r.move([]Quarantined{{Name: name + FileExt, Reason: "a group file changed behind the gateway's back that does not read back as routes: " + err.Error()}})
		r.pending = append(r.pending, moved...)
		if len(moved) > 0 && moved[0].Err != nil {
			return fmt.Errorf("writing %s: moving aside what is there: %w", r.dir.File(name), moved[0].Err)
		}
		// Its routes are written again, by the caller's write or the
		// sweep's.
		g.stamp, g.stale = Stamp{}, len(g.routes) > 0
		return nil
	}
	var aside []Quarantined
	for _, id := range slices.Sorted(maps.Keys(routes)) {
		old, ok := g.routes[id]
		switch {
		case !ok:
			aside = append(aside, r.entry(n, id, routes[id], "put in a group file behind the gateway's back"))
		case !reflect.DeepEqual(old, routes[id]):
			aside = append(aside, r.entry(n, id, routes[id], "changed in its group file behind the gateway's back"))
		}
	}
	missing := false
	for id := range g.routes {
		if _, ok := routes[id]; !ok {
			missing = true
		}
	}
	moved := r.move(aside)
	r.pending = append(r.pending, moved...)
	for _, q := range moved {
		if q.Err != nil {
			return fmt.Errorf("writing %s: moving aside what is there: %w", r.dir.File(name), q.Err)
		}
	}
	g.stamp = st
	g.stale = len(aside) > 0 || missing
	return nil
}

// writeGroup makes group file n hold routes, or removes it when there are
// none, and keeps them as the group's. The folder is synced when sync is
// set, and left to Sync otherwise. An error that wraps ErrNotDurable means
// the change took place.
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
		write = r.dir.writeStampedNoSync
	}
	st, err := write(name, encodeGroup(encs))
	if err != nil && !errors.Is(err, ErrNotDurable) {
		return err
	}
	*g = group{routes: routes, encoded: encs, stamp: st}
	return err
}

// Quarantine moves what is published under id, whatever it is, to the
// quarantine folder: the route in its group file (the file is written again
// without it) and an entry named <id>.yaml. Nothing there is not an error
// and gives nil. The gateway calls it before it writes a route it does not
// hold, so that what it did not write is never overwritten.
func (r *Routes) Quarantine(id, reason string) ([]Quarantined, error) {
	if err := checkName(id); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Quarantined
	n := GroupOf(id)
	if err := r.refresh(n); err != nil {
		return nil, err
	}
	if cfg, ok := r.groups[n].routes[id]; ok {
		moved := r.move([]Quarantined{r.entry(n, id, cfg, reason)})
		if len(moved) > 0 {
			if moved[0].Err != nil {
				return nil, moved[0].Err
			}
			routes := maps.Clone(r.groups[n].routes)
			delete(routes, id)
			if err := r.writeGroup(n, routes, true); err != nil && !errors.Is(err, ErrNotDurable) {
				return nil, fmt.Errorf("taking route %q out of %s: %w", id, r.dir.File(groupName(n)), err)
			}
			out = append(out, moved[0])
		}
	}
	path := r.dir.File(id)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return out, nil
	} else if err != nil {
		return out, fmt.Errorf("looking at %s: %w", path, err)
	}
	moved := r.move([]Quarantined{{Name: filepath.Base(path), ID: id, Reason: reason}})
	if len(moved) > 0 {
		if moved[0].Err != nil {
			return out, moved[0].Err
		}
		out = append(out, moved[0])
	}
	return out, nil
}

// move moves each entry of qs to the quarantine folder under its name and a
// time stamp, or writes its content there, and returns them with where they
// went or why they did not. An entry that vanished meanwhile is left out. A
// move whose folder sync failed counts as done: if a power cut undoes it,
// the next sweep moves it again.
func (r *Routes) move(qs []Quarantined) []Quarantined {
	if len(qs) == 0 {
		return nil
	}
	if err := os.MkdirAll(r.quarantine, 0o755); err != nil {
		err = fmt.Errorf("creating %s: %w", r.quarantine, err)
		for i := range qs {
			qs[i].Err = err
			qs[i].content = nil
		}
		return qs
	}
	count := 0
	if entries, err := os.ReadDir(r.quarantine); err == nil {
		count = len(entries)
	}
	out := qs[:0]
	for _, q := range qs {
		if q.Err != nil {
			out = append(out, q)
			continue
		}
		src := filepath.Join(r.dir.Path(), q.Name)
		stamp := q.Name + "." + time.Now().UTC().Format(quarantineTimeLayout)
		var err error
		for try := 1; try <= maxQuarantineTries; try++ {
			dst := stamp
			if try > 1 {
				dst += "-" + strconv.Itoa(try)
			}
			dst = filepath.Join(r.quarantine, dst)
			if q.content != nil {
				var created bool
				created, err = atomicfile.Create(dst, q.content, 0o644)
				if err == nil && !created {
					err = fs.ErrExist
				}
			} else {
				err = atomicfile.Move(src, dst)
			}
			if err == nil || errors.Is(err, ErrNotDurable) {
				q.Path, err = dst, nil
				break
			}
			if !errors.Is(err, fs.ErrExist) {
				break
			}
		}
		q.content = nil
		switch {
		case errors.Is(err, fs.ErrNotExist) && q.Group == "":
			if _, lerr := os.Lstat(src); errors.Is(lerr, fs.ErrNotExist) {
				continue
			}
			q.Err = err
		case err != nil:
			q.Err = err
		default:
			count++
		}
		q.Count = count
		out = append(out, q)
	}
	return out
}

// entryKind is what an entry of the routes folder is to the layout.
type entryKind int

const (
	entryForeign entryKind = iota
	entryGroup
	entryAnchor
	entryLegacy
	entryHold
)

// classified is an entry of the routes folder as the layout sees it.
type classified struct {
	kind  entryKind
	group int    // entryGroup
	id    string // entryLegacy
	why   string // entryForeign: why it cannot stay
}

// classify tells what e is: a group file, the reserved file, a file of the
// one-file-per-route layout, or something that cannot stay, and why.
func classify(e fs.DirEntry) classified {
	name := e.Name()
	t := e.Type()
	switch {
	case t&fs.ModeSymlink != 0:
		return classified{why: "a symbolic link: Traefik reads what it points to"}
	case t.IsDir():
		return classified{why: "a folder: Traefik loads the files inside"}
	case !t.IsRegular():
		return classified{why: "not a regular file (" + t.String() + ")"}
	case strings.HasPrefix(name, "."):
		return classified{why: "a hidden file: Traefik loads it, the gateway never writes one"}
	}
	stem, ok := strings.CutSuffix(name, FileExt)
	if !ok {
		return classified{why: "not a file the gateway writes (" + groupPrefix + "NN" + FileExt + ", " + anchorFile + FileExt + ")"}
	}
	if n, ok := parseGroupName(stem); ok {
		return classified{kind: entryGroup, group: n}
	}
	if stem == anchorFile {
		return classified{kind: entryAnchor}
	}
	if stem == holdFile {
		return classified{kind: entryHold, why: "the file that holds Traefik's reloads while the gateway converts the folder at start, left behind"}
	}
	if checkName(stem) != nil {
		return classified{why: "not a file the gateway writes (" + groupPrefix + "NN" + FileExt + ", " + anchorFile + FileExt + ")"}
	}
	return classified{kind: entryLegacy, id: stem}
}
