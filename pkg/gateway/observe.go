package gateway

import (
	"context"
	"slices"
	"sync"
	"time"
)

// RouteProbe tells whether Traefik serves a route: traefik.API does, from
// Traefik's API on its loopback entry point.
type RouteProbe interface {
	// RouterServed reports whether Traefik's router named name (the
	// workload ID) is live; tcp selects TCP routers.
	RouterServed(ctx context.Context, name string, tcp bool) (bool, error)
}

// How the time from a Set to Traefik serving the route is observed.
const (
	// observeInterval is how often pending routes are probed.
	observeInterval = 50 * time.Millisecond
	// observeWindow is how long a route may take; past it, it counts as
	// unobserved.
	observeWindow = 2 * time.Minute
	// observeBatch bounds the probes of one round, oldest first.
	observeBatch = 32
	// observeMaxPending bounds the routes watched at once; routes created
	// past it, in a burst, are not measured.
	observeMaxPending = 1024
	// probeTimeout bounds one probe.
	probeTimeout = time.Second
)

// observer measures, for each route created, the time until Traefik serves
// it. Only new routes are measured: a changed route is served under its old
// configuration until the reload, and the API does not tell the two apart.
type observer struct {
	probe RouteProbe
	t     *telemetry

	mu      sync.Mutex
	pending map[string]pendingRoute
	wake    chan struct{}
}

type pendingRoute struct {
	since time.Time
	tcp   bool
}

func newObserver(probe RouteProbe, t *telemetry) *observer {
	return &observer{probe: probe, t: t, pending: make(map[string]pendingRoute), wake: make(chan struct{}, 1)}
}

// created starts watching route id, written at since.
func (o *observer) created(id string, tcp bool, since time.Time) {
	if o.probe == nil {
		return
	}
	o.mu.Lock()
	if len(o.pending) < observeMaxPending {
		o.pending[id] = pendingRoute{since: since, tcp: tcp}
	}
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// deleted stops watching route id.
func (o *observer) deleted(id string) {
	o.mu.Lock()
	delete(o.pending, id)
	o.mu.Unlock()
}

// run probes pending routes until ctx ends.
func (o *observer) run(ctx context.Context) {
	if o.probe == nil {
		return
	}
	for {
		if o.idle() {
			select {
			case <-ctx.Done():
				return
			case <-o.wake:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(observeInterval):
		}
		o.round(ctx)
	}
}

func (o *observer) idle() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.pending) == 0
}

// round probes up to observeBatch pending routes, oldest first.
func (o *observer) round(ctx context.Context) {
	type item struct {
		id string
		pendingRoute
	}
	o.mu.Lock()
	batch := make([]item, 0, len(o.pending))
	for id, p := range o.pending {
		batch = append(batch, item{id, p})
	}
	o.mu.Unlock()
	slices.SortFunc(batch, func(a, b item) int { return a.since.Compare(b.since) })
	if len(batch) > observeBatch {
		batch = batch[:observeBatch]
	}
	for _, it := range batch {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		served, err := o.probe.RouterServed(pctx, it.id, it.tcp)
		cancel()
		now := time.Now()
		o.mu.Lock()
		p, still := o.pending[it.id]
		switch {
		case !still || p.since != it.since:
			// Deleted, or created again, meanwhile.
		case err == nil && served:
			delete(o.pending, it.id)
			o.t.publish.Observe(now.Sub(it.since).Seconds())
		case now.Sub(it.since) > observeWindow:
			delete(o.pending, it.id)
			o.t.publishLost.Inc()
		}
		o.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
	}
}
