package traefik

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
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
//     handshakes were under way for handoverSettle, then gets SIGTERM and
//     drains its requests and connections for the graceTimeOut of its entry
//     points (2s): established websockets and passthrough connections are
//     kept until then, and closed by old Traefik when it exits.
//
// The steering is a BPF program of one instruction per group; it is removed
// at the end. The successor is made the current Traefik by install, called
// once it gets every new connection and before old stops; install failing
// aborts the handover. On errNoHandover nothing was changed. On any other
// error the successor was stopped and old still serves every connection.
// Stop cuts it short, before install, with such an error. It runs on the
// goroutine that owns the supervision, which install updates.
func (p *Process) handover(old *instance, hash string, install func(*instance) error) error {
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
	start := time.Now()
	succ, err := p.spawn(hash)
	if err != nil {
		unsteer(olds)
		return err
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
	if err := install(succ); err != nil {
		return abort(err)
	}
	ready := time.Since(start)
	p.log.Info().Int("pid", succ.pid).Stringer("ready_after", roundMs(ready)).Msg("handover: the successor serves every router; new connections go to it")

	p.drainQueues(old, olds)
	time.Sleep(handoverSettle)
	if err := p.end(context.Background(), old, exitReplaced); err != nil {
		p.log.Error().Err(err).Int("pid", old.pid).Msg("handover: stopping the predecessor")
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
