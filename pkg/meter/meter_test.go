package meter

import (
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/nftables"
	"github.com/rs/zerolog"
)

// newMeter opens a Meter counting in ns, with its ledger under dir.
func newMeter(t testing.TB, ns *netns, dir string) *Meter {
	t.Helper()
	m, err := New(Config{Table: "meter_test", NetNS: ns.fd, Ledger: filepath.Join(dir, LedgerDirName, LedgerFileName), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatalf("opening the meter (the tests need root and nf_tables): %v", err)
	}
	t.Cleanup(func() { m.kernel.Close() })
	return m
}

// within reports whether counted is the payload and at most the headers of
// the packets a loopback connection moving it may take: up to 6 % seen for
// these short transfers, whose first packets are small while the window
// opens (kernel_test.go bounds the headers exactly, from the packet
// counts). Losing a transfer or counting one twice is far outside.
func within(counted uint64, payload int) bool {
	return counted >= uint64(payload) && counted <= uint64(payload)+uint64(payload)/8+8192
}

// TestMeterSharedAddress guards attribution: two workloads listing one
// backend address never both count a byte; the most recent claim takes the
// bytes from its claim on, and hands them back when it drops the address.
func TestMeterSharedAddress(t *testing.T) {
	const n = 256 << 10
	ns := newNetNS(t)
	m := newMeter(t, ns, t.TempDir())
	ln, addr := listen(t, ns, "127.0.0.1:0")
	other, otherAddr := listen(t, ns, "127.0.0.1:0")
	if err := m.Reset(nil); err != nil {
		t.Fatal(err)
	}
	total := func(id string) Totals {
		t.Helper()
		got, err := m.Totals()
		if err != nil {
			t.Fatal(err)
		}
		return got[id]
	}

	if err := m.Assign("first", []netip.AddrPort{addr}); err != nil {
		t.Fatal(err)
	}
	exchange(t, ns, ln, n)
	if err := m.Assign("second", []netip.AddrPort{addr, otherAddr}); err != nil {
		t.Fatal(err)
	}
	if f := total("first"); !within(f.Tx, n) || !within(f.Rx, n) {
		t.Fatalf("first counts %+v before second's claim, moved %d each way", f, n)
	}
	exchange(t, ns, ln, n)
	exchange(t, ns, other, n)
	if f := total("first"); !within(f.Tx, n) {
		t.Errorf("first counts %+v: it was charged after second claimed the address", f)
	}
	if s := total("second"); !within(s.Tx, 2*n) || !within(s.Rx, 2*n) {
		t.Errorf("second counts %+v, moved %d each way", s, 2*n)
	}

	// second drops the address: its bytes go back to first; deleting
	// second keeps what it had for one last report.
	if err := m.Assign("second", []netip.AddrPort{otherAddr}); err != nil {
		t.Fatal(err)
	}
	exchange(t, ns, ln, n)
	if f := total("first"); !within(f.Tx, 2*n) {
		t.Errorf("first counts %+v after second dropped the address, want %d", f, 2*n)
	}
	if err := m.Remove("second"); err != nil {
		t.Fatal(err)
	}
	report, err := m.Report()
	if err != nil {
		t.Fatal(err)
	}
	if s := report["second"]; !within(s.Tx, 2*n) {
		t.Errorf("the last report of second is %+v, want its %d bytes", s, 2*n)
	}
	if report, err = m.Report(); err != nil {
		t.Fatal(err)
	}
	if _, ok := report["second"]; ok {
		t.Errorf("second reported again after its last report: %+v", report)
	}
}

// TestMeterRestart guards totals across a restart of the gateway: the
// kernel counts on, and the next Meter takes the bytes of the downtime
// from the counters; a workload deleted meanwhile is reported once.
func TestMeterRestart(t *testing.T) {
	const n = 256 << 10
	ns := newNetNS(t)
	dir := t.TempDir()
	ln, addr := listen(t, ns, "127.0.0.1:0")
	gone, goneAddr := listen(t, ns, "127.0.0.1:0")
	m := newMeter(t, ns, dir)
	routes := map[string][]netip.AddrPort{"kept": {addr}, "gone": {goneAddr}}
	if err := m.Reset(routes); err != nil {
		t.Fatal(err)
	}
	exchange(t, ns, ln, n)
	exchange(t, ns, gone, n)
	m.kernel.Close() // as a crash would: nothing saved since Reset

	exchange(t, ns, ln, n)
	exchange(t, ns, gone, n)
	m = newMeter(t, ns, dir)
	if err := m.Reset(map[string][]netip.AddrPort{"kept": {addr}}); err != nil {
		t.Fatal(err)
	}
	report, err := m.Report()
	if err != nil {
		t.Fatal(err)
	}
	if k := report["kept"]; !within(k.Tx, 2*n) || !within(k.Rx, 2*n) {
		t.Errorf("kept counts %+v after a restart, moved %d each way", k, 2*n)
	}
	if g := report["gone"]; !within(g.Tx, 2*n) {
		t.Errorf("gone, deleted while the gateway was down, reports %+v, want its %d bytes", g, 2*n)
	}
}

// TestMeterRepairsRemovedTable guards against a firewall reload that
// flushes the ruleset: the table goes, and the meter must notice and count
// again within one tick, not go silent.
func TestMeterRepairsRemovedTable(t *testing.T) {
	const n = 256 << 10
	ns := newNetNS(t)
	ln, addr := listen(t, ns, "127.0.0.1:0")
	m := newMeter(t, ns, t.TempDir())
	if err := m.Reset(map[string][]netip.AddrPort{"a": {addr}}); err != nil {
		t.Fatal(err)
	}
	exchange(t, ns, ln, n)
	m.tick()
	other, err := OpenKernel(KernelConfig{Table: "meter_test", NetNS: ns.fd})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Remove(); err != nil {
		t.Fatal(err)
	}
	m.tick() // finds the counters gone and makes them again
	if m.failing {
		t.Fatal("the tick after the table was removed failed")
	}
	exchange(t, ns, ln, n)
	got, err := m.Totals()
	if err != nil {
		t.Fatal(err)
	}
	if a := got["a"]; !within(a.Tx, 2*n) || !within(a.Rx, 2*n) {
		t.Fatalf("a counts %+v, moved %d each way before and after the table was removed", a, 2*n)
	}
}

// TestMeterRebuildsTableItCannotSync guards route changes against a table
// edited by hand beyond what Sync repairs: a map element removed under a
// chain that stays. The meter must make the table anew, not refuse every
// change from then on.
func TestMeterRebuildsTableItCannotSync(t *testing.T) {
	const n = 128 << 10
	ns := newNetNS(t)
	ln, addr := listen(t, ns, "127.0.0.1:0")
	other, otherAddr := listen(t, ns, "127.0.0.1:0")
	m := newMeter(t, ns, t.TempDir())
	if err := m.Reset(map[string][]netip.AddrPort{"a": {addr}, "b": {otherAddr}}); err != nil {
		t.Fatal(err)
	}
	exchange(t, ns, ln, n)
	// The tx element of b's address goes; its chain stays.
	handEdit(t, ns, func(c *nftables.Conn) {
		c.SetDeleteElements(m.kernel.maps[tx][family(otherAddr)], []nftables.SetElement{{Key: key(otherAddr)}})
	})
	if err := m.Remove("b"); err != nil {
		t.Fatalf("Remove after a hand edit: %v", err)
	}
	exchange(t, ns, ln, n)
	exchange(t, ns, other, n) // no longer anyone's
	got, err := m.Report()
	if err != nil {
		t.Fatal(err)
	}
	if a := got["a"]; !within(a.Tx, 2*n) {
		t.Errorf("a counts %+v after the table was made anew, moved %d", a, 2*n)
	}
	if _, ok := got["b"]; !ok {
		t.Errorf("b, removed, is not reported once: %+v", got)
	}
}

// TestMeterAssignAll guards the batch of the module's group commit: several
// workloads get their addresses with one change of the table, each counts
// its own bytes, and a batch the kernel refuses changes none of them.
func TestMeterAssignAll(t *testing.T) {
	const n = 128 << 10
	ns := newNetNS(t)
	m := newMeter(t, ns, t.TempDir())
	ln, addr := listen(t, ns, "127.0.0.1:0")
	other, otherAddr := listen(t, ns, "127.0.0.1:0")
	if err := m.Reset(nil); err != nil {
		t.Fatal(err)
	}
	if err := m.AssignAll(map[string][]netip.AddrPort{"a": {addr}, "b": {otherAddr}}); err != nil {
		t.Fatal(err)
	}
	exchange(t, ns, ln, n)
	exchange(t, ns, other, 2*n)
	got, err := m.Totals()
	if err != nil {
		t.Fatal(err)
	}
	if a, b := got["a"], got["b"]; !within(a.Tx, n) || !within(b.Tx, 2*n) {
		t.Fatalf("a counts %+v (moved %d), b %+v (moved %d)", a, n, b, 2*n)
	}

	_, thirdAddr := listen(t, ns, "127.0.0.1:0")
	m.kernel.Close() // every change of the table fails from now on
	if err := m.AssignAll(map[string][]netip.AddrPort{"a": {thirdAddr}, "c": {thirdAddr}}); err == nil {
		t.Fatal("AssignAll succeeded without a table to change")
	}
	if !slices.Equal(m.addrs["a"], []netip.AddrPort{addr}) || m.addrs["c"] != nil || m.refs[thirdAddr] != 0 || m.refs[addr] != 1 {
		t.Fatalf("a failed batch changed the meter: addrs %v, refs %v", m.addrs, m.refs)
	}
}
