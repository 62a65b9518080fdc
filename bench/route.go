package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/threefoldtech/gateway/pkg/traefik"
)

// Time-to-route settings.
const (
	// pollInterval is how often a sample asks Traefik for the new name.
	pollInterval = 5 * time.Millisecond
	// probeTimeout bounds one probe: dial, handshake, request and answer.
	probeTimeout = time.Second
	// routeTimeout bounds the wait for a route to be served or gone.
	routeTimeout = 2 * time.Minute
	// quietWindow and quietTicks define an idle Traefik: at most quietTicks
	// clock ticks (10 ms each) of CPU over quietWindow.
	quietWindow = 200 * time.Millisecond
	quietTicks  = 1
	// settleMargin is added to the throttle before the next sample, so that
	// Traefik's throttle window of the previous change has surely closed.
	settleMargin = 50 * time.Millisecond
	// settleTimeout bounds the wait for an idle Traefik.
	settleTimeout = 60 * time.Second
	// populateCallers is how many zbus calls pre-populate the folder at once.
	populateCallers = 8
	// loadTimeout bounds the wait for a fresh Traefik to serve the routes
	// already present.
	loadTimeout = 5 * time.Minute
)

// variant is one way of publishing a route.
type variant string

const (
	// ours is SetNamedProxy through zbus, the gateway at the bench's
	// throttle.
	ours variant = "ours"
	// floor is the route file written by hand: a temporary file outside the
	// watched folder renamed into it, one inotify event, no fsync.
	floor variant = "floor"
	// writer (diagnostic) is the gateway's own writer, pkg/traefik's
	// Dir.Write, called in the bench: ours without zbus.
	writer variant = "writer"
	// writerOutside (diagnostic) is the same writer's steps (write, fsync,
	// rename, fsync the folder) with the temporary file outside the watched
	// folder: what ours would be with that change.
	writerOutside variant = "writer-outside"
	// floorDefCert (diagnostic) is floor against a Traefik given a default
	// certificate, so that it does not generate an RSA key on every reload.
	floorDefCert variant = "floor-defcert"
	// zos is ours with the gateway at Traefik's default throttle of 2s, as
	// the upstream zos gateway runs.
	zos variant = "zos"
)

// variants lists every variant in report order.
var variants = []variant{ours, floor, writer, writerOutside, floorDefCert, zos}

// sample is one route published, served, deleted and gone.
type sample struct {
	// route is from the start of the call (or write) to the first 200 from
	// the backend through Traefik.
	route time.Duration
	// call is the zbus call or the file write alone.
	call time.Duration
	// del is from the start of the delete to the first 404.
	del time.Duration
	// polls is how many probes route took.
	polls int
	// traefikCPU is the CPU Traefik used from the publish to the end of the
	// wait for an idle Traefik after the delete: the cost of two changes,
	// the probes' handshakes included.
	traefikCPU time.Duration
}

// clockTick is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on
// Linux).
const clockTick = 10 * time.Millisecond

// phase is one start of the gateway (and Traefik) at one size.
type phase struct {
	name     string
	throttle time.Duration
	// defCert gives Traefik a default certificate.
	defCert bool
	// rereads is how many events that change nothing are measured.
	rereads int
	plan    map[variant]int
}

// Phase names.
const (
	phaseMain    = "main"
	phaseDefCert = "defcert"
	phaseZos     = "zos"
)

// phaseResult is what one phase measured besides samples.
type phaseResult struct {
	// coldLoad is from the gateway's start to Traefik serving a route that
	// was already in the folder.
	coldLoad time.Duration
	// gatewayRSS and traefikRSS are read after the samples.
	gatewayRSS, traefikRSS uint64
	// probes and resumed count the probes' TLS handshakes and those that
	// resumed a session.
	probes, resumed int64
	// reread is the CPU Traefik used per event that changed nothing.
	reread []time.Duration
}

// sizeResult is what one size of the folder gave.
type sizeResult struct {
	size    int
	samples map[variant][]sample
	phases  map[string]phaseResult
	// populated routes were added before this size, in populate.
	populated int
	populate  time.Duration
	// unsettled counts the samples that started before Traefik was idle
	// because the idle wait timed out.
	unsettled int
}

// routeOptions configure benchRoutes.
type routeOptions struct {
	sizes       []int
	samples     int
	diagSamples int
	throttle    time.Duration
	zosThrottle time.Duration
	skipZos     bool
	seed        uint64
	// defCert is the default certificate of the floor-defcert phase.
	defCert defaultCert
	verbose bool
}

// benchRoutes measures time-to-route at each size of the folder, in
// increasing order. For each size it pre-populates the folder through zbus
// with a gateway that runs no Traefik, then starts the gateway (and Traefik)
// three times on that folder: at the bench's throttle for the ours, floor and
// writer samples, interleaved in random order; the same with a default
// certificate for the floor-defcert samples; at the zos throttle for the zos
// samples.
func benchRoutes(ctx context.Context, s *stack, o routeOptions, logf func(string, ...any)) ([]sizeResult, error) {
	rng := rand.New(rand.NewPCG(o.seed, o.seed^0x9e3779b97f4a7c15))
	phases := []phase{{name: phaseMain, throttle: o.throttle, rereads: min(o.diagSamples, 5),
		plan: map[variant]int{ours: o.samples, floor: o.samples, writer: o.diagSamples, writerOutside: o.diagSamples}}}
	if o.diagSamples > 0 {
		phases = append(phases, phase{name: phaseDefCert, throttle: o.throttle, defCert: true, plan: map[variant]int{floorDefCert: o.diagSamples}})
	}
	if !o.skipZos {
		phases = append(phases, phase{name: phaseZos, throttle: o.zosThrottle, plan: map[variant]int{zos: o.samples}})
	}
	var results []sizeResult
	var tmpl *floorFile
	have := 0
	for _, size := range o.sizes {
		res := sizeResult{size: size, samples: map[variant][]sample{}, phases: map[string]phaseResult{}}
		if size > have {
			took, err := populate(ctx, s, have, size, logf)
			if err != nil {
				return results, err
			}
			res.populated, res.populate = size-have, took
			have = size
		}
		for _, ph := range phases {
			if ph.defCert {
				if err := o.defCert.install(s.proxyDir()); err != nil {
					return results, err
				}
			}
			pr, err := runPhase(ctx, s, &res, ph, &tmpl, rng, o.verbose, logf)
			if ph.defCert {
				if rerr := o.defCert.uninstall(s.proxyDir()); err == nil {
					err = rerr
				}
			}
			if err != nil {
				return results, err
			}
			res.phases[ph.name] = pr
		}
		results = append(results, res)
	}
	return results, nil
}

// runPhase starts the gateway for ph, takes its samples in random order
// into res, and stops the gateway. The first phase of the run captures the
// template of the hand-written files into *tmpl.
func runPhase(ctx context.Context, s *stack, res *sizeResult, ph phase, tmpl **floorFile, rng *rand.Rand, verbose bool, logf func(string, ...any)) (phaseResult, error) {
	var pr phaseResult
	m, cold, err := startMeasurer(ctx, s, res.size, ph.throttle, logf)
	if err != nil {
		return pr, err
	}
	defer s.stopGateway()
	pr.coldLoad = cold
	if *tmpl == nil {
		if *tmpl, err = captureTemplate(ctx, m); err != nil {
			return pr, err
		}
	}
	m.floor = *tmpl
	var plan []variant
	for _, v := range variants {
		for range ph.plan[v] {
			plan = append(plan, v)
		}
	}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	logf("size %d, %s phase, throttle %s: %d samples (%s)", res.size, ph.name, ph.throttle, len(plan), planString(ph.plan))
	for i, v := range plan {
		smp, settled, err := m.sample(ctx, v, fmt.Sprintf("s%d-%s-%d", res.size, v, i))
		if err != nil {
			return pr, fmt.Errorf("size %d, %s sample %d: %w", res.size, v, i, err)
		}
		if !settled {
			res.unsettled++
		}
		res.samples[v] = append(res.samples[v], smp)
		if verbose || (i+1)%10 == 0 || i+1 == len(plan) {
			logf("size %d: %d/%d, %s: route %s (call %s, %d probes), delete %s, traefik cpu %s", res.size, i+1, len(plan), v,
				smp.route.Round(time.Millisecond), smp.call.Round(100*time.Microsecond), smp.polls, smp.del.Round(time.Millisecond), smp.traefikCPU)
		}
	}
	if ph.rereads > 0 {
		if pr.reread, err = m.reread(ctx, ph.rereads); err != nil {
			return pr, err
		}
		logf("size %d: %d events that change nothing cost traefik %v of CPU", res.size, len(pr.reread), pr.reread)
	}
	n, err := s.list(ctx)
	if err != nil {
		return pr, err
	}
	if n != res.size {
		return pr, fmt.Errorf("size %d: the gateway holds %d routes after the samples", res.size, n)
	}
	pr.probes, pr.resumed = m.probe.probes.Load(), m.probe.resumed.Load()
	if v, err := rss(s.gw.proc.pid()); err == nil {
		pr.gatewayRSS = v
	}
	if v, err := rss(s.gw.traefik); err == nil {
		pr.traefikRSS = v
	}
	return pr, nil
}

func planString(plan map[variant]int) string {
	var parts []string
	for _, v := range variants {
		if plan[v] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", plan[v], v))
		}
	}
	return strings.Join(parts, ", ")
}

// populate adds the routes pop-<from> to pop-<to-1> through zbus, with a
// gateway that runs no Traefik: with Traefik watching, every file would make
// it re-read the whole folder, thousands of times.
func populate(ctx context.Context, s *stack, from, to int, logf func(string, ...any)) (time.Duration, error) {
	if err := s.startGateway(ctx, 100*time.Millisecond, false); err != nil {
		s.stopGateway()
		return 0, err
	}
	defer s.stopGateway()
	logf("pre-populating routes %d to %d through zbus (%d callers)", from, to-1, populateCallers)
	start := time.Now()
	var next atomic.Int64
	next.Store(int64(from))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, populateCallers)
	for range populateCallers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= to || ctx.Err() != nil {
					return
				}
				id, prefix := popName(i)
				if err := s.setNamed(ctx, id, prefix); err != nil {
					errs <- err
					cancel()
					return
				}
				if (i+1)%2000 == 0 {
					logf("pre-populated %d routes", i+1)
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return took, fmt.Errorf("pre-populating: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return took, err
	}
	n, err := s.list(ctx)
	if err != nil {
		return took, err
	}
	if n != to {
		return took, fmt.Errorf("pre-populating: the gateway holds %d routes, want %d", n, to)
	}
	logf("pre-populated %d routes in %s", to-from, took.Round(time.Millisecond))
	return took, nil
}

func popName(i int) (wlID, prefix string) {
	return fmt.Sprintf("pop-%05d", i), fmt.Sprintf("pop%05d", i)
}

// measurer takes time-to-route samples against one run of the gateway.
type measurer struct {
	s        *stack
	probe    *prober
	throttle time.Duration
	floor    *floorFile
	traefik  int
	// last is when the last change was seen applied.
	last time.Time
}

// startMeasurer starts the gateway at throttle, waits until Traefik serves
// the size routes already present (the time it took is returned) and is
// idle.
func startMeasurer(ctx context.Context, s *stack, size int, throttle time.Duration, logf func(string, ...any)) (*measurer, time.Duration, error) {
	start := time.Now()
	if err := s.startGateway(ctx, throttle, true); err != nil {
		s.stopGateway()
		return nil, 0, err
	}
	m := &measurer{s: s, probe: newProber(s.gw.websecure), throttle: throttle, traefik: s.gw.traefik}
	var cold time.Duration
	if size > 0 {
		// Traefik loads the folder as one configuration: the last route
		// served means all are.
		_, prefix := popName(size - 1)
		if _, _, err := m.probe.wait(ctx, prefix+"."+benchDomain, http.StatusOK, start, loadTimeout); err != nil {
			s.stopGateway()
			return nil, 0, fmt.Errorf("traefik serving the %d routes present: %w", size, err)
		}
		cold = time.Since(start)
		_, first := popName(0)
		if st, ok, err := m.probe.get(ctx, first+"."+benchDomain); err != nil || st != http.StatusOK || !ok {
			s.stopGateway()
			return nil, 0, fmt.Errorf("route %s not served (status %d, %v)", first, st, err)
		}
	}
	if n, err := s.list(ctx); err != nil || n != size {
		s.stopGateway()
		return nil, 0, fmt.Errorf("the gateway holds %d routes, want %d (%v)", n, size, err)
	}
	m.last = time.Now()
	if !m.settle(ctx) {
		logf("traefik not idle %s after its start", settleTimeout)
	}
	logf("gateway and traefik (pid %d, throttle %s) up with %d routes; served after %s", m.traefik, throttle, size, cold.Round(time.Millisecond))
	return m, cold, nil
}

// sample publishes the route id in the way v says, waits until it is
// served, deletes it, waits until it is gone and until Traefik is idle.
// settled is false when that last wait timed out.
func (m *measurer) sample(ctx context.Context, v variant, id string) (smp sample, settled bool, err error) {
	host := id + "." + benchDomain
	st0, err := readStat(m.traefik)
	if err != nil {
		return smp, false, fmt.Errorf("traefik gone: %w", err)
	}
	start := time.Now()
	switch v {
	case ours, zos:
		err = m.s.setNamed(ctx, id, id)
	case floor, floorDefCert, writer, writerOutside:
		err = m.floor.write(id, host, v)
	default:
		err = fmt.Errorf("unknown variant %q", v)
	}
	smp.call = time.Since(start)
	if err != nil {
		return smp, false, err
	}
	if smp.route, smp.polls, err = m.probe.wait(ctx, host, http.StatusOK, start, routeTimeout); err != nil {
		return smp, false, err
	}

	start = time.Now()
	switch v {
	case ours, zos:
		err = m.s.deleteNamed(ctx, id)
	default:
		err = m.floor.remove(id)
	}
	if err != nil {
		return smp, false, err
	}
	if smp.del, _, err = m.probe.wait(ctx, host, http.StatusNotFound, start, routeTimeout); err != nil {
		return smp, false, fmt.Errorf("waiting for the delete: %w", err)
	}
	m.last = time.Now()
	settled = m.settle(ctx)
	st1, err := readStat(m.traefik)
	if err != nil {
		return smp, false, fmt.Errorf("traefik gone: %w", err)
	}
	smp.traefikCPU = time.Duration(st1.cpu-st0.cpu) * clockTick
	return smp, settled, nil
}

// reread renames a file Traefik does not load into the watched folder and
// removes it again, n times, waiting for an idle Traefik after each event,
// and returns the CPU Traefik used for each event: a re-read of the whole
// folder that changes nothing, which every extra event of a write costs.
func (m *measurer) reread(ctx context.Context, n int) ([]time.Duration, error) {
	tmp := filepath.Join(m.floor.tmpDir, "noise.txt")
	final := filepath.Join(m.s.proxyDir(), "bench-noise.txt")
	var cpu []time.Duration
	for range n {
		for _, step := range []func() error{
			func() error {
				if err := os.WriteFile(tmp, []byte("not a configuration\n"), 0o644); err != nil {
					return err
				}
				return os.Rename(tmp, final)
			},
			func() error { return os.Remove(final) },
		} {
			st0, err := readStat(m.traefik)
			if err != nil {
				return cpu, fmt.Errorf("traefik gone: %w", err)
			}
			if err := step(); err != nil {
				return cpu, fmt.Errorf("touching the watched folder: %w", err)
			}
			m.last = time.Now()
			m.settle(ctx)
			st1, err := readStat(m.traefik)
			if err != nil {
				return cpu, fmt.Errorf("traefik gone: %w", err)
			}
			cpu = append(cpu, time.Duration(st1.cpu-st0.cpu)*clockTick)
		}
		if err := ctx.Err(); err != nil {
			return cpu, err
		}
	}
	return cpu, nil
}

// settle waits until Traefik's throttle window of the last change has closed
// and Traefik has used no more than quietTicks of CPU over quietWindow: the
// events of the last change are all handled, so the next sample starts from
// an idle Traefik. It returns false if that took more than settleTimeout.
func (m *measurer) settle(ctx context.Context) bool {
	type point struct {
		at  time.Time
		cpu uint64
	}
	minEnd := m.last.Add(m.throttle + settleMargin)
	deadline := time.Now().Add(settleTimeout)
	var points []point
	for time.Now().Before(deadline) && ctx.Err() == nil {
		st, err := readStat(m.traefik)
		if err != nil {
			return false
		}
		now := time.Now()
		points = append(points, point{now, st.cpu})
		// Keep the newest point at least quietWindow old, and those after.
		for len(points) > 1 && now.Sub(points[1].at) >= quietWindow {
			points = points[1:]
		}
		if now.After(minEnd) && now.Sub(points[0].at) >= quietWindow && st.cpu-points[0].cpu <= quietTicks {
			return true
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

// captureTemplate publishes a route through the gateway, checks that it is
// served, and keeps its file as the template of the hand-written routes.
func captureTemplate(ctx context.Context, m *measurer) (*floorFile, error) {
	const id = "bench-template"
	host := id + "." + benchDomain
	start := time.Now()
	if err := m.s.setNamed(ctx, id, id); err != nil {
		return nil, err
	}
	if _, _, err := m.probe.wait(ctx, host, http.StatusOK, start, routeTimeout); err != nil {
		return nil, fmt.Errorf("first route through the gateway: %w", err)
	}
	data, err := os.ReadFile(filepath.Join(m.s.proxyDir(), id+traefik.FileExt))
	if err != nil {
		return nil, fmt.Errorf("reading the route file the gateway wrote: %w", err)
	}
	f, err := newFloorFile(m.s.proxyDir(), filepath.Join(m.s.root, "bench-tmp"), id, host, data)
	if err != nil {
		return nil, err
	}
	start = time.Now()
	if err := m.s.deleteNamed(ctx, id); err != nil {
		return nil, err
	}
	if _, _, err := m.probe.wait(ctx, host, http.StatusNotFound, start, routeTimeout); err != nil {
		return nil, fmt.Errorf("deleting the first route: %w", err)
	}
	m.last = time.Now()
	m.settle(ctx)
	return f, nil
}

// floorFile writes route files by hand from a file the gateway wrote, with
// the names changed.
type floorFile struct {
	proxyDir, tmpDir string
	dir              *traefik.Dir
	tmplID, tmplHost string
	tmpl             *traefik.Configuration
}

// newFloorFile reads the gateway's file data of route id at host and checks
// that rendering it back under its own names gives the same bytes.
func newFloorFile(proxyDir, tmpDir, id, host string, data []byte) (*floorFile, error) {
	cfg, err := traefik.Unmarshal(data)
	if err != nil {
		return nil, fmt.Errorf("reading the template route: %w", err)
	}
	if cfg.TCP != nil || cfg.HTTP == nil || len(cfg.HTTP.Routers) != 1 || len(cfg.HTTP.Services) != 1 ||
		cfg.HTTP.Routers[id] == nil || cfg.HTTP.Services[id] == nil {
		return nil, fmt.Errorf("template route: want one HTTP router and service named %q, got:\n%s", id, data)
	}
	if err := os.MkdirAll(tmpDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", tmpDir, err)
	}
	dir, err := traefik.OpenDir(proxyDir)
	if err != nil {
		return nil, err
	}
	f := &floorFile{proxyDir: proxyDir, tmpDir: tmpDir, dir: dir, tmplID: id, tmplHost: host, tmpl: cfg}
	again, err := f.render(id, host)
	if err != nil {
		return nil, err
	}
	if string(again) != string(data) {
		return nil, fmt.Errorf("template route: rendered back as\n%s\nnot as the gateway wrote it:\n%s", again, data)
	}
	return f, nil
}

// render returns the template with router and service named id and the
// rule's host replaced by host.
func (f *floorFile) render(id, host string) ([]byte, error) {
	r := *f.tmpl.HTTP.Routers[f.tmplID]
	if !strings.Contains(r.Rule, f.tmplHost) {
		return nil, fmt.Errorf("template rule %q does not name %s", r.Rule, f.tmplHost)
	}
	r.Rule = strings.ReplaceAll(r.Rule, f.tmplHost, host)
	r.Service = id
	return traefik.Marshal(&traefik.Configuration{HTTP: &traefik.HTTPConfiguration{
		Routers:  map[string]*traefik.Router{id: &r},
		Services: map[string]*traefik.Service{id: f.tmpl.HTTP.Services[f.tmplID]},
	}})
}

// write puts the file of id in the watched folder the way v says: floor
// renames a temporary file from a folder Traefik does not watch, without
// fsync; writer calls the gateway's writer; writerOutside does the writer's
// steps with the temporary file outside the watched folder.
func (f *floorFile) write(id, host string, v variant) error {
	data, err := f.render(id, host)
	if err != nil {
		return err
	}
	final := filepath.Join(f.proxyDir, id+traefik.FileExt)
	tmp := filepath.Join(f.tmpDir, id+".tmp")
	switch v {
	case writer:
		return f.dir.Write(id, data)
	case floor, floorDefCert:
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", tmp, err)
		}
	case writerOutside:
		t, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("writing %s: %w", tmp, err)
		}
		_, err = t.Write(data)
		if err == nil {
			err = t.Sync()
		}
		if err = errors.Join(err, t.Close()); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("writing %s: %w", tmp, err)
		}
	default:
		return fmt.Errorf("no file writer for variant %q", v)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("renaming %s into place: %w", tmp, err)
	}
	if v == writerOutside {
		return syncDir(f.proxyDir)
	}
	return nil
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	return nil
}

func (f *floorFile) remove(id string) error {
	if err := os.Remove(filepath.Join(f.proxyDir, id+traefik.FileExt)); err != nil {
		return fmt.Errorf("removing route %s: %w", id, err)
	}
	return nil
}

// prober asks Traefik's websecure entry point for a name, over a new TCP
// connection and TLS session each time. Sessions are resumed when Traefik
// accepts the ticket: the probes then cost Traefik no RSA signature, and
// take less of the CPU the reload being measured needs.
type prober struct {
	addr  string
	cache tls.ClientSessionCache
	// probes and resumed count the handshakes and those that resumed a
	// session.
	probes, resumed atomic.Int64
}

func newProber(addr string) *prober {
	return &prober{addr: addr, cache: tls.NewLRUClientSessionCache(64)}
}

// get sends GET / with SNI and Host host over a new TLS connection and
// returns the status and whether the bench backend answered. The
// certificate is not verified: without a CA Traefik serves its default one.
func (p *prober) get(ctx context.Context, host string) (status int, backend bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	d := &tls.Dialer{Config: &tls.Config{ServerName: host, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}, ClientSessionCache: p.cache}}
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return 0, false, err
	}
	defer c.Close()
	p.probes.Add(1)
	if c.(*tls.Conn).ConnectionState().DidResume {
		p.resumed.Add(1)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host); err != nil {
		return 0, false, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, false, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get(backendHeader) != "", nil
}

// wait probes host every pollInterval until it answers want (a 200 only
// counts from the bench backend) and returns the time from start to that
// answer and the number of probes.
func (p *prober) wait(ctx context.Context, host string, want int, start time.Time, timeout time.Duration) (time.Duration, int, error) {
	deadline := start.Add(timeout)
	var last string
	for polls := 1; ; polls++ {
		t := time.Now()
		st, backend, err := p.get(ctx, host)
		switch {
		case err == nil && st == want && (want != http.StatusOK || backend):
			return time.Since(start), polls, nil
		case err != nil:
			last = err.Error()
		default:
			last = fmt.Sprintf("status %d (from the backend: %t)", st, backend)
		}
		if time.Now().After(deadline) {
			return 0, polls, fmt.Errorf("%s did not answer %d within %s; last: %s", host, want, timeout, last)
		}
		select {
		case <-ctx.Done():
			return 0, polls, ctx.Err()
		case <-time.After(time.Until(t.Add(pollInterval))):
		}
	}
}

// sortedSizes returns the sizes in increasing order without duplicates.
func sortedSizes(sizes []int) []int {
	s := slices.Clone(sizes)
	slices.Sort(s)
	return slices.Compact(s)
}
