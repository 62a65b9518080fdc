package traefik

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/threefoldtech/gateway/internal/atomicfile"
)

// ImportedDirName is the folder under the module's root, beside
// RoutesDirName, where the files routes were imported from are kept, bytes
// intact, once the store holds their routes.
const ImportedDirName = "proxy-imported"

// Importable is a file of the routes folder that may hold routes an earlier
// version wrote: a group file, or a file named <id>.yaml (the gateway's
// one-file-per-route layout, or zos's own).
type Importable struct {
	// Name is the file's name in the routes folder.
	Name string
	// Group is set for a group file of the current layout.
	Group bool
	// Data is the file's content.
	Data []byte
}

// Importables returns the files of the routes folder that may hold routes
// of an earlier version, for the gateway's first start with a store. It
// reads nothing else: what is not a route stays for Sweep.
func (r *Routes) Importables() ([]Importable, error) {
	entries, err := os.ReadDir(r.dir.Path())
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", r.dir.Path(), err)
	}
	var out []Importable
	for _, e := range entries {
		c := classify(e)
		if c.kind != entryGroup && c.kind != entryLegacy {
			continue
		}
		data, err := os.ReadFile(filepath.Join(r.dir.Path(), e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", e.Name(), err)
		}
		out = append(out, Importable{Name: e.Name(), Group: c.kind == entryGroup, Data: data})
	}
	return out, nil
}

// KeepImported copies each of files to the imported folder, bytes intact,
// and syncs it: once it returns, Reset may write over a group file and
// ImportDone remove the others. A file already kept under its name is kept
// again under a stamped one.
func (r *Routes) KeepImported(files []Importable) error {
	if len(files) == 0 {
		return nil
	}
	dir := filepath.Join(filepath.Dir(r.dir.Path()), ImportedDirName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	for _, f := range files {
		name := f.Name
		for try := 1; ; try++ {
			created, err := atomicfile.Create(filepath.Join(dir, name), f.Data, 0o644)
			if err != nil && !errors.Is(err, ErrNotDurable) {
				return fmt.Errorf("keeping %s in %s: %w", f.Name, dir, err)
			}
			if created {
				break
			}
			if try == maxQuarantineTries {
				return fmt.Errorf("keeping %s in %s: %w", f.Name, dir, fs.ErrExist)
			}
			name = fmt.Sprintf("%s.%d", f.Name, try)
		}
	}
	return atomicfile.SyncDir(dir)
}

// HoldReloads writes the hold file: until release, Traefik refuses every
// reload of the folder at once and keeps serving what it had, so that the
// many changes of an import cost it one reload. release waits until
// Traefik has handled the changes it lags behind (nothing in the folder
// opened for holdIdle, at most holdMaxWait), then removes the hold file:
// Traefik reads the folder once, as it is then.
func (r *Routes) HoldReloads() (release func() error, err error) {
	if err := r.dir.Write(holdFile, []byte(holdContent)); err != nil && !errors.Is(err, ErrNotDurable) {
		return nil, fmt.Errorf("holding traefik's reloads: %w", err)
	}
	r.holding.Store(true)
	// Best effort: without it the hold file goes at once.
	watch, _ := watchOpens(r.dir.Path())
	return func() error {
		defer r.holding.Store(false)
		if watch != nil {
			watch.waitIdle(holdIdle, holdMaxWait)
			watch.close()
		}
		if err := r.dir.Remove(holdFile); err != nil && !errors.Is(err, ErrNotDurable) {
			return fmt.Errorf("letting traefik reload again: %w", err)
		}
		return nil
	}, nil
}

// ImportDone removes from the routes folder the files of the
// one-file-per-route layouts that were imported, once Reset has written
// their routes in group files: until then they keep serving. Traefik reads
// the whole folder again at each event in it, so it holds Traefik's reloads
// (HoldReloads) while it removes them, unless the caller holds them.
func (r *Routes) ImportDone(files []Importable) (err error) {
	var names []string
	for _, f := range files {
		if !f.Group {
			names = append(names, f.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	if !r.holding.Load() {
		release, err := r.HoldReloads()
		if err != nil {
			return err
		}
		defer func() {
			if rerr := release(); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, name := range names {
		if err := os.Remove(filepath.Join(r.dir.Path(), name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s, kept in %s: %w", name, ImportedDirName, err)
		}
	}
	if err := atomicfile.SyncDir(r.dir.Path()); err != nil {
		return fmt.Errorf("removing the imported files from %s: %w: %w", r.dir.Path(), ErrNotDurable, err)
	}
	return nil
}

// Reset makes the group files hold exactly cfgs, the routes the store
// holds, at start: a group file that already holds what it must is left as
// it is (a restart costs Traefik no reload), any other is written again or,
// with no route left, removed; the folder is synced once. It returns how
// many group files it wrote or removed. What else the folder holds is left
// to Sweep. Every element of a configuration must be named after its route
// (checkNamed).
func (r *Routes) Reset(cfgs map[string]*Configuration) (changed int, err error) {
	var byGroup [NumGroups]map[string]*Configuration
	for _, id := range slices.Sorted(maps.Keys(cfgs)) {
		if err := checkName(id); err != nil {
			return 0, err
		}
		if err := checkNamed(id, cfgs[id]); err != nil {
			return 0, err
		}
		n := GroupOf(id)
		if byGroup[n] == nil {
			byGroup[n] = make(map[string]*Configuration)
		}
		byGroup[n][id] = cfgs[id]
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for n := range NumGroups {
		routes := byGroup[n]
		r.groups[n] = group{}
		if len(routes) == 0 {
			_, exists, err := r.dir.stat(groupName(n))
			if err != nil {
				return changed, err
			}
			if !exists {
				continue
			}
		} else {
			encs := make(map[string]*encoded, len(routes))
			for id, cfg := range routes {
				e, err := encodeRoute(id, cfg)
				if err != nil {
					return changed, fmt.Errorf("encoding route %q: %w", id, err)
				}
				encs[id] = e
			}
			want := encodeGroup(encs)
			if data, st, err := r.dir.readStamped(groupName(n)); err == nil && string(data) == string(want) {
				r.groups[n] = group{routes: routes, encoded: encs, stamp: st}
				continue
			}
		}
		if err := r.writeGroup(n, routes, false); err != nil && !errors.Is(err, ErrNotDurable) {
			return changed, err
		}
		changed++
	}
	if changed == 0 {
		return 0, nil
	}
	return changed, r.dir.Sync()
}
