package meter

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// The planner decides, without any I/O, what a Sync changes in the table:
// which addresses are counted, with which pair of counters, which chains and
// map elements are added and removed, which counters are read and then
// deleted, and in which batches and order. The netlink side (nft.go) reads
// the table into a current, sends the batches of a syncPlan as they come and
// reads what it asks for between them, and nothing else: it decides
// nothing. What is counted, and how a table found changed is brought back,
// are the planner's alone.

// dumpedPerGet is about how many counters a dump reads in the time it takes
// to read one by name, in a netlink round trip of its own (6 to 20
// measured): a Sync reads the counters of a few dropped addresses by name,
// and dumps them all when it drops more than one counted address in
// dumpedPerGet.
const dumpedPerGet = 10

// family is the index of the maps of a's family: 0 for IPv4, 1 for IPv6.
func family(a netip.AddrPort) int {
	if a.Addr().Is4() {
		return 0
	}
	return 1
}

// obj names one per-address object of the table: the counter of an address
// in one direction, or the chain of the same name whose one rule counts into
// it, to which the map element of the address in that direction leads.
type obj struct {
	dir   direction
	addr  netip.AddrPort
	nonce string
}

func (o obj) name() string { return objName(o.dir, o.addr, o.nonce) }

// op is one kind of change to the table. A batch makes its changes in the
// order of op, which the kernel accepts: an element goes before the chain it
// leads to, a rule before the counter it names, and the other way round when
// they are added.
type op int

const (
	// delElem removes the map element of an address in one direction: the
	// address stops counting that way.
	delElem op = iota
	// delChain removes a chain of an address, and its rule.
	delChain
	// delCounter removes a counter.
	delCounter
	// addCounter adds a counter, at zero.
	addCounter
	// addChain adds a chain of an address with its one rule, which counts
	// into the counter of the same name.
	addChain
	// addElem adds the map element of an address in one direction, which
	// leads to its chain: the address counts that way from the commit on.
	addElem
)

func (o op) String() string {
	return [...]string{"del-elem", "del-chain", "del-counter", "add-counter", "add-chain", "add-elem"}[o]
}

// step is one change of a batch.
type step struct {
	op  op
	obj obj
}

func (s step) String() string {
	if s.op == delElem || s.op == addElem {
		// An element is keyed by the address alone; obj names the chain
		// it leads to.
		return fmt.Sprintf("%s %s %s -> %s", s.op, s.obj.dir, s.obj.addr, s.obj.name())
	}
	return s.op.String() + " " + s.obj.name()
}

// batch is the changes of one netlink batch, which the kernel commits all
// or none.
type batch struct {
	unwired     []obj // map elements removed, then the chains they led to
	delCounters []obj
	addCounters []obj
	wired       []obj // chains added, then the map elements that lead there
}

func (b *batch) empty() bool {
	return len(b.unwired) == 0 && len(b.delCounters) == 0 && len(b.addCounters) == 0 && len(b.wired) == 0
}

// count adds a new pair of counters of a, with nonce, and makes it count.
func (b *batch) count(a netip.AddrPort, nonce string) {
	for _, d := range directions {
		b.addCounters = append(b.addCounters, obj{d, a, nonce})
	}
	b.wire(a, nonce)
}

// wire makes the counters of a with nonce count: a chain for each direction
// whose one rule counts into them, and the map elements that lead there.
func (b *batch) wire(a netip.AddrPort, nonce string) {
	for _, d := range directions {
		b.wired = append(b.wired, obj{d, a, nonce})
	}
}

// unwire undoes wire for the chains of a whose nonces w lists by direction,
// "" where there is none.
func (b *batch) unwire(a netip.AddrPort, w [2]string) {
	for _, d := range directions {
		if w[d] != "" {
			b.unwired = append(b.unwired, obj{d, a, w[d]})
		}
	}
}

// steps returns the changes of b in the order they are sent. The elements
// of each kind are grouped by map (direction, then family), as one netlink
// message holds the elements of one map; the rest keep the order the planner
// gave.
func (b *batch) steps() []step {
	var out []step
	add := func(op op, objs []obj, byMap bool) {
		start := len(out)
		for _, o := range objs {
			out = append(out, step{op, o})
		}
		if byMap {
			slices.SortStableFunc(out[start:], func(x, y step) int { return cmp.Compare(mapIndex(x.obj), mapIndex(y.obj)) })
		}
	}
	add(delElem, b.unwired, true)
	add(delChain, b.unwired, false)
	add(delCounter, b.delCounters, false)
	add(addCounter, b.addCounters, false)
	add(addChain, b.wired, false)
	add(addElem, b.wired, true)
	return out
}

// mapIndex orders the maps: tx4, tx6, rx4, rx6.
func mapIndex(o obj) int { return 2*int(o.dir) + family(o.addr) }

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

// counterValue is one named counter as a dump of the table gives it.
type counterValue struct {
	name           string
	bytes, packets uint64
}

// pairsOf groups the counters of a dump into pairs by address and, for
// each, sorts them by nonce; it leaves out counters not named by objName.
// More than one pair for an address only comes from hand edits.
func pairsOf(counters []counterValue) map[netip.AddrPort][]*pair {
	byName := make(map[string]*pair)
	out := make(map[netip.AddrPort][]*pair)
	for _, c := range counters {
		d, a, nonce, ok := parseName(c.name)
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
		p.bytes[d] = c.bytes
		p.packets[d] = c.packets
	}
	for _, ps := range out {
		slices.SortFunc(ps, func(a, b *pair) int { return strings.Compare(a.nonce, b.nonce) })
	}
	return out
}

// chainsOf returns, by address, the nonce of the chain of each direction
// among names, "" where there is none; it leaves out the names of other
// chains. A chain, its rule and its map element are made and removed
// together, so a chain stands for all three.
func chainsOf(names []string) map[netip.AddrPort][2]string {
	out := make(map[netip.AddrPort][2]string)
	for _, name := range names {
		d, a, nonce, ok := parseName(name)
		if !ok {
			continue
		}
		w := out[a]
		w[d] = nonce
		out[a] = w
	}
	return out
}

// current is what the planner starts from: the wiring a Kernel remembers,
// or what a reading of the whole table found.
type current struct {
	// remembered, when not nil, is the wiring the last Sync left, still
	// valid: the nonce of the one complete pair of each counted address,
	// wired, with no other pair and no other chain of any address.
	remembered map[netip.AddrPort]string
	// pairs and chains are what a reading of the table found, when
	// remembered is nil: the counters by address (pairsOf), and the nonces
	// of the chains of each address (chainsOf).
	pairs  map[netip.AddrPort][]*pair
	chains map[netip.AddrPort][2]string
}

// readKind is how the counters a plan retires are read, between its first
// batch and the next.
type readKind int

const (
	// readNone reads nothing: the pairs the plan started from hold, as the
	// first batch changed nothing.
	readNone readKind = iota
	// readByName reads each counter by name.
	readByName
	// readDump reads every counter of the table in one dump.
	readDump
)

func (r readKind) String() string {
	return [...]string{"none", "by name", "dump"}[r]
}

// syncPlan is how a Sync brings the table to count exactly the wanted
// addresses. Its first batch, change, starts and stops the counting of every
// address at once. The counters that no longer count are then read (as read
// says) and given to settle, which plans the batches that delete them and,
// after hand edits only, make new pairs for addresses whose old ones had to
// go first.
type syncPlan struct {
	// change is the first batch: the addresses that start and stop
	// counting, all at once.
	change batch
	// read is how the pairs of retire are read after change.
	read readKind
	// retire lists the addresses whose pairs other than the counting one
	// are read after change, returned as final and deleted: by address,
	// the nonce of the pair expected there, or "" for whatever pair is.
	retire map[netip.AddrPort]string
	// anew lists the addresses to count with a new pair once their old
	// pairs are gone, in order.
	anew []netip.AddrPort
	// counted is, after change, the nonce of the pair each counted address
	// counts with.
	counted map[netip.AddrPort]string
}

// plan plans the Sync that makes want the counted addresses of a table that
// holds cur. nonces makes the nonces of new pairs. The addresses of want are
// normalized, as objName names them.
func plan(cur current, want map[netip.AddrPort]bool, nonces func() (string, error)) (*syncPlan, error) {
	if cur.remembered != nil {
		return planChanges(cur.remembered, want, nonces)
	}
	return planTable(cur.pairs, cur.chains, want, nonces)
}

// planChanges plans from the remembered wiring: only the addresses that
// come and go change. The pairs it retires are known, and must be there.
func planChanges(wired map[netip.AddrPort]string, want map[netip.AddrPort]bool, nonces func() (string, error)) (*syncPlan, error) {
	p := &syncPlan{counted: maps.Clone(wired), retire: make(map[netip.AddrPort]string)}
	var added []netip.AddrPort
	for a := range want {
		if _, ok := wired[a]; !ok {
			added = append(added, a)
		}
	}
	for a, nonce := range wired {
		if !want[a] {
			p.retire[a] = nonce
			delete(p.counted, a)
		}
	}
	for _, a := range sorted(p.retire) {
		p.change.unwire(a, [2]string{p.retire[a], p.retire[a]})
	}
	slices.SortFunc(added, netip.AddrPort.Compare)
	for _, a := range added {
		nonce, err := nonces()
		if err != nil {
			return nil, err
		}
		p.change.count(a, nonce)
		p.counted[a] = nonce
	}
	if len(p.retire) > 0 {
		p.read = readDump
		if len(p.retire)*dumpedPerGet < len(wired) {
			p.read = readByName
		}
	}
	return p, nil
}

// planTable plans from what a reading of the whole table found, and
// repairs what it finds changed by hand.
func planTable(pairs map[netip.AddrPort][]*pair, chains map[netip.AddrPort][2]string, want map[netip.AddrPort]bool, nonces func() (string, error)) (*syncPlan, error) {
	p := &syncPlan{counted: make(map[netip.AddrPort]string), retire: make(map[netip.AddrPort]string)}
	for _, a := range sorted(chains) {
		w := chains[a]
		if want[a] && w[tx] != "" && w[tx] == w[rx] &&
			slices.ContainsFunc(pairs[a], func(q *pair) bool { return q.nonce == w[tx] && q.complete() }) {
			p.counted[a] = w[tx]
			continue
		}
		p.change.unwire(a, w)
	}
	for _, a := range sorted(want) {
		if _, ok := p.counted[a]; ok {
			continue
		}
		ps := pairs[a]
		switch {
		case chains[a] != [2]string{}:
			p.anew = append(p.anew, a) // wired wrong: unwired above
		case len(ps) == 1 && ps[0].complete():
			// Unwired by a Sync that died before deleting them: they hold
			// bytes not yet returned, so they count on.
			p.change.wire(a, ps[0].nonce)
			p.counted[a] = ps[0].nonce
		case len(ps) == 0:
			nonce, err := nonces()
			if err != nil {
				return nil, err
			}
			p.change.count(a, nonce)
			p.counted[a] = nonce
		default:
			p.anew = append(p.anew, a)
		}
	}
	for a, ps := range pairs {
		if slices.ContainsFunc(ps, func(q *pair) bool { return q.nonce != p.counted[a] }) {
			p.retire[a] = ""
		}
	}
	if len(p.retire) > 0 && !p.change.empty() {
		// The final readings are taken once the pairs stopped counting.
		p.read = readDump
	}
	return p, nil
}

// settlement is the rest of a Sync, planned once the pairs it retires are
// read.
type settlement struct {
	// final is the last reading of each retired pair, by address.
	final map[netip.AddrPort]*pair
	// retire is the second batch: it deletes the counters of final.
	retire batch
	// anew is the third batch: new pairs of the addresses of
	// syncPlan.anew.
	anew batch
	// counted is, after the three batches, the nonce of the pair each
	// counted address counts with.
	counted map[netip.AddrPort]string
	// stuck lists the addresses of syncPlan.anew left uncounted: several
	// old pairs, of which one Sync retires one.
	stuck []netip.AddrPort
	// clean is whether the table ends as counted says, with no other pair
	// or chain: then the Kernel can remember it.
	clean bool
}

// settle plans the batches after p.change from after, the pairs read as
// p.read says (those p started from when it says readNone). It fails when a
// pair p expects is gone.
func (p *syncPlan) settle(after map[netip.AddrPort][]*pair, nonces func() (string, error)) (*settlement, error) {
	s := &settlement{final: make(map[netip.AddrPort]*pair, len(p.retire)), counted: p.counted, clean: true}
	for _, a := range sorted(p.retire) {
		var old *pair
		if nonce := p.retire[a]; nonce != "" {
			i := slices.IndexFunc(after[a], func(q *pair) bool { return q.nonce == nonce && q.complete() })
			if i < 0 {
				return nil, fmt.Errorf("the counters of %s are gone", a)
			}
			old = after[a][i]
		} else {
			// One reading per address and Sync: a second pair, from hand
			// edits, waits for the next Sync.
			others := slices.DeleteFunc(slices.Clone(after[a]), func(q *pair) bool { return q.nonce == p.counted[a] })
			if len(others) == 0 {
				continue
			}
			s.clean = s.clean && len(others) == 1
			old = others[0]
		}
		s.final[a] = old
		for _, d := range directions {
			if old.has[d] {
				s.retire.delCounters = append(s.retire.delCounters, obj{d, a, old.nonce})
			}
		}
	}
	if len(p.anew) > 0 {
		s.counted = maps.Clone(p.counted)
	}
	for _, a := range p.anew {
		if len(after[a]) > 1 {
			s.stuck = append(s.stuck, a)
			s.clean = false
			continue
		}
		nonce, err := nonces()
		if err != nil {
			return nil, err
		}
		s.anew.count(a, nonce)
		s.counted[a] = nonce
	}
	return s, nil
}

// runner is what carrying out a plan needs of the table: the Kernel, over
// netlink, or a fake in tests.
type runner interface {
	// flush sends b as one batch, which the kernel commits all or none;
	// an empty batch sends nothing.
	flush(b *batch) error
	// readRetired reads the pairs of p.retire, as p.read says.
	readRetired(p *syncPlan) (map[netip.AddrPort][]*pair, error)
}

// execute carries out p on r: the first batch, the reading of the pairs it
// stopped (before, the pairs p was planned from, when p.read is readNone),
// then the batches that delete them and count anew. It returns the
// settlement it carried out.
func (p *syncPlan) execute(r runner, before map[netip.AddrPort][]*pair, nonces func() (string, error)) (*settlement, error) {
	if err := r.flush(&p.change); err != nil {
		return nil, fmt.Errorf("changing the counted addresses: %w", err)
	}
	after := before
	if p.read != readNone {
		var err error
		if after, err = r.readRetired(p); err != nil {
			return nil, fmt.Errorf("reading the counters of %d dropped addresses: %w", len(p.retire), err)
		}
	}
	s, err := p.settle(after, nonces)
	if err != nil {
		return nil, fmt.Errorf("reading the counters of %d dropped addresses: %w", len(p.retire), err)
	}
	if err := r.flush(&s.retire); err != nil {
		return nil, fmt.Errorf("deleting the counters of %d dropped addresses: %w", len(s.final), err)
	}
	if err := r.flush(&s.anew); err != nil {
		return nil, fmt.Errorf("counting %d addresses anew: %w", len(s.anew.wired)/len(directions), err)
	}
	return s, nil
}

// matches tells whether pairs, read from the table, are those of the
// remembered wiring: one complete pair for each counted address, of the
// nonce it counts with, and none for any other.
func matches(wired map[netip.AddrPort]string, pairs map[netip.AddrPort][]*pair) bool {
	if len(pairs) != len(wired) {
		return false
	}
	for a, ps := range pairs {
		nonce, ok := wired[a]
		if !ok || len(ps) != 1 || ps[0].nonce != nonce || !ps[0].complete() {
			return false
		}
	}
	return true
}

// sorted returns the addresses of m in order.
func sorted[V any](m map[netip.AddrPort]V) []netip.AddrPort {
	return slices.SortedFunc(maps.Keys(m), netip.AddrPort.Compare)
}
