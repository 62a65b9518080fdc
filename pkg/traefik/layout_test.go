package traefik

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzSplit guards the recovery, which reads group files back by Split:
// whatever a group file holds, each element lands in the route it is named
// after and nowhere else, and merging the routes gives back what was split.
func FuzzSplit(f *testing.F) {
	seed, _ := Marshal(Merge(map[string]*Configuration{"a": testRoute("a", 0), "b": testRoute("b", 1), "c": testRoute("c", 2)}))
	f.Add(string(seed))
	f.Add("http:\n  routers:\n    a:\n      rule: x\n      service: b\n  services:\n    b: {}\n")
	f.Add("http:\n  routers: {}\n  middlewares:\n    x:\n      retry:\n        attempts: 1\ntcp:\n  services:\n    x: {}\n")
	f.Add("http: {}\n")
	f.Fuzz(func(t *testing.T, data string) {
		cfg, err := Unmarshal([]byte(data))
		if err != nil {
			return
		}
		parts := Split(cfg)
		for id, part := range parts {
			if len(Split(part)) != 1 || checkNamed(id, part) != nil {
				t.Fatalf("route %q holds elements of other names: %+v", id, part)
			}
		}
		if again := Split(Merge(parts)); !reflect.DeepEqual(again, parts) {
			t.Fatalf("split, merged and split again: %+v, want %+v", again, parts)
		}
		count := func(c *Configuration) int {
			n := 0
			if c.HTTP != nil {
				n += len(c.HTTP.Routers) + len(c.HTTP.Middlewares) + len(c.HTTP.Services)
			}
			if c.TCP != nil {
				n += len(c.TCP.Routers) + len(c.TCP.Services)
			}
			return n
		}
		if got, want := count(Merge(parts)), count(cfg); got != want {
			t.Fatalf("%d elements after the split, want %d", got, want)
		}
	})
}

// FuzzParseGroupName guards the folder: only the names groupName gives are
// taken for group files, so nothing else is read as one.
func FuzzParseGroupName(f *testing.F) {
	for _, s := range []string{"routes~00", "routes~63", "routes~64", "routes~1", "routes~+1", "routes~-0", "routes~ 1", "wl-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, ok := parseGroupName(name)
		if !ok {
			return
		}
		if n < 0 || n >= NumGroups || groupName(n) != name || !strings.HasPrefix(name, groupPrefix) {
			t.Fatalf("parseGroupName(%q) = %d", name, n)
		}
	})
}
