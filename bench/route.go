package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"github.com/threefoldtech/gateway/test/harness"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
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
	// populateCallers is how many zbus calls pre-populate the gateway at
	// once, and how many callers the boot storm and the bursts have.
	populateCallers = 8
	// loadTimeout bounds the wait for a fresh Traefik to serve the routes
	// already present.
	loadTimeout = 5 * time.Minute
	// templateID names the route whose rendering the one-file floor copies.
	templateID = "bench-template"
)

// variant is one way of publishing a route.
type variant string

const (
	// ours is SetNamedProxy through zbus, to the gateway and its Traefik.
	ours variant = "ours"
	// perFile is the per-file floor: a Traefik of the bench's own holding
	// every route in a file of its own, the shape the gateway wrote before
	// its routes were grouped; a route is one file renamed in.
	perFile variant = "per-file floor"
	// oneFile is the one-file floor: a Traefik of the bench's own holding
	// every route, in the gateway's current rendering, in one file; a route
	// is that file rewritten and renamed in.
	oneFile variant = "one-file floor"
	// perFileDefCert (diagnostic) is the per-file floor with a default
	// certificate, so that Traefik does not generate an RSA key on every
	// reload.
	perFileDefCert variant = "per-file floor, default certificate"
)

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

// sizeResult is what one number of routes present gave.
type sizeResult struct {
	size    int
	samples map[variant][]sample
	// populated routes were added before this size, in populate.
	populated int
	populate  time.Duration
	// unsettled counts the samples that started before Traefik was idle
	// because the idle wait timed out.
	unsettled int
	// cold is, per variant, from the start of its Traefik (for ours, of
	// the gateway, which starts Traefik) to serving the routes present.
	cold map[variant]time.Duration
	// starts are restarts of the gateway alone with the routes on disk,
	// from the start of the process to the answer of its first zbus List;
	// adopted counts those after which the same Traefik served.
	starts  []time.Duration
	adopted int
	// list and metrics are the latencies of List and Metrics through zbus.
	list, metrics []time.Duration
	// zbus is the cost of a Set call against its floor at this size.
	zbus *zbusResult
	// rss is the resident set of the gateway and of each Traefik after the
	// samples, by name.
	rss map[string]uint64
	// probes and resumed count the probes' TLS handshakes and those that
	// resumed a session.
	probes, resumed int64
	// reloads is how far ours' traefik_config_reloads_total moved over its
	// samples (-1: not read).
	reloads  float64
	storm    *stormResult
	burst    *burstResult
	handover *handoverResult
	profile  *profileResult
}

// RSS names.
const (
	rssGateway = "gateway"
	rssOurs    = "traefik (ours)"
	rssPerFile = "traefik (per-file floor)"
	rssOneFile = "traefik (one-file floor)"
)

// routeOptions configure benchRoutes.
type routeOptions struct {
	sizes        []int
	samples      int
	diagSamples  int
	startSamples int
	apiCalls     int
	zbusRounds   int
	stormCalls   int
	profileSecs  int
	burstRoutes  int
	burstRounds  int
	burstSizes   []int
	throttle     time.Duration
	seed         uint64
	// defCert is the default certificate of the diagnostic variant.
	defCert defaultCert
	verbose bool
	// handover hands Traefik over under load at each size with routes.
	handover bool
}

// routeRun is the state benchRoutes keeps from one size to the next.
type routeRun struct {
	s     *stack
	o     routeOptions
	logf  func(string, ...any)
	rng   *rand.Rand
	zf    *zbusFloor
	shape *routeShape
	// pf and of are the per-file and one-file floors' Traefiks, made at
	// the first start of the gateway's.
	pf, of *floorTraefik
	have   int
}

// benchRoutes measures, at each number of routes present in increasing
// order: the zbus call against its floor (gateway without Traefik), then with
// the gateway and its Traefik the start of the gateway alone and its List and
// Metrics, then time to route for ours and the two floors, each on a Traefik
// of its own, samples interleaved in random order, one Traefik busy at a
// time; then the bursts and the boot storm where asked.
func benchRoutes(ctx context.Context, s *stack, o routeOptions, logf func(string, ...any)) ([]sizeResult, error) {
	r := &routeRun{s: s, o: o, logf: logf, rng: rand.New(rand.NewPCG(o.seed, o.seed^0x9e3779b97f4a7c15))}
	if o.zbusRounds > 0 {
		zf, err := newZbusFloor(ctx, s)
		if err != nil {
			return nil, err
		}
		defer zf.close()
		r.zf = zf
	}
	defer func() {
		r.pf.stop()
		r.of.stop()
	}()
	var results []sizeResult
	for _, size := range o.sizes {
		res, err := r.size(ctx, size)
		if err != nil {
			return results, fmt.Errorf("size %d: %w", size, err)
		}
		results = append(results, res)
	}
	return results, nil
}

// size measures everything at one number of routes present.
func (r *routeRun) size(ctx context.Context, size int) (sizeResult, error) {
	s, o, logf := r.s, r.o, r.logf
	res := sizeResult{size: size, samples: map[variant][]sample{}, cold: map[variant]time.Duration{}, rss: map[string]uint64{}, reloads: -1}

	// The gateway without Traefik: with Traefik watching, every route added
	// would make it re-read the folder, thousands of times.
	if err := s.startGateway(ctx, o.throttle, false); err != nil {
		s.stopGateway()
		return res, err
	}
	if size > r.have {
		took, err := populate(ctx, s, r.have, size, logf)
		if err != nil {
			s.stopGateway()
			return res, err
		}
		res.populated, res.populate = size-r.have, took
		r.have = size
	}
	if r.zf != nil {
		z, err := r.zf.measure(ctx, o.zbusRounds, logf)
		if err != nil {
			s.stopGateway()
			return res, err
		}
		res.zbus = &z
	}
	s.stopGateway()

	// Ours: the gateway and its Traefik.
	defer s.stopGateway()
	ot, err := r.startOurs(ctx, &res)
	if err != nil {
		return res, err
	}
	if r.shape == nil {
		if err := r.capture(ctx, ot); err != nil {
			return res, err
		}
	}
	if err := r.gatewayStarts(ctx, &res, ot); err != nil {
		return res, err
	}
	if size > 0 && o.handover {
		h, err := r.handover(ctx, ot, size)
		if err != nil {
			return res, fmt.Errorf("handover: %w", err)
		}
		res.handover = &h
	}

	// The floors, one Traefik started at a time.
	pt, err := r.startPerFile(ctx, &res)
	if err != nil {
		return res, err
	}
	defer r.pf.stop()
	ft, err := r.startOneFile(ctx, &res)
	if err != nil {
		return res, err
	}
	defer r.of.stop()

	targets := map[variant]*target{ours: ot, perFile: pt, oneFile: ft}
	var plan []variant
	for _, v := range []variant{ours, perFile, oneFile} {
		for range o.samples {
			plan = append(plan, v)
		}
	}
	r.rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	logf("size %d: %d samples (%d each of ours, per-file floor, one-file floor) in random order", size, len(plan), o.samples)
	reloads0, rerr := traefikReloads(ctx, s.gw.MetricsAddr)
	for i, v := range plan {
		if err := r.take(ctx, &res, targets[v], fmt.Sprintf("t%d-%d", size, i), i, len(plan)); err != nil {
			return res, err
		}
	}
	if reloads1, err := traefikReloads(ctx, s.gw.MetricsAddr); err == nil && rerr == nil {
		res.reloads = reloads1 - reloads0
	}
	if size == 0 && o.diagSamples > 0 {
		if err := r.defCert(ctx, &res, pt); err != nil {
			return res, err
		}
	}
	for _, t := range []*target{ot, pt, ft} {
		res.probes += t.probe.probes.Load()
		res.resumed += t.probe.resumed.Load()
	}
	if slices.Contains(o.burstSizes, size) && o.burstRoutes > 0 && o.burstRounds > 0 {
		b, err := r.bursts(ctx, ot, pt)
		if err != nil {
			return res, fmt.Errorf("bursts: %w", err)
		}
		res.burst = &b
	}
	if size > 0 && size == slices.Max(o.sizes) && o.profileSecs > 0 {
		pr, err := r.profile(ctx, ot, size)
		if err != nil {
			return res, fmt.Errorf("profile: %w", err)
		}
		res.profile = &pr
	}
	if size > 0 && size == slices.Max(o.sizes) && o.stormCalls > 0 {
		st, err := r.storm(ctx, ot, size)
		if err != nil {
			return res, fmt.Errorf("boot storm: %w", err)
		}
		res.storm = &st
	}

	n, err := s.list(ctx)
	if err != nil {
		return res, err
	}
	if n != size {
		return res, fmt.Errorf("the gateway holds %d routes after the samples, want %d", n, size)
	}
	for name, pid := range map[string]int{rssGateway: s.gw.Proc.PID(), rssOurs: s.gw.traefik, rssPerFile: r.pf.pid(), rssOneFile: r.of.pid()} {
		if v, err := rss(pid); err == nil {
			res.rss[name] = v
		}
	}
	return res, nil
}

// take runs one sample of t into res.
func (r *routeRun) take(ctx context.Context, res *sizeResult, t *target, id string, i, n int) error {
	smp, settled, err := t.sample(ctx, id)
	if err != nil {
		return fmt.Errorf("%s sample %d: %w", t.v, i, err)
	}
	if !settled {
		res.unsettled++
	}
	res.samples[t.v] = append(res.samples[t.v], smp)
	if r.o.verbose || (i+1)%10 == 0 || i+1 == n {
		r.logf("size %d: %d/%d, %s: route %s (call %s, %d probes), delete %s, traefik cpu %s", res.size, i+1, n, t.v,
			smp.route.Round(time.Millisecond), smp.call.Round(100*time.Microsecond), smp.polls, smp.del.Round(time.Millisecond), smp.traefikCPU)
	}
	return nil
}

// startOurs starts the gateway with Traefik and waits until Traefik serves
// the routes present and is idle.
func (r *routeRun) startOurs(ctx context.Context, res *sizeResult) (*target, error) {
	s := r.s
	start := time.Now()
	if err := s.startGateway(ctx, r.o.throttle, true); err != nil {
		return nil, err
	}
	t := &target{v: ours, probe: newProber(s.gw.WebSecureAddr), pid: s.gw.traefik, throttle: r.o.throttle,
		publish:   func(ctx context.Context, id string, _ []byte) error { return s.setNamed(ctx, id, id) },
		unpublish: func(ctx context.Context, id string) error { return s.deleteNamed(ctx, id) },
	}
	cold, err := t.load(ctx, res.size, start)
	if err != nil {
		return nil, fmt.Errorf("the gateway's traefik: %w", err)
	}
	res.cold[ours] = cold
	r.logf("size %d: gateway and traefik (pid %d) up, routes served after %s", res.size, t.pid, cold.Round(time.Millisecond))
	return t, nil
}

// capture publishes the template route through the gateway, checks that it
// is served, and reads its rendering back from the folder the gateway's
// Traefik watches, then makes the floors' Traefiks from the gateway's static
// configuration.
func (r *routeRun) capture(ctx context.Context, ot *target) error {
	s := r.s
	host := templateID + "." + benchDomain
	start := time.Now()
	if err := s.setNamed(ctx, templateID, templateID); err != nil {
		return err
	}
	if _, _, err := ot.probe.wait(ctx, host, http.StatusOK, start, routeTimeout); err != nil {
		return fmt.Errorf("the template route through the gateway: %w", err)
	}
	static, env, err := readStatic(s.root, s.gw.traefik)
	if err != nil {
		return err
	}
	dir, err := watchedDir(static)
	if err != nil {
		return err
	}
	var ids []string
	if err := call(ctx, func(ctx context.Context) error {
		l, err := s.stub.List(ctx)
		for _, p := range l {
			if p.WorkloadID != templateID {
				ids = append(ids, p.WorkloadID)
			}
		}
		return err
	}); err != nil {
		return err
	}
	if r.shape, err = captureShape(dir, templateID, host, ids); err != nil {
		return err
	}
	start = time.Now()
	if err := s.deleteNamed(ctx, templateID); err != nil {
		return err
	}
	if _, _, err := ot.probe.wait(ctx, host, http.StatusNotFound, start, routeTimeout); err != nil {
		return fmt.Errorf("deleting the template route: %w", err)
	}
	ot.last = time.Now()
	ot.settle(ctx)
	if r.pf, err = newFloorTraefik(s.work, "per-file", s.tools.traefik, static, env, r.logf); err != nil {
		return err
	}
	if r.of, err = newFloorTraefik(s.work, "one-file", s.tools.traefik, static, env, r.logf); err != nil {
		return err
	}
	r.logf("captured the gateway's rendering of a name route and its static configuration; floors in %s and %s", r.pf.dir, r.of.dir)
	return nil
}

// gatewayStarts restarts the gateway alone, which adopts the running
// Traefik, and times its start to the first answer on zbus; then times List
// and Metrics.
func (r *routeRun) gatewayStarts(ctx context.Context, res *sizeResult, ot *target) error {
	s := r.s
	for i := range r.o.startSamples {
		adopted, err := s.restartGateway(ctx)
		if err != nil {
			return fmt.Errorf("restart %d of the gateway: %w", i+1, err)
		}
		res.starts = append(res.starts, s.gw.ZbusUp)
		if adopted {
			res.adopted++
		}
		ot.pid = s.gw.traefik
		if !waitIdle(ctx, []int{s.gw.Proc.PID(), s.gw.traefik}, settleTimeout) {
			r.logf("size %d: the gateway and traefik not idle %s after a restart", res.size, settleTimeout)
		}
	}
	for range r.o.apiCalls {
		start := time.Now()
		n, err := s.list(ctx)
		if err != nil {
			return err
		}
		if n != res.size {
			return fmt.Errorf("List gave %d routes, want %d", n, res.size)
		}
		res.list = append(res.list, time.Since(start))
		start = time.Now()
		if err := s.metrics(ctx); err != nil {
			return err
		}
		res.metrics = append(res.metrics, time.Since(start))
	}
	r.logf("size %d: gateway start to zbus p50 %s (%d of %d adopted traefik), List p50 %s, Metrics p50 %s", res.size,
		ms(stat(res.starts).P50), res.adopted, len(res.starts), ms(stat(res.list).P50), ms(stat(res.metrics).P50))
	return nil
}

// startPerFile adds the files of the routes present to the per-file floor's
// folder, then starts its Traefik.
func (r *routeRun) startPerFile(ctx context.Context, res *sizeResult) (*target, error) {
	f, backend := r.pf, r.s.backendURL
	for i := range res.size {
		id, prefix := popName(i)
		data, err := perFileRoute(id, prefix+"."+benchDomain, backend)
		if err != nil {
			return nil, err
		}
		if err := f.put(id+floorExt, data); err != nil {
			return nil, err
		}
	}
	t := &target{v: perFile, throttle: r.o.throttle,
		render:    func(id string) ([]byte, error) { return perFileRoute(id, id+"."+benchDomain, backend) },
		publish:   func(_ context.Context, id string, data []byte) error { return f.put(id+floorExt, data) },
		unpublish: func(_ context.Context, id string) error { return f.remove(id + floorExt) },
	}
	return t, r.startFloor(ctx, res, f, t)
}

// startOneFile writes the routes present in one file in the one-file
// floor's folder, then starts its Traefik.
func (r *routeRun) startOneFile(ctx context.Context, res *sizeResult) (*target, error) {
	f, sh, size := r.of, r.shape, res.size
	base, err := sh.oneFile(size, "")
	if err != nil {
		return nil, err
	}
	if err := f.put(oneFileName, base); err != nil {
		return nil, err
	}
	t := &target{v: oneFile, throttle: r.o.throttle,
		render:    func(id string) ([]byte, error) { return sh.oneFile(size, id) },
		publish:   func(_ context.Context, _ string, data []byte) error { return f.put(oneFileName, data) },
		unpublish: func(_ context.Context, _ string) error { return f.put(oneFileName, base) },
	}
	return t, r.startFloor(ctx, res, f, t)
}

// startFloor starts f's Traefik for t and waits until it serves the routes
// present and is idle.
func (r *routeRun) startFloor(ctx context.Context, res *sizeResult, f *floorTraefik, t *target) error {
	start := time.Now()
	if err := f.start(ctx); err != nil {
		return err
	}
	t.pid, t.probe = f.pid(), newProber(f.websecure)
	cold, err := t.load(ctx, res.size, start)
	if err != nil {
		return fmt.Errorf("%s traefik: %w", t.v, err)
	}
	res.cold[t.v] = cold
	r.logf("size %d: %s traefik (pid %d) up, routes served after %s", res.size, t.v, t.pid, cold.Round(time.Millisecond))
	return nil
}

// defCert takes the diagnostic samples of the per-file floor with a default
// certificate, then takes the certificate away.
func (r *routeRun) defCert(ctx context.Context, res *sizeResult, pt *target) error {
	data, err := r.o.defCert.render()
	if err != nil {
		return err
	}
	if err := r.pf.put(defCertName+floorExt, data); err != nil {
		return err
	}
	pt.last = time.Now()
	pt.settle(ctx)
	d := *pt
	d.v = perFileDefCert
	for i := range r.o.diagSamples {
		if err := r.take(ctx, res, &d, fmt.Sprintf("d%d-%d", res.size, i), i, r.o.diagSamples); err != nil {
			return err
		}
	}
	if err := r.pf.remove(defCertName + floorExt); err != nil {
		return err
	}
	pt.last = time.Now()
	pt.settle(ctx)
	return nil
}

// populate adds the routes pop-<from> to pop-<to-1> through zbus to the
// running gateway, from populateCallers callers.
func populate(ctx context.Context, s *stack, from, to int, logf func(string, ...any)) (time.Duration, error) {
	logf("pre-populating routes %d to %d through zbus (%d callers)", from, to-1, populateCallers)
	start := time.Now()
	err := fanOut(ctx, to-from, populateCallers, func(ctx context.Context, i int) error {
		id, prefix := popName(from + i)
		if err := s.setNamed(ctx, id, prefix); err != nil {
			return err
		}
		if (from+i+1)%2000 == 0 {
			logf("pre-populated %d routes", from+i+1)
		}
		return nil
	})
	took := time.Since(start)
	if err != nil {
		return took, fmt.Errorf("pre-populating: %w", err)
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

// fanOut calls fn for 0 to n-1 from callers goroutines and returns the first
// error; the other callers stop at their next call.
func fanOut(ctx context.Context, n, callers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

func popName(i int) (wlID, prefix string) {
	return fmt.Sprintf("pop-%05d", i), fmt.Sprintf("pop%05d", i)
}

// target is one Traefik and the way a route is published to it.
type target struct {
	v        variant
	probe    *prober
	pid      int
	throttle time.Duration
	// render, when set, makes what publish writes, before the clock starts.
	render    func(id string) ([]byte, error)
	publish   func(ctx context.Context, id string, data []byte) error
	unpublish func(ctx context.Context, id string) error
	// last is when the last change was seen applied.
	last time.Time
}

// load waits until Traefik serves the size routes present, which start
// began to load, and is idle; it returns the time from start to serving.
func (t *target) load(ctx context.Context, size int, start time.Time) (time.Duration, error) {
	var cold time.Duration
	if size > 0 {
		// Traefik loads the folder as one configuration: the last route
		// served means all are.
		_, prefix := popName(size - 1)
		if _, _, err := t.probe.wait(ctx, prefix+"."+benchDomain, http.StatusOK, start, loadTimeout); err != nil {
			return 0, fmt.Errorf("serving the %d routes present: %w", size, err)
		}
		cold = time.Since(start)
		_, first := popName(0)
		if st, ok, err := t.probe.get(ctx, first+"."+benchDomain); err != nil || st != http.StatusOK || !ok {
			return 0, fmt.Errorf("route %s not served (status %d, %v)", first, st, err)
		}
	}
	t.last = time.Now()
	t.settle(ctx)
	return cold, nil
}

// sample publishes the route id, waits until it is served, deletes it,
// waits until it is gone and until Traefik is idle. settled is false when
// that last wait timed out.
func (t *target) sample(ctx context.Context, id string) (smp sample, settled bool, err error) {
	host := id + "." + benchDomain
	var data []byte
	if t.render != nil {
		if data, err = t.render(id); err != nil {
			return smp, false, err
		}
	}
	st0, err := readStat(t.pid)
	if err != nil {
		return smp, false, fmt.Errorf("traefik gone: %w", err)
	}
	start := time.Now()
	err = t.publish(ctx, id, data)
	smp.call = time.Since(start)
	if err != nil {
		return smp, false, err
	}
	if smp.route, smp.polls, err = t.probe.wait(ctx, host, http.StatusOK, start, routeTimeout); err != nil {
		return smp, false, err
	}
	start = time.Now()
	if err := t.unpublish(ctx, id); err != nil {
		return smp, false, err
	}
	if smp.del, _, err = t.probe.wait(ctx, host, http.StatusNotFound, start, routeTimeout); err != nil {
		return smp, false, fmt.Errorf("waiting for the delete: %w", err)
	}
	t.last = time.Now()
	settled = t.settle(ctx)
	st1, err := readStat(t.pid)
	if err != nil {
		return smp, false, fmt.Errorf("traefik gone: %w", err)
	}
	smp.traefikCPU = time.Duration(st1.cpu-st0.cpu) * clockTick
	return smp, settled, nil
}

// settle waits until Traefik's throttle window of the last change has closed
// and Traefik has used no more than quietTicks of CPU over quietWindow: the
// events of the last change are all handled, so the next sample starts from
// an idle Traefik. It returns false if that took more than settleTimeout.
func (t *target) settle(ctx context.Context) bool {
	if d := time.Until(t.last.Add(t.throttle + settleMargin)); d > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
		}
	}
	return waitIdle(ctx, []int{t.pid}, settleTimeout)
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
	return resp.StatusCode, resp.Header.Get(harness.HeaderBackend) != "", nil
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
