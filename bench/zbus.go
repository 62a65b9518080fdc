package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/threefoldtech/zbus"

	"github.com/threefoldtech/gateway/internal/atomicfile"
)

// zbus floor settings.
const (
	// zbusModule and zbusObject name the bench's own object on the broker.
	zbusModule = "bench"
	zbusObject = "floor"
	// zbusWorkers is how many calls the bench's object serves at once.
	zbusWorkers = 4
	// zbusRoutes is how many routes the Set calls of the measurement cycle
	// over; each call switches one of them to the other backend.
	zbusRoutes = 32
	// zbusRoutePrefix names those routes.
	zbusRoutePrefix = "zbus-"
)

// zbusFloor is an object of the bench served on the stack's broker, whose
// calls are the floor of a Set call: Nothing does nothing, Write does one
// synced small write (temporary file in a staging folder, fsync, rename,
// fsync of the folder, as internal/atomicfile does it for the gateway).
type zbusFloor struct {
	s      *stack
	id     zbus.ObjectID
	cancel context.CancelFunc
	done   chan struct{}
	obj    *floorObject
}

// floorObject is what the bench serves on zbus.
type floorObject struct {
	staging, path string
	data          []byte
}

// Nothing does nothing: the cost of zbus itself.
func (o *floorObject) Nothing(string) error { return nil }

// Write replaces one small file, synced.
func (o *floorObject) Write(string) error {
	return atomicfile.WriteStaged(o.staging, o.path, o.data, 0o644)
}

// newZbusFloor serves the bench's object on the stack's broker until close.
func newZbusFloor(ctx context.Context, s *stack) (*zbusFloor, error) {
	base := filepath.Join(s.work, "zbus-floor")
	obj := &floorObject{staging: filepath.Join(base, "staging"), path: filepath.Join(base, "files", "route"+floorExt)}
	for _, d := range []string{obj.staging, filepath.Dir(obj.path)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	// The size of a route's file as the gateway wrote one per route.
	data, err := perFileRoute("zbus-floor", "zbus-floor."+benchDomain, s.backendURL)
	if err != nil {
		return nil, err
	}
	obj.data = data
	server, err := zbus.NewRedisServer(zbusModule, s.redis.URL(), zbusWorkers)
	if err != nil {
		return nil, fmt.Errorf("serving the bench's zbus object: %w", err)
	}
	z := &zbusFloor{s: s, id: zbus.ObjectID{Name: zbusObject, Version: "0.0.1"}, obj: obj, done: make(chan struct{})}
	if err := server.Register(z.id, obj); err != nil {
		return nil, fmt.Errorf("serving the bench's zbus object: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	z.cancel = cancel
	go func() {
		defer close(z.done)
		_ = server.Run(sctx)
	}()
	return z, nil
}

// close stops serving and waits for the server's loops. Each notices the
// end of its context between two pulls from the broker, which wait up to
// zbus's pull timeout (10 s) for a request: a call of each kind ends the
// wait, so that no loop is still pulling when the broker stops.
func (z *zbusFloor) close() {
	z.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = z.s.client.Status(ctx, zbusModule)
	_, _ = z.s.client.RequestContext(ctx, zbusModule, z.id, "Nothing", "x")
	select {
	case <-z.done:
	case <-time.After(15 * time.Second):
	}
}

func (z *zbusFloor) call(ctx context.Context, method string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	res, err := z.s.client.RequestContext(ctx, zbusModule, z.id, method, "x")
	if err != nil {
		return fmt.Errorf("zbus %s: %w", method, err)
	}
	if err := res.CallError(); err != nil {
		return fmt.Errorf("zbus %s: %w", method, err)
	}
	return nil
}

// zbusResult is the cost of a Set call against its floor, at one size.
type zbusResult struct {
	// noop is a call that does nothing; floor a call that does one synced
	// small write; write that write alone, in the bench; set a
	// SetNamedProxy that changes a route.
	noop, floor, write, set []time.Duration
}

// measure takes rounds of one call of each kind, against the running
// gateway (without Traefik) and the bench's object, on one broker. The Set
// calls switch the routes zbus-* from one backend to the other, so each
// changes its route; the routes are added before and deleted after.
func (z *zbusFloor) measure(ctx context.Context, rounds int, logf func(string, ...any)) (zbusResult, error) {
	var r zbusResult
	s := z.s
	id := func(i int) string { return fmt.Sprintf("%s%02d", zbusRoutePrefix, i%zbusRoutes) }
	for i := range zbusRoutes {
		if err := s.setNamedTo(ctx, id(i), id(i), s.backendURL, false); err != nil {
			return r, err
		}
	}
	// One unrecorded call of each first.
	for _, m := range []string{"Nothing", "Write"} {
		if err := z.call(ctx, m); err != nil {
			return r, err
		}
	}
	for i := range rounds {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		start := time.Now()
		if err := z.call(ctx, "Nothing"); err != nil {
			return r, err
		}
		r.noop = append(r.noop, time.Since(start))
		start = time.Now()
		if err := z.call(ctx, "Write"); err != nil {
			return r, err
		}
		r.floor = append(r.floor, time.Since(start))
		start = time.Now()
		if err := z.obj.Write(""); err != nil {
			return r, err
		}
		r.write = append(r.write, time.Since(start))
		backend := s.backendURL2
		if (i/zbusRoutes)%2 == 1 {
			backend = s.backendURL
		}
		start = time.Now()
		if err := s.setNamedTo(ctx, id(i), id(i), backend, false); err != nil {
			return r, err
		}
		r.set = append(r.set, time.Since(start))
	}
	for i := range zbusRoutes {
		if err := s.deleteNamed(ctx, id(i)); err != nil {
			return r, err
		}
	}
	logf("zbus: no-op %s, floor (no-op + synced write) %s, SetNamedProxy %s p50 (%d rounds)",
		ms(stat(r.noop).P50), ms(stat(r.floor).P50), ms(stat(r.set).P50), rounds)
	return r, nil
}
