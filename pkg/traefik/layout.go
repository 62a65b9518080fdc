package traefik

import (
	"fmt"
	"hash/crc32"
	"maps"
	"strconv"
	"strings"
)

// The routes folder holds NumGroups group files, routes~00.yaml to
// routes~63.yaml, each the merged configuration of the routes whose ID hashes
// to it, and the reserved file gateway~anchor.yaml. Traefik's file provider
// re-reads every file of the folder on every event, with a fixed cost per
// file; one file per route makes each reload cost thousands of files, one
// file for all makes each write cost all routes. 64 groups were measured
// cheaper than both at 10,000 routes.
//
// '~' is in no route ID the gateway accepts (letters, digits, '-', '_',
// '.'), so no route can take the name of a group, of the reserved file or of
// the anchor router, and no file of the one-file-per-route layout
// (<wlID>.yaml) can be taken for a group.

// NumGroups is how many group files hold the routes.
const NumGroups = 64

// groupPrefix begins the name of every group file.
const groupPrefix = "routes~"

// anchorFile is the name, without FileExt, of the reserved file that holds
// the anchor router and the default certificate of Traefik's TLS store.
const anchorFile = "gateway~anchor"

// holdFile is the name, without FileExt, of the file that holds Traefik's
// reloads while PublishAll converts the folder from one file per route. '+'
// sorts before every other name the folder holds, so that Traefik, which
// reads the folder in name order, stops at it.
const holdFile = "+converting"

// holdContent makes Traefik refuse the whole folder: its file provider
// parses each file as a Go template, and "{{" never closes. Refusing, it
// keeps serving the configuration it had.
const holdContent = `# Written by the gateway while it converts this folder from one file per
# route to group files: Traefik refuses the folder while this file is here
# and keeps serving every route as it had them, so that the removal of each
# old file does not cost it a reload. The gateway removes it when done; one
# left behind (a crash) is removed at the gateway's next start.
{{
`

// AnchorName names the router of the reserved file that carries the
// certificate resolver of the gateway domain's wildcard certificate, so that
// Traefik obtains and renews it once; name proxies carry no resolver and get
// it from Traefik's certificate store by SNI. A route's router on every
// name proxy would make Traefik's ACME provider scan every certificate on
// every reload.
const AnchorName = "gateway~anchor"

// ChallengeName names the router and service of the reserved file that send
// the HTTP-01 challenges of user domains, on EntryPointWeb, to the gateway
// (pkg/certs). A passthrough route's own challenge router is more specific
// and wins for its name.
const ChallengeName = "gateway~acme"

// ServiceNoop is Traefik's internal service that answers nothing; the
// anchor router, which no client needs, sends to it.
const ServiceNoop = "noop@internal"

// GroupOf returns the group of route id: a stable hash, the same in every
// version of the gateway, since the files it names outlive a restart.
func GroupOf(id string) int {
	return int(crc32.ChecksumIEEE([]byte(id)) % NumGroups)
}

// GroupName returns the name, without FileExt, of the group file that holds
// route id.
func GroupName(id string) string { return groupName(GroupOf(id)) }

// groupName returns the name, without FileExt, of group n.
func groupName(n int) string {
	return groupPrefix + fmt.Sprintf("%02d", n)
}

// parseGroupName returns the group a file name (without FileExt) names.
func parseGroupName(name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, groupPrefix)
	if !ok || len(digits) != 2 {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 || n >= NumGroups || groupName(n) != name {
		return 0, false
	}
	return n, true
}

// Split returns the configuration of each route that cfg holds. Every
// element (router, middleware, service, HTTP or TCP) belongs to the route
// its name begins with (Owner); a route's configuration holds only the kinds
// of elements it has, so that it equals what the gateway rendered for it.
func Split(cfg *Configuration) map[string]*Configuration {
	out := make(map[string]*Configuration)
	get := func(name string) *Configuration {
		id := Owner(name)
		c, ok := out[id]
		if !ok {
			c = &Configuration{}
			out[id] = c
		}
		return c
	}
	httpOf := func(id string) *HTTPConfiguration {
		c := get(id)
		if c.HTTP == nil {
			c.HTTP = &HTTPConfiguration{}
		}
		return c.HTTP
	}
	tcpOf := func(id string) *TCPConfiguration {
		c := get(id)
		if c.TCP == nil {
			c.TCP = &TCPConfiguration{}
		}
		return c.TCP
	}
	if h := cfg.HTTP; h != nil {
		for id, v := range h.Routers {
			put(&httpOf(id).Routers, id, v)
		}
		for id, v := range h.Middlewares {
			put(&httpOf(id).Middlewares, id, v)
		}
		for id, v := range h.Services {
			put(&httpOf(id).Services, id, v)
		}
	}
	if t := cfg.TCP; t != nil {
		for id, v := range t.Routers {
			put(&tcpOf(id).Routers, id, v)
		}
		for id, v := range t.Services {
			put(&tcpOf(id).Services, id, v)
		}
	}
	return out
}

// Owner returns the route an element of the routes folder belongs to: a
// route names its elements id, or id~<anything> when it has several of one
// kind ('~' is in no route ID). The reserved names of the anchor file are
// their own owners.
func Owner(name string) string {
	if name == AnchorName || name == ChallengeName {
		return name
	}
	id, _, _ := strings.Cut(name, "~")
	return id
}

// Merge returns one configuration holding every route of routes. Names do
// not collide: each route's elements are named after it (see checkNamed).
func Merge(routes map[string]*Configuration) *Configuration {
	out := &Configuration{}
	for _, c := range routes {
		if h := c.HTTP; h != nil {
			if out.HTTP == nil {
				out.HTTP = &HTTPConfiguration{}
			}
			putAll(&out.HTTP.Routers, h.Routers)
			putAll(&out.HTTP.Middlewares, h.Middlewares)
			putAll(&out.HTTP.Services, h.Services)
		}
		if t := c.TCP; t != nil {
			if out.TCP == nil {
				out.TCP = &TCPConfiguration{}
			}
			putAll(&out.TCP.Routers, t.Routers)
			putAll(&out.TCP.Services, t.Services)
		}
	}
	return out
}

// checkNamed refuses a route configuration with an element not named id or
// id~<suffix>, or with no element at all: Split would give it to another
// route, or lose it.
func checkNamed(id string, cfg *Configuration) error {
	if cfg.TLS != nil {
		return fmt.Errorf("configuration of route %q: a route has no tls section", id)
	}
	parts := Split(cfg)
	if _, ok := parts[id]; !ok || len(parts) != 1 {
		return fmt.Errorf("configuration of route %q: every router, middleware and service must be named %q or %q", id, id, id+"~<suffix>")
	}
	return nil
}

// put sets (*m)[k] = v, making the map when needed.
func put[V any](m *map[string]V, k string, v V) {
	if *m == nil {
		*m = make(map[string]V)
	}
	(*m)[k] = v
}

// putAll copies src into *m, making the map when src is not empty.
func putAll[V any](m *map[string]V, src map[string]V) {
	if len(src) == 0 {
		return
	}
	if *m == nil {
		*m = make(map[string]V, len(src))
	}
	maps.Copy(*m, src)
}
