package traefik

import (
	"context"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// drainer is a Traefik handed over, or found astray, and told to stop: it
// listens no more and keeps the connections it holds until they end or its
// entry points' graceTimeOut (HandoverDrain) ends; the gateway kills it if
// it still runs at until.
type drainer struct {
	inst  *instance
	start uint64 // its start time, see drainRecord
	until time.Time
}

// drain records old, whose successor takes every new connection, as
// draining, in the supervisor and in the pidfile, before it is told to
// stop: a gateway that dies from then on leaves the next one a record that
// keeps it from adopting or stopping it.
func (s *supervisor) drain(old *instance) {
	start, err := procStartTime(old.pid)
	if err != nil {
		s.p.log.Warn().Err(err).Int("pid", old.pid).Msg("reading the start time of the traefik handed over")
	}
	s.draining = append(s.draining, drainer{
		inst:  old,
		start: start,
		until: time.Now().Add(s.p.cfg.HandoverDrain + s.p.cfg.StopTimeout),
	})
	s.savePidFile()
}

// drainRecords are the draining Traefiks as the pidfile names them.
func (s *supervisor) drainRecords() []drainRecord {
	var out []drainRecord
	for _, d := range s.draining {
		out = append(out, drainRecord{PID: d.inst.pid, Start: d.start, Until: d.until})
	}
	return out
}

// savePidFile writes the pidfile anew, the current Traefik and the draining
// ones, when there is a current one. A failure is logged: the file still
// names the current Traefik, at worst with a drained one the next gateway
// finds gone.
func (s *supervisor) savePidFile() {
	if s.cur == nil {
		return
	}
	rec := pidRecord{PID: s.cur.pid, Hash: s.cur.hash, Draining: s.drainRecords()}
	if err := writePidFile(s.p.pidFile, rec); err != nil {
		s.p.log.Error().Err(err).Msg("recording the draining traefik")
	}
}

// isDraining tells whether pid is a draining Traefik the supervisor knows.
func (s *supervisor) isDraining(pid int) bool {
	return slices.ContainsFunc(s.draining, func(d drainer) bool { return d.inst.pid == pid })
}

// resumeDraining takes over the draining Traefiks rec names, the pidfile of
// an earlier gateway: those still running, ours, and started when the
// record says. One that still listens (that gateway died before telling it
// to stop) is retired first.
func (s *supervisor) resumeDraining(rec pidRecord) {
	for _, r := range rec.Draining {
		if r.PID == rec.PID || s.isDraining(r.PID) {
			continue
		}
		inst, _, _ := openVerified(r.PID, s.p.argv)
		if inst == nil {
			continue
		}
		if start, err := procStartTime(r.PID); err != nil || start != r.Start {
			inst.close() // another process of ours took the pid
			continue
		}
		if ls, err := listeners(r.PID); err == nil && len(ls) > 0 {
			s.p.drainQueues(inst, ls)
			time.Sleep(handoverSettle)
			alive := s.p.retire(inst, ls)
			closeListeners(ls)
			if !alive {
				s.p.metrics.exits[exitReplaced].Inc()
				inst.close()
				continue
			}
		}
		s.p.log.Info().Int("pid", r.PID).Time("until", r.Until).Msg("a traefik handed over by an earlier gateway still drains its connections; left to finish")
		s.draining = append(s.draining, drainer{inst: inst, start: r.Start, until: r.Until})
	}
}

// checkDraining forgets the draining Traefiks that exited and kills those
// past their deadline. The pidfile follows.
func (s *supervisor) checkDraining() {
	if len(s.draining) == 0 {
		return
	}
	now := time.Now()
	left := s.draining[:0]
	for _, d := range s.draining {
		if d.inst.exited() {
			s.p.metrics.exits[exitReplaced].Inc()
			s.p.log.Info().Int("pid", d.inst.pid).Msg("the traefik handed over finished draining")
			d.inst.close()
			continue
		}
		if now.After(d.until) {
			s.p.log.Warn().Int("pid", d.inst.pid).Msg("the traefik handed over still runs past its drain, sending SIGKILL")
			_ = d.inst.signal(syscall.SIGKILL)
		}
		left = append(left, d)
	}
	if len(left) != len(s.draining) {
		clear(s.draining[len(left):])
		s.draining = left
		s.savePidFile()
	}
}

// killDraining ends the draining Traefiks at once (Stop): SIGKILL, and a
// wait for each to vanish.
func (s *supervisor) killDraining() {
	for _, d := range s.draining {
		if err := d.inst.signal(syscall.SIGKILL); err != nil && !d.inst.exited() {
			s.p.log.Error().Err(err).Int("pid", d.inst.pid).Msg("killing a draining traefik")
		}
		killed, cancel := context.WithTimeout(context.Background(), killWait)
		if d.inst.wait(killed) {
			s.p.metrics.exits[exitReplaced].Inc()
		}
		cancel()
		d.inst.close()
	}
	s.draining = nil
}

// stopStrays retires the Traefiks running our configuration file that are
// neither keep (nil: none) nor draining: a lost pidfile, whose Traefik's
// ports would keep the new one from starting, or a handover cut short by a
// crash, whose leftover sits in every SO_REUSEPORT group and would take the
// place the steering of the next handover gives the successor. A stray is
// retired as a predecessor is: when keep began before every stray, so that
// it is first in each group, the groups are steered to keep; each stray
// takes what was queued for it, gets SIGTERM and drains.
func (s *supervisor) stopStrays(keep *instance) {
	keepPID := 0
	if keep != nil {
		keepPID = keep.pid
	}
	strays := s.p.findStrays(func(pid int) bool { return pid == keepPID || s.isDraining(pid) })
	if len(strays) == 0 {
		return
	}
	var kept []listener
	if keep != nil && startedFirst(keep.pid, strays) {
		if ls, err := listeners(keep.pid); err == nil {
			kept = ls
			for _, l := range ls {
				if l.reusePort {
					_ = l.steer(0)
				}
			}
		}
	}
	type copies struct {
		inst *instance
		ls   []listener
	}
	var all []copies
	for _, inst := range strays {
		s.p.log.Warn().Int("pid", inst.pid).Msg("stopping a stray traefik running our configuration")
		ls, err := listeners(inst.pid)
		if err != nil {
			ls = nil
		}
		s.p.drainQueues(inst, ls)
		all = append(all, copies{inst, ls})
	}
	if len(kept) > 0 {
		// What the strays accepted must reach a router before they stop.
		time.Sleep(handoverSettle)
	}
	for _, c := range all {
		alive := s.p.retire(c.inst, c.ls)
		closeListeners(c.ls)
		if !alive {
			s.p.metrics.exits[exitReplaced].Inc()
			c.inst.close()
			continue
		}
		start, _ := procStartTime(c.inst.pid)
		s.draining = append(s.draining, drainer{inst: c.inst, start: start, until: time.Now().Add(s.p.cfg.HandoverDrain + s.p.cfg.StopTimeout)})
	}
	unsteer(kept)
	closeListeners(kept)
}

// startedFirst tells whether process pid started before every one of
// others; an unknown start time says no.
func startedFirst(pid int, others []*instance) bool {
	first, err := procStartTime(pid)
	if err != nil {
		return false
	}
	for _, o := range others {
		t, err := procStartTime(o.pid)
		if err != nil || t <= first {
			return false
		}
	}
	return true
}

// findStrays returns the live Traefiks of ours, identified and pinned,
// whose pid skip does not name.
func (p *Process) findStrays(skip func(pid int) bool) []*instance {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		p.log.Warn().Err(err).Msg("looking for stray traefik processes")
		return nil
	}
	var out []*instance
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || skip(pid) {
			continue
		}
		// A cheap look first; openVerified then pins and identifies the
		// process.
		cmdline, err := readCmdline(pid)
		if err != nil || matchCmdline(cmdline, p.argv) == cmdlineForeign {
			continue
		}
		inst, _, notOurs := openVerified(pid, p.argv)
		if notOurs != nil {
			p.log.Warn().Int("pid", pid).Err(notOurs).
				Msg("a process with our command line is not our traefik; leaving it alone")
		}
		if inst != nil {
			out = append(out, inst)
		}
	}
	return out
}
