package meter

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/threefoldtech/gateway/pkg/store"
)

// DefaultInterval is how often a Meter reads its counters and saves the
// totals: the most traffic a power cut can cost.
const DefaultInterval = time.Second

// The ledger's place under the gateway's root.
const (
	LedgerDirName  = "metering"
	LedgerFileName = "ledger.json"
)

// StoreBucket and StoreKey place the totals in the gateway's store.
const (
	StoreBucket = "meter"
	StoreKey    = "ledger"
)

// Config configures New.
type Config struct {
	// Table is the nftables table of the counters. Default DefaultTable.
	Table string
	// NetNS is a descriptor of the network namespace Traefik runs in.
	// Default 0: the gateway's.
	NetNS int
	// Store, when set, keeps the totals (bucket StoreBucket): each save
	// of a reading of the counters is one transaction. Ledger is then the
	// file an earlier version kept them in, imported once.
	Store *store.Store
	// Ledger is the path of the totals file. Required without Store.
	Ledger string
	// Interval is how often Run reads the counters and saves the totals.
	// Default DefaultInterval.
	Interval time.Duration
	// Logger receives the meter's logs.
	Logger zerolog.Logger
}

// Meter counts the bytes of each workload's backend addresses in the
// kernel, and keeps per-workload totals that never go backwards. It drives a
// Kernel and a Ledger in the order the package documentation gives. Its
// methods are safe for concurrent use.
type Meter struct {
	kernel   *Kernel
	ledger   *Ledger
	interval time.Duration
	log      zerolog.Logger

	mu sync.Mutex
	// addrs are the addresses of each workload; refs counts the workloads
	// that list each address: the kernel counts an address while one does.
	addrs map[string][]netip.AddrPort
	refs  map[netip.AddrPort]int
	// failing is set while the periodic reading fails, to log once.
	failing bool
}

// New opens the counters' table (creating it if needed, keeping its
// counters if it exists) and the ledger.
func New(cfg Config) (*Meter, error) {
	if cfg.Ledger == "" && cfg.Store == nil {
		return nil, fmt.Errorf("a store or a ledger path is required")
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("interval %s is negative", cfg.Interval)
	}
	log := cfg.Logger.With().Str("component", "meter").Logger()
	var ledger *Ledger
	var err error
	if cfg.Store != nil {
		ledger, err = NewLedger(store.Blob{Store: cfg.Store, Bucket: StoreBucket, Key: StoreKey, Legacy: cfg.Ledger})
	} else {
		if err := os.MkdirAll(filepath.Dir(cfg.Ledger), 0o700); err != nil {
			return nil, fmt.Errorf("creating the ledger's folder: %w", err)
		}
		ledger, err = OpenLedger(cfg.Ledger)
	}
	if err != nil {
		return nil, err
	}
	kernel, err := OpenKernel(KernelConfig{Table: cfg.Table, NetNS: cfg.NetNS, Logger: log})
	if err != nil {
		return nil, err
	}
	return &Meter{
		kernel:   kernel,
		ledger:   ledger,
		interval: cfg.Interval,
		log:      log,
		addrs:    make(map[string][]netip.AddrPort),
		refs:     make(map[netip.AddrPort]int),
	}, nil
}

// Reset makes the metered workloads exactly routes, at start. The bytes
// counted while no gateway ran go to the owners of their addresses: the
// workloads of routes first (a claim made just before a crash may not have
// been saved, but its route was), then those of the saved claims. A
// workload of the ledger missing from routes is removed after its last
// bytes are in, and reported once.
func (m *Meter) Reset(routes map[string][]netip.AddrPort) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.addrs = make(map[string][]netip.AddrPort, len(routes))
	m.refs = make(map[netip.AddrPort]int)
	ids := make([]string, 0, len(routes))
	for id, addrs := range routes {
		addrs = normalizeAll(addrs)
		m.addrs[id] = addrs
		for _, a := range addrs {
			m.refs[a]++
		}
		ids = append(ids, id)
	}
	// In a stable order: claims made in one step get their sequence in
	// the order of the workload IDs. A claim saved before keeps its own.
	slices.Sort(ids)
	for _, id := range ids {
		m.ledger.Assign(id, m.addrs[id])
	}
	if err := m.observe(); err != nil {
		return err
	}
	if err := m.sync(); err != nil {
		return err
	}
	for id := range m.ledger.Totals() {
		if _, ok := routes[id]; !ok {
			m.ledger.Remove(id)
		}
	}
	return m.save()
}

// Assign sets the backend addresses of a workload. The kernel counts a new
// address before Assign returns, so that the route can go live after it.
func (m *Meter) Assign(id string, addrs []netip.AddrPort) error {
	return m.AssignAll(map[string][]netip.AddrPort{id: addrs})
}

// AssignAll sets the backend addresses of several workloads at once, as
// Assign does for each, with one change of the kernel's table: all of them
// or, on error, none.
func (m *Meter) AssignAll(routes map[string][]netip.AddrPort) error {
	changes := make(map[string]assignment, len(routes))
	for id, addrs := range routes {
		changes[id] = assignment{addrs: normalizeAll(addrs), keep: true}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.change(changes)
}

// Remove ends the metering of a workload; its total is reported once more.
func (m *Meter) Remove(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.addrs[id]; !ok {
		return nil
	}
	return m.change(map[string]assignment{id: {}})
}

// assignment is what change makes of one workload: addrs are its addresses
// if keep is set; it is removed otherwise.
type assignment struct {
	addrs []netip.AddrPort
	keep  bool
}

// change applies changes, with at most one Sync of the kernel: all of them,
// or on error none. Called with mu held.
func (m *Meter) change(changes map[string]assignment) error {
	type delta struct {
		old            []netip.AddrPort
		added, dropped []netip.AddrPort
	}
	deltas := make(map[string]delta, len(changes))
	shared := false
	for id, c := range changes {
		d := delta{old: m.addrs[id]}
		for _, a := range c.addrs {
			if !slices.Contains(d.old, a) {
				d.added = append(d.added, a)
			}
		}
		for _, a := range d.old {
			if !slices.Contains(c.addrs, a) {
				d.dropped = append(d.dropped, a)
			}
		}
		// An address another workload lists changes hands: what it
		// counted so far goes to the owner so far.
		shared = shared || slices.ContainsFunc(d.added, func(a netip.AddrPort) bool { return m.refs[a] > 0 }) ||
			slices.ContainsFunc(d.dropped, func(a netip.AddrPort) bool { return m.refs[a] > 1 })
		deltas[id] = d
	}
	if shared {
		if err := m.observe(); err != nil {
			return err
		}
	}
	// before holds the counts of the addresses touched, as they were.
	before := make(map[netip.AddrPort]int)
	for id, d := range deltas {
		for _, a := range d.added {
			if _, ok := before[a]; !ok {
				before[a] = m.refs[a]
			}
			m.refs[a]++
		}
		for _, a := range d.dropped {
			if _, ok := before[a]; !ok {
				before[a] = m.refs[a]
			}
			if m.refs[a]--; m.refs[a] == 0 {
				delete(m.refs, a)
			}
		}
		if c := changes[id]; c.keep {
			m.addrs[id] = c.addrs
		} else {
			delete(m.addrs, id)
		}
	}
	// The kernel changes only when an address starts or stops being
	// counted.
	counted := false
	for a, n := range before {
		if (n > 0) != (m.refs[a] > 0) {
			counted = true
		}
	}
	if counted {
		if err := m.sync(); err != nil {
			// Back to what the kernel counts.
			for a, n := range before {
				if n > 0 {
					m.refs[a] = n
				} else {
					delete(m.refs, a)
				}
			}
			for id, d := range deltas {
				if d.old != nil {
					m.addrs[id] = d.old
				} else {
					delete(m.addrs, id)
				}
			}
			return err
		}
	}
	removed := false
	for id, c := range changes {
		if c.keep {
			m.ledger.Assign(id, c.addrs)
			continue
		}
		m.ledger.Remove(id)
		removed = true
	}
	if removed {
		// The counters of its addresses are gone from the kernel: their
		// last bytes are only in the ledger now.
		return m.save()
	}
	return nil
}

// sync makes the kernel count the addresses of refs and gives the last
// bytes of the others to their owners. Called with mu held.
func (m *Meter) sync() error {
	want := make([]netip.AddrPort, 0, len(m.refs))
	for a := range m.refs {
		want = append(want, a)
	}
	final, err := m.kernel.Sync(want)
	if err == nil {
		m.ledger.Observe(final)
		return nil
	}
	// A table edited by hand in a way Sync cannot bring back in line
	// (a map element removed under a chain that stays) would refuse every
	// route change from now on: take in what its counters hold, and make
	// it anew.
	m.log.Error().Err(err).Msg("the counters' table cannot be brought in line; making it anew (the bytes of the last milliseconds may be lost)")
	if oerr := m.observe(); oerr != nil {
		m.log.Error().Err(oerr).Msg("reading the counters before making the table anew")
	}
	if rerr := m.kernel.Remove(); rerr != nil {
		return fmt.Errorf("%w; removing the table to make it anew: %w", err, rerr)
	}
	if rerr := m.kernel.Repair(); rerr != nil {
		return fmt.Errorf("%w; making the table anew: %w", err, rerr)
	}
	if final, err = m.kernel.Sync(want); err != nil {
		return err
	}
	m.ledger.Observe(final)
	return nil
}

// observe gives what the counters counted since the last reading to the
// owners of their addresses. Called with mu held.
func (m *Meter) observe() error {
	readings, err := m.kernel.Read()
	if err != nil {
		return err
	}
	m.ledger.Observe(readings)
	return nil
}

func (m *Meter) save() error {
	if err := m.ledger.Save(); err != nil {
		return fmt.Errorf("saving the byte totals: %w", err)
	}
	return nil
}

// Totals returns the totals of every metered workload, read from the
// counters now.
func (m *Meter) Totals() (map[string]Totals, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.observe(); err != nil {
		return nil, err
	}
	return m.ledger.Totals(), nil
}

// Report returns the totals of every metered workload, and of each one
// removed since the last Report for the last time, and saves that it did.
func (m *Meter) Report() (map[string]Totals, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.observe(); err != nil {
		return nil, err
	}
	totals, done := m.ledger.Report()
	err := m.save()
	done(err == nil)
	if err != nil {
		return nil, err
	}
	return totals, nil
}

// Run reads the counters and saves the totals every Interval until ctx
// ends, then once more.
func (m *Meter) Run(ctx context.Context) error {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.tick()
			return m.kernel.Close()
		case <-t.C:
			m.tick()
		}
	}
}

// tick is one periodic reading and save; it logs a failure once, and the
// recovery. Counters missing from the kernel (the table was removed, e.g.
// by a firewall reload that flushed the ruleset) are made again: what they
// counted since the last reading is lost, and said so.
func (m *Meter) tick() {
	m.mu.Lock()
	defer m.mu.Unlock()
	err := m.observeOrRepair()
	if err == nil {
		err = m.save()
	}
	switch {
	case err != nil && !m.failing:
		m.log.Error().Err(err).Msg("reading the byte counters; the totals are kept and catch up when it works again")
	case err == nil && m.failing:
		m.log.Info().Msg("reading the byte counters works again")
	}
	m.failing = err != nil
}

// observeOrRepair is observe, which also makes again the counters of
// addresses the kernel no longer has. Called with mu held.
func (m *Meter) observeOrRepair() error {
	readings, err := m.kernel.Read()
	if err != nil {
		return err
	}
	m.ledger.Observe(readings)
	missing := 0
	for a := range m.refs {
		if _, ok := readings[a]; !ok {
			missing++
		}
	}
	if missing == 0 {
		return nil
	}
	m.log.Error().Int("addresses", missing).Int("counted", len(m.refs)).
		Msg("byte counters missing from the kernel (a firewall reload that flushed the ruleset?); making them again: their traffic since the last reading is lost")
	if err := m.kernel.Repair(); err != nil {
		return err
	}
	return m.sync()
}

// normalizeAll returns addrs in the form the kernel counts them in, sorted,
// without duplicates.
func normalizeAll(addrs []netip.AddrPort) []netip.AddrPort {
	out := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		out[i] = normalize(a)
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return slices.Compact(out)
}
