package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/threefoldtech/gateway/pkg/traefik"
	"github.com/threefoldtech/gateway/test/harness"
)

// Floor settings.
const (
	// floorExt ends the name of every file the floors write: Traefik's file
	// provider loads .yaml, .yml and .toml.
	floorExt = ".yaml"
	// oneFileName is the one file of the one-file floor.
	oneFileName = "routes" + floorExt
	// pingEntryPoint is the entry point of /ping when the static
	// configuration names none.
	pingEntryPoint = "traefik"
)

// floorTraefik is a Traefik of the bench's own: the gateway's binary, the
// static configuration the gateway generated with the file provider pointed
// at a folder of the bench and every entry point on another loopback port,
// and the environment of the gateway's Traefik. The bench writes its routes
// by hand.
type floorTraefik struct {
	name string
	// dir is the folder Traefik watches, staging a folder beside it where
	// files are made before they are renamed in.
	dir, staging string
	config       string
	// websecure and ping are the addresses of the websecure entry point and
	// of the one that serves /ping, metrics and the API.
	websecure, ping string
	bin             string
	env             []string
	work            string
	logf            func(string, ...any)
	// tb stops the running Traefik; proc is that Traefik.
	tb   *benchTB
	proc *harness.Proc
}

// newFloorTraefik prepares the floor name in work from the gateway's static
// configuration static and its Traefik's environment env. It starts nothing.
func newFloorTraefik(work, name, bin string, static []byte, env []string, logf func(string, ...any)) (*floorTraefik, error) {
	base := filepath.Join(work, "floor-"+name)
	f := &floorTraefik{name: name, dir: filepath.Join(base, "routes"), staging: filepath.Join(base, "staging"),
		config: filepath.Join(base, "traefik.yaml"), bin: bin, env: env, work: work, logf: logf}
	for _, d := range []string{f.dir, f.staging, filepath.Join(base, "state")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	data, err := f.static(static, filepath.Join(base, "state"))
	if err != nil {
		return nil, fmt.Errorf("floor %s: %w", name, err)
	}
	if err := os.WriteFile(f.config, data, 0o644); err != nil {
		return nil, fmt.Errorf("writing %s: %w", f.config, err)
	}
	return f, nil
}

// static returns the gateway's static configuration with the file provider
// on f.dir, every entry point on a free loopback port and the ACME storage in
// state. It edits the document as data, so that whatever else the gateway
// writes there is kept as it is.
func (f *floorTraefik) static(static []byte, state string) ([]byte, error) {
	var cfg map[string]any
	if err := yaml.Unmarshal(static, &cfg); err != nil {
		return nil, fmt.Errorf("reading the gateway's static configuration: %w", err)
	}
	file, ok := dig(cfg, "providers", "file")
	if !ok {
		return nil, errors.New("the gateway's static configuration has no providers.file")
	}
	file["directory"] = f.dir
	eps, ok := dig(cfg, "entryPoints")
	if !ok {
		return nil, errors.New("the gateway's static configuration has no entryPoints")
	}
	addrs := map[string]string{}
	err := catch(func() {
		for name := range eps {
			ep, ok := eps[name].(map[string]any)
			if !ok {
				panic(fatal{fmt.Sprintf("entry point %q is not a map", name)})
			}
			addrs[name] = harness.Addr(newTB("floor", f.work, f.logf))
			ep["address"] = addrs[name]
		}
	})
	if err != nil {
		return nil, err
	}
	pingEP := pingEntryPoint
	if p, ok := dig(cfg, "ping"); ok {
		if s, ok := p["entryPoint"].(string); ok && s != "" {
			pingEP = s
		}
	}
	f.websecure, f.ping = addrs[traefik.EntryPointWebSecure], addrs[pingEP]
	if f.websecure == "" || f.ping == "" {
		return nil, fmt.Errorf("no entry point %q or %q in the gateway's static configuration", traefik.EntryPointWebSecure, pingEP)
	}
	if res, ok := dig(cfg, "certificatesResolvers"); ok {
		for name := range res {
			if acme, ok := dig(res, name, "acme"); ok {
				acme["storage"] = filepath.Join(state, "acme-"+name+".json")
			}
		}
	}
	return yaml.Marshal(cfg)
}

// dig returns the map at path in m.
func dig(m map[string]any, path ...string) (map[string]any, bool) {
	for _, k := range path {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil, false
		}
		m = next
	}
	return m, true
}

// start runs Traefik and waits for its /ping. stop ends it.
func (f *floorTraefik) start(ctx context.Context) error {
	f.stop()
	f.tb = newTB("traefik-"+f.name, f.work, f.logf)
	err := catch(func() {
		// The environment of the gateway's Traefik, after the bench's.
		f.proc = harness.Start(f.tb, f.bin, f.env, "--configFile="+f.config)
	})
	if err != nil {
		return err
	}
	return harness.PollEvery(ctx, readyTimeout, 20*time.Millisecond, func() error {
		select {
		case <-f.proc.Done():
			return fmt.Errorf("floor %s: traefik exited: %s", f.name, f.proc.Output())
		default:
		}
		resp, err := apiClient.Get("http://" + f.ping + "/ping")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("floor %s: /ping: %s", f.name, resp.Status)
		}
		return nil
	})
}

func (f *floorTraefik) pid() int {
	if f.proc == nil {
		return 0
	}
	return f.proc.PID()
}

// stop ends the floor's Traefik, by PID. It is safe to call more than once.
func (f *floorTraefik) stop() {
	if f != nil {
		f.tb.close()
	}
}

// put renames data into the watched folder as name: made in the staging
// folder, so that Traefik sees one event; no fsync, as no Traefik event
// waits on one.
func (f *floorTraefik) put(name string, data []byte) error {
	tmp := filepath.Join(f.staging, name+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(f.dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("renaming %s into %s: %w", tmp, f.dir, err)
	}
	return nil
}

func (f *floorTraefik) remove(name string) error {
	if err := os.Remove(filepath.Join(f.dir, name)); err != nil {
		return fmt.Errorf("removing %s: %w", name, err)
	}
	return nil
}

// perFileRoute renders a name route the way the gateway wrote it when each
// route had a file of its own (pkg/gateway/route.go render, before the
// routes were grouped): an HTTP router on websecure with the certificate
// resolver of the gateway domain's wildcard, and its service of one backend.
func perFileRoute(id, host, backend string) ([]byte, error) {
	return traefik.Marshal(&traefik.Configuration{HTTP: &traefik.HTTPConfiguration{
		Routers: map[string]*traefik.Router{id: {
			EntryPoints: []string{traefik.EntryPointWebSecure},
			Rule:        "Host(`" + host + "`)",
			Service:     id,
			TLS: &traefik.RouterTLSConfig{CertResolver: traefik.ResolverDNS,
				Domains: []traefik.Domain{{Main: benchDomain, SANs: []string{"*." + benchDomain}}}},
		}},
		Services: map[string]*traefik.Service{id: {
			LoadBalancer: &traefik.ServersLoadBalancer{Servers: []traefik.Server{{URL: backend}}},
		}},
	}})
}

// routeShape is a name route as the running gateway renders it, captured
// from its routes folder whatever the files are called, and the elements of
// that folder that belong to no route (the gateway's own, such as a router
// that carries the wildcard's certificate resolver).
type routeShape struct {
	id, host   string
	router     *traefik.Router
	service    *traefik.Service
	middleware *traefik.Middleware
	fixed      *traefik.Configuration
}

// captureShape reads every file Traefik would load from dir and finds the
// HTTP router and service of route id at host; elements named after none of
// routes (the IDs the gateway holds) are kept as the fixed part.
func captureShape(dir, id, host string, routes []string) (*routeShape, error) {
	sh := &routeShape{id: id, host: host, fixed: &traefik.Configuration{}}
	known := map[string]bool{}
	for _, r := range routes {
		known[r] = true
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		ext := filepath.Ext(path)
		if d.IsDir() || (ext != ".yaml" && ext != ".yml") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		cfg, err := traefik.Unmarshal(data)
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		if cfg.TCP != nil {
			for name, r := range cfg.TCP.Routers {
				if !known[name] {
					putTCPRouter(sh.fixed, name, r)
				}
			}
			for name, s := range cfg.TCP.Services {
				if !known[name] {
					putTCPService(sh.fixed, name, s)
				}
			}
		}
		if h := cfg.HTTP; h != nil {
			for name, r := range h.Routers {
				switch {
				case name == id:
					sh.router = r
				case !known[name]:
					httpOf(sh.fixed).Routers = putMap(httpOf(sh.fixed).Routers, name, r)
				}
			}
			for name, s := range h.Services {
				switch {
				case name == id:
					sh.service = s
				case !known[name]:
					httpOf(sh.fixed).Services = putMap(httpOf(sh.fixed).Services, name, s)
				}
			}
			for name, m := range h.Middlewares {
				switch {
				case name == id:
					sh.middleware = m
				case !known[name]:
					httpOf(sh.fixed).Middlewares = putMap(httpOf(sh.fixed).Middlewares, name, m)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the gateway's routes folder %s: %w", dir, err)
	}
	if sh.router == nil || sh.service == nil {
		return nil, fmt.Errorf("no HTTP router and service named %q in the gateway's routes folder %s", id, dir)
	}
	if !strings.Contains(sh.router.Rule, host) {
		return nil, fmt.Errorf("the rule %q of route %s does not name %s", sh.router.Rule, id, host)
	}
	return sh, nil
}

func httpOf(c *traefik.Configuration) *traefik.HTTPConfiguration {
	if c.HTTP == nil {
		c.HTTP = &traefik.HTTPConfiguration{}
	}
	return c.HTTP
}

func putMap[V any](m map[string]V, k string, v V) map[string]V {
	if m == nil {
		m = map[string]V{}
	}
	m[k] = v
	return m
}

func putTCPRouter(c *traefik.Configuration, name string, r *traefik.TCPRouter) {
	if c.TCP == nil {
		c.TCP = &traefik.TCPConfiguration{}
	}
	c.TCP.Routers = putMap(c.TCP.Routers, name, r)
}

func putTCPService(c *traefik.Configuration, name string, s *traefik.TCPService) {
	if c.TCP == nil {
		c.TCP = &traefik.TCPConfiguration{}
	}
	c.TCP.Services = putMap(c.TCP.Services, name, s)
}

// add puts route id at host, in the captured shape, into cfg.
func (sh *routeShape) add(cfg *traefik.Configuration, id, host string) {
	r := *sh.router
	r.Rule = strings.ReplaceAll(r.Rule, sh.host, host)
	r.Service = id
	r.Middlewares = slices.Clone(r.Middlewares)
	for i, m := range r.Middlewares {
		if m == sh.id {
			r.Middlewares[i] = id
		}
	}
	h := httpOf(cfg)
	h.Routers = putMap(h.Routers, id, &r)
	h.Services = putMap(h.Services, id, sh.service)
	if sh.middleware != nil {
		h.Middlewares = putMap(h.Middlewares, id, sh.middleware)
	}
}

// oneFile renders the fixed part and the routes pop-0 to pop-(n-1), plus
// extra (an ID, "" for none), in one file.
func (sh *routeShape) oneFile(n int, extra string) ([]byte, error) {
	cfg := &traefik.Configuration{}
	if h := sh.fixed.HTTP; h != nil {
		c := httpOf(cfg)
		for k, v := range h.Routers {
			c.Routers = putMap(c.Routers, k, v)
		}
		for k, v := range h.Services {
			c.Services = putMap(c.Services, k, v)
		}
		for k, v := range h.Middlewares {
			c.Middlewares = putMap(c.Middlewares, k, v)
		}
	}
	if t := sh.fixed.TCP; t != nil {
		for k, v := range t.Routers {
			putTCPRouter(cfg, k, v)
		}
		for k, v := range t.Services {
			putTCPService(cfg, k, v)
		}
	}
	for i := range n {
		id, prefix := popName(i)
		sh.add(cfg, id, prefix+"."+benchDomain)
	}
	if extra != "" {
		sh.add(cfg, extra, extra+"."+benchDomain)
	}
	return traefik.Marshal(cfg)
}

// readStatic returns the static configuration the gateway generated under
// root and the environment of its running Traefik pid.
func readStatic(root string, pid int) (static []byte, env []string, err error) {
	path := filepath.Join(root, traefik.StateDirName, traefik.StaticFileName)
	static, err = os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the gateway's static configuration: %w", err)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return nil, nil, fmt.Errorf("reading the environment of the gateway's traefik: %w", err)
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if kv != "" {
			env = append(env, kv)
		}
	}
	return static, env, nil
}

// watchedDir returns the folder the file provider of static watches.
func watchedDir(static []byte) (string, error) {
	var cfg map[string]any
	if err := yaml.Unmarshal(static, &cfg); err != nil {
		return "", fmt.Errorf("reading the gateway's static configuration: %w", err)
	}
	file, ok := dig(cfg, "providers", "file")
	if !ok {
		return "", errors.New("the gateway's static configuration has no providers.file")
	}
	dir, ok := file["directory"].(string)
	if !ok || dir == "" {
		return "", errors.New("the gateway's static configuration has no providers.file.directory")
	}
	return dir, nil
}
