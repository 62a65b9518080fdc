package main

import (
	"context"
	"fmt"
	"github.com/threefoldtech/gateway/test/harness"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Boot storm and burst settings.
const (
	// burstTimeout bounds the wait for a burst's routes to serve, or to be
	// gone.
	burstTimeout = 5 * time.Minute
	// burstCheckTimeout bounds the check that every route of a burst
	// serves, all of them together.
	burstCheckTimeout = 30 * time.Second
	// burstPoll is how often the bench asks Traefik's API how many routers
	// it runs during a burst.
	burstPoll = 10 * time.Millisecond
	// burstPrefix names the routes of a burst.
	burstPrefix = "burst-"
)

// stormResult is the boot storm: calls Set calls that each re-apply exactly
// what a route already is, from populateCallers callers.
type stormResult struct {
	calls int
	took  time.Duration
	// reloads is how far Traefik's traefik_config_reloads_total moved from
	// before the storm to after it and Traefik's throttle window.
	reloads float64
	// traefikCPU and gatewayCPU are what each used over the same time.
	traefikCPU, gatewayCPU time.Duration
}

// storm sends the boot storm to the gateway holding size routes.
func (r *routeRun) storm(ctx context.Context, ot *target, size int) (stormResult, error) {
	s := r.s
	res := stormResult{calls: r.o.stormCalls}
	before, err := traefikReloads(ctx, s.gw.MetricsAddr)
	if err != nil {
		return res, err
	}
	t0, g0 := cpuTime(s.gw.traefik), cpuTime(s.gw.Proc.PID())
	r.logf("boot storm: %d identical SetNamedProxy calls over the %d routes present, %d callers", res.calls, size, populateCallers)
	start := time.Now()
	err = fanOut(ctx, res.calls, populateCallers, func(ctx context.Context, i int) error {
		id, prefix := popName(i % size)
		return s.setNamed(ctx, id, prefix)
	})
	res.took = time.Since(start)
	if err != nil {
		return res, err
	}
	ot.last = time.Now()
	ot.settle(ctx)
	after, err := traefikReloads(ctx, s.gw.MetricsAddr)
	if err != nil {
		return res, err
	}
	res.reloads = after - before
	res.traefikCPU, res.gatewayCPU = cpuTime(s.gw.traefik)-t0, cpuTime(s.gw.Proc.PID())-g0
	r.logf("boot storm: %s, %.0f traefik reloads, traefik cpu %s, gateway cpu %s", res.took.Round(time.Millisecond), res.reloads,
		res.traefikCPU, res.gatewayCPU)
	return res, nil
}

// burstResult is the bursts: routes new routes at once, through the
// gateway from populateCallers callers, and written by hand one file each to
// the per-file floor by as many writers.
type burstResult struct {
	routes int
	// ours and floor are from the first call or write to Traefik running
	// every route of the burst; oursCalls is until the last call returned.
	ours, floor, oursCalls []time.Duration
	// oursCPU and floorCPU are the CPU each Traefik used from the start
	// of a burst to the end of its removal and an idle Traefik.
	oursCPU, floorCPU []time.Duration
}

// bursts takes the rounds of bursts, ours and the floor's in turn.
func (r *routeRun) bursts(ctx context.Context, ot, pt *target) (burstResult, error) {
	s, n := r.s, r.o.burstRoutes
	res := burstResult{routes: n}
	id := func(i int) string { return fmt.Sprintf("%s%03d", burstPrefix, i) }
	oursBurst := func() error {
		var calls time.Duration
		took, cpu, err := burstOnce(ctx, ot, s.gw.MetricsAddr, n,
			func(ctx context.Context) error {
				start := time.Now()
				err := fanOut(ctx, n, populateCallers, func(ctx context.Context, i int) error { return s.setNamed(ctx, id(i), id(i)) })
				calls = time.Since(start)
				return err
			},
			func(ctx context.Context) error {
				return fanOut(ctx, n, populateCallers, func(ctx context.Context, i int) error { return s.deleteNamed(ctx, id(i)) })
			}, id)
		if err != nil {
			return fmt.Errorf("ours: %w", err)
		}
		res.ours, res.oursCalls, res.oursCPU = append(res.ours, took), append(res.oursCalls, calls), append(res.oursCPU, cpu)
		r.logf("burst of %d, ours: all served after %s (calls done after %s), traefik cpu %s", n, took.Round(time.Millisecond), calls.Round(time.Millisecond), cpu)
		return nil
	}
	floorBurst := func() error {
		files := make([][]byte, n)
		for i := range n {
			var err error
			if files[i], err = perFileRoute(id(i), id(i)+"."+benchDomain, s.backendURL); err != nil {
				return err
			}
		}
		took, cpu, err := burstOnce(ctx, pt, r.pf.ping, n,
			func(ctx context.Context) error {
				return fanOut(ctx, n, populateCallers, func(_ context.Context, i int) error { return r.pf.put(id(i)+floorExt, files[i]) })
			},
			func(ctx context.Context) error {
				return fanOut(ctx, n, populateCallers, func(_ context.Context, i int) error { return r.pf.remove(id(i) + floorExt) })
			}, id)
		if err != nil {
			return fmt.Errorf("per-file floor: %w", err)
		}
		res.floor, res.floorCPU = append(res.floor, took), append(res.floorCPU, cpu)
		r.logf("burst of %d, per-file floor: all served after %s, traefik cpu %s", n, took.Round(time.Millisecond), cpu)
		return nil
	}
	for round := range r.o.burstRounds {
		order := []func() error{oursBurst, floorBurst}
		if round%2 == 1 {
			order = []func() error{floorBurst, oursBurst}
		}
		for _, f := range order {
			if err := f(); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// burstOnce runs add, waits until the Traefik of t, whose API is at api,
// runs n more HTTP routers than before and checks that each of the n routes
// id(i) serves; then runs del and waits until the routers are back to what
// they were and Traefik is idle. It returns the time from the start of add to
// Traefik running them all, and the CPU Traefik used for the whole.
func burstOnce(ctx context.Context, t *target, api string, n int, add, del func(context.Context) error, id func(int) string) (time.Duration, time.Duration, error) {
	base, err := httpRouters(ctx, api)
	if err != nil {
		return 0, 0, err
	}
	cpu0 := cpuTime(t.pid)
	start := time.Now()
	added := make(chan error, 1)
	go func() { added <- add(ctx) }()
	err = harness.PollEvery(ctx, burstTimeout, burstPoll, func() error {
		got, err := httpRouters(ctx, api)
		if err != nil {
			return err
		}
		if got < base+n {
			return fmt.Errorf("waiting for traefik to run %d routers: %d", base+n, got)
		}
		return nil
	})
	took := time.Since(start)
	if aerr := <-added; aerr != nil {
		return 0, 0, aerr
	}
	if err != nil {
		return 0, 0, err
	}
	// One deadline for all: the routes run, each should answer at once.
	checked := time.Now()
	for i := range n {
		if _, _, err := t.probe.wait(ctx, id(i)+"."+benchDomain, http.StatusOK, checked, burstCheckTimeout); err != nil {
			return 0, 0, fmt.Errorf("after the burst: %w", err)
		}
	}
	if err := del(ctx); err != nil {
		return 0, 0, err
	}
	if err := harness.PollEvery(ctx, burstTimeout, burstPoll, func() error {
		got, err := httpRouters(ctx, api)
		if err != nil {
			return err
		}
		if got != base {
			return fmt.Errorf("waiting for traefik to run %d routers again: %d", base, got)
		}
		return nil
	}); err != nil {
		return 0, 0, err
	}
	t.last = time.Now()
	t.settle(ctx)
	return took, cpuTime(t.pid) - cpu0, nil
}

// profileResult is where ours' Traefik spent its CPU while routes changed.
type profileResult struct {
	size    int
	seconds int
	// changes are the routes published and deleted while it ran.
	changes int
	// top is `go tool pprof -top -cum` of the profile, path where it is.
	top, path string
}

// profile takes a CPU profile of ours' Traefik (api.debug, on its loopback
// entry point) while the bench publishes and deletes routes through the
// gateway, one after the other, as the samples do. Its changes are not
// timed: the profiler's own cost stays out of the samples.
func (r *routeRun) profile(ctx context.Context, ot *target, size int) (profileResult, error) {
	s := r.s
	res := profileResult{size: size, seconds: r.o.profileSecs, path: filepath.Join(s.work, fmt.Sprintf("traefik-%d.pprof", size))}
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", s.gw.MetricsAddr, res.seconds)
	got := make(chan error, 1)
	go func() { got <- saveURL(ctx, url, res.path, time.Duration(res.seconds)*time.Second+time.Minute) }()
	end := time.Now().Add(time.Duration(res.seconds) * time.Second)
	for time.Now().Before(end) {
		if _, _, err := ot.sample(ctx, fmt.Sprintf("prof%d-%d", size, res.changes)); err != nil {
			return res, err
		}
		res.changes++
	}
	if err := <-got; err != nil {
		return res, err
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=30", s.tools.traefik, res.path).Output()
	if err != nil {
		return res, fmt.Errorf("go tool pprof: %w", err)
	}
	// The profile's build ID and time say nothing to a reader.
	var keep []string
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "Build ID:") && !strings.HasPrefix(line, "Time:") {
			keep = append(keep, line)
		}
	}
	res.top = strings.Join(keep, "\n")
	r.logf("size %d: profile of ours' Traefik over %d changes in %ds in %s", size, res.changes, res.seconds, res.path)
	return res, nil
}

// saveURL saves what GET url returns to path, within timeout.
func saveURL(ctx context.Context, url, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
