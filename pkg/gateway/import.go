package gateway

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/threefoldtech/gateway/internal/dnsname"
	"github.com/threefoldtech/gateway/pkg/traefik"
)

// Importing is the one place where the gateway reads Traefik files as
// routes: at its first start with a store, the routes earlier versions
// published in proxy/ become records (recover.go). Every shape the gateway
// ever wrote is read here, and zos's own one file per workload; nothing
// else is.

// imported is what the routes folder held for the store's first start.
type imported struct {
	// routes are the routes found, by workload ID.
	routes map[string]route
	// files are the files they came from.
	files []traefik.Importable
	// refused gives, by file name or workload ID, why something that
	// looked like a route was not imported.
	refused map[string]string
	// disputed holds the domains several routes claimed, with their
	// workload IDs: none of them is imported.
	disputed map[string][]string
}

// importRoutes reads the routes of files, under the gateway domain domain.
func importRoutes(files []traefik.Importable, domain string) imported {
	out := imported{routes: make(map[string]route), refused: make(map[string]string), disputed: make(map[string][]string)}
	found := make(map[string][]route)
	// fromFile is the file of one route each route came from, if any: it
	// is kept and removed once the route is imported, and left to the
	// sweep otherwise.
	fromFile := make(map[string]traefik.Importable)
	add := func(r route) {
		for _, o := range found[r.id] {
			if reflect.DeepEqual(o, r) {
				return
			}
		}
		found[r.id] = append(found[r.id], r)
	}
	for _, f := range files {
		stem := strings.TrimSuffix(f.Name, traefik.FileExt)
		var rs []route
		var err error
		if f.Group {
			rs, err = importGroup(f.Data, domain, out.refused)
		} else {
			var r route
			if r, err = importFile(stem, f.Data, domain); err == nil {
				rs = []route{r}
				fromFile[r.id] = f
			}
		}
		if f.Group {
			// Written over by the routes of the store: kept, whatever it
			// held.
			out.files = append(out.files, f)
		}
		if err != nil {
			out.refused[f.Name] = err.Error()
			continue
		}
		for _, r := range rs {
			add(r)
		}
	}
	claims := make(map[string][]string)
	for id, rs := range found {
		if len(rs) > 1 {
			out.refused[id] = "published twice, in two different ways"
			continue
		}
		claims[rs[0].fqdn] = append(claims[rs[0].fqdn], id)
	}
	for fqdn, ids := range claims {
		if len(ids) == 1 {
			out.routes[ids[0]] = found[ids[0]][0]
			if f, ok := fromFile[ids[0]]; ok {
				out.files = append(out.files, f)
			}
			continue
		}
		slices.Sort(ids)
		out.disputed[fqdn] = ids
		for _, id := range ids {
			out.refused[id] = "one of several routes that claim " + fqdn + " (" + strings.Join(ids, ", ") + ")"
		}
	}
	return out
}

// importGroup reads the routes of a group file; a route that does not read
// back is refused alone, with its reason in refused.
func importGroup(data []byte, domain string, refused map[string]string) ([]route, error) {
	cfg, err := traefik.Unmarshal(data)
	if err != nil {
		return nil, err
	}
	var out []route
	for id, part := range traefik.Split(cfg) {
		r, err := parseRoute(id, part, domain)
		if err != nil {
			refused[id] = err.Error()
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// importFile reads the route of a file of one route, <id>.yaml: as the
// gateway's one-file-per-route layout wrote it, or as zos's gateway did.
func importFile(id string, data []byte, domain string) (route, error) {
	cfg, err := traefik.Unmarshal(data)
	if err == nil {
		r, err := parseRoute(id, cfg, domain)
		if err == nil {
			return r, nil
		}
	}
	r, zerr := parseZosRoute(id, data, domain)
	if zerr != nil {
		if err != nil {
			return route{}, fmt.Errorf("neither a route of the gateway (%v) nor of zos (%w)", err, zerr)
		}
		return route{}, zerr
	}
	return r, nil
}

// zosFile is the shape of the files zos's own gateway wrote, one per
// workload: router <wlID>-route and service <wlID>, under http or tcp, keys
// as yaml.v2 writes Go field names (lower-cased), the TLS resolver on the
// router.
type zosFile struct {
	HTTP *zosSection `yaml:"http"`
	TCP  *zosSection `yaml:"tcp"`
}

type zosSection struct {
	Routers  map[string]zosRouter  `yaml:"routers"`
	Services map[string]zosService `yaml:"services"`
}

type zosRouter struct {
	Rule    string  `yaml:"rule"`
	Service string  `yaml:"service"`
	TLS     *zosTLS `yaml:"tls"`
}

type zosTLS struct {
	CertResolver string      `yaml:"certResolver"`
	Domains      []zosDomain `yaml:"domains"`
	Passthrough  string      `yaml:"passthrough"`
}

type zosDomain struct {
	Main string   `yaml:"main"`
	Sans []string `yaml:"sans"`
}

type zosService struct {
	LoadBalancer struct {
		Servers []struct {
			URL     string `yaml:"url"`
			Address string `yaml:"address"`
		} `yaml:"servers"`
	} `yaml:"loadbalancer"`
}

// zos's resolvers: DNS-01 for the gateway domain's wildcard, HTTP-01 for
// user domains.
const (
	zosResolverDNS  = "dnsresolver"
	zosResolverHTTP = "resolver"
)

// parseZosRoute reads a file zos's gateway wrote for workload id.
func parseZosRoute(id string, data []byte, domain string) (route, error) {
	if err := ValidateWorkloadID(id); err != nil {
		return route{}, err
	}
	var f zosFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return route{}, err
	}
	sec, passthrough := f.HTTP, false
	if f.TCP != nil {
		sec, passthrough = f.TCP, true
	}
	if sec == nil || (f.HTTP != nil && f.TCP != nil) {
		return route{}, fmt.Errorf("neither http nor tcp")
	}
	rt, ok := sec.Routers[id+"-route"]
	if !ok || len(sec.Routers) != 1 || len(sec.Services) != 1 || rt.Service != id {
		return route{}, fmt.Errorf("not router %q and service %q", id+"-route", id)
	}
	svc, ok := sec.Services[id]
	if !ok {
		return route{}, fmt.Errorf("no service %q", id)
	}
	prefix, suffix := "Host(`", "`)"
	if passthrough {
		prefix = "HostSNI(`"
	}
	fqdn, ok := unwrap(rt.Rule, prefix, suffix)
	if !ok {
		return route{}, fmt.Errorf("unexpected rule %q", rt.Rule)
	}
	norm, err := NormalizeFQDN(fqdn)
	if err != nil {
		// zos took a name as ^[a-zA-Z0-9-_]+$, as the gateway does.
		name, nameErr := normalizeDomain(KindName, fqdn)
		if nameErr != nil || domain == "" || !dnsname.IsUnder(name, domain) {
			return route{}, err
		}
		norm = name
	}
	r := route{id: id, fqdn: norm, passthrough: passthrough, kind: KindFQDN}
	switch {
	case passthrough:
		if rt.TLS == nil || rt.TLS.Passthrough != "true" {
			return route{}, fmt.Errorf("a tcp router without passthrough")
		}
		if domain != "" && dnsname.IsUnder(norm, domain) && norm != domain {
			r.kind = KindName
		}
	case rt.TLS != nil && rt.TLS.CertResolver == zosResolverDNS:
		r.kind = KindName
	case rt.TLS != nil && rt.TLS.CertResolver == zosResolverHTTP:
	default:
		return route{}, fmt.Errorf("an http router without zos's resolvers")
	}
	if r.kind == KindName {
		label, _, ok := strings.Cut(norm, ".")
		if !ok {
			return route{}, fmt.Errorf("name proxy %q has no domain", norm)
		}
		r.name = label
	}
	for _, s := range svc.LoadBalancer.Servers {
		v := s.URL
		if passthrough {
			v = s.Address
		}
		b, err := ParseBackend("server", v, passthrough)
		if err != nil {
			return route{}, err
		}
		r.backends = append(r.backends, b)
	}
	if len(r.backends) == 0 || len(r.backends) > MaxBackends {
		return route{}, fmt.Errorf("%d backends", len(r.backends))
	}
	return r, nil
}

// renderLegacy builds the configuration the one-file-per-route layout gave a
// name proxy that terminates TLS: its router carried the DNS-01 resolver
// and the wildcard of domain. Such a route is still read back at start, and
// written again in the current shape.
func (r route) renderLegacy(domain string) *traefik.Configuration {
	cfg := r.render()
	cfg.HTTP.Routers[r.id].TLS = &traefik.RouterTLSConfig{
		CertResolver: traefik.ResolverDNS,
		Domains:      []traefik.Domain{{Main: domain, SANs: []string{"*." + domain}}},
	}
	return cfg
}

// renderLegacyFQDN builds the configuration earlier versions gave an FQDN
// proxy that terminates TLS: its router carried Traefik's HTTP-01 resolver.
// Such a route is still read back at start, and written again in the
// current shape.
func (r route) renderLegacyFQDN() *traefik.Configuration {
	cfg := r.render()
	cfg.HTTP.Routers[r.id].TLS.CertResolver = traefik.ResolverHTTP
	return cfg
}

// parseRoute reads back a configuration the gateway wrote for workload id.
// It accepts only what render produces: the route it finds is rendered again
// and must give the same configuration, so a file edited by hand or written
// by something else is never taken for a route.
func parseRoute(id string, cfg *traefik.Configuration, domain string) (route, error) {
	if err := ValidateWorkloadID(id); err != nil {
		return route{}, err
	}
	r := route{id: id}
	var legacy func(route) *traefik.Configuration
	switch {
	case cfg.TCP != nil:
		rt, ok := cfg.TCP.Routers[id]
		svc, ok2 := cfg.TCP.Services[id]
		if !ok || !ok2 || rt == nil || svc == nil || svc.LoadBalancer == nil {
			return route{}, fmt.Errorf("no TCP router and service named %q", id)
		}
		fqdn, ok := unwrap(rt.Rule, "HostSNI(`", "`)")
		if !ok {
			return route{}, fmt.Errorf("unexpected TCP rule %q", rt.Rule)
		}
		r.passthrough = true
		r.fqdn = fqdn
		for _, s := range svc.LoadBalancer.Servers {
			b, err := ParseBackend("server", s.Address, true)
			if err != nil {
				return route{}, err
			}
			r.backends = append(r.backends, b)
		}
	case cfg.HTTP != nil:
		rt, ok := cfg.HTTP.Routers[id]
		svc, ok2 := cfg.HTTP.Services[id]
		if !ok || !ok2 || rt == nil || svc == nil || svc.LoadBalancer == nil {
			return route{}, fmt.Errorf("no HTTP router and service named %q", id)
		}
		fqdn, ok := unwrap(rt.Rule, "Host(`", "`)")
		if !ok {
			return route{}, fmt.Errorf("unexpected HTTP rule %q", rt.Rule)
		}
		r.fqdn = fqdn
		for _, s := range svc.LoadBalancer.Servers {
			b, err := ParseBackend("server", s.URL, false)
			if err != nil {
				return route{}, err
			}
			r.backends = append(r.backends, b)
		}
		if rt.TLS != nil {
			fqdnTLS := len(rt.TLS.Domains) > 0
			switch {
			case rt.TLS.CertResolver == "" && !fqdnTLS:
				r.kind = KindName
			case rt.TLS.CertResolver == "":
				r.kind = KindFQDN
			case rt.TLS.CertResolver == traefik.ResolverDNS:
				r.kind = KindName
				legacy = func(r route) *traefik.Configuration {
					// The wildcard certificate names the domain the
					// route was written for.
					return r.renderLegacy(strings.SplitN(r.fqdn, ".", 2)[1])
				}
			case rt.TLS.CertResolver == traefik.ResolverHTTP:
				r.kind = KindFQDN
				legacy = route.renderLegacyFQDN
			}
		}
	default:
		return route{}, fmt.Errorf("no routers")
	}
	norm, err := NormalizeFQDN(r.fqdn)
	if err != nil || norm != r.fqdn {
		return route{}, fmt.Errorf("unexpected domain %q", r.fqdn)
	}
	if r.kind == "" {
		r.kind = KindFQDN
		if domain != "" && dnsname.IsUnder(r.fqdn, domain) {
			r.kind = KindName
		}
	}
	if r.kind == KindName {
		r.name, _, _ = strings.Cut(r.fqdn, ".")
	}
	if len(r.backends) == 0 || len(r.backends) > MaxBackends {
		return route{}, fmt.Errorf("%d backends", len(r.backends))
	}
	want := r.render()
	if legacy != nil {
		want = legacy(r)
	}
	if !reflect.DeepEqual(want, cfg) {
		return route{}, fmt.Errorf("configuration differs from what the gateway writes for this route")
	}
	return r, nil
}

// unwrap returns s without prefix and suffix, if it has both and nothing in
// between could end the quoted value early.
func unwrap(s, prefix, suffix string) (string, bool) {
	if !strings.HasPrefix(s, prefix) || !strings.HasSuffix(s, suffix) || len(s) < len(prefix)+len(suffix) {
		return "", false
	}
	v := s[len(prefix) : len(s)-len(suffix)]
	if strings.ContainsAny(v, "`()&|!, ") {
		return "", false
	}
	return v, true
}
