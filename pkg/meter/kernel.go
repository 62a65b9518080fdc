//go:build linux

package meter

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/threefoldtech/gateway/internal/quote"
)

// The table Kernel keeps, as `nft list table inet gateway_meter` shows it
// (the nonces are examples):
//
//	table inet gateway_meter {
//		counter tx/10.0.0.1:80/7618a3e8a7a61534 { packets 0 bytes 0 }
//		counter rx/10.0.0.1:80/7618a3e8a7a61534 { packets 0 bytes 0 }
//		counter tx/[fd00::1]:443/d1f390439add71b8 { packets 0 bytes 0 }
//		counter rx/[fd00::1]:443/d1f390439add71b8 { packets 0 bytes 0 }
//		map tx4 {
//			type ipv4_addr . inet_service : verdict
//			elements = { 10.0.0.1 . 80 : goto tx/10.0.0.1:80/7618a3e8a7a61534 }
//		}
//		map tx6 {
//			type ipv6_addr . inet_service : verdict
//			elements = { fd00::1 . 443 : goto tx/[fd00::1]:443/d1f390439add71b8 }
//		}
//		map rx4 { … }
//		map rx6 { … }
//		chain tx {
//			type filter hook output priority mangle; policy accept;
//			ip daddr . tcp dport vmap @tx4
//			ip6 daddr . tcp dport vmap @tx6
//		}
//		chain rx {
//			type filter hook input priority 150; policy accept;
//			ip saddr . tcp sport vmap @rx4
//			ip6 saddr . tcp sport vmap @rx6
//		}
//		chain tx/10.0.0.1:80/7618a3e8a7a61534 {
//			counter name "tx/10.0.0.1:80/7618a3e8a7a61534"
//		}
//		chain rx/10.0.0.1:80/7618a3e8a7a61534 { … }
//		…
//	}
//
// The rules also check the protocol (meta nfproto, meta l4proto tcp), which
// nft leaves out as implied.
//
// The natural design is a map from address to counter object ("counter name
// ip daddr . tcp dport map @tx4"), but google/nftables v0.3.0 cannot express
// it: Set has no way to set NFT_SET_OBJECT and NFTA_SET_OBJ_TYPE, SetElement
// no way to send NFTA_SET_ELEM_OBJREF, and expr.Objref only knows an
// immediate name (NFTA_OBJREF_IMM_NAME), not a map (NFTA_OBJREF_SET_*);
// expr.Any has unexported methods, so no expression of our own can fill the
// gap. A verdict map to one small chain per address costs about the same
// per packet: one hash lookup, then a goto to the one rule of that chain.
// The thousands of chains are never walked: a packet enters only the one
// its lookup names, and a packet of an address that is not counted costs a
// lookup that misses. What it costs is in Sync: six netlink messages per new
// address instead of two (counters, chains and their rules), about 2.5 s of
// one CPU for 10,000 new addresses, once per boot. And a batch that adds
// addresses makes the kernel check the whole table for loops (every chain
// its maps lead to) before it commits: some 10 to 20 ms with 10,000
// addresses counted (Linux 6.18), however few are added. Dropping
// addresses needs no such check.
//
// The nonce in the names makes every pair of counters unique, so their
// Instance (boot ID and nonce) changes whenever they are made again; the
// library does not return the kernel's object handles, and those restart
// with the table anyway.

// DefaultTable is the table KernelConfig.Table defaults to.
const DefaultTable = "gateway_meter"

const (
	// txChain is the base chain that counts what Traefik sends. It runs on
	// the output hook before destination NAT (-100), so it matches the
	// address Traefik connected to even when that address is rewritten.
	txChain = "tx"
	// txPriority is the priority of txChain (NF_IP_PRI_MANGLE).
	txPriority nftables.ChainPriority = -150
	// rxChain is the base chain that counts what Traefik receives. It runs
	// on the input hook after the filter (0), security (50) and NAT (100)
	// chains: it counts what was let through, with the source of a reply
	// already given back the address Traefik connected to.
	rxChain = "rx"
	// rxPriority is the priority of rxChain.
	rxPriority nftables.ChainPriority = 150

	// maxNameLen is the longest table name the kernel takes
	// (NFT_NAME_MAXLEN, 256, with the terminating NUL). Object and chain
	// names are at most 67 bytes: "rx/" + "[" + 39 + "]:65535" + "/" + 16.
	maxNameLen = 255
	// nonceLen is the length of the hexadecimal nonce in object names.
	nonceLen = 16
	// elemsPerMessage bounds the elements of one netlink message: their
	// list is one attribute, whose length is 16 bits.
	elemsPerMessage = 256
	// minBuffer is the least send and receive buffer of the netlink
	// socket, in bytes. A batch is one datagram, and the kernel answers all
	// of its messages at once, so a bigger batch gets a socket with bigger
	// buffers: bufferPerMessage bytes a message, about twice what an answer
	// takes (a message itself takes less). 10,000 new addresses are 60,000
	// messages. Memory is only taken while in use.
	minBuffer        = 4 << 20
	bufferPerMessage = 2048
	// dumpedPerGet is about how many counters a dump reads in the time it
	// takes to read one by name, in a netlink round trip of its own (6 to
	// 20 measured): Sync reads the counters of a few dropped addresses by
	// name, and dumps them all when it drops more than one counted address
	// in dumpedPerGet.
	dumpedPerGet = 10
	// bootIDPath holds the identifier of the running boot.
	bootIDPath = "/proc/sys/kernel/random/boot_id"
)

// direction is the way a counter counts: to the backend (tx) or from it (rx).
type direction int

const (
	tx direction = iota
	rx
)

var directions = [...]direction{tx, rx}

func (d direction) String() string {
	if d == tx {
		return "tx"
	}
	return "rx"
}

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
	k := &Kernel{
		log:    cfg.Logger.With().Str("component", "meter").Str("table", cfg.Table).Logger(),
		netns:  cfg.NetNS,
		table:  &nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet},
		bootID: strings.TrimSpace(string(bootID)),
	}
	for _, d := range directions {
		for i, key := range []nftables.SetDatatype{
			nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService),
			nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService),
		} {
			k.maps[d][i] = &nftables.Set{
				Table:        k.table,
				Name:         fmt.Sprintf("%s%d", d, 4+2*i),
				IsMap:        true,
				KeyType:      key,
				DataType:     nftables.TypeVerdict,
				KeyByteOrder: binaryutil.BigEndian,
			}
		}
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

// setUp creates the table, or replaces it when its shape is not ours.
func (k *Kernel) setUp() error {
	conn, err := k.connection()
	if err != nil {
		return err
	}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("listing tables: %w", err)
	}
	if slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == k.table.Name }) {
		reason, err := k.misshapen(conn)
		if err != nil {
			return err
		}
		if reason == "" {
			k.log.Debug().Msg("reusing the counters of an earlier run")
			return nil
		}
		k.log.Warn().Str("reason", reason).Msg("replacing a table of an unexpected shape; its counters are lost")
		conn.DelTable(k.table)
	}
	conn.CreateTable(k.table)
	for _, maps := range k.maps {
		for _, m := range maps {
			if err := conn.AddSet(m, nil); err != nil {
				return fmt.Errorf("adding map %s: %w", m.Name, err)
			}
		}
	}
	for _, c := range k.baseChains() {
		conn.AddChain(c)
		for _, r := range k.baseRules(c) {
			conn.AddRule(r)
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("creating the table: %w", err)
	}
	return nil
}

// baseChains returns the tx and rx chains, by direction.
func (k *Kernel) baseChains() [2]*nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return [2]*nftables.Chain{
		tx: {
			Name: txChain, Table: k.table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRef(txPriority), Policy: &accept,
		},
		rx: {
			Name: rxChain, Table: k.table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRef(rxPriority), Policy: &accept,
		},
	}
}

// baseRules returns the two rules of base chain c: for IPv4 and IPv6 TCP,
// the backend's address and port (destination for tx, source for rx) looked
// up in the verdict map of that family.
func (k *Kernel) baseRules(c *nftables.Chain) []*nftables.Rule {
	d := tx
	if c.Name == rxChain {
		d = rx
	}
	// Offsets of the backend's address in the IPv4 and IPv6 headers and of
	// its port in the TCP header.
	addr4, addr6, port := uint32(16), uint32(24), uint32(2)
	if d == rx {
		addr4, addr6, port = 12, 8, 0
	}
	rule := func(proto byte, addrOffset, addrLen, portReg uint32, m *nftables.Set) *nftables.Rule {
		return &nftables.Rule{Table: k.table, Chain: c, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: addrOffset, Len: addrLen},
			&expr.Payload{DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: port, Len: 2},
			&expr.Lookup{SourceRegister: 1, IsDestRegSet: true, DestRegister: 0, SetName: m.Name, SetID: m.ID},
		}}
	}
	// The key is the address then the port, each padded to 32 bits: the
	// port goes in the 32-bit register after the address (NFT_REG32_01 after
	// 4 bytes; after 16, NFT_REG32_04, which the kernel names NFT_REG_2).
	return []*nftables.Rule{
		rule(unix.NFPROTO_IPV4, addr4, 4, unix.NFT_REG32_01, k.maps[d][0]),
		rule(unix.NFPROTO_IPV6, addr6, 16, unix.NFT_REG_2, k.maps[d][1]),
	}
}

// misshapen tells how the existing table differs from the one setUp makes,
// or "" when it does not. Per-address chains and counters are not checked:
// Sync repairs them.
func (k *Kernel) misshapen(conn *nftables.Conn) (string, error) {
	sets, err := conn.GetSets(k.table)
	if err != nil {
		return "", fmt.Errorf("listing maps: %w", err)
	}
	var want []string
	for _, maps := range k.maps {
		for _, m := range maps {
			want = append(want, m.Name)
		}
	}
	var got []string
	for _, s := range sets {
		if !s.IsMap || s.Interval || s.Constant || s.HasTimeout {
			return fmt.Sprintf("set %s is not a plain map", quote.Short(s.Name)), nil
		}
		got = append(got, s.Name)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		return fmt.Sprintf("maps %q, not %q", got, want), nil
	}
	chains, err := conn.ListChainsOfTableFamily(k.table.Family)
	if err != nil {
		return "", fmt.Errorf("listing chains: %w", err)
	}
	for _, c := range k.baseChains() {
		i := slices.IndexFunc(chains, func(got *nftables.Chain) bool {
			return got.Table != nil && got.Table.Name == k.table.Name && got.Name == c.Name
		})
		if i < 0 {
			return fmt.Sprintf("no chain %s", c.Name), nil
		}
		got := chains[i]
		if got.Hooknum == nil || *got.Hooknum != *c.Hooknum || got.Priority == nil || *got.Priority != *c.Priority ||
			got.Type != c.Type || got.Policy == nil || *got.Policy != *c.Policy {
			return fmt.Sprintf("chain %s is not a %s chain of hook %d, priority %d, policy accept", c.Name, c.Type, *c.Hooknum, *c.Priority), nil
		}
		rules, err := conn.GetRules(k.table, c)
		if err != nil {
			return "", fmt.Errorf("listing the rules of chain %s: %w", c.Name, err)
		}
		wantRules := k.baseRules(c)
		if len(rules) != len(wantRules) {
			return fmt.Sprintf("chain %s has %d rules, not %d", c.Name, len(rules), len(wantRules)), nil
		}
		for i, r := range rules {
			if !sameExprs(r.Exprs, wantRules[i].Exprs) {
				return fmt.Sprintf("rule %d of chain %s differs", i+1, c.Name), nil
			}
		}
	}
	return "", nil
}

// sameExprs compares the expressions of a rule read back with those of a
// rule to add. The kernel does not give back the batch-local set ID.
func sameExprs(got, want []expr.Any) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := got[i], want[i]
		if gl, ok := g.(*expr.Lookup); ok {
			if wl, ok := w.(*expr.Lookup); ok {
				gc, wc := *gl, *wl
				gc.SetID, wc.SetID = 0, 0
				g, w = &gc, &wc
			}
		}
		if !reflect.DeepEqual(g, w) {
			return false
		}
	}
	return true
}

// pair is the two counters of one address, made together and named with
// one nonce.
type pair struct {
	addr    netip.AddrPort
	nonce   string
	has     [2]bool // by direction
	bytes   [2]uint64
	packets [2]uint64
}

func (p *pair) complete() bool { return p.has[tx] && p.has[rx] }

// counters reads every counter of the table in one dump, grouped by address
// and, for each, sorted by nonce. More than one pair for an address only
// comes from hand edits.
func (k *Kernel) counters(conn *nftables.Conn) (map[netip.AddrPort][]*pair, error) {
	objs, err := conn.GetObjects(k.table)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]*pair)
	out := make(map[netip.AddrPort][]*pair)
	for _, o := range objs {
		c, ok := o.(*nftables.CounterObj)
		if !ok {
			continue
		}
		d, a, nonce, ok := parseName(c.Name)
		if !ok {
			continue
		}
		key := a.String() + "/" + nonce
		p := byName[key]
		if p == nil {
			p = &pair{addr: a, nonce: nonce}
			byName[key] = p
			out[a] = append(out[a], p)
		}
		p.has[d] = true
		p.bytes[d] = c.Bytes
		p.packets[d] = c.Packets
	}
	for _, ps := range out {
		slices.SortFunc(ps, func(a, b *pair) int { return strings.Compare(a.nonce, b.nonce) })
	}
	return out, nil
}

// dumpCounters is counters over the current connection.
func (k *Kernel) dumpCounters() (map[netip.AddrPort][]*pair, error) {
	conn, err := k.connection()
	if err != nil {
		return nil, err
	}
	return k.counters(conn)
}

// wiring returns, by address, the nonce of the chain of each direction, ""
// where there is none. A chain, its rule and its map element are made and
// removed together, so a chain stands for all three.
func (k *Kernel) wiring(conn *nftables.Conn) (map[netip.AddrPort][2]string, error) {
	chains, err := conn.ListChainsOfTableFamily(k.table.Family)
	if err != nil {
		return nil, err
	}
	out := make(map[netip.AddrPort][2]string)
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != k.table.Name {
			continue
		}
		d, a, nonce, ok := parseName(c.Name)
		if !ok {
			continue
		}
		w := out[a]
		w[d] = nonce
		out[a] = w
	}
	return out, nil
}

// reading is the Reading of a pair.
func (k *Kernel) reading(p *pair) Reading {
	return Reading{
		Tx: p.bytes[tx], Rx: p.bytes[rx],
		TxPackets: p.packets[tx], RxPackets: p.packets[rx],
		Instance: k.bootID + "/" + p.nonce,
	}
}

// matches tells whether counters are those of the remembered wiring: one
// complete pair for each counted address, of the nonce it counts with, and
// none for any other.
func (k *Kernel) matches(counters map[netip.AddrPort][]*pair) bool {
	if len(counters) != len(k.wired) {
		return false
	}
	for a, ps := range counters {
		nonce, ok := k.wired[a]
		if !ok || len(ps) != 1 || ps[0].nonce != nonce || !ps[0].complete() {
			return false
		}
	}
	return true
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
	if k.wired != nil && !k.matches(counters) {
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
	commits := k.commits
	var b batch
	dropped := make(map[netip.AddrPort]string) // nonce of the pair to read and delete
	for a, nonce := range k.wired {
		if !want[a] {
			k.unwire(&b, a, [2]string{nonce, nonce})
			dropped[a] = nonce
		}
	}
	added := make(map[netip.AddrPort]string)
	for a := range want {
		if _, ok := k.wired[a]; ok {
			continue
		}
		nonce, err := newNonce()
		if err != nil {
			return nil, err
		}
		k.addCounters(&b, a, nonce)
		k.wire(&b, a, nonce)
		added[a] = nonce
	}
	final := make(map[netip.AddrPort]Reading, len(dropped))
	if b.empty() {
		return final, nil
	}
	if err := k.flush(&b); err != nil {
		return nil, fmt.Errorf("changing the counted addresses: %w", err)
	}
	if len(dropped) > 0 {
		pairs, err := k.readPairs(dropped, len(k.wired))
		if err != nil {
			return nil, fmt.Errorf("reading the counters of %d dropped addresses: %w", len(dropped), err)
		}
		for a, p := range pairs {
			final[a] = k.reading(p)
			for _, d := range directions {
				b.delObjs = append(b.delObjs, objName(d, a, p.nonce))
			}
		}
		if err := k.flush(&b); err != nil {
			return nil, fmt.Errorf("deleting the counters of %d dropped addresses: %w", len(dropped), err)
		}
	}
	for a := range dropped {
		delete(k.wired, a)
	}
	maps.Copy(k.wired, added)
	k.remember(k.wired, gen, commits)
	return final, nil
}

// readPairs reads the pairs of counters of the addresses of nonces, which
// must all be there, out of a table of counted addresses: by name when they
// are few, in one dump of them all otherwise.
func (k *Kernel) readPairs(nonces map[netip.AddrPort]string, counted int) (map[netip.AddrPort]*pair, error) {
	conn, err := k.connection()
	if err != nil {
		return nil, err
	}
	out := make(map[netip.AddrPort]*pair, len(nonces))
	if len(nonces)*dumpedPerGet < counted {
		for a, nonce := range nonces {
			p := &pair{addr: a, nonce: nonce}
			for _, d := range directions {
				name := objName(d, a, nonce)
				o, err := conn.GetObject(&nftables.CounterObj{Table: k.table, Name: name})
				if err != nil {
					return nil, fmt.Errorf("reading counter %q: %w", name, err)
				}
				c, ok := o.(*nftables.CounterObj)
				if !ok {
					return nil, fmt.Errorf("reading counter %q: got a %T", name, o)
				}
				p.has[d], p.bytes[d], p.packets[d] = true, c.Bytes, c.Packets
			}
			out[a] = p
		}
		return out, nil
	}
	counters, err := k.counters(conn)
	if err != nil {
		return nil, err
	}
	for a, nonce := range nonces {
		i := slices.IndexFunc(counters[a], func(p *pair) bool { return p.nonce == nonce && p.complete() })
		if i < 0 {
			return nil, fmt.Errorf("the counters of %s are gone", a)
		}
		out[a] = counters[a][i]
	}
	return out, nil
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

// syncAll is Sync from what the whole table holds, at generation gen or
// later.
func (k *Kernel) syncAll(want map[netip.AddrPort]bool, gen uint32) (map[netip.AddrPort]Reading, error) {
	k.wired = nil
	commits := k.commits
	counters, err := k.dumpCounters()
	if err != nil {
		return nil, fmt.Errorf("reading counters of table %q: %w", k.table.Name, err)
	}
	conn, err := k.connection()
	if err != nil {
		return nil, fmt.Errorf("syncing counters of table %q: %w", k.table.Name, err)
	}
	wired, err := k.wiring(conn)
	if err != nil {
		return nil, fmt.Errorf("listing chains of table %q: %w", k.table.Name, err)
	}

	// The first batch: what counts changes here.
	var b batch
	kept := make(map[netip.AddrPort]string) // nonce of the pair that counts on
	var anew []netip.AddrPort               // to make once their old pairs are gone
	for a, w := range wired {
		if want[a] && w[tx] != "" && w[tx] == w[rx] &&
			slices.ContainsFunc(counters[a], func(p *pair) bool { return p.nonce == w[tx] && p.complete() }) {
			kept[a] = w[tx]
			continue
		}
		k.unwire(&b, a, w)
	}
	for a := range want {
		if _, ok := kept[a]; ok {
			continue
		}
		ps := counters[a]
		switch {
		case wired[a] != [2]string{}:
			anew = append(anew, a) // wired wrong: unwired above
		case len(ps) == 1 && ps[0].complete():
			// Unwired by a Sync that died before deleting them: they hold
			// bytes not yet returned, so they count on.
			k.wire(&b, a, ps[0].nonce)
			kept[a] = ps[0].nonce
		case len(ps) == 0:
			nonce, err := newNonce()
			if err != nil {
				return nil, fmt.Errorf("syncing counters of table %q: %w", k.table.Name, err)
			}
			k.addCounters(&b, a, nonce)
			k.wire(&b, a, nonce)
			kept[a] = nonce
		default:
			anew = append(anew, a)
		}
	}
	changed := !b.empty()
	if err := k.flush(&b); err != nil {
		return nil, fmt.Errorf("syncing counters of table %q: %w", k.table.Name, err)
	}

	// The second batch: the counters that no longer count, read first.
	// clean tells whether the table ends as the Kernel can remember it:
	// one pair for each counted address, none for any other.
	clean := true
	doomed := make(map[netip.AddrPort]bool)
	for a, ps := range counters {
		for _, p := range ps {
			if p.nonce != kept[a] {
				doomed[a] = true
			}
		}
	}
	final := make(map[netip.AddrPort]Reading)
	if len(doomed) > 0 {
		if changed {
			if counters, err = k.dumpCounters(); err != nil {
				return nil, fmt.Errorf("reading counters of table %q: %w", k.table.Name, err)
			}
		}
		for a := range doomed {
			// One reading per address and Sync: a second pair, from hand
			// edits, waits for the next Sync.
			old := slices.DeleteFunc(slices.Clone(counters[a]), func(p *pair) bool { return p.nonce == kept[a] })
			if len(old) == 0 {
				continue
			}
			clean = clean && len(old) == 1
			p := old[0]
			final[a] = k.reading(p)
			for _, d := range directions {
				if p.has[d] {
					b.delObjs = append(b.delObjs, objName(d, a, p.nonce))
				}
			}
		}
		if err := k.flush(&b); err != nil {
			return nil, fmt.Errorf("deleting the counters of %d dropped addresses in table %q: %w", len(final), k.table.Name, err)
		}
	}

	// The third batch, after hand edits only: counters for the addresses
	// whose old pairs are now gone.
	for _, a := range anew {
		if len(counters[a]) > 1 {
			k.log.Warn().Stringer("address", a).Msg("several pairs of counters for one address; counting it again at the next sync")
			clean = false
			continue
		}
		nonce, err := newNonce()
		if err != nil {
			return nil, fmt.Errorf("syncing counters of table %q: %w", k.table.Name, err)
		}
		k.addCounters(&b, a, nonce)
		k.wire(&b, a, nonce)
		kept[a] = nonce
	}
	if err := k.flush(&b); err != nil {
		return nil, fmt.Errorf("syncing counters of table %q: %w", k.table.Name, err)
	}
	if clean {
		k.remember(kept, gen, commits)
	}
	return final, nil
}

// batch gathers the changes of one netlink batch, to be sent in an order
// the kernel accepts: an element goes before the chain it leads to, a rule
// before the counter it names.
type batch struct {
	delElems [2][2][]nftables.SetElement // by direction and family
	delChains,
	delObjs,
	addObjs,
	addChains []string
	addElems [2][2][]nftables.SetElement
}

func (b *batch) empty() bool {
	return reflect.DeepEqual(*b, batch{})
}

// messages is the number of netlink messages b makes.
func (b *batch) messages() int {
	n := 2 + len(b.delChains) + len(b.delObjs) + len(b.addObjs) + 2*len(b.addChains)
	for _, elems := range [][2][2][]nftables.SetElement{b.delElems, b.addElems} {
		for _, fams := range elems {
			for _, es := range fams {
				n += (len(es) + elemsPerMessage - 1) / elemsPerMessage
			}
		}
	}
	return n
}

// family is the index of the maps of a's family.
func family(a netip.AddrPort) int {
	if a.Addr().Is4() {
		return 0
	}
	return 1
}

// key is the key of a in the maps: the address, then the port in the
// first two bytes of 32 bits, as the rules load them.
func key(a netip.AddrPort) []byte {
	ip := a.Addr().AsSlice()
	k := make([]byte, len(ip)+4)
	copy(k, ip)
	binary.BigEndian.PutUint16(k[len(ip):], a.Port())
	return k
}

func (k *Kernel) addCounters(b *batch, a netip.AddrPort, nonce string) {
	for _, d := range directions {
		b.addObjs = append(b.addObjs, objName(d, a, nonce))
	}
}

// wire makes the counters of a with nonce count: a chain for each direction
// whose one rule counts into them, and the map elements that lead there.
func (k *Kernel) wire(b *batch, a netip.AddrPort, nonce string) {
	for _, d := range directions {
		name := objName(d, a, nonce)
		b.addChains = append(b.addChains, name)
		b.addElems[d][family(a)] = append(b.addElems[d][family(a)], nftables.SetElement{
			Key:         key(a),
			VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: name},
		})
	}
}

// unwire undoes wire for the chains w lists.
func (k *Kernel) unwire(b *batch, a netip.AddrPort, w [2]string) {
	for _, d := range directions {
		if w[d] == "" {
			continue
		}
		b.delElems[d][family(a)] = append(b.delElems[d][family(a)], nftables.SetElement{Key: key(a)})
		b.delChains = append(b.delChains, objName(d, a, w[d]))
	}
}

// flush sends b as one batch, if it holds anything, and empties it.
func (k *Kernel) flush(b *batch) error {
	if b.empty() {
		return nil
	}
	defer func() { *b = batch{} }()
	if n := b.messages(); n*bufferPerMessage > max(k.buffer, minBuffer) {
		k.closeConn() // dialed again with bigger buffers
		k.buffer = n * bufferPerMessage
	}
	conn, err := k.connection()
	if err != nil {
		return err
	}
	elems := func(do func(*nftables.Set, []nftables.SetElement) error, all [2][2][]nftables.SetElement) error {
		for d, fams := range all {
			for f, es := range fams {
				for len(es) > 0 {
					n := min(len(es), elemsPerMessage)
					if err := do(k.maps[d][f], es[:n]); err != nil {
						return err
					}
					es = es[n:]
				}
			}
		}
		return nil
	}
	if err := elems(conn.SetDeleteElements, b.delElems); err != nil {
		return err
	}
	for _, name := range b.delChains {
		conn.DelChain(&nftables.Chain{Name: name, Table: k.table}) // and its rule
	}
	for _, name := range b.delObjs {
		conn.DeleteObject(&nftables.NamedObj{Table: k.table, Name: name, Type: nftables.ObjTypeCounter})
	}
	for _, name := range b.addObjs {
		conn.AddObj(&nftables.NamedObj{Table: k.table, Name: name, Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
	}
	for _, name := range b.addChains {
		c := conn.AddChain(&nftables.Chain{Name: name, Table: k.table})
		conn.AddRule(&nftables.Rule{Table: k.table, Chain: c, Exprs: []expr.Any{
			&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: name},
		}})
	}
	if err := elems(conn.SetAddElements, b.addElems); err != nil {
		return err
	}
	if err := conn.Flush(); err != nil {
		return err
	}
	k.commits++
	return nil
}

// objName names the counter of a in direction d, and the chain that counts
// into it: "tx/10.0.0.1:80/0123456789abcdef", "rx/[fd00::1]:443/…". The
// kernel takes any byte but NUL in a name; nft quotes these.
func objName(d direction, a netip.AddrPort, nonce string) string {
	return d.String() + "/" + a.String() + "/" + nonce
}

// parseName undoes objName; ok is false for the names of other objects.
func parseName(name string) (d direction, a netip.AddrPort, nonce string, ok bool) {
	dir, rest, ok := strings.Cut(name, "/")
	if !ok {
		return 0, netip.AddrPort{}, "", false
	}
	switch dir {
	case "tx":
		d = tx
	case "rx":
		d = rx
	default:
		return 0, netip.AddrPort{}, "", false
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return 0, netip.AddrPort{}, "", false
	}
	nonce = rest[i+1:]
	if len(nonce) != nonceLen || strings.Trim(nonce, "0123456789abcdef") != "" {
		return 0, netip.AddrPort{}, "", false
	}
	a, err := netip.ParseAddrPort(rest[:i])
	if err != nil || a != normalize(a) || a.String() != rest[:i] { // objName's form only
		return 0, netip.AddrPort{}, "", false
	}
	return d, a, nonce, true
}

func newNonce() (string, error) {
	var b [nonceLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making a nonce: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// connection returns the netlink connection, dialing it again after an
// error dropped it.
func (k *Kernel) connection() (*nftables.Conn, error) {
	if k.closed {
		return nil, errClosed
	}
	if k.conn != nil {
		return k.conn, nil
	}
	buffer := max(k.buffer, minBuffer)
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(k.netns), nftables.WithSockOptions(
		func(c *netlink.Conn) error { return setBuffers(c, buffer) }))
	if err != nil {
		return nil, fmt.Errorf("connecting to nftables: %w", err)
	}
	k.conn = conn
	return conn, nil
}

// drop closes the connections after an error: answers to a failed batch may
// still wait in them, and would be taken for the answers to the next
// request. It forgets the wiring too: what failed may have changed it.
func (k *Kernel) drop() {
	k.closeConn()
	if k.genConn != nil {
		k.genConn.Close()
		k.genConn = nil
	}
	k.wired = nil
}

// closeConn closes the nftables connection; the next call dials it again.
func (k *Kernel) closeConn() {
	if k.conn != nil {
		k.conn.CloseLasting()
		k.conn = nil
	}
}

// setBuffers sets the socket's send and receive buffers to size bytes. The
// FORCE options pass the system's limits, as CAP_NET_ADMIN (needed for
// nftables anyway) allows; where they are refused, the limits apply.
func setBuffers(c *netlink.Conn, size int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		for _, opt := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt[0], size)
			if errors.Is(serr, unix.EPERM) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt[1], size)
			}
			if serr != nil {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("sizing the netlink socket's buffers: %w", serr)
	}
	return nil
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
