package traefik

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"syscall"
	"time"
)

// Defaults of the handover.
const (
	// DefaultHandoverTimeout is the default ProcessConfig.HandoverTimeout.
	DefaultHandoverTimeout = 60 * time.Second
	// handoverSettle is how long the predecessor keeps serving, once new
	// connections go to its successor and it has taken every connection
	// queued for it, before it stops: a connection it accepted must reach
	// its router (TLS ClientHello read, SNI matched) before then, or its
	// shutdown strands it. A busy node, a successor loading thousands of
	// routes beside it, takes this long.
	handoverSettle = time.Second
	// handoverDrainQueue bounds the wait for the predecessor to take the
	// connections queued for it.
	handoverDrainQueue = 10 * time.Second
	// handoverPoll is how often the successor is asked whether it is ready.
	handoverPoll = 50 * time.Millisecond
	// handoverRetryMin and handoverRetryMax bound the wait before a failed
	// handover is tried again; the predecessor serves meanwhile.
	handoverRetryMin = time.Second
	handoverRetryMax = time.Minute
)

// handoverStep names a point of a handover where the gateway may die; the
// tests kill it there (Process.crashAt).
type handoverStep int

const (
	// stepSteeredToOld: every group steered to the predecessor.
	stepSteeredToOld handoverStep = iota + 1
	// stepSpawned: the successor started, perhaps not yet listening.
	stepSpawned
	// stepProbing: connections to the internal entry point go to the
	// successor, whose API is asked.
	stepProbing
	// stepSteeredToSuccessor: every group steered to the successor, which
	// the pidfile does not name yet.
	stepSteeredToSuccessor
	// stepInstalled: the pidfile names the successor; the predecessor
	// takes what was queued for it.
	stepInstalled
	// stepDraining: the pidfile names the predecessor as draining; it was
	// not told to stop yet.
	stepDraining
	// stepRetired: the predecessor was told to stop and listens no more;
	// the gateway's copies of its sockets and the steering are still there.
	stepRetired
)

// handoverSteps are the steps in order, for the tests.
var handoverSteps = []handoverStep{stepSteeredToOld, stepSpawned, stepProbing, stepSteeredToSuccessor, stepInstalled, stepDraining, stepRetired}

var handoverStepNames = map[handoverStep]string{
	stepSteeredToOld:       "steered to the predecessor",
	stepSpawned:            "successor spawned",
	stepProbing:            "probing the successor",
	stepSteeredToSuccessor: "steered to the successor",
	stepInstalled:          "successor installed",
	stepDraining:           "predecessor recorded as draining",
	stepRetired:            "predecessor retired",
}

func (st handoverStep) String() string {
	if name, ok := handoverStepNames[st]; ok {
		return name
	}
	return fmt.Sprintf("handoverStep(%d)", int(st))
}

// errCrashed is what a handover returns where Process.crashAt killed the
// gateway.
var errCrashed = errors.New("the gateway died here (test)")

// crashed tells whether the test seam kills the gateway at step st.
func (p *Process) crashed(st handoverStep) bool {
	return p.crashAt != nil && p.crashAt(st)
}

// errNoHandover says a Traefik cannot be handed over: its sockets are not
// SO_REUSEPORT (a Traefik started before entry points had reusePort), or
// the kernel does not let the gateway reach them. It is replaced by stopping
// it first.
var errNoHandover = errors.New("traefik cannot be handed over")

// handover replaces old by a Traefik running the configuration of hash
// without refusing or resetting a connection. Both listen on the same
// addresses, in one SO_REUSEPORT group per address (reusePort on every
// entry point). The gateway steers each group:
//
//  1. every new connection to old (index 0 of the group), then starts the
//     successor, whose sockets join the groups at index 1;
//  2. once the successor listens, connections to the internal entry point
//     go to it, and the gateway asks its API until it serves every router
//     old served (or HandoverTimeout passed);
//  3. then every new connection goes to the successor; old takes what
//     handshakes were under way for handoverSettle, then is retired: it
//     gets SIGTERM, closes its listening sockets, and keeps the connections
//     it holds, websockets and passthrough connections included, for the
//     graceTimeOut of its entry points (HandoverDrain); it exits when the
//     last one ends.
//
// The steering is a BPF program of one instruction per group; it is removed
// at the end, once old listens no more. The successor is made the current
// Traefik by install, called once it gets every new connection and before
// old stops; install failing aborts the handover. draining is called before
// old is told to stop, to record it. On errNoHandover nothing was changed.
// On any other error the successor was stopped and old still serves every
// connection. Stop cuts it short, before install, with such an error. It
// runs on the goroutine that owns the supervision, which install and
// draining update.
func (p *Process) handover(old *instance, hash string, install func(*instance) error, draining func(*instance)) error {
	internal, err := netip.ParseAddrPort(p.cfg.MetricsAddress)
	if err != nil {
		return fmt.Errorf("%w: no internal entry point address: %v", errNoHandover, err)
	}
	olds, err := listeners(old.pid)
	if err != nil {
		return fmt.Errorf("%w: %v", errNoHandover, err)
	}
	defer func() { closeListeners(olds) }()
	if len(olds) == 0 {
		return fmt.Errorf("%w: pid %d listens on no TCP address", errNoHandover, old.pid)
	}
	for _, l := range olds {
		if !l.reusePort {
			return fmt.Errorf("%w: its socket on %s is not SO_REUSEPORT", errNoHandover, l.addr)
		}
	}

	// A new connection for each request: the steering applies to new
	// connections, and a kept one would go on asking the predecessor.
	api := API{Base: APIURL(p.cfg.MetricsAddress), Client: &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}}
	// Stop ends it too: the successor is then stopped, and Stop ends old.
	ctx, cancel := context.WithTimeout(p.stopping, p.cfg.HandoverTimeout)
	defer cancel()
	// What the successor must serve before it gets the traffic.
	want, err := api.Snapshot(ctx)
	if err != nil {
		p.log.Warn().Err(err).Msg("handover: reading the routers of the running traefik; the successor gets the traffic once its API answers")
	}

	for _, l := range olds {
		if err := l.steer(0); err != nil {
			unsteer(olds)
			return fmt.Errorf("%w: %v", errNoHandover, err)
		}
	}
	if p.crashed(stepSteeredToOld) {
		return errCrashed
	}
	start := time.Now()
	succ, err := p.spawn(hash)
	if err != nil {
		unsteer(olds)
		return err
	}
	if p.crashed(stepSpawned) {
		return errCrashed
	}
	abort := func(err error) error {
		// The groups still hand everything to old: the successor's sockets
		// leave them with nothing queued.
		if endErr := p.end(context.Background(), succ, exitReplaced); endErr != nil {
			p.log.Error().Err(endErr).Int("pid", succ.pid).Msg("handover: stopping the successor")
		}
		succ.close()
		unsteer(olds)
		return err
	}

	news, err := waitListening(ctx, succ, internal)
	if err != nil {
		return abort(err)
	}
	defer func() { closeListeners(news) }()
	for _, l := range olds {
		if l.addr == internal {
			if err := l.steer(1); err != nil {
				return abort(err)
			}
		}
	}
	if p.crashed(stepProbing) {
		return errCrashed
	}
	if err := p.waitServing(ctx, succ, api, want); err != nil {
		return abort(err)
	}
	for _, l := range olds {
		if err := l.steer(1); err != nil {
			// Connections already went to the successor on the groups
			// steered so far; old serves the others until it stops.
			return abort(err)
		}
	}
	if p.crashed(stepSteeredToSuccessor) {
		return errCrashed
	}
	if err := install(succ); err != nil {
		return abort(err)
	}
	if p.crashed(stepInstalled) {
		return errCrashed
	}
	ready := time.Since(start)
	p.log.Info().Int("pid", succ.pid).Stringer("ready_after", roundMs(ready)).Msg("handover: the successor serves every router; new connections go to it")

	p.drainQueues(old, olds)
	time.Sleep(handoverSettle)
	draining(old)
	if p.crashed(stepDraining) {
		return errCrashed
	}
	p.retire(old, olds)
	if p.crashed(stepRetired) {
		return errCrashed
	}
	// Old's sockets, closed by old, live on in the gateway's copies; closed
	// here, they leave their groups, whose only member is the successor.
	// Then the kernel's hash may choose again.
	closeListeners(olds)
	olds = nil
	unsteer(news)
	p.log.Info().Int("pid", succ.pid).Int("predecessor", old.pid).
		Stringer("ready_after", roundMs(ready)).Stringer("total", roundMs(time.Since(start))).
		Msg("traefik handed over")
	return nil
}

// retire tells inst, a Traefik that new connections no longer reach, to stop
// (SIGTERM) and waits until it holds none of ls, its listening sockets (the
// gateway's copies): from then on it takes no connection and keeps those it
// has for the graceTimeOut of its entry points. One that still listens
// after StopTimeout is killed; without ls it is waited for until it exits,
// as a Traefik whose sockets the gateway cannot reach must free its ports.
// It reports whether inst still runs, draining.
func (p *Process) retire(inst *instance, ls []listener) bool {
	if len(ls) == 0 {
		if err := p.terminate(context.Background(), inst); err != nil {
			p.log.Error().Err(err).Int("pid", inst.pid).Msg("stopping traefik")
		}
		return !inst.exited()
	}
	if err := inst.signal(syscall.SIGTERM); err != nil && !inst.exited() {
		p.log.Warn().Err(err).Int("pid", inst.pid).Msg("sending SIGTERM to traefik")
	}
	deadline := time.Now().Add(p.cfg.StopTimeout)
	for !inst.exited() {
		if holds, err := holdsAny(inst.pid, ls); err == nil && !holds {
			return true
		}
		if time.Now().After(deadline) {
			p.log.Warn().Int("pid", inst.pid).Stringer("after", p.cfg.StopTimeout).Msg("traefik still listens after SIGTERM, sending SIGKILL")
			_ = inst.signal(syscall.SIGKILL)
			killed, cancel := context.WithTimeout(context.Background(), killWait)
			inst.wait(killed)
			cancel()
			return !inst.exited()
		}
		time.Sleep(handoverPoll)
	}
	return false
}

// drainQueues waits until old has taken the connections its sockets queued
// before the steering sent new ones elsewhere: one left in a queue when old
// stops listening would be reset when its socket closes.
func (p *Process) drainQueues(old *instance, olds []listener) {
	deadline := time.Now().Add(handoverDrainQueue)
	for {
		waiting := 0
		for _, l := range olds {
			n, err := l.queued()
			if err != nil {
				p.log.Warn().Err(err).Msg("handover: the predecessor's accept queue cannot be read; giving it the settle time only")
				return
			}
			waiting += n
		}
		if waiting == 0 {
			return
		}
		if time.Now().After(deadline) || old.exited() {
			p.log.Warn().Int("queued", waiting).Int("pid", old.pid).Msg("handover: the predecessor did not take every queued connection")
			return
		}
		time.Sleep(handoverPoll)
	}
}

// unsteer removes the steering of each group; a failure is only logged: the
// hash then spreads connections over sockets that all accept.
func unsteer(ls []listener) {
	for _, l := range ls {
		_ = l.unsteer()
	}
}

// waitListening waits until succ listens on the internal address: Traefik
// creates every entry point's listener before it starts any, so the others
// listen too. It returns succ's listeners.
func waitListening(ctx context.Context, succ *instance, internal netip.AddrPort) ([]listener, error) {
	for {
		if succ.exited() {
			return nil, fmt.Errorf("handover: the successor, pid %d, exited before it listened", succ.pid)
		}
		ls, err := listeners(succ.pid)
		if err == nil && slices.ContainsFunc(ls, func(l listener) bool { return l.addr == internal }) {
			return ls, nil
		}
		closeListeners(ls)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("handover: the successor, pid %d, did not listen on %s: %w", succ.pid, internal, ctx.Err())
		case <-time.After(handoverPoll):
		}
	}
}

// waitServing waits until succ's API reports every router of want with the
// status it had in the predecessor. Past the deadline the successor gets the
// traffic anyway, with a warning naming what it lacks: a route deleted
// during the handover is in want and never comes. Stop ends the wait with
// errStopped.
func (p *Process) waitServing(ctx context.Context, succ *instance, api API, want Snapshot) error {
	answered, missing := false, 0
	for {
		if succ.exited() {
			return fmt.Errorf("handover: the successor, pid %d, exited before it served the routes", succ.pid)
		}
		// The counts first: at thousands of routes the lists are megabytes,
		// which the successor, loading, and its predecessor, serving, need
		// the CPU more than to make.
		ov, err := api.Overview(ctx)
		if err == nil {
			answered = true
			if ov.HTTPRouters >= len(want.HTTPRouters) && ov.TCPRouters >= len(want.TCPRouters) {
				var got Snapshot
				if got, err = api.Snapshot(ctx); err == nil {
					missing = lacking(want.HTTPRouters, got.HTTPRouters) + lacking(want.TCPRouters, got.TCPRouters)
					if missing == 0 {
						return nil
					}
				}
			} else {
				missing = len(want.HTTPRouters) + len(want.TCPRouters) - min(ov.HTTPRouters, len(want.HTTPRouters)) - min(ov.TCPRouters, len(want.TCPRouters))
			}
		}
		select {
		case <-ctx.Done():
			if p.stopping.Err() != nil {
				return fmt.Errorf("handover: %w", errStopped)
			}
			if !answered {
				return fmt.Errorf("handover: the successor's API never answered: %w", err)
			}
			p.log.Warn().Int("missing", missing).Msg("handover: the successor still lacks routers of its predecessor; handing over anyway")
			return nil
		case <-time.After(handoverPoll):
		}
	}
}

// lacking counts the routers of want that got lacks or reports with another
// status.
func lacking(want, got map[string]RouterState) int {
	n := 0
	for name, w := range want {
		if g, ok := got[name]; !ok || g.Status != w.Status {
			n++
		}
	}
	return n
}
