package privnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// dataPath sets up links in the kernel. The kernel type is the real one;
// tests of the bookkeeping use a fake.
type dataPath interface {
	// ensure makes link l exist, up, with its addresses, and its table in
	// the tenant's namespace translate exactly ms. What is already as it
	// must be is left alone: an open connection is never cut.
	ensure(l link, ms []mapping) error
	// remove removes link l and its table. A namespace that is gone is
	// not an error.
	remove(l link) error
}

// kernel is the data path in the kernel: a veth pair per tenant network,
// one end in the gateway's namespace, the other in the tenant's, and an
// nftables table in the tenant's namespace that sends each port of the link
// to its target and makes the replies come back through the link.
type kernel struct {
	// host is the gateway's namespace, where Traefik runs.
	host netns.NsHandle
	// netnsDir is where the tenants' namespaces are mounted.
	netnsDir string
	table    string
	links    linkRange
}

// namespace opens the namespace of l.
func (k *kernel) namespace(l link) (netns.NsHandle, error) {
	ns, err := netns.GetFromPath(k.netnsDir + "/" + l.Namespace)
	if err != nil {
		return netns.None(), fmt.Errorf("opening network namespace %q: %w", l.Namespace, err)
	}
	return ns, nil
}

func (k *kernel) ensure(l link, ms []mapping) error {
	ns, err := k.namespace(l)
	if err != nil {
		return err
	}
	defer ns.Close()
	if err := k.ensureLink(l, ns); err != nil {
		return fmt.Errorf("link %s into namespace %q: %w", l.ifname(), l.Namespace, err)
	}
	if err := k.writeTable(l, ns, ms); err != nil {
		return fmt.Errorf("nftables table %s in namespace %q: %w", k.table, l.Namespace, err)
	}
	return nil
}

// ensureLink makes the veth pair of l, unless it is there.
func (k *kernel) ensureLink(l link, ns netns.NsHandle) error {
	host, err := netlink.NewHandleAt(k.host)
	if err != nil {
		return err
	}
	defer host.Close()
	tenant, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer tenant.Close()

	name := l.ifname()
	peer, err := tenant.LinkByName(name)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if !errors.As(err, &notFound) {
			return err
		}
		// A new namespace (the node rebooted, or the network was made
		// again): a host end left from an earlier one leads nowhere.
		if stale, err := host.LinkByName(name); err == nil {
			if err := host.LinkDel(stale); err != nil {
				return fmt.Errorf("removing the stale %s: %w", name, err)
			}
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		veth := &netlink.Veth{LinkAttrs: attrs, PeerName: name, PeerNamespace: netlink.NsFd(ns)}
		if err := host.LinkAdd(veth); err != nil {
			return fmt.Errorf("creating the veth pair: %w", err)
		}
		if peer, err = tenant.LinkByName(name); err != nil {
			return err
		}
	}
	end, err := host.LinkByName(name)
	if err != nil {
		return err
	}
	gw, ten, bits := k.links.addrs(l.Index)
	for _, s := range []struct {
		h    *netlink.Handle
		link netlink.Link
		addr netip.Addr
	}{{host, end, gw}, {tenant, peer, ten}} {
		if err := ensureAddr(s.h, s.link, s.addr, bits); err != nil {
			return err
		}
		if s.link.Attrs().Flags&net.FlagUp == 0 {
			if err := s.h.LinkSetUp(s.link); err != nil {
				return fmt.Errorf("bringing %s up: %w", name, err)
			}
		}
	}
	return nil
}

// ensureAddr gives link addr/bits, unless it has it.
func ensureAddr(h *netlink.Handle, link netlink.Link, addr netip.Addr, bits int) error {
	have, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	want := &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(bits, 32)}
	for _, a := range have {
		if a.IPNet.String() == want.String() {
			return nil
		}
	}
	if err := h.AddrReplace(link, &netlink.Addr{IPNet: want}); err != nil {
		return fmt.Errorf("adding %s to %s: %w", want, link.Attrs().Name, err)
	}
	return nil
}

// writeTable replaces the table of l in its namespace, in one transaction:
// a connection already translated keeps its translation (conntrack holds
// it), a new one sees the old table or the new one.
func (k *kernel) writeTable(l link, ns netns.NsHandle, ms []mapping) error {
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: k.table, Family: nftables.TableFamilyIPv4}
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)
	accept := nftables.ChainPolicyAccept
	pre := conn.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	post := conn.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	gw, ten, _ := k.links.addrs(l.Index)
	for _, m := range ms {
		conn.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: dnatRule(ten, m)})
	}
	conn.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: masqueradeRule(gw)})
	return conn.Flush()
}

// dnatRule returns `ip daddr <tenant> tcp dport <m.Port> dnat to <m.Target>`.
func dnatRule(tenant netip.Addr, m mapping) []expr.Any {
	daddr, target := tenant.As4(), m.Target.Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: daddr[:]},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(m.Port)},
		&expr.Counter{},
		&expr.Immediate{Register: 1, Data: target[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(m.Target.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

// masqueradeRule returns `ip saddr <gw> masquerade`: what came through the
// link and leaves the namespace towards a backend (a VM behind the tenant
// network's bridge) takes the namespace's own address there, so that the
// reply comes back here whatever the backend's routes. A backend inside the
// namespace itself answers the link's address directly.
func masqueradeRule(gw netip.Addr) []expr.Any {
	saddr := gw.As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: saddr[:]},
		&expr.Masq{},
	}
}

func (k *kernel) remove(l link) error {
	host, err := netlink.NewHandleAt(k.host)
	if err != nil {
		return err
	}
	defer host.Close()
	// Removing one end of a veth pair removes both.
	if end, err := host.LinkByName(l.ifname()); err == nil {
		if err := host.LinkDel(end); err != nil {
			return fmt.Errorf("removing %s: %w", l.ifname(), err)
		}
	}
	ns, err := k.namespace(l)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer ns.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: k.table, Family: nftables.TableFamilyIPv4}
	// Add first: deleting a table that is not there fails the batch.
	conn.AddTable(t)
	conn.DelTable(t)
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("removing table %s in namespace %q: %w", k.table, l.Namespace, err)
	}
	return nil
}
