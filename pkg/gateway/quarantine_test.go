package gateway

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/threefoldtech/gateway/pkg/traefik"
)

// foreign is an entry of the routes folder the gateway did not write.
type foreign struct {
	name    string // in the routes folder
	content string // as quarantined() shows it
	plant   func(t testing.TB, proxy string)
}

// foreignEntries are the entries Traefik's file provider would serve, or
// choke on, although the index does not know them: each must end in
// quarantine.
func foreignEntries(t testing.TB) []foreign {
	t.Helper()
	file := func(name, content string) foreign {
		return foreign{name, content, func(t testing.TB, proxy string) {
			t.Helper()
			if err := os.WriteFile(filepath.Join(proxy, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}}
	}
	// Two copies of a route the gateway would write, claiming one domain.
	dispute := func(id string) foreign {
		r := route{id: id, fqdn: "disputed.gw.example", kind: KindName, backends: backends(t, false, "http://10.0.0.8")}
		data, err := traefik.Marshal(r.render())
		if err != nil {
			t.Fatal(err)
		}
		return file(id+".yaml", string(data))
	}
	served := "http:\n  routers:\n    x:\n      rule: Host(`served.gw.example`)\n      service: x\n  services:\n    x:\n      loadBalancer:\n        servers:\n          - url: http://10.0.0.9\n"
	return []foreign{
		{"sub", "<folder>", func(t testing.TB, proxy string) {
			t.Helper()
			if err := os.Mkdir(filepath.Join(proxy, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(proxy, "sub", "x.yaml"), []byte(served), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		file(".hidden.yaml", served),
		file("other.yml", served),
		file("other.toml", "[http.routers.x]\n  rule = \"Host(`served.gw.example`)\"\n  service = \"x\"\n"),
		file("UPPER.YAML", served),
		// One file Traefik cannot parse freezes every later route change.
		file("broken.yaml", "{{\n"),
		file("hand.yaml", served),
		dispute("dupa"),
		dispute("dupb"),
		{"link.yaml", "-> /etc/passwd", func(t testing.TB, proxy string) {
			t.Helper()
			if err := os.Symlink("/etc/passwd", filepath.Join(proxy, "link.yaml")); err != nil {
				t.Fatal(err)
			}
		}},
	}
}

// proxyEntries returns the names in the routes folder, sorted.
func proxyEntries(t testing.TB, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, traefik.RoutesDirName))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// checkQuarantined fails unless every entry of fs is in quarantine, once,
// with its content.
func checkQuarantined(t testing.TB, root string, fs []foreign) {
	t.Helper()
	q := quarantined(t, root)
	for _, f := range fs {
		if got := q[f.name]; !slices.Equal(got, []string{f.content}) {
			t.Errorf("%s: quarantine holds %q, want %q", f.name, got, f.content)
		}
	}
	if len(q) != len(fs) {
		t.Errorf("quarantine holds %d names, want %d: %v", len(q), len(fs), q)
	}
}

// TestForeignEntriesAtStart guards the index against what it does not know:
// a tenant could take a domain such a file serves, and Traefik would load
// it. At start each goes to quarantine, with an error line naming it, the
// reason and the count; the routes come back.
func TestForeignEntriesAtStart(t *testing.T) {
	root := t.TempDir()
	m, _ := newModule(t, root)
	if _, err := c21(m).SetNamedProxy("keep1", "keep1", []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c21(m).SetNamedProxy("keep2", "keep2", []string{"10.0.0.2:443"}, true); err != nil {
		t.Fatal(err)
	}
	want, _ := c21(m).List()
	fs := foreignEntries(t)
	for _, f := range fs {
		f.plant(t, filepath.Join(root, traefik.RoutesDirName))
	}

	var logs bytes.Buffer
	m2, _ := newModuleWith(t, root, func(c *Config) { c.Logger = zerolog.New(&logs) })
	if got, _ := c21(m2).List(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	if got := proxyEntries(t, root); !slices.Equal(got, layoutFiles("keep1", "keep2")) {
		t.Fatalf("routes folder holds %v, want %v", got, layoutFiles("keep1", "keep2"))
	}
	checkQuarantined(t, root, fs)
	lines := strings.Split(logs.String(), "\n")
	for _, f := range fs {
		found := false
		for _, l := range lines {
			if strings.Contains(l, `"entry":"`+f.name+`"`) && strings.Contains(l, `"level":"error"`) &&
				strings.Contains(l, `"reason":`) && strings.Contains(l, `"in_quarantine":`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no error line for %s:\n%s", f.name, logs.String())
		}
	}
	// Files that claim a domain are not routes once the store holds
	// them: the domain is free.
	if _, err := c21(m2).SetNamedProxy("new2", "disputed", []string{"http://10.0.0.3"}, false); err != nil {
		t.Fatal(err)
	}
	// The domain the foreign files served is no one's: it is not served.
	if _, err := c21(m2).SetNamedProxy("new", "served", []string{"http://10.0.0.3"}, false); err != nil {
		t.Fatal(err)
	}
}

// TestForeignEntriesWhileRunning guards the folder while the gateway runs:
// what appears there goes to quarantine within a sweep, and no route the
// gateway writes meanwhile is ever taken for a foreign one.
func TestForeignEntriesWhileRunning(t *testing.T) {
	root := t.TempDir()
	m, _ := newModuleWith(t, root, func(c *Config) { c.SweepInterval = 5 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run = %v", err)
		}
	})

	// Routes set and deleted while sweeps run.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var churnErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("churn%d", i%4)
			if _, err := c21(m).SetNamedProxy(id, id, []string{"http://10.0.0.1"}, false); err != nil {
				churnErr = err
				return
			}
			if i%3 == 0 {
				if err := c21(m).DeleteNamedProxy(id); err != nil {
					churnErr = err
					return
				}
			}
		}
	}()
	fs := foreignEntries(t)
	for _, f := range fs {
		f.plant(t, filepath.Join(root, traefik.RoutesDirName))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		clean := true
		for _, name := range proxyEntries(t, root) {
			if !strings.HasPrefix(name, "routes~") && name != "gateway~anchor.yaml" {
				clean = false
			}
		}
		if clean {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("routes folder still holds %v", proxyEntries(t, root))
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if churnErr != nil {
		t.Fatal(churnErr)
	}
	checkQuarantined(t, root, fs)
	// Every route the index holds is published, and nothing else.
	list, _ := c21(m).List()
	var want []string
	for _, p := range list {
		want = append(want, p.WorkloadID)
	}
	if got := slices.Sorted(maps.Keys(grouped(t, root))); !slices.Equal(got, want) {
		t.Fatalf("group files hold %v, index %v", got, want)
	}
	if got := proxyEntries(t, root); !slices.Equal(got, layoutFiles(want...)) {
		t.Fatalf("routes folder holds %v, want %v", got, layoutFiles(want...))
	}
}

// TestSetAndDeleteNeverTouchForeignFiles guards files the gateway did not
// write, before any sweep: a Set of a wlID it does not hold moves what sits
// at that name to quarantine before writing, a Delete moves it instead of
// deleting it.
func TestSetAndDeleteNeverTouchForeignFiles(t *testing.T) {
	root := t.TempDir()
	m, _ := newModuleWith(t, root, func(c *Config) { c.SweepInterval = time.Hour })
	proxy := filepath.Join(root, traefik.RoutesDirName)
	var fs []foreign
	for _, f := range foreignEntries(t) {
		if !strings.HasSuffix(f.name, ".yaml") || strings.HasPrefix(f.name, ".") {
			continue // not named like a route file: no wlID reaches it
		}
		f.plant(t, proxy)
		fs = append(fs, f)
	}
	if err := os.Mkdir(filepath.Join(proxy, "dir.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	fs = append(fs, foreign{name: "dir.yaml", content: "<folder>"})

	for i, f := range fs {
		id := strings.TrimSuffix(f.name, ".yaml")
		if i%2 == 0 {
			if _, err := c21(m).SetNamedProxy(id, fmt.Sprintf("set%d", i), []string{"http://10.0.0.1"}, false); err != nil {
				t.Fatalf("Set %s: %v", id, err)
			}
			continue
		}
		if err := c21(m).DeleteNamedProxy(id); err != nil {
			t.Fatalf("Delete %s: %v", id, err)
		}
	}
	checkQuarantined(t, root, fs)
	// What remains is what the Set calls wrote, read back as the routes.
	list, _ := c21(m).List()
	var want []string
	for _, p := range list {
		want = append(want, p.WorkloadID)
	}
	if got := slices.Sorted(maps.Keys(grouped(t, root))); !slices.Equal(got, want) || len(want) != (len(fs)+1)/2 {
		t.Fatalf("group files hold %v, index %v", got, want)
	}
	if got := proxyEntries(t, root); !slices.Equal(got, layoutFiles(want...)) {
		t.Fatalf("routes folder holds %v, want %v", got, layoutFiles(want...))
	}
	m2, _ := newModule(t, root)
	if again, _ := c21(m2).List(); fmt.Sprint(again) != fmt.Sprint(list) {
		t.Fatalf("after a restart List = %v, want %v", again, list)
	}
}
