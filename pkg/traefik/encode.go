package traefik

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
)

// A group file holds up to a few hundred routes and is written whole at each
// change of one of them. Encoding all of it with the YAML encoder costs
// about 80 µs a route, most of a Set at 10,000 routes; so each route is
// encoded once, when it changes, into fragments, and a group file is the
// concatenation of its routes' fragments under the section headers.

// section is one map of the dynamic configuration that routes add to.
type section int

const (
	httpRouters section = iota
	httpMiddlewares
	httpServices
	tcpRouters
	tcpServices
	numSections
)

// sectionHeader is the line that opens each section, in the order the
// model's fields are in (the YAML encoder's order).
var sectionHeader = [numSections]string{
	httpRouters:     "  routers:\n",
	httpMiddlewares: "  middlewares:\n",
	httpServices:    "  services:\n",
	tcpRouters:      "  routers:\n",
	tcpServices:     "  services:\n",
}

// sectionIndent is how deep an entry of a section is: under "http:" or
// "tcp:", under the section's name.
const sectionIndent = "    "

// encoded is one route's configuration encoded, a fragment per section it
// has (nil for the others), each holding the route's entry indented to its
// place in a group file.
type encoded struct {
	cfg   *Configuration
	parts [numSections][]byte
}

// encodeRoute encodes the configuration of route id: every element of
// each section, those named id~<suffix> beside the one named id.
func encodeRoute(id string, cfg *Configuration) (*encoded, error) {
	e := &encoded{cfg: cfg}
	var err error
	add := func(s section, n int, v any) {
		if n == 0 || err != nil {
			return
		}
		var data []byte
		if data, err = marshalValue(v); err == nil {
			e.parts[s] = indent(data, sectionIndent)
		}
	}
	if h := cfg.HTTP; h != nil {
		add(httpRouters, len(h.Routers), h.Routers)
		add(httpMiddlewares, len(h.Middlewares), h.Middlewares)
		add(httpServices, len(h.Services), h.Services)
	}
	if t := cfg.TCP; t != nil {
		add(tcpRouters, len(t.Routers), t.Routers)
		add(tcpServices, len(t.Services), t.Services)
	}
	if err != nil {
		return nil, fmt.Errorf("route %q: %w", id, err)
	}
	return e, nil
}

// encodeGroup assembles a group file from its routes' fragments, routes in
// the order of their IDs. Unmarshal reads it back as Merge of the routes.
func encodeGroup(routes map[string]*encoded) []byte {
	ids := slices.Sorted(maps.Keys(routes))
	size := 32
	for _, id := range ids {
		for _, p := range routes[id].parts {
			size += len(p)
		}
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	for _, kind := range [...]struct {
		name     string
		sections []section
	}{
		{"http:\n", []section{httpRouters, httpMiddlewares, httpServices}},
		{"tcp:\n", []section{tcpRouters, tcpServices}},
	} {
		opened := false
		for _, s := range kind.sections {
			header := false
			for _, id := range ids {
				p := routes[id].parts[s]
				if p == nil {
					continue
				}
				if !opened {
					buf.WriteString(kind.name)
					opened = true
				}
				if !header {
					buf.WriteString(sectionHeader[s])
					header = true
				}
				buf.Write(p)
			}
		}
	}
	if buf.Len() == 0 {
		return []byte("{}\n")
	}
	return buf.Bytes()
}

// indent prefixes every line of data that is not empty with prefix. Indenting
// a YAML block uniformly keeps its meaning one level deeper.
func indent(data []byte, prefix string) []byte {
	out := make([]byte, 0, len(data)+len(prefix)*bytes.Count(data, []byte{'\n'}))
	for len(data) > 0 {
		line, rest, _ := bytes.Cut(data, []byte{'\n'})
		if len(line) > 0 {
			out = append(out, prefix...)
			out = append(out, line...)
		}
		out = append(out, '\n')
		data = rest
	}
	return out
}
