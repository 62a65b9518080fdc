package traefik

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// TestEncodeGroupReadsBackAsMerge checks that a group file assembled from
// fragments holds exactly the routes, as the YAML encoder would have written
// them: the same bytes when the IDs sort the same both ways, the same
// configuration always.
func TestEncodeGroupReadsBackAsMerge(t *testing.T) {
	for _, ids := range [][]string{
		{"a"},
		{"a", "b", "c", "d", "e", "f"},
		{"w.1", "w-2", "w_3", "W4", "9", "x.y.z"},
		{"a10", "a9", "a1.b", "true", "null", "0x1f", "1e3"},
	} {
		t.Run(strings.Join(ids, ","), func(t *testing.T) {
			routes := make(map[string]*Configuration)
			encs := make(map[string]*encoded)
			for i, id := range ids {
				routes[id] = testRoute(id, i)
				e, err := encodeRoute(id, routes[id])
				if err != nil {
					t.Fatal(err)
				}
				encs[id] = e
			}
			got := encodeGroup(encs)
			back, err := Unmarshal(got)
			if err != nil {
				t.Fatalf("group file does not read back: %v\n%s", err, got)
			}
			if want := Merge(routes); !reflect.DeepEqual(back, want) {
				t.Fatalf("read back %+v, want %+v\n%s", back, want, got)
			}
			if !strings.ContainsAny(strings.Join(ids, ""), "0123456789") {
				want, err := Marshal(Merge(routes))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("got\n%s\nwant what the encoder writes\n%s", got, want)
				}
			}
		})
	}
}

func TestIndent(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "",
		"a:\n":               "  a:\n",
		"a:\n  b: 1\n":       "  a:\n    b: 1\n",
		"a: |\n  x\n\n  y\n": "  a: |\n    x\n\n    y\n",
		"no newline":         "  no newline\n",
	} {
		if got := string(indent([]byte(in), "  ")); got != want {
			t.Errorf("indent(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkEncodeGroup(b *testing.B) {
	routes := make(map[string]*Configuration)
	encs := make(map[string]*encoded)
	for i := range 160 {
		id := fmt.Sprintf("wl-%d", i)
		routes[id] = testRoute(id, i)
		encs[id], _ = encodeRoute(id, routes[id])
	}
	b.Run("fragments", func(b *testing.B) {
		for b.Loop() {
			encodeGroup(encs)
		}
	})
	b.Run("encoder", func(b *testing.B) {
		for b.Loop() {
			if _, err := Marshal(Merge(routes)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
