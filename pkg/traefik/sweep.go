package traefik

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
)

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
