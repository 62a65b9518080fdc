package traefik

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

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
	if err := os.Symlink("kept.yaml", filepath.Join(dir, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{".hidden.yaml", "UPPER.YAML", "broken.yaml", "hand.yaml", "link.yaml", "other.toml", "other.yml", "pipe.yaml", "sub"}
}

// TestSweep guards the routes folder: Traefik loads subfolders, hidden
// files, .yml and .toml files and links, and refuses the whole folder for
// one file it cannot parse, so nothing but the routes the gateway holds may
// stay there. What is moved keeps its content, and no move overwrites an
// earlier one.
func TestSweep(t *testing.T) {
	r, root := openTestRoutes(t)
	writeFile(t, r.Locate("kept"), "kept\n")
	want := plantForeign(t, r.Path())

	var asked []string
	moved, err := r.Sweep(func(id string) bool {
		asked = append(asked, id)
		return id == "kept"
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(asked)
	if !slices.Equal(asked, []string{"broken", "hand", "kept"}) {
		t.Fatalf("keep asked about %v, want only the regular <id>.yaml files", asked)
	}
	var names []string
	for i, q := range moved {
		if q.Err != nil {
			t.Fatalf("%s: %v", q.Name, q.Err)
		}
		names = append(names, q.Name)
		if filepath.Dir(q.Path) != filepath.Join(root, QuarantineDirName) || !strings.HasPrefix(filepath.Base(q.Path), q.Name+".") {
			t.Errorf("%s moved to %s", q.Name, q.Path)
		}
		if q.Reason == "" || q.Count != i+1 {
			t.Errorf("%s: reason %q, count %d", q.Name, q.Reason, q.Count)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Fatalf("moved %v, want %v", names, want)
	}
	entries, _ := os.ReadDir(r.Path())
	if len(entries) != 1 || entries[0].Name() != "kept.yaml" {
		t.Fatalf("routes folder holds %v", entries)
	}
	for _, q := range moved {
		switch q.Name {
		case "broken.yaml":
			if b, _ := os.ReadFile(q.Path); string(b) != "{{\n" {
				t.Errorf("broken.yaml holds %q after the move", b)
			}
		case "link.yaml":
			if target, err := os.Readlink(q.Path); err != nil || target != "kept.yaml" {
				t.Errorf("link moved as %q, %v", target, err)
			}
		case "sub":
			if _, err := os.Stat(filepath.Join(q.Path, "inner.yaml")); err != nil {
				t.Errorf("folder moved without its file: %v", err)
			}
		}
	}

	// The same name again: a second entry in quarantine, none replaced.
	writeFile(t, r.Locate("hand"), "second\n")
	again, err := r.Sweep(func(id string) bool { return id == "kept" })
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
}

// TestQuarantine guards Set and Delete of a wlID the gateway does not hold:
// whatever sits at that name is moved, never overwritten or deleted.
func TestQuarantine(t *testing.T) {
	r, _ := openTestRoutes(t)
	if q, err := r.Quarantine("absent", "test"); q != nil || err != nil {
		t.Fatalf("nothing there: %+v, %v", q, err)
	}
	writeFile(t, r.Locate("hand"), "mine\n")
	q, err := r.Quarantine("hand", "test")
	if err != nil || q == nil || q.ID != "hand" || q.Name != "hand.yaml" || q.Reason != "test" || q.Count != 1 {
		t.Fatalf("Quarantine = %+v, %v", q, err)
	}
	if b, _ := os.ReadFile(q.Path); string(b) != "mine\n" {
		t.Fatalf("quarantined file holds %q", b)
	}
	if _, err := os.Lstat(r.Locate("hand")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file still in the routes folder: %v", err)
	}
	// A folder named like a route file moves too.
	if err := os.Mkdir(r.Locate("dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if q, err := r.Quarantine("dir", "test"); err != nil || q == nil || q.Count != 2 {
		t.Fatalf("Quarantine(dir) = %+v, %v", q, err)
	}
	if _, err := r.Quarantine("../x", "test"); err == nil {
		t.Fatal("a path accepted as route ID")
	}
}

// TestLoadReadsOnlyRouteFiles guards the index: only regular <id>.yaml files
// are read back, a link is not followed and a pipe does not hang the load.
func TestLoadReadsOnlyRouteFiles(t *testing.T) {
	r, _ := openTestRoutes(t)
	cfg := &Configuration{HTTP: &HTTPConfiguration{Routers: map[string]*Router{"a": {Rule: "Host(`a.b`)", Service: "a"}}}}
	if err := r.Publish("a", cfg); err != nil {
		t.Fatal(err)
	}
	plantForeign(t, r.Path())
	got := map[string]string{}
	err := r.Load(func(id string, cfg *Configuration, err error) {
		got[id] = "ok"
		if err != nil {
			got[id] = err.Error()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got["a"] != "ok" || got["hand"] != "ok" || !strings.Contains(got["broken"], "decoding") {
		t.Fatalf("Load gave %v", got)
	}
}

// TestPublishNotDurable guards the index against a failed folder sync: the
// route is live, and the error must say so.
func TestPublishNotDurable(t *testing.T) {
	r, _ := openTestRoutes(t)
	defer atomicfile.FailDirSync(r.Path(), syscall.EIO)()
	cfg := &Configuration{HTTP: &HTTPConfiguration{}}
	if err := r.Publish("a", cfg); !errors.Is(err, ErrNotDurable) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Publish: %v", err)
	}
	if _, err := os.Stat(r.Locate("a")); err != nil {
		t.Fatalf("route not live: %v", err)
	}
	if err := r.Unpublish("a"); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("Unpublish: %v", err)
	}
	if _, err := os.Stat(r.Locate("a")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("route still there: %v", err)
	}
}

// BenchmarkSweep measures a sweep of a clean folder of 10,000 routes, the
// cost the gateway pays every few seconds.
func BenchmarkSweep(b *testing.B) {
	r, _ := openTestRoutes(b)
	held := make(map[string]bool)
	for i := range 10000 {
		id := "wl-" + strconv.Itoa(i)
		writeFile(b, r.Locate(id), "x")
		held[id] = true
	}
	for b.Loop() {
		moved, err := r.Sweep(func(id string) bool { return held[id] })
		if err != nil || len(moved) != 0 {
			b.Fatal(moved, err)
		}
	}
}
