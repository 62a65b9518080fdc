package meter

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// The planner's tests need no root: a fakeTable stands for the kernel. It
// keeps the per-address objects of the table, applies the steps of a batch
// with the checks the kernel makes of each, and records what it was sent.

// elemKey is a map element's key: the map (its direction and the address's
// family) and the address.
type elemKey struct {
	dir  direction
	addr netip.AddrPort
}

type tableCounter struct{ bytes, packets uint64 }

// fakeTable is the per-address part of a table. A batch is all or none, as
// the kernel commits it. Before each request, every counted address moves a
// packet each way (tick), so that a reading taken before an address stopped
// counting differs from its counters' last value.
type fakeTable struct {
	counters map[string]tableCounter
	chains   map[string]string  // the counter the chain's rule counts into
	elems    map[elemKey]string // the chain the element leads to
	// deleted holds the last value of each counter a batch deleted.
	deleted map[string]tableCounter
	// log is what was sent: the steps of each batch and the readings.
	log     []string
	batches int
}

func newFakeTable() *fakeTable {
	return &fakeTable{
		counters: make(map[string]tableCounter),
		chains:   make(map[string]string),
		elems:    make(map[elemKey]string),
		deleted:  make(map[string]tableCounter),
	}
}

func (f *fakeTable) clone() *fakeTable {
	c := *f
	c.counters = maps.Clone(f.counters)
	c.chains = maps.Clone(f.chains)
	c.elems = maps.Clone(f.elems)
	c.deleted = maps.Clone(f.deleted)
	c.log = slices.Clone(f.log)
	return &c
}

// counter adds the counter of a in d with nonce, as if it had counted.
func (f *fakeTable) counter(d direction, a netip.AddrPort, nonce string) {
	f.counters[objName(d, a, nonce)] = tableCounter{bytes: 1000 + uint64(d), packets: 10}
}

// chain adds the chain of a in d with nonce, its rule and its element.
func (f *fakeTable) chain(d direction, a netip.AddrPort, nonce string) {
	name := objName(d, a, nonce)
	f.chains[name] = name
	f.elems[elemKey{d, a}] = name
}

// counted adds a pair of a with nonce that counts, as a Sync leaves it.
func (f *fakeTable) counted(a netip.AddrPort, nonce string) {
	for _, d := range directions {
		f.counter(d, a, nonce)
		f.chain(d, a, nonce)
	}
}

var (
	errNotFound = errors.New("no such object (ENOENT)")
	errExists   = errors.New("object exists (EEXIST)")
	errBusy     = errors.New("object in use (EBUSY)")
)

// apply makes one step, with the kernel's checks.
func (f *fakeTable) apply(s step) error {
	o, name := s.obj, s.obj.name()
	k := elemKey{o.dir, o.addr}
	switch s.op {
	case delElem:
		if _, ok := f.elems[k]; !ok {
			return errNotFound
		}
		delete(f.elems, k)
	case delChain:
		if _, ok := f.chains[name]; !ok {
			return errNotFound
		}
		for _, c := range f.elems {
			if c == name {
				return errBusy
			}
		}
		delete(f.chains, name)
	case delCounter:
		c, ok := f.counters[name]
		if !ok {
			return errNotFound
		}
		for _, ref := range f.chains {
			if ref == name {
				return errBusy
			}
		}
		delete(f.counters, name)
		f.deleted[name] = c
	case addCounter:
		if _, ok := f.counters[name]; ok {
			return errExists
		}
		f.counters[name] = tableCounter{}
	case addChain:
		if _, ok := f.chains[name]; ok {
			return errExists
		}
		if _, ok := f.counters[name]; !ok {
			return errNotFound // the rule's counter
		}
		f.chains[name] = name
	case addElem:
		if _, ok := f.elems[k]; ok {
			return errExists
		}
		if _, ok := f.chains[name]; !ok {
			return errNotFound // the chain it leads to
		}
		f.elems[k] = name
	}
	return nil
}

// tick moves a packet each way of every counted address: traffic flows
// between any two requests.
func (f *fakeTable) tick() {
	for _, chain := range f.elems {
		c := f.counters[f.chains[chain]]
		c.bytes += 100
		c.packets++
		f.counters[f.chains[chain]] = c
	}
}

func (f *fakeTable) flush(b *batch) error {
	f.tick()
	if b.empty() {
		return nil
	}
	next := f.clone()
	steps := b.steps()
	for _, s := range steps {
		if err := next.apply(s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	*f = *next
	f.batches++
	f.log = append(f.log, fmt.Sprintf("batch %d:", f.batches))
	for _, s := range steps {
		f.log = append(f.log, "  "+s.String())
	}
	return nil
}

func (f *fakeTable) readRetired(p *syncPlan) (map[netip.AddrPort][]*pair, error) {
	f.tick()
	f.log = append(f.log, "read "+p.read.String())
	if p.read == readDump {
		return f.dump().pairs, nil
	}
	out := make(map[netip.AddrPort][]*pair)
	for a, nonce := range p.retire {
		q := &pair{addr: a, nonce: nonce}
		for _, d := range directions {
			c, ok := f.counters[objName(d, a, nonce)]
			if !ok {
				return nil, fmt.Errorf("reading counter %q: %w", objName(d, a, nonce), errNotFound)
			}
			q.has[d], q.bytes[d], q.packets[d] = true, c.bytes, c.packets
		}
		out[a] = []*pair{q}
	}
	return out, nil
}

var _ runner = (*fakeTable)(nil)

// dump is what a reading of the whole table finds.
func (f *fakeTable) dump() current {
	var values []counterValue
	for name, c := range f.counters {
		values = append(values, counterValue{name: name, bytes: c.bytes, packets: c.packets})
	}
	return current{pairs: pairsOf(values), chains: chainsOf(slices.Collect(maps.Keys(f.chains)))}
}

// seqNonces returns nonces 0000000000000100, 0000000000000101, …: after
// those the tests give pairs by hand.
func seqNonces() func() (string, error) {
	n := 0x100
	return func() (string, error) {
		n++
		return fmt.Sprintf("%016x", n-1), nil
	}
}

// Nonces of pairs made by hand, or by an earlier run.
const (
	nonce1 = "0000000000000001"
	nonce2 = "0000000000000002"
)

var (
	v4a = netip.MustParseAddrPort("10.0.0.1:80")
	v6a = netip.MustParseAddrPort("[fd00::1]:443")
	v4b = netip.MustParseAddrPort("10.0.0.2:80")
)

func wantOf(addrs ...netip.AddrPort) map[netip.AddrPort]bool {
	want := make(map[netip.AddrPort]bool)
	for _, a := range addrs {
		want[a] = true
	}
	return want
}

// syncFake plans a Sync of f from cur and carries it out on f, as the
// Kernel does.
func syncFake(f *fakeTable, cur current, want map[netip.AddrPort]bool, nonces func() (string, error)) (*settlement, error) {
	p, err := plan(cur, want, nonces)
	if err != nil {
		return nil, err
	}
	return p.execute(f, cur.pairs, nonces)
}

// render is what a Sync did, in the form of the golden texts.
func render(f *fakeTable, s *settlement, err error) string {
	lines := slices.Clone(f.log)
	if err != nil {
		return strings.Join(append(lines, "error: "+err.Error()), "\n")
	}
	for _, a := range sorted(s.final) {
		q := s.final[a]
		lines = append(lines, fmt.Sprintf("final %s %s tx=%d rx=%d", a, q.nonce, q.bytes[tx], q.bytes[rx]))
	}
	for _, a := range sorted(s.counted) {
		lines = append(lines, fmt.Sprintf("counted %s %s", a, s.counted[a]))
	}
	for _, a := range s.stuck {
		lines = append(lines, fmt.Sprintf("stuck %s", a))
	}
	return strings.Join(append(lines, fmt.Sprintf("clean %v", s.clean)), "\n")
}

// someAddrs returns n addresses other than v4a, v6a and v4b.
func someAddrs(n int) []netip.AddrPort {
	var out []netip.AddrPort
	for i := range n {
		out = append(out, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}), 8080))
	}
	return out
}

func TestPlanGolden(t *testing.T) {
	others := someAddrs(10)
	tests := []struct {
		name string
		// table builds the table the Sync starts from.
		table func(f *fakeTable)
		// remembered, when not nil, is the wiring the Kernel remembers:
		// the Sync plans from it instead of a reading of the table.
		remembered map[netip.AddrPort]string
		want       map[netip.AddrPort]bool
		golden     string
	}{
		{
			// Counters go before the rules that name them, chains before
			// the elements that lead to them, and the elements of one map
			// together: tx4, tx6, rx4, rx6.
			name:  "new addresses of both families: counters, chains, then elements by map",
			table: func(f *fakeTable) {},
			want:  wantOf(v4a, v6a),
			golden: `batch 1:
  add-counter tx/10.0.0.1:80/0000000000000100
  add-counter rx/10.0.0.1:80/0000000000000100
  add-counter tx/[fd00::1]:443/0000000000000101
  add-counter rx/[fd00::1]:443/0000000000000101
  add-chain tx/10.0.0.1:80/0000000000000100
  add-chain rx/10.0.0.1:80/0000000000000100
  add-chain tx/[fd00::1]:443/0000000000000101
  add-chain rx/[fd00::1]:443/0000000000000101
  add-elem tx 10.0.0.1:80 -> tx/10.0.0.1:80/0000000000000100
  add-elem tx [fd00::1]:443 -> tx/[fd00::1]:443/0000000000000101
  add-elem rx 10.0.0.1:80 -> rx/10.0.0.1:80/0000000000000100
  add-elem rx [fd00::1]:443 -> rx/[fd00::1]:443/0000000000000101
counted 10.0.0.1:80 0000000000000100
counted [fd00::1]:443 0000000000000101
clean true`,
		},
		{
			// The pair of a counted address that is wanted again counts
			// on: its bytes are not returned, nor its counters made anew.
			name:  "nothing changes: no batch",
			table: func(f *fakeTable) { f.counted(v4a, nonce1) },
			want:  wantOf(v4a),
			golden: `counted 10.0.0.1:80 0000000000000001
clean true`,
		},
		{
			// A few dropped among many counted: read by name, after the
			// batch that stopped them, then deleted.
			name: "from memory, one dropped of eleven: read by name",
			table: func(f *fakeTable) {
				f.counted(v4a, nonce1)
				for _, o := range others {
					f.counted(o, nonce2)
				}
			},
			remembered: rememberAll(nonce2, others, map[netip.AddrPort]string{v4a: nonce1}),
			want:       wantOf(others...),
			golden: `batch 1:
  del-elem tx 10.0.0.1:80 -> tx/10.0.0.1:80/0000000000000001
  del-elem rx 10.0.0.1:80 -> rx/10.0.0.1:80/0000000000000001
  del-chain tx/10.0.0.1:80/0000000000000001
  del-chain rx/10.0.0.1:80/0000000000000001
read by name
batch 2:
  del-counter tx/10.0.0.1:80/0000000000000001
  del-counter rx/10.0.0.1:80/0000000000000001
final 10.0.0.1:80 0000000000000001 tx=1100 rx=1101
` + countedLines(nonce2, others) + `
clean true`,
		},
		{
			name: "from memory, half dropped: one dump",
			table: func(f *fakeTable) {
				f.counted(v4a, nonce1)
				f.counted(v6a, nonce1)
			},
			remembered: map[netip.AddrPort]string{v4a: nonce1, v6a: nonce1},
			want:       wantOf(v6a, v4b),
			golden: `batch 1:
  del-elem tx 10.0.0.1:80 -> tx/10.0.0.1:80/0000000000000001
  del-elem rx 10.0.0.1:80 -> rx/10.0.0.1:80/0000000000000001
  del-chain tx/10.0.0.1:80/0000000000000001
  del-chain rx/10.0.0.1:80/0000000000000001
  add-counter tx/10.0.0.2:80/0000000000000100
  add-counter rx/10.0.0.2:80/0000000000000100
  add-chain tx/10.0.0.2:80/0000000000000100
  add-chain rx/10.0.0.2:80/0000000000000100
  add-elem tx 10.0.0.2:80 -> tx/10.0.0.2:80/0000000000000100
  add-elem rx 10.0.0.2:80 -> rx/10.0.0.2:80/0000000000000100
read dump
batch 2:
  del-counter tx/10.0.0.1:80/0000000000000001
  del-counter rx/10.0.0.1:80/0000000000000001
final 10.0.0.1:80 0000000000000001 tx=1100 rx=1101
counted 10.0.0.2:80 0000000000000100
counted [fd00::1]:443 0000000000000001
clean true`,
		},
		{
			// The table is not what the Kernel remembers: the first batch
			// fails as a whole, and Sync goes on from a reading of the
			// whole table.
			name:       "from memory, wiring gone: the batch fails",
			table:      func(f *fakeTable) {},
			remembered: map[netip.AddrPort]string{v4a: nonce1},
			want:       wantOf(),
			golden:     `error: changing the counted addresses: del-elem tx 10.0.0.1:80 -> tx/10.0.0.1:80/0000000000000001: no such object (ENOENT)`,
		},
		{
			// A Sync that died between its batches left the pair
			// unwired: it holds bytes not yet returned, so it counts on.
			name: "unwired pair, wanted: wired again, no new counters",
			table: func(f *fakeTable) {
				f.counter(tx, v4a, nonce1)
				f.counter(rx, v4a, nonce1)
			},
			want: wantOf(v4a),
			golden: `batch 1:
  add-chain tx/10.0.0.1:80/0000000000000001
  add-chain rx/10.0.0.1:80/0000000000000001
  add-elem tx 10.0.0.1:80 -> tx/10.0.0.1:80/0000000000000001
  add-elem rx 10.0.0.1:80 -> rx/10.0.0.1:80/0000000000000001
counted 10.0.0.1:80 0000000000000001
clean true`,
		},
		{
			// Nothing counts into it: the dump the plan started from
			// holds its final reading, and no second reading is taken.
			name: "unwired pair, not wanted: returned from the first reading",
			table: func(f *fakeTable) {
				f.counter(tx, v4a, nonce1)
				f.counter(rx, v4a, nonce1)
			},
			want: wantOf(),
			golden: `batch 1:
  del-counter tx/10.0.0.1:80/0000000000000001
  del-counter rx/10.0.0.1:80/0000000000000001
final 10.0.0.1:80 0000000000000001 tx=1000 rx=1001
clean true`,
		},
		{
			name: "half wired: unwired, returned, then counted anew",
			table: func(f *fakeTable) {
				f.counter(tx, v4a, nonce1)
				f.counter(rx, v4a, nonce1)
				f.chain(tx, v4a, nonce1)
			},
			want: wantOf(v4a),
			golden: `batch 1:
  del-elem tx 10.0.0.1:80 -> tx/10.0.0.1:80/0000000000000001
  del-chain tx/10.0.0.1:80/0000000000000001
read dump
batch 2:
  del-counter tx/10.0.0.1:80/0000000000000001
  del-counter rx/10.0.0.1:80/0000000000000001
batch 3:
  add-counter tx/10.0.0.1:80/0000000000000100
  add-counter rx/10.0.0.1:80/0000000000000100
  add-chain tx/10.0.0.1:80/0000000000000100
  add-chain rx/10.0.0.1:80/0000000000000100
  add-elem tx 10.0.0.1:80 -> tx/10.0.0.1:80/0000000000000100
  add-elem rx 10.0.0.1:80 -> rx/10.0.0.1:80/0000000000000100
final 10.0.0.1:80 0000000000000001 tx=1100 rx=1001
counted 10.0.0.1:80 0000000000000100
clean true`,
		},
		{
			// The kernel tests' "counter deleted": what is left is
			// returned, and the address gets a new pair.
			name:  "one counter of an unwired pair deleted by hand: the other returned, counted anew",
			table: func(f *fakeTable) { f.counter(rx, v4a, nonce1) },
			want:  wantOf(v4a),
			golden: `batch 1:
  del-counter rx/10.0.0.1:80/0000000000000001
batch 2:
  add-counter tx/10.0.0.1:80/0000000000000100
  add-counter rx/10.0.0.1:80/0000000000000100
  add-chain tx/10.0.0.1:80/0000000000000100
  add-chain rx/10.0.0.1:80/0000000000000100
  add-elem tx 10.0.0.1:80 -> tx/10.0.0.1:80/0000000000000100
  add-elem rx 10.0.0.1:80 -> rx/10.0.0.1:80/0000000000000100
final 10.0.0.1:80 0000000000000001 tx=0 rx=1001
counted 10.0.0.1:80 0000000000000100
clean true`,
		},
		{
			name: "another pair added by hand: returned, the counting one counts on",
			table: func(f *fakeTable) {
				f.counted(v4a, nonce2)
				f.counter(tx, v4a, nonce1)
				f.counter(rx, v4a, nonce1)
			},
			want: wantOf(v4a),
			golden: `batch 1:
  del-counter tx/10.0.0.1:80/0000000000000001
  del-counter rx/10.0.0.1:80/0000000000000001
final 10.0.0.1:80 0000000000000001 tx=1000 rx=1001
counted 10.0.0.1:80 0000000000000002
clean true`,
		},
		{
			// One reading per address and Sync: the second stray pair
			// waits for the next Sync, and the address with it.
			name: "two stray pairs and no wiring: one returned, the address left for the next Sync",
			table: func(f *fakeTable) {
				f.counter(tx, v4a, nonce1)
				f.counter(rx, v4a, nonce1)
				f.counter(tx, v4a, nonce2)
				f.counter(rx, v4a, nonce2)
				f.chain(tx, v4a, nonce1)
				f.chain(rx, v4a, nonce2)
			},
			want: wantOf(v4a),
			golden: `batch 1:
  del-elem tx 10.0.0.1:80 -> tx/10.0.0.1:80/0000000000000001
  del-elem rx 10.0.0.1:80 -> rx/10.0.0.1:80/0000000000000002
  del-chain tx/10.0.0.1:80/0000000000000001
  del-chain rx/10.0.0.1:80/0000000000000002
read dump
batch 2:
  del-counter tx/10.0.0.1:80/0000000000000001
  del-counter rx/10.0.0.1:80/0000000000000001
final 10.0.0.1:80 0000000000000001 tx=1100 rx=1001
stuck 10.0.0.1:80
clean false`,
		},
		{
			// meter.Meter makes such a table anew.
			name: "element removed by hand under its chain: the batch fails, nothing changes",
			table: func(f *fakeTable) {
				f.counted(v4a, nonce1)
				delete(f.elems, elemKey{tx, v4a})
			},
			want:   wantOf(),
			golden: `error: changing the counted addresses: del-elem tx 10.0.0.1:80 -> tx/10.0.0.1:80/0000000000000001: no such object (ENOENT)`,
		},
		{
			name:   "chains of other tables' names and objects of other names are left alone",
			table:  func(f *fakeTable) { f.counters["tx/10.0.0.1:80/short"] = tableCounter{}; f.chains["tx"] = "" },
			want:   wantOf(),
			golden: `clean true`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeTable()
			tc.table(f)
			before := f.clone()
			cur := f.dump()
			if tc.remembered != nil {
				cur = current{remembered: tc.remembered}
			}
			s, err := syncFake(f, cur, tc.want, seqNonces())
			if got := render(f, s, err); got != tc.golden {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.golden)
			}
			if err != nil && !equalTables(f, before) {
				t.Error("a failed batch changed the table")
			}
		})
	}
}

// rememberAll is the wiring of addrs with nonce, and of extra.
func rememberAll(nonce string, addrs []netip.AddrPort, extra map[netip.AddrPort]string) map[netip.AddrPort]string {
	out := maps.Clone(extra)
	for _, a := range addrs {
		out[a] = nonce
	}
	return out
}

func countedLines(nonce string, addrs []netip.AddrPort) string {
	var lines []string
	for _, a := range slices.SortedFunc(slices.Values(addrs), netip.AddrPort.Compare) {
		lines = append(lines, fmt.Sprintf("counted %s %s", a, nonce))
	}
	return strings.Join(lines, "\n")
}

// equalTables tells whether f and g hold the same objects, whatever their
// counters counted.
func equalTables(f, g *fakeTable) bool {
	names := func(t *fakeTable) []string { return slices.Sorted(maps.Keys(t.counters)) }
	return slices.Equal(names(f), names(g)) && maps.Equal(f.chains, g.chains) && maps.Equal(f.elems, g.elems)
}

// addrState is the objects of one address in a table: which counters of
// the pairs of nonce1 and nonce2 exist, by direction, and which pair the
// chain (and map element) of each direction counts into: 0 none, 1
// nonce1, 2 nonce2.
type addrState struct {
	has   [2][2]bool
	chain [2]int
}

// addrStates returns every state one address can be in: whatever hand
// edits and Syncs that died between batches leave, as long as the kernel
// took it (a chain's rule needs its counter, an element its chain).
func addrStates() []addrState {
	var out []addrState
	for bits := range 16 {
		var s addrState
		for i := range 2 {
			for _, d := range directions {
				s.has[i][d] = bits&(1<<(2*i+int(d))) != 0
			}
		}
		for c := range 9 {
			s.chain = [2]int{c % 3, c / 3}
			if (s.chain[tx] == 0 || s.has[s.chain[tx]-1][tx]) && (s.chain[rx] == 0 || s.has[s.chain[rx]-1][rx]) {
				out = append(out, s)
			}
		}
	}
	return out
}

func (s addrState) build(f *fakeTable, a netip.AddrPort) {
	nonces := [2]string{nonce1, nonce2}
	for i := range 2 {
		for _, d := range directions {
			if s.has[i][d] {
				f.counter(d, a, nonces[i])
			}
		}
	}
	for _, d := range directions {
		if s.chain[d] > 0 {
			f.chain(d, a, nonces[s.chain[d]-1])
		}
	}
}

func (s addrState) String() string {
	return fmt.Sprintf("counters %v, chains %v", s.has, s.chain)
}

// checkSync checks what a Sync from start to want did to f and returned in
// s: no byte lost or returned twice, the wanted addresses counted and no
// other, and a clean result as clean as it says.
func checkSync(t testing.TB, start, f *fakeTable, want map[netip.AddrPort]bool, s *settlement) {
	t.Helper()
	// Every counter deleted is returned, with its last value, and every
	// final reading is of counters deleted.
	for name, c := range f.deleted {
		if _, ok := start.deleted[name]; ok {
			continue
		}
		d, a, nonce, _ := parseName(name)
		q := s.final[a]
		if q == nil || q.nonce != nonce || !q.has[d] || q.bytes[d] != c.bytes || q.packets[d] != c.packets {
			t.Errorf("counter %s deleted at %+v, final reading %+v", name, c, q)
		}
	}
	for a, q := range s.final {
		for _, d := range directions {
			if _, ok := f.deleted[objName(d, a, q.nonce)]; ok != q.has[d] {
				t.Errorf("final reading of %s %s has %s %v, deleted %v", a, q.nonce, d, q.has[d], ok)
			}
		}
	}
	// The wanted addresses count, into the pair of counted; no other does.
	for k, chain := range f.elems {
		if !want[k.addr] {
			t.Errorf("%s counts %s, not wanted", k.addr, k.dir)
		} else if chain != objName(k.dir, k.addr, s.counted[k.addr]) {
			t.Errorf("%s counts %s into %s, not the pair of %q", k.addr, k.dir, chain, s.counted[k.addr])
		}
	}
	for a := range want {
		for _, d := range directions {
			if _, ok := f.elems[elemKey{d, a}]; !ok && !slices.Contains(s.stuck, a) {
				t.Errorf("%s, wanted, does not count %s", a, d)
			}
		}
	}
	// A pair that counted for a wanted address counts on: its bytes are
	// not cut short.
	was := start.dump()
	for a := range want {
		w, ps := was.chains[a], was.pairs[a]
		if w[tx] != "" && w[tx] == w[rx] && slices.ContainsFunc(ps, func(q *pair) bool { return q.nonce == w[tx] && q.complete() }) && s.counted[a] != w[tx] {
			t.Errorf("%s counted with %s, now with %q", a, w[tx], s.counted[a])
		}
	}
	if !s.clean {
		return
	}
	cleanTable := newFakeTable()
	for a, nonce := range s.counted {
		cleanTable.counted(a, nonce)
	}
	if !equalTables(f, cleanTable) {
		t.Errorf("a clean Sync left %v %v %v, want %v %v %v", f.counters, f.chains, f.elems, cleanTable.counters, cleanTable.chains, cleanTable.elems)
	}
}

// syncClean syncs a copy of start to want from readings of the whole
// table, checking each Sync, until the table is clean: one Sync, or two
// after hand edits that left several pairs for one address. A third Sync
// must do nothing.
func syncClean(t testing.TB, name string, start *fakeTable, want map[netip.AddrPort]bool) (*fakeTable, *settlement) {
	t.Helper()
	f := start.clone()
	nonces := seqNonces()
	var s *settlement
	for i := range 2 {
		before := f.clone()
		var err error
		if s, err = syncFake(f, f.dump(), want, nonces); err != nil {
			t.Fatalf("%s: Sync %d: %v", name, i+1, err)
		}
		checkSync(t, before, f, want, s)
		if t.Failed() {
			t.Fatalf("%s: Sync %d:\n%s", name, i+1, render(f, s, nil))
		}
		if s.clean {
			break
		}
	}
	if !s.clean {
		t.Fatalf("%s: not clean after two Syncs:\n%s", name, render(f, s, nil))
	}
	again := f.clone()
	again.log = nil
	if s2, err := syncFake(again, again.dump(), want, nonces); err != nil || len(again.log) != 0 || len(s2.final) != 0 || !maps.Equal(s2.counted, s.counted) {
		t.Fatalf("%s: a Sync of a clean table to the same addresses:\n%s", name, render(again, s2, err))
	}
	return f, s
}

// fromMemory checks that a Sync of f, as s left it, to next does the same
// from the wiring s remembers as from a reading of the whole table.
func fromMemory(t testing.TB, name string, f *fakeTable, s *settlement, next map[netip.AddrPort]bool) {
	t.Helper()
	byDump, byMemory := f.clone(), f.clone()
	byDump.log, byMemory.log = nil, nil
	s1, err1 := syncFake(byDump, byDump.dump(), next, seqNonces())
	s2, err2 := syncFake(byMemory, current{remembered: s.counted}, next, seqNonces())
	if got, want := render(byMemory, s2, err2), render(byDump, s1, err1); got != want {
		t.Fatalf("%s, then %v: from the remembered wiring:\n%s\nfrom a reading:\n%s", name, sorted(next), got, want)
	}
}

// TestPlanEveryState syncs every table one address can be left in, beside
// a second address in one of a few states, to every set of wanted
// addresses, from a reading of the whole table, and checks what each Sync
// does; then, from the table it leaves, that a Sync from the remembered
// wiring does what one from a reading does. FuzzPlan tries the rest, with
// three addresses.
func TestPlanEveryState(t *testing.T) {
	states := addrStates()
	// The second address: one pair at most, or a second pair beside one
	// that counts.
	seconds := slices.DeleteFunc(slices.Clone(states), func(s addrState) bool {
		return s.has[1] != [2]bool{} && (s.has != [2][2]bool{{true, true}, {true, true}} || s.chain != [2]int{2, 2})
	})
	wants := []map[netip.AddrPort]bool{wantOf(), wantOf(v4a), wantOf(v6a), wantOf(v4a, v6a)}
	nextWants := append(slices.Clone(wants), wantOf(v4b), wantOf(v4a, v4b), wantOf(v4a, v6a, v4b))
	// The table a Sync leaves depends on little of where it started:
	// compare the two ways once for each.
	compared := make(map[string]bool)
	for _, sa := range states {
		for _, sb := range seconds {
			for _, want := range wants {
				start := newFakeTable()
				sa.build(start, v4a)
				sb.build(start, v6a)
				name := fmt.Sprintf("%s: %s; %s: %s; want %v", v4a, sa, v6a, sb, sorted(want))
				f, s := syncClean(t, name, start, want)
				left := render(newFakeTable(), s, nil)
				if compared[left] {
					continue
				}
				compared[left] = true
				for _, next := range nextWants {
					fromMemory(t, name, f, s, next)
				}
			}
		}
	}
	t.Logf("%d×%d address states, %d tables synced from memory", len(states), len(seconds), len(compared))
}

// FuzzPlan syncs tables of three addresses in any states (one byte each)
// to any wanted addresses (the bits of the fourth byte), then to others
// (the fifth), as TestPlanEveryState does.
func FuzzPlan(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0})
	f.Add([]byte{63, 12, 40, 7, 2})
	f.Add([]byte{17, 63, 5, 5, 6})
	states := addrStates()
	addrs := []netip.AddrPort{v4a, v6a, v4b}
	f.Fuzz(func(t *testing.T, data []byte) {
		data = append(data, make([]byte, 5)...)
		start := newFakeTable()
		want, next := wantOf(), wantOf()
		var name strings.Builder
		for i, a := range addrs {
			st := states[int(data[i])%len(states)]
			st.build(start, a)
			if data[3]&(1<<i) != 0 {
				want[a] = true
			}
			if data[4]&(1<<i) != 0 {
				next[a] = true
			}
			fmt.Fprintf(&name, "%s: %s; ", a, st)
		}
		fmt.Fprintf(&name, "want %v", sorted(want))
		tf, s := syncClean(t, name.String(), start, want)
		fromMemory(t, name.String(), tf, s, next)
	})
}

// TestPairsOf guards how a dump is read: counters grouped in pairs by
// address and nonce, sorted by nonce, names of other objects left out.
func TestPairsOf(t *testing.T) {
	got := pairsOf([]counterValue{
		{name: objName(rx, v4a, nonce2), bytes: 7, packets: 1},
		{name: objName(tx, v4a, nonce1), bytes: 5, packets: 2},
		{name: objName(rx, v4a, nonce1), bytes: 6, packets: 3},
		{name: objName(tx, v6a, nonce1), bytes: 8, packets: 4},
		{name: "tx/10.0.0.1:80/short"},
		{name: "tx/[::ffff:10.0.0.1]:80/" + nonce1}, // not objName's form
		{name: "other"},
	})
	want := map[netip.AddrPort][]pair{
		v4a: {
			{addr: v4a, nonce: nonce1, has: [2]bool{true, true}, bytes: [2]uint64{5, 6}, packets: [2]uint64{2, 3}},
			{addr: v4a, nonce: nonce2, has: [2]bool{false, true}, bytes: [2]uint64{0, 7}, packets: [2]uint64{0, 1}},
		},
		v6a: {{addr: v6a, nonce: nonce1, has: [2]bool{true, false}, bytes: [2]uint64{8, 0}, packets: [2]uint64{4, 0}}},
	}
	if len(got) != len(want) {
		t.Fatalf("pairs of %d addresses, want %d: %v", len(got), len(want), got)
	}
	for a, ps := range want {
		if len(got[a]) != len(ps) {
			t.Fatalf("%s: %d pairs, want %d", a, len(got[a]), len(ps))
		}
		for i, p := range ps {
			if *got[a][i] != p {
				t.Errorf("%s: pair %d is %+v, want %+v", a, i, *got[a][i], p)
			}
		}
	}
}

// TestMatches guards Read's check of the remembered wiring against a
// dump: one complete pair of the remembered nonce for each address, and no
// other address.
func TestMatches(t *testing.T) {
	full := func(a netip.AddrPort, nonce string) *pair {
		return &pair{addr: a, nonce: nonce, has: [2]bool{true, true}}
	}
	wired := map[netip.AddrPort]string{v4a: nonce1}
	tests := []struct {
		name  string
		pairs map[netip.AddrPort][]*pair
		want  bool
	}{
		{"as remembered", map[netip.AddrPort][]*pair{v4a: {full(v4a, nonce1)}}, true},
		{"another nonce", map[netip.AddrPort][]*pair{v4a: {full(v4a, nonce2)}}, false},
		{"a second pair", map[netip.AddrPort][]*pair{v4a: {full(v4a, nonce1), full(v4a, nonce2)}}, false},
		{"a counter gone", map[netip.AddrPort][]*pair{v4a: {{addr: v4a, nonce: nonce1, has: [2]bool{true, false}}}}, false},
		{"another address", map[netip.AddrPort][]*pair{v4a: {full(v4a, nonce1)}, v6a: {full(v6a, nonce1)}}, false},
		{"the table emptied", map[netip.AddrPort][]*pair{}, false},
	}
	for _, tc := range tests {
		if got := matches(wired, tc.pairs); got != tc.want {
			t.Errorf("%s: matches = %v, want %v", tc.name, got, tc.want)
		}
	}
}
