package traefik

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// supervisionState is where the supervision of Traefik stands. Only the
// goroutine that owns the supervisor moves it; the others read it in the
// snapshot published at each change.
type supervisionState int

const (
	// stateIdle: no Run supervises. The Traefik the last Run left running,
	// if any, keeps serving on its own.
	stateIdle supervisionState = iota
	// stateStarting: a Traefik is adopted or started.
	stateStarting
	// stateRunning: a Traefik runs and is watched for its exit and for a
	// change of the static configuration.
	stateRunning
	// stateHandingOver: the running Traefik, of an outdated configuration or
	// binary, is replaced: by a handover on its sockets, or by stopping it
	// before its successor starts.
	stateHandingOver
	// stateLost: no Traefik runs (it exited, or none could be started);
	// another starts after the backoff.
	stateLost
	// stateStopped: Stop ended Traefik for good. Final: nothing starts again.
	stateStopped
)

var supervisionStateNames = [...]string{
	stateIdle:        "idle",
	stateStarting:    "starting",
	stateRunning:     "running",
	stateHandingOver: "handing over",
	stateLost:        "lost",
	stateStopped:     "stopped",
}

func (s supervisionState) String() string {
	if s < 0 || int(s) >= len(supervisionStateNames) {
		return fmt.Sprintf("supervisionState(%d)", int(s))
	}
	return supervisionStateNames[s]
}

// snapshot is what the supervisor publishes of its state, at each change,
// for the goroutines that do not own it.
type snapshot struct {
	state supervisionState
	// pid is the current Traefik's, 0 when there is none.
	pid int
}

// stopRequest asks the goroutine running Run to stop Traefik for good (see
// Process.Stop). The answer, Stop's error, comes on done.
type stopRequest struct {
	ctx  context.Context
	done chan<- error
}

// supervisor is the state of the supervision of one Traefik. One goroutine
// owns it at a time, so nothing in it is locked: the one running Run, for as
// long as Run runs, or Stop when no Run does. In between it waits in
// Process.owner, where the next owner takes it.
type supervisor struct {
	p     *Process
	state supervisionState
	// cur is the Traefik supervised, nil when none runs.
	cur *instance
	// lost is the pid of the last Traefik that exited or was replaced.
	lost int
	// retryAt is when a failed handover may be tried again, retryWait the
	// wait after the next failure.
	retryAt   time.Time
	retryWait time.Duration
	// backoff is the wait before starting Traefik once it is lost;
	// downSince is when it was lost, zero while one runs.
	backoff   time.Duration
	downSince time.Time
	// announced tells that Process.started was closed.
	announced bool
	// draining are the Traefiks handed over (or found astray) that keep
	// their connections until they end; neither adopted nor stopped early.
	draining []drainer
}

// set moves s to state st and publishes it. The first time a Traefik runs,
// it closes Process.started: the only place that closes it.
func (s *supervisor) set(st supervisionState) {
	s.state = st
	s.publish()
	if st == stateRunning && !s.announced {
		s.announced = true
		close(s.p.started)
	}
}

// publish stores the snapshot of s that Process.status reads.
func (s *supervisor) publish() {
	snap := snapshot{state: s.state}
	if s.cur != nil {
		snap.pid = s.cur.pid
	}
	s.p.snap.Store(&snap)
}

// run supervises Traefik: it adopts or starts one, restarts it with backoff
// when it exits and replaces it when the static configuration changes. It
// returns when ctx ends, leaving Traefik running, or once it answered a stop
// request. Each state's step returns the next state; stateIdle ends run.
func (s *supervisor) run(ctx context.Context) {
	s.backoff, s.downSince = s.p.cfg.BackoffMin, time.Time{}
	if s.state == stateStopped {
		return
	}
	s.set(stateStarting)
	for {
		var next supervisionState
		switch s.state {
		case stateStarting:
			next = s.starting(ctx)
		case stateRunning:
			next = s.running(ctx)
		case stateHandingOver:
			next = s.handingOver()
		case stateLost:
			next = s.await(ctx, s.backoff)
			s.backoff = min(2*s.backoff, s.p.cfg.BackoffMax)
		default: // stateStopped, or stateIdle, which run never sets
			return
		}
		if next == stateIdle {
			// ctx ended: Traefik, if any, keeps running on its own.
			s.set(stateIdle)
			return
		}
		s.set(next)
	}
}

// starting makes a Traefik the current one: the current one if it still
// runs, the one of the pidfile when it runs our binary and configuration, or
// a new one.
func (s *supervisor) starting(ctx context.Context) supervisionState {
	if s.cur != nil {
		// One of an outdated configuration is replaced by running, which
		// knows when a failed handover may be tried again.
		if !s.cur.exited() {
			return stateRunning
		}
		s.forget(s.cur)
	}
	if s.p.stopping.Err() != nil {
		// Stop was called: nothing starts, its request comes next.
		return s.await(ctx, -1)
	}
	next, err := s.acquire()
	if errors.Is(err, errStopped) {
		return s.await(ctx, -1)
	}
	if err != nil {
		s.p.log.Error().Err(err).Stringer("retry_in", s.backoff).Msg("traefik not running")
		return stateLost
	}
	if !s.downSince.IsZero() {
		s.p.log.Info().Int("pid", s.cur.pid).Stringer("down", roundMs(time.Since(s.downSince))).Msg("traefik is back")
		s.downSince = time.Time{}
	}
	return next
}

// acquire makes the current Traefik the one of the pidfile, or a new one,
// and stops the strays. The Traefik of the pidfile may run an outdated
// configuration or binary: then the next state is stateHandingOver.
func (s *supervisor) acquire() (supervisionState, error) {
	hash, err := s.p.configHash()
	if err != nil {
		return stateLost, err
	}
	if rec, err := readPidFile(s.p.pidFile); err == nil {
		// Handed over by an earlier gateway, they drain on.
		s.resumeDraining(rec)
	}
	inst, outdated := s.adopt(hash)
	if inst != nil {
		// A gateway that crashed during a handover left two. Stopped before
		// any handover, the stray cannot take a place in the sockets'
		// groups that the steering gives the successor.
		s.stopStrays(inst)
		s.cur = inst
		if outdated {
			return stateHandingOver, nil
		}
		return stateRunning, nil
	}
	s.stopStrays(nil)
	if err := s.start(hash); err != nil {
		return stateLost, err
	}
	return stateRunning, nil
}

// adopt takes over the Traefik of the pidfile when it runs our configuration
// file: as is when it runs our binary with the same hash, outdated when the
// hash or the binary differ, to be replaced. A process that only looks like
// ours (identify) is left alone. It returns nil when there is nothing to
// adopt.
func (s *supervisor) adopt(hash string) (inst *instance, outdated bool) {
	rec, err := readPidFile(s.p.pidFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		s.p.log.Warn().Err(err).Msg("ignoring the pidfile")
		return nil, false
	}
	inst, match, notOurs := openVerified(rec.PID, s.p.argv)
	switch {
	case notOurs != nil:
		// Neither adopted nor signalled. Ours starts next; it cannot bind
		// the ports if that process holds them, and exits, and the log
		// says so at each restart.
		s.p.log.Warn().Int("pid", rec.PID).Err(notOurs).
			Msg("the pidfile names a process with our command line that is not our traefik; leaving it alone")
		return nil, false
	case inst == nil:
		ev := s.p.log.Info()
		if rec.PID == s.lost {
			ev = s.p.log.Debug() // the Traefik that just exited
		}
		ev.Int("pid", rec.PID).Msg("pidfile is stale: no traefik of ours runs with that pid")
		return nil, false
	case match == cmdlineSame && rec.Hash == hash:
		inst.hash = hash
		s.p.metrics.starts[startAdopted].Inc()
		s.p.log.Info().Int("pid", inst.pid).Msg("adopted running traefik")
		return inst, false
	default:
		s.p.log.Info().Int("pid", inst.pid).Bool("same_binary", match == cmdlineSame).
			Msg("running traefik has another configuration or binary, replacing it")
		inst.hash = rec.Hash
		s.p.metrics.starts[startAdopted].Inc()
		return inst, true
	}
}

// running watches the current Traefik until it exits, the static
// configuration changes, ctx ends or a stop request comes.
func (s *supervisor) running(ctx context.Context) supervisionState {
	inst := s.cur
	alive := time.NewTicker(aliveInterval)
	defer alive.Stop()
	config := time.NewTicker(configCheckInterval)
	defer config.Stop()
	failing := false // the configuration could not be read last time
	for {
		select {
		case <-ctx.Done():
			return stateIdle
		case req := <-s.p.requests:
			req.done <- s.stop(req.ctx)
			return stateStopped
		case <-inst.done: // nil, so never ready, for an adopted Traefik
			return s.exited(inst)
		case <-alive.C:
			if inst.child == nil && inst.exited() {
				return s.exited(inst)
			}
			s.checkDraining()
		case <-config.C:
			hash, err := s.p.configHash()
			if err != nil {
				// Keep the running Traefik; say so once, not every second.
				if !failing {
					s.p.log.Error().Err(err).Msg("checking the static configuration")
				}
				failing = true
				continue
			}
			failing = false
			if hash != inst.hash && !time.Now().Before(s.retryAt) {
				s.p.log.Info().Int("pid", inst.pid).Msg("static configuration changed, replacing traefik")
				return stateHandingOver
			}
		}
	}
}

// exited drops inst, which exited without the supervisor asking, and counts
// it as crashed. Only the owner signals Traefik, so a Traefik Stop ended
// never comes here.
func (s *supervisor) exited(inst *instance) supervisionState {
	s.p.metrics.exits[exitCrashed].Inc()
	up := time.Since(inst.since)
	if up >= stableAfter {
		s.backoff = s.p.cfg.BackoffMin
	}
	ev := s.p.log.Warn().Int("pid", inst.pid).Stringer("uptime", roundMs(up)).Stringer("restart_in", s.backoff)
	inst.describeExit(ev).Msg("traefik exited")
	s.forget(inst)
	s.downSince = time.Now()
	return stateLost
}

// handingOver replaces the current Traefik, of an outdated configuration or
// binary, by one of the current configuration. Then starting takes the one
// that serves: the successor, or the predecessor when the handover failed,
// or, when neither runs, a new one right away, even if ctx ended meanwhile:
// the data plane must not stay down.
func (s *supervisor) handingOver() supervisionState {
	hash, err := s.p.configHash()
	if err != nil {
		return stateStarting // running says so, once
	}
	if err := s.replace(s.cur, hash); errors.Is(err, errCrashed) {
		return stateIdle // the test's gateway died: nothing more happens
	} else if err != nil {
		s.p.log.Error().Err(err).Msg("replacing traefik")
	}
	if s.cur == nil {
		s.downSince = time.Now()
	}
	return stateStarting
}

// replace runs a Traefik of the configuration hash instead of old, the
// current one: by a handover when old's sockets allow it, otherwise by
// stopping old and starting the new one. The current Traefik is then the
// new one, or old when the handover failed, which is tried again after a
// growing wait (retryAt), or none.
func (s *supervisor) replace(old *instance, hash string) error {
	// A leftover of ours in the sockets' groups would take the successor's
	// place in the steering: none may be there, whatever led here.
	s.stopStrays(old)
	err := s.p.handover(old, hash, s.install, s.drain)
	switch {
	case err == nil:
		// Old drains; checkDraining forgets it once it exited.
		s.retryAt, s.retryWait = time.Time{}, 0
		return nil
	case errors.Is(err, errCrashed):
		return err
	case s.p.stopping.Err() != nil:
		// Stop was called: its request ends old, which serves until then.
		s.p.log.Debug().Err(err).Int("pid", old.pid).Msg("handover given up: traefik is being stopped")
		return nil
	case !errors.Is(err, errNoHandover):
		s.retryWait = min(max(2*s.retryWait, handoverRetryMin), handoverRetryMax)
		s.retryAt = time.Now().Add(s.retryWait)
		s.p.log.Error().Err(err).Int("pid", old.pid).Stringer("retry_in", s.retryWait).Msg("traefik not handed over; it keeps serving")
		return nil
	}
	if s.p.cfg.MetricsAddress != "" {
		s.p.log.Warn().Err(err).Int("pid", old.pid).Msg("stopping traefik before its successor starts")
	}
	err = s.p.end(context.Background(), old, exitReplaced)
	s.forget(old)
	if err != nil {
		return err
	}
	return s.start(hash)
}

// start starts a Traefik as our child and makes it the current one.
func (s *supervisor) start(hash string) error {
	inst, err := s.p.spawn(hash)
	if err != nil {
		return err
	}
	if err := s.install(inst); err != nil {
		// Without a pidfile the next gateway would start a second Traefik
		// that cannot bind the ports.
		_ = s.p.end(context.Background(), inst, exitReplaced)
		s.forget(inst)
		return err
	}
	s.p.log.Info().Int("pid", inst.pid).Str("config", s.p.cfg.ConfigFile).Msg("traefik started")
	return nil
}

// install makes inst, spawned, the current Traefik and names it in the
// pidfile.
func (s *supervisor) install(inst *instance) error {
	if err := writePidFile(s.p.pidFile, pidRecord{PID: inst.pid, Hash: inst.hash, Draining: s.drainRecords()}); err != nil {
		return err
	}
	s.cur = inst
	s.publish()
	return nil
}

// forget drops inst, and releases it, as the current Traefik.
func (s *supervisor) forget(inst *instance) {
	if s.cur == inst {
		s.cur = nil
		s.publish()
	}
	s.lost = inst.pid
	inst.close()
}

// await waits d, or for a stop request when d is negative. It returns the
// next state: stateStarting once d passed, stateStopped once it answered a
// stop request, stateIdle when ctx ended.
func (s *supervisor) await(ctx context.Context, d time.Duration) supervisionState {
	var timeout <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ctx.Done():
		return stateIdle
	case req := <-s.p.requests:
		req.done <- s.stop(req.ctx)
		return stateStopped
	case <-timeout:
		return stateStarting
	}
}

// stop stops Traefik for good: the current one, or the one of the pidfile
// when it is ours and there is no current one (after a gateway restart, or
// while lost), and kills the draining ones. It removes the pidfile. Both Run's loop, for a stop request,
// and Stop without a Run, come here.
func (s *supervisor) stop(ctx context.Context) error {
	s.set(stateStopped)
	inst := s.cur
	if rec, err := readPidFile(s.p.pidFile); err == nil {
		s.resumeDraining(rec)
		if inst == nil {
			inst, _, _ = openVerified(rec.PID, s.p.argv)
		}
	}
	var err error
	if inst != nil {
		err = s.p.end(ctx, inst, exitStopped)
		s.forget(inst)
	}
	s.killDraining()
	if rmErr := os.Remove(s.p.pidFile); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) && err == nil {
		err = fmt.Errorf("removing traefik pidfile: %w", rmErr)
	}
	return err
}
