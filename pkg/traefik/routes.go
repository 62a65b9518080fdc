package traefik

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// RoutesDirName is the folder under the module's root that holds the routes;
// Traefik's file provider watches it.
const RoutesDirName = "proxy"

// fileProviderSuffix ends the names Traefik gives the routers and services of
// its file provider, in its API and its metrics.
const fileProviderSuffix = "@file"

// Routes publishes the gateway's routes for Traefik's file provider: one
// dynamic-configuration file per route, <root>/proxy/<id>.yaml, whose routers
// and services are named <id>. It is the only place that knows this layout.
type Routes struct {
	dir *Dir
}

// OpenRoutes opens the routes folder of the module rooted at root, creating
// it when needed.
func OpenRoutes(root string) (*Routes, error) {
	dir, err := OpenDir(filepath.Join(root, RoutesDirName))
	if err != nil {
		return nil, err
	}
	return &Routes{dir: dir}, nil
}

// Path returns the folder Traefik's file provider must watch.
func (r *Routes) Path() string { return r.dir.Path() }

// Publish makes cfg the configuration of route id, replacing any earlier one.
// Once it returns the route survives a crash; Traefik sees one change.
func (r *Routes) Publish(id string, cfg *Configuration) error {
	data, err := Marshal(cfg)
	if err != nil {
		return err
	}
	return r.dir.Write(id, data)
}

// Unpublish removes route id. A route that is not there is not an error.
func (r *Routes) Unpublish(id string) error {
	return r.dir.Remove(id)
}

// Load calls fn with every published route and its configuration, or with
// the reason it could not be read back.
func (r *Routes) Load(fn func(id string, cfg *Configuration, err error)) error {
	names, err := r.dir.Names()
	if err != nil {
		return err
	}
	for _, id := range names {
		data, err := r.dir.Read(id)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			fn(id, nil, fmt.Errorf("file vanished while loading"))
		case err != nil:
			fn(id, nil, err)
		default:
			cfg, err := Unmarshal(data)
			fn(id, cfg, err)
		}
	}
	return nil
}

// Locate returns where route id is published, for an operator to look at.
func (r *Routes) Locate(id string) string { return r.dir.File(id) }

// routeOfService returns the route a service of Traefik's metrics or API
// belongs to; ok is false for services of other providers.
func routeOfService(service string) (id string, ok bool) {
	id, ok = strings.CutSuffix(service, fileProviderSuffix)
	return id, ok && id != ""
}
