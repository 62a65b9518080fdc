package traefik

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// Routes publishes the gateway's routes for Traefik's file provider: one
// dynamic-configuration file per route, <root>/proxy/<id>.yaml, whose routers
// and services are named <id>; everything else found in <root>/proxy is moved
// to <root>/proxy-quarantine. It is the only place that knows this layout.
//
// Traefik's file provider loads more than the gateway writes (files in
// subfolders, hidden files, .yml and .toml files, links), and one file it
// cannot parse makes it refuse the whole folder, so that no later change is
// applied. Only route files may therefore stay in the folder.
type Routes struct {
	dir        *Dir
	quarantine string
}

// OpenRoutes opens the routes folder of the module rooted at root, creating
// it when needed. The quarantine folder is created when first needed.
func OpenRoutes(root string) (*Routes, error) {
	dir, err := OpenDir(filepath.Join(root, RoutesDirName))
	if err != nil {
		return nil, err
	}
	return &Routes{dir: dir, quarantine: filepath.Join(filepath.Dir(dir.Path()), QuarantineDirName)}, nil
}

// Path returns the folder Traefik's file provider must watch.
func (r *Routes) Path() string { return r.dir.Path() }

// QuarantinePath returns the folder entries that are not routes are moved to.
func (r *Routes) QuarantinePath() string { return r.quarantine }

// Publish makes cfg the configuration of route id, replacing any earlier one.
// Once it returns the route survives a crash; Traefik sees one change. An
// error that wraps ErrNotDurable means the route is live all the same.
func (r *Routes) Publish(id string, cfg *Configuration) error {
	data, err := Marshal(cfg)
	if err != nil {
		return err
	}
	return r.dir.Write(id, data)
}

// Unpublish removes route id. A route that is not there is not an error. An
// error that wraps ErrNotDurable means the route is gone all the same.
func (r *Routes) Unpublish(id string) error {
	return r.dir.Remove(id)
}

// Load calls fn with every route file in the folder and its configuration,
// or with the reason it could not be read back. Entries that cannot be route
// files (see Sweep) are not passed to fn.
func (r *Routes) Load(fn func(id string, cfg *Configuration, err error)) error {
	entries, err := os.ReadDir(r.dir.Path())
	if err != nil {
		return fmt.Errorf("listing %s: %w", r.dir.Path(), err)
	}
	for _, e := range entries {
		id, why := routeID(e)
		if why != "" {
			continue
		}
		data, err := r.dir.Read(id)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			fn(id, nil, fmt.Errorf("file vanished while loading"))
		case err != nil:
			fn(id, nil, err)
		default:
			cfg, err := Unmarshal(data)
			fn(id, cfg, err)
		}
	}
	return nil
}

// Locate returns where route id is published, for an operator to look at.
func (r *Routes) Locate(id string) string { return r.dir.File(id) }

// Published tells whether the file of route id is in the folder.
func (r *Routes) Published(id string) (bool, error) {
	if err := checkName(id); err != nil {
		return false, err
	}
	_, err := os.Lstat(r.dir.File(id))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("looking at %s: %w", r.dir.File(id), err)
}

// Quarantined is an entry moved, or to be moved, out of the routes folder.
type Quarantined struct {
	// Name is the entry's name in the routes folder.
	Name string
	// ID is the route the entry's name is the file of, if it is one.
	ID string
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
}

// Sweep moves to the quarantine folder every entry of the routes folder that
// is not the file of a route keep accepts: folders, hidden entries, links,
// pipes, names that are not <id>.yaml, and route files keep refuses. It
// reads the folder once and asks keep about each route file, so it is cheap
// enough to run every few seconds on thousands of routes. It returns what it
// moved or failed to move; the error is for a folder it could not list.
func (r *Routes) Sweep(keep func(id string) bool) ([]Quarantined, error) {
	f, err := os.Open(r.dir.Path())
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", r.dir.Path(), err)
	}
	// Unsorted: the order does not matter and sorting costs at 10,000.
	entries, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", r.dir.Path(), err)
	}
	var out []Quarantined
	for _, e := range entries {
		id, why := routeID(e)
		if why == "" {
			if keep(id) {
				continue
			}
			why = "not a route the gateway holds"
		}
		out = append(out, Quarantined{Name: e.Name(), ID: id, Reason: why})
	}
	if len(out) == 0 {
		return nil, nil
	}
	return r.move(out), nil
}

// Quarantine moves whatever sits at the file of route id to the quarantine
// folder, whatever it is; nothing there is not an error and gives nil. The
// gateway calls it before it writes a route it does not hold, so that a file
// it did not write is never overwritten.
func (r *Routes) Quarantine(id, reason string) (*Quarantined, error) {
	if err := checkName(id); err != nil {
		return nil, err
	}
	path := r.dir.File(id)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("looking at %s: %w", path, err)
	}
	moved := r.move([]Quarantined{{Name: filepath.Base(path), ID: id, Reason: reason}})
	if len(moved) == 0 {
		return nil, nil
	}
	if moved[0].Err != nil {
		return nil, moved[0].Err
	}
	return &moved[0], nil
}

// move moves each entry of qs to the quarantine folder under its name and a
// time stamp, and returns them with where they went or why they did not. An
// entry that vanished meanwhile is left out. A move whose folder sync failed
// counts as done: if a power cut undoes it, the next sweep moves it again.
func (r *Routes) move(qs []Quarantined) []Quarantined {
	if err := os.MkdirAll(r.quarantine, 0o755); err != nil {
		err = fmt.Errorf("creating %s: %w", r.quarantine, err)
		for i := range qs {
			qs[i].Err = err
		}
		return qs
	}
	count := 0
	if entries, err := os.ReadDir(r.quarantine); err == nil {
		count = len(entries)
	}
	out := qs[:0]
	for _, q := range qs {
		src := filepath.Join(r.dir.Path(), q.Name)
		stamp := q.Name + "." + time.Now().UTC().Format(quarantineTimeLayout)
		var err error
		for try := 1; try <= maxQuarantineTries; try++ {
			dst := stamp
			if try > 1 {
				dst += "-" + strconv.Itoa(try)
			}
			dst = filepath.Join(r.quarantine, dst)
			err = atomicfile.Move(src, dst)
			if err == nil || errors.Is(err, ErrNotDurable) {
				q.Path, err = dst, nil
				break
			}
			if !errors.Is(err, fs.ErrExist) {
				break
			}
		}
		switch {
		case errors.Is(err, fs.ErrNotExist):
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

// routeID returns the route whose file e is, or why e cannot be a route
// file.
func routeID(e fs.DirEntry) (id, why string) {
	name := e.Name()
	t := e.Type()
	switch {
	case t&fs.ModeSymlink != 0:
		return "", "a symbolic link: Traefik reads what it points to"
	case t.IsDir():
		return "", "a folder: Traefik loads the files inside"
	case !t.IsRegular():
		return "", "not a regular file (" + t.String() + ")"
	case strings.HasPrefix(name, "."):
		return "", "a hidden file: Traefik loads it, the gateway never writes one"
	case !strings.HasSuffix(name, FileExt):
		return "", "not named <wlID>" + FileExt + ": the gateway never writes such a file"
	}
	id = strings.TrimSuffix(name, FileExt)
	if checkName(id) != nil {
		return "", "not named <wlID>" + FileExt + ": the gateway never writes such a file"
	}
	return id, ""
}
