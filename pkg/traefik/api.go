package traefik

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxAPIBytes bounds an answer of Traefik's API read by API: a router's is
// well under a kilobyte.
const maxAPIBytes = 1 << 20

// routerStatusEnabled is the status Traefik's API gives a router it serves;
// the others are "disabled" (its configuration is broken) and "warning"
// (served in part).
const routerStatusEnabled = "enabled"

// APIURL is the base of Traefik's API, API.Base, when its internal entry
// point listens on metricsAddress (StaticOptions.MetricsAddress).
func APIURL(metricsAddress string) string {
	return "http://" + metricsAddress + "/api"
}

// API asks Traefik's API, served read-only on the internal entry point
// (api.insecure), about the routes of the file provider.
type API struct {
	// Base is the API's URL, APIURL(StaticOptions.MetricsAddress), e.g.
	// "http://127.0.0.1:8082/api". Required.
	Base string
	// Client sends the requests. Nil means http.DefaultClient; either way
	// ctx bounds each call.
	Client *http.Client
}

// RouterServed tells whether Traefik serves the router name of the file
// provider (a route ID: Routes names its routers after the route), the TCP
// router when tcp is set, the HTTP one otherwise. It is true when Traefik
// knows the router and reports it enabled, false when Traefik does not know
// it (not loaded yet, or removed) or reports it disabled or with warnings,
// and an error when the API cannot be asked or answers anything else.
func (a API) RouterServed(ctx context.Context, name string, tcp bool) (bool, error) {
	kind := "http"
	if tcp {
		kind = "tcp"
	}
	// Traefik unescapes the segment; a name holding "/" or "?" stays one
	// segment.
	u := strings.TrimSuffix(a.Base, "/") + "/" + kind + "/routers/" + url.PathEscape(name+fileProviderSuffix)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, fmt.Errorf("asking traefik about %s router %q: %w", kind, name, err)
	}
	client := a.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, fmt.Errorf("asking traefik about %s router %q: %w", kind, name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBytes+1))
	if err != nil {
		return false, fmt.Errorf("asking traefik about %s router %q: reading answer: %w", kind, name, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return false, nil
	case resp.StatusCode != http.StatusOK:
		return false, fmt.Errorf("asking traefik about %s router %q: status %s", kind, name, resp.Status)
	case len(body) > maxAPIBytes:
		return false, fmt.Errorf("asking traefik about %s router %q: answer larger than %d bytes", kind, name, maxAPIBytes)
	}
	var router struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(body, &router); err != nil {
		return false, fmt.Errorf("asking traefik about %s router %q: decoding answer: %w", kind, name, err)
	}
	if router.Status == "" {
		return false, fmt.Errorf("asking traefik about %s router %q: answer has no status", kind, name)
	}
	return router.Status == routerStatusEnabled, nil
}

// maxListBytes bounds a page of a list of Traefik's API: 10,000 routers are a
// few megabytes.
const maxListBytes = 64 << 20

// listPerPage is how many elements a page of a list asks for: the whole
// list in one answer, on a node of any size.
const listPerPage = 1000000

// RouterState is a router of the file provider as Traefik's API reports it.
type RouterState struct {
	// Status is "enabled" (served), "warning" (served in part) or
	// "disabled" (its configuration is broken).
	Status string `json:"status"`
	// Errors are Traefik's reasons for a status other than enabled.
	Errors []string `json:"error"`
}

// ServiceState is a service of the file provider as Traefik's API reports
// it.
type ServiceState struct {
	Status string   `json:"status"`
	Errors []string `json:"error"`
	// Servers maps each server (a URL for HTTP, an address for TCP) to
	// "UP" or "DOWN", as health checks last saw it; empty when Traefik
	// checks none.
	Servers map[string]string `json:"serverStatus"`
}

// Snapshot is the state of every router and service of the file provider,
// HTTP and TCP, by name (without the "@file" suffix).
type Snapshot struct {
	HTTPRouters, TCPRouters   map[string]RouterState
	HTTPServices, TCPServices map[string]ServiceState
}

// Snapshot reads the state of every router and service of the file
// provider, four requests whatever the number of routes.
func (a API) Snapshot(ctx context.Context) (Snapshot, error) {
	var s Snapshot
	var err error
	if s.HTTPRouters, err = list[RouterState](ctx, a, "http/routers"); err != nil {
		return s, err
	}
	if s.TCPRouters, err = list[RouterState](ctx, a, "tcp/routers"); err != nil {
		return s, err
	}
	if s.HTTPServices, err = list[ServiceState](ctx, a, "http/services"); err != nil {
		return s, err
	}
	if s.TCPServices, err = list[ServiceState](ctx, a, "tcp/services"); err != nil {
		return s, err
	}
	return s, nil
}

// list reads the list at path of Traefik's API, keeping the elements of the
// file provider.
func list[T any](ctx context.Context, a API, path string) (map[string]T, error) {
	u := strings.TrimSuffix(a.Base, "/") + "/" + path + "?per_page=" + strconv.Itoa(listPerPage)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("asking traefik for its %s: %w", path, err)
	}
	client := a.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking traefik for its %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("asking traefik for its %s: status %s", path, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxListBytes+1))
	if err != nil {
		return nil, fmt.Errorf("asking traefik for its %s: reading answer: %w", path, err)
	}
	if len(body) > maxListBytes {
		return nil, fmt.Errorf("asking traefik for its %s: answer larger than %d bytes", path, maxListBytes)
	}
	var items []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(body, &items); err != nil {
		return nil, fmt.Errorf("asking traefik for its %s: decoding answer: %w", path, err)
	}
	var values []T
	if err := json.Unmarshal(body, &values); err != nil {
		return nil, fmt.Errorf("asking traefik for its %s: decoding answer: %w", path, err)
	}
	out := make(map[string]T, len(items))
	for i, it := range items {
		if name, ok := strings.CutSuffix(it.Name, fileProviderSuffix); ok {
			out[name] = values[i]
		}
	}
	return out, nil
}

// Overview counts the routers Traefik serves, of every provider, as its
// /api/overview says: one small answer, whatever the number of routes.
type Overview struct {
	HTTPRouters, TCPRouters int
}

// Overview asks for the counts of routers.
func (a API) Overview(ctx context.Context) (Overview, error) {
	u := strings.TrimSuffix(a.Base, "/") + "/overview"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Overview{}, fmt.Errorf("asking traefik for its overview: %w", err)
	}
	client := a.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return Overview{}, fmt.Errorf("asking traefik for its overview: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Overview{}, fmt.Errorf("asking traefik for its overview: status %s", resp.Status)
	}
	type count struct {
		Routers struct {
			Total int `json:"total"`
		} `json:"routers"`
	}
	var o struct {
		HTTP count `json:"http"`
		TCP  count `json:"tcp"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAPIBytes)).Decode(&o); err != nil {
		return Overview{}, fmt.Errorf("asking traefik for its overview: decoding answer: %w", err)
	}
	return Overview{HTTPRouters: o.HTTP.Routers.Total, TCPRouters: o.TCP.Routers.Total}, nil
}
