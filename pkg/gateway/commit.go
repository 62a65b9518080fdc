package gateway

import (
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/threefoldtech/gateway/pkg/store"
	"github.com/threefoldtech/gateway/pkg/traefik"
)

// Sets are committed in batches, as a database commits transactions: the
// caller that finds nobody committing becomes the leader and commits what
// the queue holds, one batch at a time; the others wait for their batch.
// A batch costs one change of the meter's table, one transaction of the
// store (one fsync) and one write of each group file it touches, whatever
// its size: 500 Sets from 8 callers cost about 500/8 of each, not 500.
//
// A batch never holds two Sets of one wlID, nor two that claim, or free, one
// domain: its Sets are checked against the index as it was before the
// batch, and a Set's outcome never depends on another's in the same batch.
// Such a Set waits for the next batch, and the order of the calls is kept.

// pending is a Set waiting to be committed.
type pending struct {
	r route
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
	p := &pending{r: r, done: make(chan struct{}), lead: make(chan struct{})}
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

// commitBatch takes the next batch, checks each of its Sets, and commits
// those that change something: every hook prepares them, the store commits
// them in one transaction (one fsync), the routes are published, the index
// follows, and the hooks commit. A route whose publication failed is taken
// back from the store and from the hooks. Sets refused get their error. It
// holds the module's lock throughout.
func (m *Module) commitBatch() []*pending {
	m.mu.Lock()
	defer m.mu.Unlock()
	batch := m.take()
	var cs []change
	var ps []*pending
	for _, p := range batch {
		r := p.r
		if ids, ok := m.idx.disputed[r.fqdn]; ok {
			m.log.Info().Str("wlID", r.id).Str("fqdn", r.fqdn).Strs("claimed_by", ids).Msg("domain refused: several routes claimed it at start")
			p.err = fmt.Errorf("domain %q is not available: several routes claimed it when the gateway started; an operator must resolve it", r.fqdn)
			continue
		}
		if holder, ok := m.idx.byFQDN[r.fqdn]; ok && holder != r.id {
			// Who holds a domain is another tenant's business.
			m.log.Info().Str("wlID", r.id).Str("fqdn", r.fqdn).Str("holder", holder).Msg("domain refused: held by another workload")
			p.err = fmt.Errorf("domain %q already registered by another workload", r.fqdn)
			continue
		}
		old, held := m.idx.byID[r.id]
		if held && sameRoute(old, r) {
			// A node re-applies every workload when it boots: a Set that
			// changes nothing writes nothing, and costs Traefik no
			// reload. The route is checked all the same, in case it was
			// removed by hand.
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
		cs = append(cs, change{old: old, held: held, new: r})
		ps = append(ps, p)
	}
	if len(cs) == 0 {
		return batch
	}
	fail := func(ps []*pending, err error) {
		for _, p := range ps {
			p.err = fmt.Errorf("setting route %q: %w", p.r.id, err)
		}
	}
	if err := prepareHooks(m.hooks, cs); err != nil {
		fail(ps, err)
		return batch
	}
	routes := make([]route, len(cs))
	for i, c := range cs {
		routes[i] = c.new
	}
	if err := m.store.Update(func(tx *store.Tx) error { return putRoutes(tx, routes) }); err != nil {
		m.rollback(cs)
		fail(ps, err)
		return batch
	}

	cfgs := make(map[string]*traefik.Configuration, len(cs))
	for _, c := range cs {
		// After the hooks: a private network's addresses are known.
		cfgs[c.new.id] = c.new.render()
	}
	at := time.Now()
	failed := m.routes.PublishEach(cfgs)
	var done, undone []change
	for i, c := range cs {
		p := ps[i]
		if err := failed[c.new.id]; err != nil {
			p.err = fmt.Errorf("writing route %q: %w", c.new.id, err)
			undone = append(undone, c)
			continue
		}
		m.idx.put(c.new)
		p.changed = true
		done = append(done, c)
	}
	if len(undone) > 0 {
		m.unstore(undone)
		m.rollback(undone)
	}
	for _, h := range m.hooks {
		h.Commit(done, at)
	}
	return batch
}

// sameRoute tells whether a Set of b changes nothing of route a: the
// addresses of a private network are the network's business.
func sameRoute(a, b route) bool {
	a.via, b.via = nil, nil
	return reflect.DeepEqual(a, b)
}

// rollback undoes what the hooks prepared for cs.
func (m *Module) rollback(cs []change) {
	for _, h := range slices.Backward(m.hooks) {
		h.Rollback(cs)
	}
}

// unstore gives the store back the routes cs replaced, for changes that
// could not be published: the store holds what Traefik serves. If that
// fails, the next start publishes what the store holds.
func (m *Module) unstore(cs []change) {
	err := m.store.Update(func(tx *store.Tx) error {
		var back []route
		for _, c := range cs {
			if c.held {
				back = append(back, c.old)
			} else if err := deleteRoutes(tx, c.new.id); err != nil {
				return err
			}
		}
		return putRoutes(tx, back)
	})
	if err != nil {
		for _, c := range cs {
			m.log.Error().Err(err).Str("wlID", c.new.id).Msg("a route that could not be published stays in the store: the next start publishes it")
		}
	}
}

// finish tells each caller of batch the outcome. The store's commit made
// the batch durable; the routes folder is derived from it, and rewritten at
// start if a crash left it behind.
func (m *Module) finish(batch []*pending) {
	for _, p := range batch {
		r := p.r
		if p.err == nil && p.changed {
			m.log.Info().Str("wlID", r.id).Str("fqdn", r.fqdn).Bool("passthrough", r.passthrough).Int("backends", len(r.backends)).Msg("route set")
		}
		close(p.done)
	}
}
