//go:build linux

package meter

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/rs/zerolog"

	"github.com/threefoldtech/gateway/internal/quote"
)

// Kernel is split by job: this file holds its API and runs a Sync; the
// planner (plan.go) decides what a Sync changes; the netlink side (nft.go)
// reads the table and sends the planner's batches; shape.go describes the
// table, its base chains and its maps.

// DefaultTable is the table KernelConfig.Table defaults to.
const DefaultTable = "gateway_meter"

const (
	// maxNameLen is the longest table name the kernel takes
	// (NFT_NAME_MAXLEN, 256, with the terminating NUL). Object and chain
	// names are at most 67 bytes: "rx/" + "[" + 39 + "]:65535" + "/" + 16.
	maxNameLen = 255
	// bootIDPath holds the identifier of the running boot.
	bootIDPath = "/proc/sys/kernel/random/boot_id"
)

// KernelConfig configures OpenKernel.
type KernelConfig struct {
	// Table is the name of the inet table of the counters. Default
	// DefaultTable. The table belongs to the Kernel: whoever edits it by
	// hand should Remove it instead.
	Table string
	// NetNS is a descriptor of the network namespace to count in. Default
	// 0: the namespace of the calling thread.
	NetNS int
	// Logger receives what the Kernel did of its own accord (replacing a
	// table of an unexpected shape). Default: none.
	Logger zerolog.Logger
}

// Kernel keeps the counters of the backend addresses in an nftables table,
// over netlink. Its methods are safe for concurrent use. It needs
// CAP_NET_ADMIN, and Linux 4.16 or later: earlier kernels cut object and
// chain names at 32 bytes.
type Kernel struct {
	log    zerolog.Logger
	netns  int
	table  *nftables.Table
	maps   [2][2]*nftables.Set // by direction, then 0 for IPv4 and 1 for IPv6
	bootID string

	mu      sync.Mutex
	conn    *nftables.Conn // nil after an error, until the next call
	genConn *netlink.Conn  // asks for the generation; as conn
	buffer  int            // of conn's socket, in bytes: see minBuffer
	closed  bool
	// wired is the table as this Kernel's last Sync left it: the nonce of
	// the pair that counts, by address, with no other pair and no other
	// chain of an address. It holds while the ruleset's generation is gen.
	// It is nil when not known: before the first Sync, after an error or
	// Repair, and after a Sync that left what it fixes only at the next.
	wired map[netip.AddrPort]string
	gen   uint32
	// commits counts the batches flush committed, each of which bumped
	// the generation by one.
	commits uint32
}

// errClosed is the error of a Kernel used after Close.
var errClosed = errors.New("the kernel meter is closed")

// OpenKernel connects to nftables in cfg.NetNS and makes sure the table of
// the counters is there. A table of that name left by an earlier run is
// reused as it is, counters and all, since they counted while no gateway
// ran; one whose shape is not the expected one (another version) is
// replaced, and its counters are lost, which is logged.
func OpenKernel(cfg KernelConfig) (*Kernel, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if len(cfg.Table) > maxNameLen || strings.ContainsRune(cfg.Table, 0) {
		return nil, fmt.Errorf("table name %s: not a name nftables takes (at most %d bytes, no NUL)", quote.Short(cfg.Table), maxNameLen)
	}
	if cfg.NetNS < 0 {
		return nil, fmt.Errorf("network namespace descriptor %d: not a descriptor", cfg.NetNS)
	}
	bootID, err := os.ReadFile(bootIDPath)
	if err != nil {
		return nil, fmt.Errorf("reading the boot ID: %w", err)
	}
	table := &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet}
	k := &Kernel{
		log:    cfg.Logger.With().Str("component", "meter").Str("table", cfg.Table).Logger(),
		netns:  cfg.NetNS,
		table:  table,
		maps:   newMaps(table),
		bootID: strings.TrimSpace(string(bootID)),
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.setUp(); err != nil {
		k.drop()
		return nil, fmt.Errorf("setting up table %q: %w", cfg.Table, err)
	}
	return k, nil
}

// Repair creates the table again if it is gone (a firewall reload that
// flushed the whole ruleset removes it) or replaces it if its shape was
// changed by hand; counters of addresses are then made by the next Sync.
func (k *Kernel) Repair() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return errClosed
	}
	k.wired = nil
	if err := k.setUp(); err != nil {
		k.drop()
		return fmt.Errorf("setting up table %q again: %w", k.table.Name, err)
	}
	return nil
}

// reading is the Reading of a pair.
func (k *Kernel) reading(p *pair) Reading {
	return Reading{
		Tx: p.bytes[tx], Rx: p.bytes[rx],
		TxPackets: p.packets[tx], RxPackets: p.packets[rx],
		Instance: k.bootID + "/" + p.nonce,
	}
}

// Read returns the value of every counter of the table, read in one dump:
// those of the counted addresses, and those a Sync stopped but could not
// delete yet, which the next Sync returns as final.
func (k *Kernel) Read() (map[netip.AddrPort]Reading, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	counters, err := k.dumpCounters()
	if err != nil {
		k.drop()
		return nil, fmt.Errorf("reading counters of table %q: %w", k.table.Name, err)
	}
	if k.wired != nil && !matches(k.wired, counters) {
		// The generation should have told; the next Sync reads the whole
		// table all the same.
		k.log.Debug().Msg("the counters differ from the wiring the kernel meter remembers; forgetting it")
		k.wired = nil
	}
	out := make(map[netip.AddrPort]Reading, len(counters))
	for a, ps := range counters {
		if len(ps) > 1 {
			k.log.Warn().Stringer("address", a).Int("pairs", len(ps)).Msg("several pairs of counters for one address; reading the first")
		}
		out[a] = k.reading(ps[0])
	}
	return out, nil
}

// Sync makes the counted addresses exactly addrs, and returns the last
// reading of the counters of the addresses it stops counting.
//
// Counting starts and stops for all addresses at once, in one netlink batch
// that adds and removes the map elements (and the chains they lead to). The
// counters of the dropped addresses are then read and, in a second batch,
// deleted: they stopped counting in the first batch, so the bytes between
// the reading and the deletion are at most those of packets a CPU was
// counting at the instant of the first commit. When the second batch fails,
// or the gateway dies before it, the counters stay, unreachable, and the
// next Sync returns them, or counts on with them if their address is back:
// no byte is lost or returned twice.
//
// A Sync costs what changes, not what is counted, while the table is as
// the Kernel left it: the Kernel remembers its wiring, and the generation
// of the ruleset, which nftables bumps at every change by anyone, tells
// whether it still holds. Otherwise (the first Sync, one after an error or
// Repair, or after anything else changed the namespace's ruleset) Sync
// reads the whole table, and repairs what it finds changed by hand; so does
// a Sync whose changes fail.
//
// An IPv4 address mapped into IPv6 is counted as the IPv4 address it is,
// without zone; the returned readings use that form. An address without IP
// or port is an error.
func (k *Kernel) Sync(addrs []netip.AddrPort) (final map[netip.AddrPort]Reading, err error) {
	want := make(map[netip.AddrPort]bool, len(addrs))
	for _, a := range addrs {
		if !a.Addr().IsValid() || a.Port() == 0 {
			return nil, fmt.Errorf("syncing counters of table %q: address %s has no IP address or no port", k.table.Name, quote.Short(a.String()))
		}
		want[normalize(a)] = true
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	defer func() {
		if err != nil {
			k.drop() // the socket may hold answers to what failed
		}
	}()
	gen, err := k.generation()
	if err != nil {
		return nil, fmt.Errorf("syncing counters of table %q: %w", k.table.Name, err)
	}
	if k.wired != nil && gen == k.gen {
		if final, err = k.syncChanges(want, gen); err == nil {
			return final, nil
		}
		// Whatever it left, a Sync of the whole table takes from there,
		// rather than failing the change of routes.
		k.log.Warn().Err(err).Msg("changing the counted addresses failed; syncing the whole table")
		k.drop()
		if gen, err = k.generation(); err != nil {
			return nil, fmt.Errorf("syncing counters of table %q: %w", k.table.Name, err)
		}
	}
	return k.syncAll(want, gen)
}

// syncChanges is Sync from the remembered wiring, valid at generation gen:
// it adds and drops only the addresses that come and go. It changes the
// remembered wiring only once it succeeded; on an error, Sync drops it.
func (k *Kernel) syncChanges(want map[netip.AddrPort]bool, gen uint32) (map[netip.AddrPort]Reading, error) {
	p, err := plan(current{remembered: k.wired}, want, newNonce)
	if err != nil {
		return nil, err
	}
	if p.change.empty() {
		return map[netip.AddrPort]Reading{}, nil
	}
	return k.apply(p, nil, gen)
}

// syncAll is Sync from what the whole table holds, at generation gen or
// later.
func (k *Kernel) syncAll(want map[netip.AddrPort]bool, gen uint32) (map[netip.AddrPort]Reading, error) {
	k.wired = nil
	counters, err := k.dumpCounters()
	if err != nil {
		return nil, fmt.Errorf("reading counters of table %q: %w", k.table.Name, err)
	}
	conn, err := k.connection()
	if err != nil {
		return nil, fmt.Errorf("syncing counters of table %q: %w", k.table.Name, err)
	}
	chains, err := k.wiring(conn)
	if err != nil {
		return nil, fmt.Errorf("listing chains of table %q: %w", k.table.Name, err)
	}
	p, err := plan(current{pairs: counters, chains: chains}, want, newNonce)
	if err == nil {
		var final map[netip.AddrPort]Reading
		if final, err = k.apply(p, counters, gen); err == nil {
			return final, nil
		}
	}
	return nil, fmt.Errorf("syncing counters of table %q: %w", k.table.Name, err)
}

// apply carries out p, planned from the pairs before (nil when planned
// from the remembered wiring), at generation gen, and returns the final
// readings of the pairs it deleted.
func (k *Kernel) apply(p *syncPlan, before map[netip.AddrPort][]*pair, gen uint32) (map[netip.AddrPort]Reading, error) {
	commits := k.commits
	s, err := p.execute(k, before, newNonce)
	if err != nil {
		return nil, err
	}
	for _, a := range s.stuck {
		k.log.Warn().Stringer("address", a).Msg("several pairs of counters for one address; counting it again at the next sync")
	}
	final := make(map[netip.AddrPort]Reading, len(s.final))
	for a, q := range s.final {
		final[a] = k.reading(q)
	}
	if s.clean {
		k.remember(s.counted, gen, commits)
	}
	return final, nil
}

// remember makes wired the wiring the Kernel knows if the ruleset's
// generation moved from gen by exactly the batches flush committed since it
// counted commits: nothing else changed the ruleset meanwhile. Otherwise it
// forgets, and the next Sync reads the whole table.
func (k *Kernel) remember(wired map[netip.AddrPort]string, gen, commits uint32) {
	k.wired = nil
	now, err := k.generation()
	if err != nil {
		// The Sync is done, and its final readings are only in memory:
		// the next Sync reads the whole table instead.
		k.log.Debug().Err(err).Msg("reading the ruleset generation after a sync")
		k.drop()
		return
	}
	if now == gen+(k.commits-commits) {
		k.wired, k.gen = wired, now
	}
}

// Close closes the netlink connection. The table stays, and its counters
// go on counting. Close is idempotent.
func (k *Kernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.drop()
	k.closed = true
	return nil
}

// Remove deletes the table and every counter in it: counting stops. It is
// for tests and uninstalling.
func (k *Kernel) Remove() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	conn, err := k.connection()
	if err != nil {
		return fmt.Errorf("removing table %q: %w", k.table.Name, err)
	}
	k.wired = nil
	conn.DelTable(k.table)
	if err := conn.Flush(); err != nil {
		k.drop()
		return fmt.Errorf("removing table %q: %w", k.table.Name, err)
	}
	return nil
}
