//go:build linux

package meter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// This file is the netlink side of the Kernel: it reads the table, sends
// the batches the planner (plan.go) makes, and sets up the base table
// (shape.go). It decides nothing about which addresses count, or with which
// counters.

const (
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
