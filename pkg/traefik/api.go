package traefik

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
