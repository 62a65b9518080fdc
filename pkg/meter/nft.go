//go:build linux

package meter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/threefoldtech/gateway/internal/quote"
)

// This file is the netlink side of the Kernel: it reads the table, sends
// the batches the planner (plan.go) makes, and sets up the base table. It
// decides nothing about which addresses count, or with which counters.

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
)

// newMaps returns the verdict maps of table, by direction, then 0 for IPv4
// and 1 for IPv6.
func newMaps(table *nftables.Table) [2][2]*nftables.Set {
	var out [2][2]*nftables.Set
	for _, d := range directions {
		for i, key := range []nftables.SetDatatype{
			nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService),
			nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService),
		} {
			out[d][i] = &nftables.Set{
				Table:        table,
				Name:         fmt.Sprintf("%s%d", d, 4+2*i),
				IsMap:        true,
				KeyType:      key,
				DataType:     nftables.TypeVerdict,
				KeyByteOrder: binaryutil.BigEndian,
			}
		}
	}
	return out
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

// counters reads every counter of the table in one dump, grouped by address
// and, for each, sorted by nonce (pairsOf).
func (k *Kernel) counters(conn *nftables.Conn) (map[netip.AddrPort][]*pair, error) {
	objs, err := conn.GetObjects(k.table)
	if err != nil {
		return nil, err
	}
	values := make([]counterValue, 0, len(objs))
	for _, o := range objs {
		if c, ok := o.(*nftables.CounterObj); ok {
			values = append(values, counterValue{name: c.Name, bytes: c.Bytes, packets: c.Packets})
		}
	}
	return pairsOf(values), nil
}

// dumpCounters is counters over the current connection.
func (k *Kernel) dumpCounters() (map[netip.AddrPort][]*pair, error) {
	conn, err := k.connection()
	if err != nil {
		return nil, err
	}
	return k.counters(conn)
}

// wiring returns, by address, the nonces of the chains of the table
// (chainsOf).
func (k *Kernel) wiring(conn *nftables.Conn) (map[netip.AddrPort][2]string, error) {
	chains, err := conn.ListChainsOfTableFamily(k.table.Family)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, c := range chains {
		if c.Table != nil && c.Table.Name == k.table.Name {
			names = append(names, c.Name)
		}
	}
	return chainsOf(names), nil
}

// readRetired reads the pairs a plan retires, as it says: each counter by
// name, or every counter in one dump.
func (k *Kernel) readRetired(p *syncPlan) (map[netip.AddrPort][]*pair, error) {
	conn, err := k.connection()
	if err != nil {
		return nil, err
	}
	if p.read == readDump {
		return k.counters(conn)
	}
	out := make(map[netip.AddrPort][]*pair, len(p.retire))
	for a, nonce := range p.retire {
		q := &pair{addr: a, nonce: nonce}
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
			q.has[d], q.bytes[d], q.packets[d] = true, c.Bytes, c.Packets
		}
		out[a] = []*pair{q}
	}
	return out, nil
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

// messages splits steps into the netlink messages that send them: one per
// step, but for map elements, which go up to elemsPerMessage of one map
// and kind to a message.
func messages(steps []step) [][]step {
	var out [][]step
	for i := 0; i < len(steps); {
		j := i + 1
		if op := steps[i].op; op == delElem || op == addElem {
			for j < len(steps) && j-i < elemsPerMessage && steps[j].op == op && mapIndex(steps[j].obj) == mapIndex(steps[i].obj) {
				j++
			}
		}
		out = append(out, steps[i:j])
		i = j
	}
	return out
}

// batchMessages is the number of netlink messages of a batch of msgs: its
// begin and end, and a chain's rule besides the chain.
func batchMessages(msgs [][]step) int {
	n := 2 + len(msgs)
	for _, m := range msgs {
		if m[0].op == addChain {
			n++
		}
	}
	return n
}

// flush sends b as one batch, if it holds anything.
func (k *Kernel) flush(b *batch) error {
	if b.empty() {
		return nil
	}
	msgs := messages(b.steps())
	if n := batchMessages(msgs); n*bufferPerMessage > max(k.buffer, minBuffer) {
		k.closeConn() // dialed again with bigger buffers
		k.buffer = n * bufferPerMessage
	}
	conn, err := k.connection()
	if err != nil {
		return err
	}
	for _, m := range msgs {
		o := m[0].obj
		switch m[0].op {
		case delElem:
			es := make([]nftables.SetElement, len(m))
			for i, s := range m {
				es[i] = nftables.SetElement{Key: key(s.obj.addr)}
			}
			err = conn.SetDeleteElements(k.maps[o.dir][family(o.addr)], es)
		case delChain:
			conn.DelChain(&nftables.Chain{Name: o.name(), Table: k.table}) // and its rule
		case delCounter:
			conn.DeleteObject(&nftables.NamedObj{Table: k.table, Name: o.name(), Type: nftables.ObjTypeCounter})
		case addCounter:
			conn.AddObj(&nftables.NamedObj{Table: k.table, Name: o.name(), Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
		case addChain:
			c := conn.AddChain(&nftables.Chain{Name: o.name(), Table: k.table})
			conn.AddRule(&nftables.Rule{Table: k.table, Chain: c, Exprs: []expr.Any{
				&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: o.name()},
			}})
		case addElem:
			es := make([]nftables.SetElement, len(m))
			for i, s := range m {
				es[i] = nftables.SetElement{
					Key:         key(s.obj.addr),
					VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: s.obj.name()},
				}
			}
			err = conn.SetAddElements(k.maps[o.dir][family(o.addr)], es)
		}
		if err != nil {
			return err
		}
	}
	if err := conn.Flush(); err != nil {
		return err
	}
	k.commits++
	return nil
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

// The Kernel carries out the planner's plans.
var _ runner = (*Kernel)(nil)
