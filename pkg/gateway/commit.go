package gateway

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"time"

	"github.com/threefoldtech/gateway/pkg/traefik"
)

// Sets are committed in batches, as a database commits transactions: the
// caller that finds nobody committing becomes the leader and commits what
// the queue holds, one batch at a time; the others wait for their batch.
// A batch costs one change of the meter's table, one write of each group
// file it touches and one sync of the folder, whatever its size: 500 Sets
// from 8 callers cost about 500/8 of each, not 500. The module's lock is
// held for the checks and the writes of a batch, not for the folder's sync:
// the next leader commits the next batch meanwhile.
//
// A batch never holds two Sets of one wlID, nor two that claim, or free, one
// domain: its Sets are checked against the index as it was before the
// batch, and a Set's outcome never depends on another's in the same batch.
// Such a Set waits for the next batch, and the order of the calls is kept.

// pending is a Set waiting to be committed.
type pending struct {
	r   route
	cfg *traefik.Configuration
	// err is the Set's outcome, set before done is closed.
	err  error
	done chan struct{}
	// lead is closed when the caller is to lead the commit.
	lead chan struct{}
	// changed is set when the batch wrote the route.
	changed bool
}

// commit publishes r, waiting in the queue for its batch, and returns the
// outcome of the Set. The index follows the folder: a write that took place
// is indexed even when its sync failed and the Set returns an error.
func (m *Module) commit(r route) error {
	p := &pending{r: r, cfg: r.render(), done: make(chan struct{}), lead: make(chan struct{})}
	m.qmu.Lock()
	m.queue = append(m.queue, p)
	leader := !m.leading
	m.leading = true
	m.qmu.Unlock()
	if !leader {
		select {
		case <-p.done:
			return p.err
		case <-p.lead:
		}
	}
	for {
		batch := m.commitBatch()
		mine := slices.Contains(batch, p)
		if mine {
			// The next batch need not wait for this one's sync.
			m.handOff()
		}
		m.finish(batch)
		if mine {
			return p.err
		}
	}
}

// handOff ends the caller's lead: the first caller still waiting leads next.
func (m *Module) handOff() {
	m.qmu.Lock()
	defer m.qmu.Unlock()
	if len(m.queue) == 0 {
		m.leading = false
		return
	}
	close(m.queue[0].lead)
}

// take removes the next batch from the queue: the longest run of Sets from
// its head that do not depend on one another. Called with mu held, so that
// the index is as the batch will be checked against.
func (m *Module) take() []*pending {
	m.qmu.Lock()
	defer m.qmu.Unlock()
	ids := make(map[string]bool)
	domains := make(map[string]bool)
	n := 0
	for _, p := range m.queue {
		old, held := m.idx.byID[p.r.id]
		if ids[p.r.id] || domains[p.r.fqdn] || (held && domains[old.fqdn]) {
			break
		}
		ids[p.r.id] = true
		domains[p.r.fqdn] = true
		if held {
			domains[old.fqdn] = true
		}
		n++
	}
	batch := slices.Clone(m.queue[:n])
	m.queue = slices.Delete(m.queue, 0, n)
	return batch
}

// commitBatch takes the next batch, checks each of its Sets, meters and
// writes those that change something, and indexes what was written; Sets
// refused get their error. It holds the module's lock throughout.
func (m *Module) commitBatch() []*pending {
	m.mu.Lock()
	defer m.mu.Unlock()
	batch := m.take()
	type change struct {
		p    *pending
		old  route
		held bool
	}
	var changes []change
	for _, p := range batch {
		r := p.r
		if ids, ok := m.idx.disputed[r.fqdn]; ok {
			m.log.Info().Str("wlID", r.id).Str("fqdn", r.fqdn).Strs("claimed_by", ids).Msg("domain refused: several route files claimed it at start")
			p.err = fmt.Errorf("domain %q is not available: several route files claimed it when the gateway started; an operator must resolve it", r.fqdn)
			continue
		}
		if holder, ok := m.idx.byFQDN[r.fqdn]; ok && holder != r.id {
			// Who holds a domain is another tenant's business.
			m.log.Info().Str("wlID", r.id).Str("fqdn", r.fqdn).Str("holder", holder).Msg("domain refused: held by another workload")
			p.err = fmt.Errorf("domain %q already registered by another workload", r.fqdn)
			continue
		}
		old, held := m.idx.byID[r.id]
		if held && reflect.DeepEqual(old, r) {
			// A node re-applies every workload when it boots: a Set that
			// changes nothing writes nothing, and costs Traefik no
			// reload. The route is checked all the same, in case it was
			// removed by hand; and the sync of the batch retries one
			// that failed before.
			if ok, err := m.routes.Published(r.id); err == nil && ok {
				continue
			}
		} else if !held {
			// A file the module did not write is never overwritten.
			qs, err := m.routes.Quarantine(r.id, "found where a route the gateway was setting goes; the gateway did not write it")
			for _, q := range qs {
				m.logQuarantined(q)
			}
			if err != nil {
				p.err = fmt.Errorf("writing route %q: moving aside what is there: %w", r.id, err)
				continue
			}
		}
		changes = append(changes, change{p: p, old: old, held: held})
	}

	// Counting starts before traffic can flow: a byte is never carried
	// unmetered.
	metered := make(map[string]bool)
	if m.meter != nil {
		assign := make(map[string][]netip.AddrPort)
		for _, c := range changes {
			addrs := c.p.r.meterAddrs()
			if !c.held || !slices.Equal(addrs, c.old.meterAddrs()) {
				assign[c.p.r.id] = addrs
			}
		}
		if len(assign) > 0 {
			if err := m.meter.AssignAll(assign); err != nil {
				changes = slices.DeleteFunc(changes, func(c change) bool {
					if _, ok := assign[c.p.r.id]; ok {
						c.p.err = fmt.Errorf("metering route %q: %w", c.p.r.id, err)
						return true
					}
					return false
				})
			} else {
				for id := range assign {
					metered[id] = true
				}
			}
		}
	}

	cfgs := make(map[string]*traefik.Configuration, len(changes))
	for _, c := range changes {
		cfgs[c.p.r.id] = c.p.cfg
	}
	at := time.Now()
	failed := m.routes.PublishEach(cfgs)
	for _, c := range changes {
		r := c.p.r
		if err := failed[r.id]; err != nil {
			if metered[r.id] {
				m.unmeter(r.id, c.old, c.held)
			}
			c.p.err = fmt.Errorf("writing route %q: %w", r.id, err)
			continue
		}
		m.idx.put(r)
		m.wantCertificate(c.old, c.held, r)
		if !c.held {
			m.seen.created(r.id, r.passthrough, at)
		}
		c.p.changed = true
	}
	return batch
}

// finish syncs what batch wrote, without the module's lock, and tells each
// of its callers the outcome.
func (m *Module) finish(batch []*pending) {
	var serr error
	if slices.ContainsFunc(batch, func(p *pending) bool { return p.err == nil }) {
		// Also when the batch wrote nothing: a Set that changed nothing
		// makes an earlier write whose sync failed durable. With nothing
		// left unsynced it costs nothing.
		serr = m.routes.Sync()
	}
	for _, p := range batch {
		r := p.r
		switch {
		case p.err != nil:
		case serr != nil:
			// Also a Set that wrote nothing: its route, written by an
			// earlier one, is not durable either.
			m.log.Error().Err(serr).Str("wlID", r.id).Str("fqdn", r.fqdn).Msg("route set, but not durably")
			p.err = fmt.Errorf("route %q is live: %w", r.id, serr)
		case p.changed:
			m.log.Info().Str("wlID", r.id).Str("fqdn", r.fqdn).Bool("passthrough", r.passthrough).Int("backends", len(r.backends)).Msg("route set")
		}
		close(p.done)
	}
}
