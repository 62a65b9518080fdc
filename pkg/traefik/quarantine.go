package traefik

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/threefoldtech/gateway/internal/atomicfile"
)

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
