package traefik

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/threefoldtech/gateway/internal/atomicfile"
)

// writeLegacy writes route id as the one-file-per-route layout did.
func writeLegacy(t testing.TB, r *Routes, id string, cfg *Configuration) {
	t.Helper()
	data, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(r.Path(), id+FileExt), string(data))
}

// groupStamps returns the stamp of every group file of r's folder, by
// group; a group with no file is left out.
func groupStamps(t testing.TB, r *Routes) map[int]Stamp {
	t.Helper()
	out := make(map[int]Stamp)
	for n := range NumGroups {
		st, exists, err := r.dir.stat(groupName(n))
		if err != nil {
			t.Fatal(err)
		}
		if exists {
			out[n] = st
		}
	}
	return out
}

// groupsOf returns the groups that hold the routes of cfgs.
func groupsOf(cfgs map[string]*Configuration) map[int]bool {
	out := make(map[int]bool)
	for id := range cfgs {
		out[GroupOf(id)] = true
	}
	return out
}

// contents returns the name and content of every regular file of dir.
func contents(t testing.TB, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string)
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

// TestReset guards the start of the gateway, which writes the routes
// folder from the routes of its store: the group files end up holding
// exactly those routes, byte for byte what a write into an empty folder
// gives; a group file that holds them already is not written (a restart
// costs Traefik no reload), whatever its stamp; a configuration with an
// element not named after its route is refused before anything is written;
// and what is not a group file is left to the sweep.
func TestReset(t *testing.T) {
	base := map[string]*Configuration{}
	for n := 1; n <= 4; n++ {
		for i, id := range inGroup(n, 2) {
			base[id] = testRoute(id, n+i)
		}
	}
	g1, g2, g4 := inGroup(1, 2), inGroup(2, 2), inGroup(4, 2)
	added := inGroup(5, 1)[0]
	tests := []struct {
		name string
		// before changes the folder the last run left, which held base.
		before func(t *testing.T, dir string) []string
		// store changes base into the routes of the store at this start.
		store func(cfgs map[string]*Configuration)
		// changed are the groups Reset must write or remove; it must leave
		// the others untouched.
		changed []int
		// wantErr is set when Reset must refuse the routes.
		wantErr bool
	}{
		// A restart rewrote every group file: each cost Traefik a full
		// read of the folder.
		{name: "restart with nothing changed"},
		// A touch changes the stamp, not the routes: comparing stamps
		// would write the file again.
		{name: "group file touched by hand", before: func(t *testing.T, dir string) []string {
			path := filepath.Join(dir, groupName(1)+FileExt)
			if err := os.Chtimes(path, time.Now().Add(time.Hour), time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
		// A file changed while the gateway was down served what the
		// store does not hold.
		{name: "group file changed by hand", changed: []int{2}, before: func(t *testing.T, dir string) []string {
			data, _ := Marshal(Merge(map[string]*Configuration{g2[0]: testRoute(g2[0], 0), g2[1]: base[g2[1]]}))
			writeFile(t, filepath.Join(dir, groupName(2)+FileExt), string(data))
			return nil
		}},
		// A route of another group, or of no route of the store, stayed
		// served from a group the store says nothing about.
		{name: "route planted in a group file", changed: []int{2}, before: func(t *testing.T, dir string) []string {
			planted := inGroup(7, 1)[0]
			data, _ := Marshal(Merge(map[string]*Configuration{g2[0]: base[g2[0]], g2[1]: base[g2[1]], planted: testRoute(planted, 0)}))
			writeFile(t, filepath.Join(dir, groupName(2)+FileExt), string(data))
			return nil
		}},
		{name: "group file removed by hand", changed: []int{3}, before: func(t *testing.T, dir string) []string {
			if err := os.Remove(filepath.Join(dir, groupName(3)+FileExt)); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
		// Routes deleted while their group file was not written stayed
		// served.
		{name: "routes gone from the store", changed: []int{4}, store: func(cfgs map[string]*Configuration) {
			for _, id := range g4 {
				delete(cfgs, id)
			}
		}},
		{name: "route changed in the store", changed: []int{1}, store: func(cfgs map[string]*Configuration) {
			cfgs[g1[0]] = testRoute(g1[0], 0)
		}},
		{name: "route added to the store", changed: []int{5}, store: func(cfgs map[string]*Configuration) {
			cfgs[added] = testRoute(added, 0)
		}},
		// Reset writes group files only: a file it does not own, the hold
		// file of an interrupted conversion among them, goes to quarantine
		// with its content.
		{name: "other entries left to the sweep", before: func(t *testing.T, dir string) []string {
			writeFile(t, filepath.Join(dir, holdFile+FileExt), holdContent)
			return append(plantForeign(t, dir), holdFile+FileExt)
		}},
		// Split would give the element to another route: refused, and no
		// group written half.
		{name: "element not named after its route", wantErr: true, store: func(cfgs map[string]*Configuration) {
			cfgs[added] = testRoute(g1[0], 0)
		}},
		{name: "second element named after another route", wantErr: true, store: func(cfgs map[string]*Configuration) {
			cfgs[g1[0]] = withElement(g1[0], g2[0]+"~headers")
			delete(cfgs, g4[0])
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, root := openTestRoutes(t)
			if changed, err := r.Reset(base); err != nil || changed != 4 {
				t.Fatalf("Reset into an empty folder = %d, %v; want the 4 groups written", changed, err)
			}
			var foreign []string
			if tt.before != nil {
				foreign = tt.before(t, r.Path())
			}
			cfgs := maps.Clone(base)
			if tt.store != nil {
				tt.store(cfgs)
			}
			before := groupStamps(t, r)

			r2, err := OpenRoutes(root)
			if err != nil {
				t.Fatal(err)
			}
			changed, err := r2.Reset(cfgs)
			after := groupStamps(t, r2)
			if tt.wantErr {
				if err == nil || changed != 0 || !maps.Equal(after, before) {
					t.Fatalf("Reset = %d, %v; want an error and nothing written", changed, err)
				}
				return
			}
			if err != nil || changed != len(tt.changed) {
				t.Fatalf("Reset = %d, %v; want groups %v written", changed, err, tt.changed)
			}
			for n := range NumGroups {
				if slices.Contains(tt.changed, n) {
					if _, ok := before[n]; ok && after[n] == before[n] {
						t.Errorf("group %d not written", n)
					}
					continue
				}
				if after[n] != before[n] {
					t.Errorf("group %d written although it held its routes", n)
				}
			}

			ref, _ := openTestRoutes(t)
			if _, err := ref.Reset(cfgs); err != nil {
				t.Fatal(err)
			}
			got := contents(t, r2.Path())
			for _, name := range foreign {
				delete(got, name)
			}
			if want := contents(t, ref.Path()); !maps.Equal(got, want) {
				t.Fatalf("the folder holds %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
			}
			moved, err := r2.Sweep(func(id string) bool { return cfgs[id] != nil })
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, q := range moved {
				if q.Err != nil {
					t.Fatalf("%s: %v", q.Name, q.Err)
				}
				names = append(names, q.Name)
			}
			slices.Sort(names)
			slices.Sort(foreign)
			if !slices.Equal(names, foreign) {
				t.Fatalf("the sweep after Reset moved %v, want %v", names, foreign)
			}
		})
	}
}

// TestImportables guards the first start with a store, which imports what
// earlier versions published: every group file is listed, whatever it
// holds (one that does not read back is kept all the same, before Reset
// writes over it), and every <id>.yaml file of the one-file-per-route
// layouts, with its bytes; nothing else is read, a link is not followed, a
// pipe does not hang the start, and what is not listed stays for the
// sweep.
func TestImportables(t *testing.T) {
	routed := inGroup(6, 1)[0]
	tests := []struct {
		// name is the entry's name in the routes folder.
		name string
		make func(t *testing.T, r *Routes)
		// listed is set when Importables must list it, with group.
		listed, group bool
	}{
		{name: GroupName(routed) + FileExt, listed: true, group: true, make: func(t *testing.T, r *Routes) {
			if err := r.Publish(routed, testRoute(routed, 0)); err != nil {
				t.Fatal(err)
			}
		}},
		// Its content is lost when Reset writes over it, if not kept.
		{name: groupName(9) + FileExt, listed: true, group: true, make: func(t *testing.T, r *Routes) {
			writeFile(t, filepath.Join(r.Path(), groupName(9)+FileExt), "{{\n")
		}},
		{name: "wl-1.yaml", listed: true, make: func(t *testing.T, r *Routes) {
			writeLegacy(t, r, "wl-1", testRoute("wl-1", 1))
		}},
		// zos wrote its own shape; the importer reads it.
		{name: "29-12-web.yaml", listed: true, make: func(t *testing.T, r *Routes) {
			writeFile(t, filepath.Join(r.Path(), "29-12-web.yaml"), "http:\n  routers:\n    29-12-web-route:\n      rule: Host(`web.gw.test`)\n")
		}},
		// A route file name: listed, the importer refuses its content.
		{name: "broken.yaml", listed: true, make: func(t *testing.T, r *Routes) {
			writeFile(t, filepath.Join(r.Path(), "broken.yaml"), "{{\n")
		}},
		{name: anchorFile + FileExt, make: func(t *testing.T, r *Routes) {
			if err := r.PublishAnchor(testAnchor("gw.test")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: holdFile + FileExt, make: func(t *testing.T, r *Routes) {
			writeFile(t, filepath.Join(r.Path(), holdFile+FileExt), holdContent)
		}},
		{name: ".hidden.yaml", make: func(t *testing.T, r *Routes) {
			writeFile(t, filepath.Join(r.Path(), ".hidden.yaml"), "http: {}\n")
		}},
		{name: "other.yml", make: func(t *testing.T, r *Routes) {
			writeFile(t, filepath.Join(r.Path(), "other.yml"), "http: {}\n")
		}},
		// Read through, a link would import what it points to.
		{name: "link.yaml", make: func(t *testing.T, r *Routes) {
			if err := os.Symlink("wl-1.yaml", filepath.Join(r.Path(), "link.yaml")); err != nil {
				t.Fatal(err)
			}
		}},
		// Opened, a pipe blocks the start.
		{name: "pipe.yaml", make: func(t *testing.T, r *Routes) {
			if err := syscall.Mkfifo(filepath.Join(r.Path(), "pipe.yaml"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "sub.yaml", make: func(t *testing.T, r *Routes) {
			if err := os.Mkdir(filepath.Join(r.Path(), "sub.yaml"), 0o755); err != nil {
				t.Fatal(err)
			}
			writeLegacy(t, r, filepath.Join("sub.yaml", "inner"), testRoute("inner", 0))
		}},
	}
	r, root := openTestRoutes(t)
	for _, tt := range tests {
		tt.make(t, r)
	}
	r2, err := OpenRoutes(root)
	if err != nil {
		t.Fatal(err)
	}
	files, err := r2.Importables()
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]Importable)
	for _, f := range files {
		got[f.Name] = f
	}
	var left []string
	for _, tt := range tests {
		f, ok := got[tt.name]
		delete(got, tt.name)
		if !tt.listed {
			if ok {
				t.Errorf("%s listed", tt.name)
			}
			left = append(left, tt.name)
			continue
		}
		if !ok {
			t.Errorf("%s not listed", tt.name)
			continue
		}
		data, err := os.ReadFile(filepath.Join(r2.Path(), tt.name))
		if err != nil {
			t.Fatal(err)
		}
		if f.Group != tt.group || string(f.Data) != string(data) {
			t.Errorf("%s listed as group %v with\n%s\nwant group %v with\n%s", tt.name, f.Group, f.Data, tt.group, data)
		}
		if !f.Group {
			left = append(left, tt.name)
		}
	}
	if len(got) != 0 {
		t.Errorf("listed %v besides", slices.Sorted(maps.Keys(got)))
	}

	// The start: the routes of the store, the anchor, then the sweep, which
	// moves what is neither; the files of one route are left to it when
	// the import did not take them (ImportDone not called).
	if _, err := r2.Reset(map[string]*Configuration{routed: testRoute(routed, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := r2.PublishAnchor(testAnchor("gw.test")); err != nil {
		t.Fatal(err)
	}
	moved, err := r2.Sweep(func(id string) bool { return id == routed })
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, q := range moved {
		if q.Err != nil {
			t.Fatalf("%s: %v", q.Name, q.Err)
		}
		names = append(names, q.Name)
	}
	slices.Sort(names)
	slices.Sort(left)
	left = slices.DeleteFunc(left, func(name string) bool { return name == anchorFile+FileExt })
	if !slices.Equal(names, left) {
		t.Fatalf("the sweep moved %v, want %v", names, left)
	}
}

// TestImport guards the first start with a store, on a folder an earlier
// version left, interrupted or not in its conversion from one file per
// route: each file imported is kept in the imported folder with its bytes,
// Reset writes the groups and leaves the old files serving, ImportDone
// removes only the old files it was given, and only then, and takes the
// hold file away; the sweep then finds nothing but what was not imported,
// and a restart writes nothing.
func TestImport(t *testing.T) {
	const n = 150
	want := map[string]*Configuration{}
	for i := range n {
		id := "wl-" + strconv.Itoa(i)
		want[id] = testRoute(id, i)
	}
	publish := func(t *testing.T, r *Routes, cfgs map[string]*Configuration) {
		t.Helper()
		if errs := r.PublishEach(cfgs); errs != nil {
			t.Fatal(errs)
		}
	}
	tests := []struct {
		name string
		// before writes the folder as the earlier version left it, beside
		// the files of one route of every route of want.
		before func(t *testing.T, r *Routes)
		// removed says which files of one route the earlier version
		// removed already.
		removed func(i int) bool
	}{
		{name: "one file per route"},
		// Groups written, old files not yet removed.
		{name: "interrupted after the groups", before: func(t *testing.T, r *Routes) { publish(t, r, want) }},
		{name: "interrupted among the groups", before: func(t *testing.T, r *Routes) {
			some := map[string]*Configuration{}
			for id, cfg := range want {
				if GroupOf(id) < NumGroups/2 {
					some[id] = cfg
				}
			}
			publish(t, r, some)
		}},
		{name: "interrupted among the removals", before: func(t *testing.T, r *Routes) { publish(t, r, want) },
			removed: func(i int) bool { return i%3 == 0 }},
		// Traefik stays frozen on the routes it had until the hold file
		// goes.
		{name: "interrupted with the hold file", before: func(t *testing.T, r *Routes) {
			publish(t, r, want)
			writeFile(t, filepath.Join(r.Path(), holdFile+FileExt), holdContent)
		}},
	}
	// refused is a file of one route the import refused: not given to
	// KeepImported or ImportDone, it is left to the sweep.
	const refused = "refused.yaml"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, root := openTestRoutes(t)
			if tt.before != nil {
				tt.before(t, r)
			}
			for i := range n {
				id := "wl-" + strconv.Itoa(i)
				if tt.removed == nil || !tt.removed(i) {
					writeLegacy(t, r, id, want[id])
				}
			}
			// Bytes a marshal would not give back.
			writeFile(t, filepath.Join(r.Path(), "wl-1.yaml"), "# kept as found\n"+contents(t, r.Path())["wl-1.yaml"])
			writeFile(t, filepath.Join(r.Path(), refused), "{{\n")
			found := contents(t, r.Path())
			groupsBefore := groupStamps(t, r)

			r2, err := OpenRoutes(root)
			if err != nil {
				t.Fatal(err)
			}
			all, err := r2.Importables()
			if err != nil {
				t.Fatal(err)
			}
			var files []Importable
			for _, f := range all {
				if f.Name != refused {
					files = append(files, f)
				}
			}
			listed := len(found) - 1
			if _, ok := found[holdFile+FileExt]; ok {
				listed--
			}
			if len(files) != listed {
				t.Fatalf("Importables listed %d files besides %s, want %d", len(files), refused, listed)
			}
			if err := r2.KeepImported(files); err != nil {
				t.Fatal(err)
			}
			kept := contents(t, filepath.Join(root, ImportedDirName))
			for _, f := range files {
				if kept[f.Name] != found[f.Name] {
					t.Fatalf("%s kept as\n%s\nwant\n%s", f.Name, kept[f.Name], found[f.Name])
				}
			}
			if len(kept) != len(files) {
				t.Fatalf("the imported folder holds %d files, want %d", len(kept), len(files))
			}

			changed, err := r2.Reset(want)
			if err != nil || changed != len(groupsOf(want))-len(groupsBefore) {
				t.Fatalf("Reset = %d, %v; want the %d groups not written before", changed, err, len(groupsOf(want))-len(groupsBefore))
			}
			groups := groupStamps(t, r2)
			for g, st := range groupsBefore {
				if groups[g] != st {
					t.Errorf("group %d written again although it held its routes", g)
				}
			}
			// Until every group is written, the old files serve.
			for name, data := range found {
				if _, group := parseGroupName(strings.TrimSuffix(name, FileExt)); group {
					continue
				}
				if b, err := os.ReadFile(filepath.Join(r2.Path(), name)); err != nil || string(b) != data {
					t.Fatalf("%s changed by Reset: %v", name, err)
				}
			}

			if err := r2.ImportDone(files); err != nil {
				t.Fatal(err)
			}
			for _, name := range folder(t, r2) {
				if _, ok := parseGroupName(strings.TrimSuffix(name, FileExt)); !ok && name != refused {
					t.Errorf("%s left in the routes folder", name)
				}
			}
			if now := groupStamps(t, r2); !maps.Equal(now, groups) {
				t.Error("ImportDone wrote or removed group files")
			}
			moved, err := r2.Sweep(func(id string) bool { return want[id] != nil })
			if err != nil || len(moved) != 1 || moved[0].Name != refused || moved[0].Err != nil {
				t.Fatalf("the sweep after the import moved %+v, %v; want %s only", moved, err, refused)
			}
			if _, got := load(t, root); !reflect.DeepEqual(got, want) {
				t.Fatalf("after the import the folder holds %d routes, want %d", len(got), len(want))
			}
			r3, _ := load(t, root)
			if changed, err := r3.Reset(want); err != nil || changed != 0 {
				t.Fatalf("Reset at the next start = %d, %v; want nothing written", changed, err)
			}
		})
	}

	// A start that imports again (it stopped before the store recorded
	// the import) keeps a second copy, the first one intact.
	t.Run("kept again", func(t *testing.T) {
		r, root := openTestRoutes(t)
		writeLegacy(t, r, "a", testRoute("a", 0))
		files, err := r.Importables()
		if err != nil {
			t.Fatal(err)
		}
		if err := r.KeepImported(files); err != nil {
			t.Fatal(err)
		}
		first := files[0].Data
		writeLegacy(t, r, "a", testRoute("a", 1))
		if files, err = r.Importables(); err != nil {
			t.Fatal(err)
		}
		if err := r.KeepImported(files); err != nil {
			t.Fatal(err)
		}
		kept := contents(t, filepath.Join(root, ImportedDirName))
		if len(kept) != 2 || kept["a.yaml"] != string(first) || kept["a.yaml.1"] != string(files[0].Data) {
			t.Fatalf("imported folder holds %v", slices.Sorted(maps.Keys(kept)))
		}
	})

	// A group that may not survive a power cut must not lose its routes'
	// old files: the caller stops at Reset's error. ImportDone's own
	// failed sync still takes the hold file away.
	t.Run("not durable", func(t *testing.T) {
		r, _ := openTestRoutes(t)
		writeLegacy(t, r, "a", testRoute("a", 0))
		files, err := r.Importables()
		if err != nil {
			t.Fatal(err)
		}
		restore := atomicfile.FailDirSync(r.Path(), syscall.EIO)
		defer restore()
		if _, err := r.Reset(map[string]*Configuration{"a": testRoute("a", 0)}); !errors.Is(err, ErrNotDurable) {
			t.Fatalf("Reset: %v", err)
		}
		if _, err := os.Stat(filepath.Join(r.Path(), "a.yaml")); err != nil {
			t.Fatalf("old file removed by Reset: %v", err)
		}
		if err := r.ImportDone(files); !errors.Is(err, ErrNotDurable) || !errors.Is(err, syscall.EIO) {
			t.Fatalf("ImportDone: %v", err)
		}
		if got := folder(t, r); !slices.Equal(got, []string{GroupName("a") + FileExt}) {
			t.Fatalf("the routes folder holds %v", got)
		}
	})
}

// TestLegacyStagingRemoved guards the root against the staging folder of
// traefik/ that earlier versions left: the routes' opening removes it.
func TestLegacyStagingRemoved(t *testing.T) {
	root := t.TempDir()
	stale := filepath.Join(root, ".traefik-staging")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "traefik.yaml.123.tmp"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenRoutes(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf(".traefik-staging still there: %v", err)
	}
}
