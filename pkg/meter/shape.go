//go:build linux

package meter

import (
	"fmt"
	"reflect"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
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

// shapeReader is what misshapen reads of the table: an *nftables.Conn, or a
// fake in tests.
type shapeReader interface {
	GetSets(t *nftables.Table) ([]*nftables.Set, error)
	ListChainsOfTableFamily(family nftables.TableFamily) ([]*nftables.Chain, error)
	GetRules(t *nftables.Table, c *nftables.Chain) ([]*nftables.Rule, error)
}

// misshapen tells how the existing table differs from the one setUp makes,
// or "" when it does not. Per-address chains and counters are not checked:
// Sync repairs them.
func (k *Kernel) misshapen(conn shapeReader) (string, error) {
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
