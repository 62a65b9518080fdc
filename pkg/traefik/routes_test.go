package traefik

import (
	"errors"
	"fmt"
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

func openTestRoutes(t testing.TB) (*Routes, string) {
	t.Helper()
	root := t.TempDir()
	r, err := OpenRoutes(root)
	if err != nil {
		t.Fatal(err)
	}
	return r, root
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testRoute returns a route configuration of one of the shapes the gateway
// renders, chosen by i, every element named id.
func testRoute(id string, i int) *Configuration {
	host := id + ".gw.test"
	switch i % 3 {
	case 0: // name proxy
		return &Configuration{HTTP: &HTTPConfiguration{
			Routers:  map[string]*Router{id: {EntryPoints: []string{EntryPointWebSecure}, Rule: "Host(`" + host + "`)", Service: id, TLS: &RouterTLSConfig{}}},
			Services: map[string]*Service{id: {LoadBalancer: &ServersLoadBalancer{Servers: []Server{{URL: "http://10.0.0.1:" + strconv.Itoa(i)}}}}},
		}}
	case 1: // several backends: a retry middleware
		return &Configuration{HTTP: &HTTPConfiguration{
			Routers:     map[string]*Router{id: {EntryPoints: []string{EntryPointWebSecure}, Middlewares: []string{id}, Rule: "Host(`" + host + "`)", Service: id, TLS: &RouterTLSConfig{CertResolver: ResolverHTTP, Domains: []Domain{{Main: host}}}}},
			Middlewares: map[string]*Middleware{id: {Retry: &Retry{Attempts: 3}}},
			Services: map[string]*Service{id: {LoadBalancer: &ServersLoadBalancer{
				Servers:            []Server{{URL: "http://10.0.0.1"}, {URL: "http://10.0.0.2"}},
				PassiveHealthCheck: &PassiveHealthCheck{FailureWindow: Duration(10 * time.Second), MaxFailedAttempts: 3},
			}}},
		}}
	default: // passthrough, with its challenge router
		return &Configuration{
			TCP: &TCPConfiguration{
				Routers:  map[string]*TCPRouter{id: {EntryPoints: []string{EntryPointWebSecure}, Rule: "HostSNI(`" + host + "`)", Service: id, TLS: &RouterTCPTLSConfig{Passthrough: true}}},
				Services: map[string]*TCPService{id: {LoadBalancer: &TCPServersLoadBalancer{Servers: []TCPServer{{Address: "10.0.0.3:443"}}}}},
			},
			HTTP: &HTTPConfiguration{
				Routers:  map[string]*Router{id: {EntryPoints: []string{EntryPointWeb}, Rule: "Host(`" + host + "`) && PathPrefix(`/.well-known/acme-challenge/`)", Service: id}},
				Services: map[string]*Service{id: {LoadBalancer: &ServersLoadBalancer{Servers: []Server{{URL: "http://10.0.0.3:80"}}}}},
			},
		}
	}
}

// testAnchor is an anchor router as the gateway renders it.
func testAnchor(domain string) *Configuration {
	return &Configuration{HTTP: &HTTPConfiguration{Routers: map[string]*Router{AnchorName: {
		EntryPoints: []string{EntryPointWebSecure},
		Rule:        "Host(`" + domain + "`) && PathPrefix(`/.well-known/gateway-anchor/`)",
		Service:     ServiceNoop,
		TLS:         &RouterTLSConfig{CertResolver: ResolverDNS, Domains: []Domain{{Main: domain, SANs: []string{"*." + domain}}}},
	}}}}
}

// load opens the routes of root afresh, as the gateway does at start, and
// returns the routes the folder holds, read as the first start with a store
// imports them (Importables): the routes of the group files and of the
// files of one route (<id>.yaml). It fails on a file that does not read
// back.
func load(t testing.TB, root string) (*Routes, map[string]*Configuration) {
	t.Helper()
	r, err := OpenRoutes(root)
	if err != nil {
		t.Fatal(err)
	}
	files, err := r.Importables()
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]*Configuration)
	for _, f := range files {
		cfg, err := Unmarshal(f.Data)
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		if !f.Group {
			got[strings.TrimSuffix(f.Name, FileExt)] = cfg
			continue
		}
		maps.Copy(got, Split(cfg))
	}
	return r, got
}

// inGroup returns k route IDs of group n.
func inGroup(n, k int) []string {
	var ids []string
	for i := 0; len(ids) < k; i++ {
		if id := "wl-" + strconv.Itoa(i); GroupOf(id) == n {
			ids = append(ids, id)
		}
	}
	return ids
}

// groupFiles returns the names in the routes folder, sorted.
func folder(t testing.TB, r *Routes) []string {
	t.Helper()
	entries, err := os.ReadDir(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestGroupOfIsStable guards the files written by earlier versions: a
// change of the hash would make the next start take every route for one
// in the wrong group, and quarantine it.
func TestGroupOfIsStable(t *testing.T) {
	for id, want := range map[string]int{"wl-1": 40, "29-123456-web": 54, "a": 3, "gateway": 63} {
		if got := GroupOf(id); got != want {
			t.Errorf("GroupOf(%q) = %d, want %d", id, got, want)
		}
	}
	for n := range NumGroups {
		name := groupName(n)
		if got, ok := parseGroupName(name); !ok || got != n {
			t.Errorf("parseGroupName(%q) = %d, %v", name, got, ok)
		}
	}
	for _, name := range []string{"routes~64", "routes~1", "routes~001", "routes~-1", "routes~+1", "routes~0x", "routes-00", "Routes~00"} {
		if _, ok := parseGroupName(name); ok {
			t.Errorf("parseGroupName(%q) accepted", name)
		}
	}
}

// TestSplitMerge guards the group files: merged routes split back into the
// very configurations the gateway rendered (its recovery compares them
// deeply), and a configuration with an element of another name is refused.
func TestSplitMerge(t *testing.T) {
	routes := map[string]*Configuration{}
	for i := range 9 {
		id := "wl-" + strconv.Itoa(i)
		routes[id] = testRoute(id, i)
	}
	data, err := Marshal(Merge(routes))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if back := Split(cfg); !reflect.DeepEqual(back, routes) {
		t.Fatalf("split back %v, want %v", back, routes)
	}
	bad := testRoute("a", 1)
	bad.HTTP.Middlewares = map[string]*Middleware{"b": {Retry: &Retry{Attempts: 2}}}
	for _, cfg := range []*Configuration{bad, {}, {HTTP: &HTTPConfiguration{}}} {
		if err := checkNamed("a", cfg); err == nil {
			t.Errorf("checkNamed accepted %+v", cfg)
		}
	}
}

// TestLayoutRoundTrip guards the layout: many routes published and some
// removed read back exactly, each in the group file of its hash, with no
// empty group file and nothing else in the folder.
func TestLayoutRoundTrip(t *testing.T) {
	r, root := openTestRoutes(t)
	want := map[string]*Configuration{}
	const n = 600
	for i := range n {
		id := "wl-" + strconv.Itoa(i)
		want[id] = testRoute(id, i)
		if err := r.Publish(id, want[id]); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i += 2 {
		id := "wl-" + strconv.Itoa(i)
		delete(want, id)
		if err := r.Unpublish(id); err != nil {
			t.Fatal(err)
		}
	}
	// Unpublish of a route that is not there changes nothing.
	if err := r.Unpublish("absent"); err != nil {
		t.Fatal(err)
	}
	// Emptied by hand of all its routes, a group file goes.
	empty := inGroup(5, 3)
	for i, id := range empty {
		if err := r.Publish(id, testRoute(id, i)); err != nil {
			t.Fatal(err)
		}
		delete(want, id)
	}
	for _, id := range empty {
		if err := r.Unpublish(id); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if ok, err := r.Published(id); err != nil || !ok {
			t.Fatalf("Published(%s) = %v, %v", id, ok, err)
		}
		if got := r.Locate(id); got != filepath.Join(r.Path(), GroupName(id)+FileExt) {
			t.Fatalf("Locate(%s) = %s", id, got)
		}
	}
	if ok, _ := r.Published("wl-0"); ok {
		t.Fatal("an unpublished route is published")
	}

	groups := map[string]bool{}
	for id := range want {
		groups[GroupName(id)+FileExt] = true
	}
	if got := folder(t, r); !slices.Equal(got, slices.Sorted(maps.Keys(groups))) {
		t.Fatalf("folder holds %v, want the %d group files of the routes", got, len(groups))
	}
	if _, err := os.Stat(filepath.Join(r.Path(), groupName(5)+FileExt)); groups[groupName(5)+FileExt] == (err != nil) {
		t.Fatalf("group 5 holds routes: %v; its file: %v", groups[groupName(5)+FileExt], err)
	}
	for name := range groups {
		data, err := os.ReadFile(filepath.Join(r.Path(), name))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := Unmarshal(data)
		if err != nil {
			t.Fatal(err)
		}
		for id := range Split(cfg) {
			if GroupName(id)+FileExt != name {
				t.Fatalf("route %s in %s", id, name)
			}
		}
	}
	_, got := load(t, root)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the folder holds %d routes, want %d", len(got), len(want))
	}
	// A route of another shape under the same ID replaces the first.
	id := slices.Sorted(maps.Keys(want))[0]
	if err := r.Publish(id, testRoute(id, 2)); err != nil {
		t.Fatal(err)
	}
	if _, got := load(t, root); !reflect.DeepEqual(got[id], testRoute(id, 2)) {
		t.Fatalf("replaced route reads back as %+v", got[id])
	}
}

// withElement returns a copy of route id's configuration, shape 1 (with a
// middleware), that also holds middleware name.
func withElement(id, name string) *Configuration {
	cfg := testRoute(id, 1)
	cfg.HTTP.Middlewares[name] = &Middleware{Headers: &Headers{CustomResponseHeaders: map[string]string{"X-Gateway": id}}}
	return cfg
}

// suffixedRoute returns a route whose router takes two middlewares, the
// second named id~headers, as a route with several elements of one kind
// names them.
func suffixedRoute(id string) *Configuration {
	cfg := withElement(id, id+"~headers")
	cfg.HTTP.Routers[id].Middlewares = []string{id, id + "~headers"}
	return cfg
}

// TestPublishRefusesForeignNames guards the split of a group file: an
// element not named after its route (id or id~<suffix>) would be read back
// as another route, or lost, so every way of writing routes refuses it and
// writes nothing.
func TestPublishRefusesForeignNames(t *testing.T) {
	noTLS := testRoute("a", 0)
	noTLS.TLS = &TLSConfiguration{}
	configs := []struct {
		name string
		cfg  *Configuration
	}{
		// Split would give it to route b.
		{"named after another route", testRoute("b", 0)},
		// Owner cuts at '~': b~headers is route b's.
		{"second element of another route", withElement("a", "b~headers")},
		// A name the ID only begins with is another route's: a-b, not a.
		{"named with the route's ID as a prefix", withElement("a", "a-b")},
		// Only the reserved file holds a tls section.
		{"tls section", noTLS},
		// Nothing to split back: the route would be lost.
		{"no element", &Configuration{HTTP: &HTTPConfiguration{}}},
	}
	writers := []struct {
		name  string
		write func(r *Routes, cfg *Configuration) error
	}{
		{"Publish", func(r *Routes, cfg *Configuration) error { return r.Publish("a", cfg) }},
		{"PublishEach", func(r *Routes, cfg *Configuration) error {
			return r.PublishEach(map[string]*Configuration{"a": cfg})["a"]
		}},
		{"Reset", func(r *Routes, cfg *Configuration) error {
			_, err := r.Reset(map[string]*Configuration{"a": cfg, "c": testRoute("c", 0)})
			return err
		}},
	}
	for _, w := range writers {
		for _, c := range configs {
			t.Run(w.name+"/"+c.name, func(t *testing.T) {
				r, _ := openTestRoutes(t)
				if err := w.write(r, c.cfg); err == nil {
					t.Fatal("accepted")
				}
				if got := folder(t, r); len(got) != 0 {
					t.Fatalf("folder holds %v", got)
				}
			})
		}
	}
}

// TestOwner guards the split of group files and the sweep: an element
// belongs to the route its name begins with, up to the first '~', so that
// a route's second middleware (id~headers) is neither taken for a route of
// its own, quarantined, nor given to another route; the anchor file's
// reserved names stay their own.
func TestOwner(t *testing.T) {
	for _, tt := range []struct{ name, want string }{
		{"wl-1", "wl-1"},
		{"wl-1~headers", "wl-1"},
		{"wl-1~a~b", "wl-1"},
		{"29-123456-web", "29-123456-web"},
		{"wl~", "wl"},
		{AnchorName, AnchorName},
		{ChallengeName, ChallengeName},
	} {
		if got := Owner(tt.name); got != tt.want {
			t.Errorf("Owner(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestSuffixedElements guards routes with several elements of one kind:
// a middleware named id~headers beside the one named id is written in the
// route's group file (encodeRoute once wrote only the element named id),
// reads back as part of its route, is not quarantined by the sweep, and a
// restart finds its group file as it must be and writes nothing.
func TestSuffixedElements(t *testing.T) {
	ids := inGroup(11, 2)
	want := map[string]*Configuration{ids[0]: suffixedRoute(ids[0]), ids[1]: testRoute(ids[1], 1)}
	tests := []struct {
		name  string
		write func(t *testing.T, r *Routes)
	}{
		{"published", func(t *testing.T, r *Routes) {
			if errs := r.PublishEach(want); errs != nil {
				t.Fatal(errs)
			}
		}},
		{"reset at start", func(t *testing.T, r *Routes) {
			if changed, err := r.Reset(want); err != nil || changed != 1 {
				t.Fatalf("Reset = %d, %v; want the group written", changed, err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, root := openTestRoutes(t)
			tt.write(t, r)
			keep := func(id string) bool { return want[id] != nil }
			if moved, err := r.Sweep(keep); err != nil || moved != nil {
				t.Fatalf("sweep moved %+v, %v", moved, err)
			}
			if _, got := load(t, root); !reflect.DeepEqual(got, want) {
				t.Fatalf("the folder holds %+v, want %+v", got, want)
			}
			for id := range want {
				if ok, err := r.Published(id); err != nil || !ok {
					t.Fatalf("Published(%s) = %v, %v", id, ok, err)
				}
			}
			// Restart.
			r2, err := OpenRoutes(root)
			if err != nil {
				t.Fatal(err)
			}
			if changed, err := r2.Reset(want); err != nil || changed != 0 {
				t.Fatalf("Reset at restart = %d, %v; want nothing written", changed, err)
			}
			if moved, err := r2.Sweep(keep); err != nil || moved != nil {
				t.Fatalf("sweep after the restart moved %+v, %v", moved, err)
			}
		})
	}
}

// plantForeign puts one entry of every kind Traefik's file provider would
// read, or choke on, in the routes folder, and returns their names.
func plantForeign(t testing.TB, dir string) []string {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "sub", "inner.yaml"), "http: {}\n")
	writeFile(t, filepath.Join(dir, ".hidden.yaml"), "http: {}\n")
	writeFile(t, filepath.Join(dir, "other.yml"), "http: {}\n")
	writeFile(t, filepath.Join(dir, "other.toml"), "[http]\n")
	writeFile(t, filepath.Join(dir, "UPPER.YAML"), "http: {}\n")
	writeFile(t, filepath.Join(dir, "broken.yaml"), "{{\n")
	writeFile(t, filepath.Join(dir, "hand.yaml"), "http: {}\n")
	writeFile(t, filepath.Join(dir, "routes~64.yaml"), "http: {}\n")
	if err := os.Symlink(groupName(0)+FileExt, filepath.Join(dir, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{".hidden.yaml", "UPPER.YAML", "broken.yaml", "hand.yaml", "link.yaml", "other.toml", "other.yml", "pipe.yaml", "routes~64.yaml", "sub"}
}

// TestSweep guards the routes folder: Traefik loads subfolders, hidden
// files, .yml and .toml files and links, and refuses the whole folder for
// one file it cannot parse, so nothing but the group files and the reserved
// file may stay there, holding only the routes the gateway holds. What is
// moved keeps its content, and no move overwrites an earlier one.
func TestSweep(t *testing.T) {
	r, root := openTestRoutes(t)
	held := inGroup(0, 2)
	slices.Sort(held)
	for i, id := range held {
		if err := r.Publish(id, testRoute(id, i)); err != nil {
			t.Fatal(err)
		}
	}
	// A route the index gave up (keep refuses it) in a group of its own.
	if err := r.Publish("dropped", testRoute("dropped", 0)); err != nil {
		t.Fatal(err)
	}
	want := append(plantForeign(t, r.Path()), "dropped.yaml")
	slices.Sort(want)

	var asked []string
	moved, err := r.Sweep(func(id string) bool {
		asked = append(asked, id)
		return slices.Contains(held, id)
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(asked)
	if wantAsked := slices.Sorted(slices.Values(append(slices.Clone(held), "dropped"))); !slices.Equal(asked, wantAsked) {
		t.Fatalf("keep asked about %v, want only the routes of the group files %v", asked, wantAsked)
	}
	var names []string
	for _, q := range moved {
		if q.Err != nil {
			t.Fatalf("%s: %v", q.Name, q.Err)
		}
		names = append(names, q.Name)
		if filepath.Dir(q.Path) != filepath.Join(root, QuarantineDirName) || !strings.HasPrefix(filepath.Base(q.Path), q.Name+".") {
			t.Errorf("%s moved to %s", q.Name, q.Path)
		}
		if q.Reason == "" || q.Count < 1 || q.Count > len(want) {
			t.Errorf("%s: reason %q, count %d", q.Name, q.Reason, q.Count)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Fatalf("moved %v, want %v", names, want)
	}
	if got := folder(t, r); !slices.Equal(got, []string{groupName(0) + FileExt}) {
		t.Fatalf("routes folder holds %v", got)
	}
	for _, q := range moved {
		switch q.Name {
		case "broken.yaml":
			if b, _ := os.ReadFile(q.Path); string(b) != "{{\n" {
				t.Errorf("broken.yaml holds %q after the move", b)
			}
		case "link.yaml":
			if target, err := os.Readlink(q.Path); err != nil || target != groupName(0)+FileExt {
				t.Errorf("link moved as %q, %v", target, err)
			}
		case "sub":
			if _, err := os.Stat(filepath.Join(q.Path, "inner.yaml")); err != nil {
				t.Errorf("folder moved without its file: %v", err)
			}
		case "dropped.yaml":
			// Quarantined as a file of its own, which reads back as the route.
			b, _ := os.ReadFile(q.Path)
			cfg, err := Unmarshal(b)
			if err != nil || !reflect.DeepEqual(cfg, testRoute("dropped", 0)) || q.ID != "dropped" || q.Group != GroupName("dropped")+FileExt {
				t.Errorf("dropped quarantined as %+v (%v):\n%s", q, err, b)
			}
		}
	}

	// The same name again: a second entry in quarantine, none replaced.
	writeFile(t, filepath.Join(r.Path(), "hand.yaml"), "second\n")
	again, err := r.Sweep(func(id string) bool { return slices.Contains(held, id) })
	if err != nil || len(again) != 1 || again[0].Err != nil || again[0].Count != len(want)+1 {
		t.Fatalf("second sweep: %+v, %v", again, err)
	}
	if b, _ := os.ReadFile(again[0].Path); string(b) != "second\n" {
		t.Fatalf("second hand.yaml holds %q", b)
	}
	// Nothing foreign: nothing moved, the quarantine folder is not read.
	if none, err := r.Sweep(func(string) bool { return true }); err != nil || none != nil {
		t.Fatalf("clean sweep: %v, %v", none, err)
	}
	_, got := load(t, root)
	if !slices.Equal(slices.Sorted(maps.Keys(got)), held) {
		t.Fatalf("after the sweeps the folder holds routes %v, want %v", slices.Sorted(maps.Keys(got)), held)
	}
}

// TestSweepRereadsOnlyChangedFiles guards the sweep's cost at 10,000 routes
// and what it finds: a group file is read again only when its stamp shows
// it changed behind the gateway's back; then what the gateway did not write
// goes to quarantine (a route added, a route changed, a file that does not
// read back), the routes it wrote are written back, and a file only touched
// is taken as it is.
func TestSweepRereadsOnlyChangedFiles(t *testing.T) {
	r, root := openTestRoutes(t)
	ids := inGroup(7, 3)
	other := inGroup(8, 1)[0]
	for i, id := range append(slices.Clone(ids), other) {
		if err := r.Publish(id, testRoute(id, i)); err != nil {
			t.Fatal(err)
		}
	}
	keep := func(string) bool { return true }
	sweep := func(t *testing.T) []Quarantined {
		t.Helper()
		moved, err := r.Sweep(keep)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range moved {
			if q.Err != nil {
				t.Fatalf("%s: %v", q.Name, q.Err)
			}
		}
		return moved
	}
	file := r.Locate(ids[0])
	read := func() []byte {
		t.Helper()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ours := read()
	checkRestored := func(t *testing.T) {
		t.Helper()
		if got := read(); string(got) != string(ours) {
			t.Fatalf("group file not restored:\n%s", got)
		}
		for _, id := range ids {
			if ok, err := r.Published(id); err != nil || !ok {
				t.Fatalf("Published(%s) = %v, %v after the sweep", id, ok, err)
			}
		}
	}

	t.Run("clean", func(t *testing.T) {
		before := r.reads
		if moved := sweep(t); moved != nil {
			t.Fatalf("moved %v", moved)
		}
		if r.reads != before {
			t.Fatalf("a clean sweep read %d group files", r.reads-before)
		}
	})
	t.Run("route added", func(t *testing.T) {
		foreign, err := Marshal(testRoute("planted", 0))
		if err != nil {
			t.Fatal(err)
		}
		// Traefik reads the two documents' keys as one: the route is
		// planted as a sibling of the gateway's.
		merged := Merge(map[string]*Configuration{ids[0]: testRoute(ids[0], 0), ids[1]: testRoute(ids[1], 1), ids[2]: testRoute(ids[2], 2), "planted": testRoute("planted", 0)})
		data, _ := Marshal(merged)
		writeFile(t, file, string(data))
		before := r.reads
		if ok, _ := r.Published(ids[0]); ok {
			t.Fatal("a group file changed behind the gateway's back counts as published")
		}
		moved := sweep(t)
		if r.reads != before+1 {
			t.Fatalf("the sweep read %d group files, want the changed one", r.reads-before)
		}
		if len(moved) != 1 || moved[0].ID != "planted" || moved[0].Group != filepath.Base(file) {
			t.Fatalf("moved %+v", moved)
		}
		if b, _ := os.ReadFile(moved[0].Path); string(b) != string(foreign) {
			t.Fatalf("quarantined as\n%s\nwant\n%s", b, foreign)
		}
		checkRestored(t)
	})
	t.Run("route changed", func(t *testing.T) {
		changed := Merge(map[string]*Configuration{ids[0]: testRoute(ids[0], 0), ids[1]: testRoute(ids[1], 0), ids[2]: testRoute(ids[2], 2)})
		data, _ := Marshal(changed)
		writeFile(t, file, string(data))
		moved := sweep(t)
		if len(moved) != 1 || moved[0].ID != ids[1] || !strings.Contains(moved[0].Reason, "changed") {
			t.Fatalf("moved %+v", moved)
		}
		checkRestored(t)
	})
	t.Run("route removed", func(t *testing.T) {
		data, _ := Marshal(Merge(map[string]*Configuration{ids[0]: testRoute(ids[0], 0), ids[2]: testRoute(ids[2], 2)}))
		writeFile(t, file, string(data))
		if moved := sweep(t); moved != nil {
			t.Fatalf("moved %+v", moved)
		}
		checkRestored(t)
	})
	t.Run("unreadable", func(t *testing.T) {
		writeFile(t, file, "{{\n")
		moved := sweep(t)
		if len(moved) != 1 || moved[0].Name != filepath.Base(file) || moved[0].ID != "" {
			t.Fatalf("moved %+v", moved)
		}
		if b, _ := os.ReadFile(moved[0].Path); string(b) != "{{\n" {
			t.Fatalf("quarantined as %q", b)
		}
		// Its routes are written again by the same sweep.
		checkRestored(t)
	})
	t.Run("touched", func(t *testing.T) {
		later := time.Now().Add(time.Hour)
		if err := os.Chtimes(file, later, later); err != nil {
			t.Fatal(err)
		}
		before := r.reads
		if moved := sweep(t); moved != nil {
			t.Fatalf("moved %v", moved)
		}
		if r.reads != before+1 {
			t.Fatalf("the sweep read %d group files, want the touched one", r.reads-before)
		}
		before = r.reads
		sweep(t)
		if r.reads != before {
			t.Fatal("a touched file is read at every sweep")
		}
		checkRestored(t)
	})
	t.Run("written over before a write", func(t *testing.T) {
		// A Publish never writes over what the gateway did not write: it
		// goes to quarantine first, and the next sweep reports it.
		data, _ := Marshal(Merge(map[string]*Configuration{ids[0]: testRoute(ids[0], 0), ids[1]: testRoute(ids[1], 1), ids[2]: testRoute(ids[2], 2), "sneaky": testRoute("sneaky", 1)}))
		writeFile(t, file, string(data))
		if err := r.Unpublish(ids[2]); err != nil {
			t.Fatal(err)
		}
		moved := sweep(t)
		if len(moved) != 1 || moved[0].ID != "sneaky" {
			t.Fatalf("moved %+v", moved)
		}
		if err := r.Publish(ids[2], testRoute(ids[2], 2)); err != nil {
			t.Fatal(err)
		}
		checkRestored(t)
	})
	if _, got := load(t, root); len(got) != 4 {
		t.Fatalf("the folder holds routes %v", slices.Sorted(maps.Keys(got)))
	}
}

// TestQuarantine guards Set and Delete of a wlID the gateway does not hold:
// whatever is published under it is moved, never overwritten or deleted.
func TestQuarantine(t *testing.T) {
	r, _ := openTestRoutes(t)
	if q, err := r.Quarantine("absent", "test"); q != nil || err != nil {
		t.Fatalf("nothing there: %+v, %v", q, err)
	}
	writeFile(t, filepath.Join(r.Path(), "hand.yaml"), "mine\n")
	qs, err := r.Quarantine("hand", "test")
	if err != nil || len(qs) != 1 || qs[0].ID != "hand" || qs[0].Name != "hand.yaml" || qs[0].Reason != "test" || qs[0].Count != 1 {
		t.Fatalf("Quarantine = %+v, %v", qs, err)
	}
	if b, _ := os.ReadFile(qs[0].Path); string(b) != "mine\n" {
		t.Fatalf("quarantined file holds %q", b)
	}
	if _, err := os.Lstat(filepath.Join(r.Path(), "hand.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file still in the routes folder: %v", err)
	}
	// A folder named like a route file moves too.
	if err := os.Mkdir(filepath.Join(r.Path(), "dir.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	if qs, err := r.Quarantine("dir", "test"); err != nil || len(qs) != 1 || qs[0].Count != 2 {
		t.Fatalf("Quarantine(dir) = %+v, %v", qs, err)
	}
	// A route in a group file is taken out of it; the others stay.
	ids := inGroup(2, 2)
	for i, id := range ids {
		if err := r.Publish(id, testRoute(id, i)); err != nil {
			t.Fatal(err)
		}
	}
	qs, err = r.Quarantine(ids[0], "test")
	if err != nil || len(qs) != 1 || qs[0].Group != groupName(2)+FileExt || qs[0].Count != 3 {
		t.Fatalf("Quarantine(%s) = %+v, %v", ids[0], qs, err)
	}
	if ok, _ := r.Published(ids[0]); ok {
		t.Fatal("quarantined route still published")
	}
	if ok, _ := r.Published(ids[1]); !ok {
		t.Fatal("the other route of the group is gone")
	}
	if _, err := r.Quarantine("../x", "test"); err == nil {
		t.Fatal("a path accepted as route ID")
	}
}

// TestPublishDoesNotWaitForTheDisk guards the writes of a Set and a
// Delete: their group file is derived from the store, so a folder that
// cannot be synced (a failing disk) neither fails them nor keeps them from
// being live.
func TestPublishDoesNotWaitForTheDisk(t *testing.T) {
	r, _ := openTestRoutes(t)
	defer atomicfile.FailDirSync(r.Path(), syscall.EIO)()
	if err := r.Publish("a", testRoute("a", 0)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if ok, err := r.Published("a"); err != nil || !ok {
		t.Fatalf("route not live: %v, %v", ok, err)
	}
	if err := r.Unpublish("a"); err != nil {
		t.Fatalf("Unpublish: %v", err)
	}
	if _, err := os.Stat(r.Locate("a")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("route still there: %v", err)
	}
}

// TestAnchor guards the wildcard certificate: the reserved file holds the
// anchor router, is not written again when it holds it already (a restart
// costs Traefik no reload), goes without a domain, and is put back by the
// sweep when it changes or goes behind the gateway's back; what it held
// then goes to quarantine.
func TestAnchor(t *testing.T) {
	r, root := openTestRoutes(t)
	path := filepath.Join(r.Path(), anchorFile+FileExt)
	if err := r.PublishAnchor(testAnchor("gw.test")); err != nil {
		t.Fatal(err)
	}
	want, _ := Marshal(testAnchor("gw.test"))
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if read() != string(want) {
		t.Fatalf("reserved file holds\n%s", read())
	}
	// A restart finds it as it must be: not written again.
	r2, _ := load(t, root)
	before, _, _ := r2.dir.stat(anchorFile)
	if err := r2.PublishAnchor(testAnchor("gw.test")); err != nil {
		t.Fatal(err)
	}
	if after, _, _ := r2.dir.stat(anchorFile); after != before {
		t.Fatal("the anchor was written again although it was current")
	}
	// Another domain: replaced, no quarantine.
	if err := r2.PublishAnchor(testAnchor("new.test")); err != nil {
		t.Fatal(err)
	}
	if moved, _ := r2.Sweep(func(string) bool { return true }); moved != nil {
		t.Fatalf("moved %+v", moved)
	}
	// Changed behind the gateway's back: quarantined and written again.
	writeFile(t, path, "http: {}\n")
	moved, err := r2.Sweep(func(string) bool { return true })
	if err != nil || len(moved) != 1 || moved[0].Name != anchorFile+FileExt || moved[0].Err != nil {
		t.Fatalf("moved %+v, %v", moved, err)
	}
	if b, _ := os.ReadFile(moved[0].Path); string(b) != "http: {}\n" {
		t.Fatalf("quarantined as %q", b)
	}
	newWant, _ := Marshal(testAnchor("new.test"))
	if read() != string(newWant) {
		t.Fatalf("anchor not written again:\n%s", read())
	}
	// Removed behind its back: written again.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if moved, _ := r2.Sweep(func(string) bool { return true }); moved != nil {
		t.Fatalf("moved %+v", moved)
	}
	if read() != string(newWant) {
		t.Fatal("anchor not written again")
	}
	// No domain: removed, and one found at start that is no anchor goes to
	// quarantine rather than being deleted.
	if err := r2.PublishAnchor(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("anchor still there: %v", err)
	}
	writeFile(t, path, "hand\n")
	r3, _ := load(t, root)
	if err := r3.PublishAnchor(nil); err != nil {
		t.Fatal(err)
	}
	moved, _ = r3.Sweep(func(string) bool { return true })
	if len(moved) != 1 || moved[0].Name != anchorFile+FileExt {
		t.Fatalf("moved %+v", moved)
	}
	// And one that appears while there must be none.
	writeFile(t, path, string(want))
	if moved, _ := r3.Sweep(func(string) bool { return true }); len(moved) != 1 {
		t.Fatalf("moved %+v", moved)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("anchor still there: %v", err)
	}
	if err := r3.PublishAnchor(&Configuration{HTTP: &HTTPConfiguration{Routers: map[string]*Router{"other": {}}}}); err == nil {
		t.Fatal("an anchor of another name accepted")
	}
}

// BenchmarkSweep measures a sweep of a clean folder of 10,000 routes, the
// cost the gateway pays every few seconds.
func BenchmarkSweep(b *testing.B) {
	r, _ := openTestRoutes(b)
	held := make(map[string]bool)
	cfgs := make(map[string]*Configuration)
	for i := range 10000 {
		id := "wl-" + strconv.Itoa(i)
		cfgs[id] = testRoute(id, i)
		held[id] = true
	}
	if _, err := r.Reset(cfgs); err != nil {
		b.Fatal(err)
	}
	if err := r.PublishAnchor(testAnchor("gw.test")); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		moved, err := r.Sweep(func(id string) bool { return held[id] })
		if err != nil || len(moved) != 0 {
			b.Fatal(moved, err)
		}
	}
}

// BenchmarkPublish measures one route write with 10,000 routes published.
func BenchmarkPublish(b *testing.B) {
	r, _ := openTestRoutes(b)
	cfgs := make(map[string]*Configuration)
	for i := range 10000 {
		id := "wl-" + strconv.Itoa(i)
		cfgs[id] = testRoute(id, i)
	}
	if _, err := r.Reset(cfgs); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("wl-%d", i%10000)
		if err := r.Publish(id, testRoute(id, i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
