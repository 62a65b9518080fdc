package meter

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	addrA = netip.MustParseAddrPort("10.0.0.1:80")
	addrB = netip.MustParseAddrPort("[fd00::1]:443")
	addrC = netip.MustParseAddrPort("10.0.0.3:8080")
)

// openLedger opens a ledger in a file of the test's own.
func openLedger(t testing.TB) (*Ledger, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.json")
	l, err := OpenLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	return l, path
}

func reopen(t testing.TB, l *Ledger, path string) *Ledger {
	t.Helper()
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// observe has l observe one reading.
func observe(l *Ledger, a netip.AddrPort, instance string, tx, rx uint64) {
	l.Observe(map[netip.AddrPort]Reading{a: {Tx: tx, Rx: rx, Instance: instance}})
}

func checkTotals(t testing.TB, got, want map[string]Totals) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Errorf("totals %v, want %v", got, want)
	}
}

func TestLedgerAttribution(t *testing.T) {
	tests := []struct {
		name         string
		run          func(l *Ledger)
		want         map[string]Totals
		unattributed Totals
	}{{
		// A tenant pointing its route at another's backend pays for it.
		name: "shared address goes to the latest claimant",
		run: func(l *Ledger) {
			l.Assign("owner", []netip.AddrPort{addrA})
			l.Assign("intruder", []netip.AddrPort{addrA})
			observe(l, addrA, "i", 100, 10)
		},
		want: map[string]Totals{"owner": {}, "intruder": {Tx: 100, Rx: 10}},
	}, {
		name: "bytes before the new claim stay with the old owner",
		run: func(l *Ledger) {
			l.Assign("owner", []netip.AddrPort{addrA})
			observe(l, addrA, "i", 100, 10)
			l.Assign("intruder", []netip.AddrPort{addrA})
			observe(l, addrA, "i", 150, 20)
		},
		want: map[string]Totals{"owner": {Tx: 100, Rx: 10}, "intruder": {Tx: 50, Rx: 10}},
	}, {
		name: "the next latest claimant takes over when the latest drops the address",
		run: func(l *Ledger) {
			l.Assign("first", []netip.AddrPort{addrA})
			l.Assign("second", []netip.AddrPort{addrA})
			l.Assign("third", []netip.AddrPort{addrA})
			observe(l, addrA, "i", 100, 0)
			l.Assign("third", nil)
			observe(l, addrA, "i", 130, 0)
			l.Remove("second")
			observe(l, addrA, "i", 135, 0)
		},
		want: map[string]Totals{"first": {Tx: 5}, "second": {Tx: 30}, "third": {Tx: 100}},
	}, {
		// Re-listing must not let the owner take an address back.
		name: "assigning an address again keeps its claim's age",
		run: func(l *Ledger) {
			l.Assign("owner", []netip.AddrPort{addrA})
			l.Assign("intruder", []netip.AddrPort{addrA})
			l.Assign("owner", []netip.AddrPort{addrB, addrA})
			observe(l, addrA, "i", 100, 0)
		},
		want: map[string]Totals{"owner": {}, "intruder": {Tx: 100}},
	}, {
		name: "a workload created again claims anew",
		run: func(l *Ledger) {
			l.Assign("a", []netip.AddrPort{addrA})
			l.Assign("b", []netip.AddrPort{addrA})
			l.Remove("a")
			reportSaved(l)
			l.Assign("a", []netip.AddrPort{addrA})
			observe(l, addrA, "i", 7, 0)
		},
		want: map[string]Totals{"a": {Tx: 7}, "b": {}},
	}, {
		name: "IPv4 mapped into IPv6 is the IPv4 address",
		run: func(l *Ledger) {
			l.Assign("a", []netip.AddrPort{netip.MustParseAddrPort("[::ffff:10.0.0.1]:80")})
			observe(l, addrA, "i", 7, 0)
		},
		want: map[string]Totals{"a": {Tx: 7}},
	}, {
		name: "bytes of an address no one claims are unattributed, once",
		run: func(l *Ledger) {
			l.Assign("a", []netip.AddrPort{addrB})
			observe(l, addrA, "i", 100, 1)
			observe(l, addrA, "i", 100, 1)
			observe(l, addrA, "i", 120, 1)
		},
		want:         map[string]Totals{"a": {}},
		unattributed: Totals{Tx: 120, Rx: 1},
	}, {
		// The protocol: the final reading comes before the Assign that
		// drops the address.
		name: "the final reading goes to the workload that dropped the address",
		run: func(l *Ledger) {
			l.Assign("a", []netip.AddrPort{addrA})
			observe(l, addrA, "i", 100, 1)
			observe(l, addrA, "i", 110, 2) // Sync's final reading
			l.Assign("a", nil)
		},
		want: map[string]Totals{"a": {Tx: 110, Rx: 2}},
	}, {
		// An address handed from one workload to another in one change,
		// whatever the order of the calls: the new one pays from then on.
		name: "an address moved between workloads keeps its reading",
		run: func(l *Ledger) {
			l.Assign("a", []netip.AddrPort{addrA})
			observe(l, addrA, "i", 100, 0)
			l.Assign("a", nil)
			l.Assign("b", []netip.AddrPort{addrA})
			observe(l, addrA, "i", 130, 0)
		},
		want: map[string]Totals{"a": {Tx: 100}, "b": {Tx: 30}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, path := openLedger(t)
			tc.run(l)
			checkTotals(t, l.Totals(), tc.want)
			if got := l.Unattributed(); got != tc.unattributed {
				t.Errorf("unattributed %+v, want %+v", got, tc.unattributed)
			}
			// The same after a restart.
			l = reopen(t, l, path)
			checkTotals(t, l.Totals(), tc.want)
			if got := l.Unattributed(); got != tc.unattributed {
				t.Errorf("unattributed after reopening %+v, want %+v", got, tc.unattributed)
			}
		})
	}
}

func TestLedgerReportsRemovedWorkloadOnce(t *testing.T) {
	l, path := openLedger(t)
	l.Assign("gone", []netip.AddrPort{addrA})
	l.Assign("stays", []netip.AddrPort{addrB})
	observe(l, addrA, "i", 100, 10)
	l.Remove("gone")
	l.Remove("gone") // a second Remove changes nothing
	observe(l, addrA, "i", 200, 20)
	want := map[string]Totals{"gone": {Tx: 100, Rx: 10}, "stays": {}}
	checkTotals(t, l.Totals(), want)
	checkTotals(t, l.Totals(), want) // Totals has no effect
	l = reopen(t, l, path)           // nor has a restart
	checkTotals(t, reportSaved(l), want)
	checkTotals(t, reportSaved(l), map[string]Totals{"stays": {}})
	l = reopen(t, l, path)
	checkTotals(t, reportSaved(l), map[string]Totals{"stays": {}})
}

func TestLedgerRecreatedWorkloadStartsFromZero(t *testing.T) {
	tests := []struct {
		name         string
		reportBefore bool // whether a Report comes between Remove and Assign
	}{
		{name: "created again after the report", reportBefore: true},
		{name: "created again before the report", reportBefore: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := openLedger(t)
			l.Assign("wl", []netip.AddrPort{addrA})
			observe(l, addrA, "i", 100, 10)
			l.Remove("wl")
			if tc.reportBefore {
				checkTotals(t, reportSaved(l), map[string]Totals{"wl": {Tx: 100, Rx: 10}})
			}
			l.Assign("wl", []netip.AddrPort{addrA})
			observe(l, addrA, "i", 130, 11)
			if !tc.reportBefore {
				// The final totals of the old one first, never a sum.
				checkTotals(t, reportSaved(l), map[string]Totals{"wl": {Tx: 100, Rx: 10}})
			}
			checkTotals(t, reportSaved(l), map[string]Totals{"wl": {Tx: 30, Rx: 1}})
		})
	}
}

func TestLedgerNewCounters(t *testing.T) {
	tests := []struct {
		name    string
		second  Reading
		wantTx2 uint64 // what the second reading adds
	}{
		{name: "same instance counts the difference", second: Reading{Tx: 150, Rx: 15, Instance: "boot1/a"}, wantTx2: 50},
		{name: "another instance (reboot) counts whole", second: Reading{Tx: 40, Rx: 4, Instance: "boot2/a"}, wantTx2: 40},
		{name: "counters made again count whole", second: Reading{Tx: 150, Rx: 15, Instance: "boot1/b"}, wantTx2: 150},
		{name: "a lower value is new counters", second: Reading{Tx: 30, Rx: 15, Instance: "boot1/a"}, wantTx2: 30},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := openLedger(t)
			l.Assign("wl", []netip.AddrPort{addrA})
			observe(l, addrA, "boot1/a", 100, 10)
			l.Observe(map[netip.AddrPort]Reading{addrA: tc.second})
			if got := l.Totals()["wl"].Tx; got != 100+tc.wantTx2 {
				t.Errorf("tx %d, want %d", got, 100+tc.wantTx2)
			}
		})
	}
}

// A crash loses what was observed since the last Save, never more, and
// never counts anything twice: the readings saved with the totals are those
// the totals include.
func TestLedgerCrashSafety(t *testing.T) {
	l, path := openLedger(t)
	l.Assign("wl", []netip.AddrPort{addrA, addrB})
	observe(l, addrA, "i", 100, 10)
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	observe(l, addrA, "i", 150, 15) // lost in the crash, but not its bytes:
	crashed, err := OpenLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	observe(crashed, addrA, "i", 170, 17) // the counters kept them
	observe(crashed, addrB, "j", 5, 5)
	checkTotals(t, crashed.Totals(), map[string]Totals{"wl": {Tx: 175, Rx: 22}})
	crashed = reopen(t, crashed, path)
	observe(crashed, addrA, "i", 170, 17)
	checkTotals(t, crashed.Totals(), map[string]Totals{"wl": {Tx: 175, Rx: 22}})
}

func TestOpenLedgerRemovesStaleTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".ledger.json.12345.tmp")
	other := filepath.Join(dir, ".other.json.12345.tmp")
	for _, f := range []string{stale, other} {
		if err := os.WriteFile(f, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := OpenLedger(filepath.Join(dir, "ledger.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the temporary file of an unfinished Save is still there: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("the temporary file of another file is gone: %v", err)
	}
}

func TestLedgerSaveSkipsUnchanged(t *testing.T) {
	l, path := openLedger(t)
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("an empty new ledger wrote its file: %v", err)
	}
	l.Assign("wl", []netip.AddrPort{addrA})
	observe(l, addrA, "i", 1, 1)
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if before.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", before.Mode().Perm())
	}
	observe(l, addrA, "i", 1, 1) // nothing new
	l.Totals()
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("Save without a change replaced the file")
	}
	observe(l, addrA, "i", 2, 1)
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(path); os.SameFile(before, after) {
		t.Error("Save after a change left the file")
	}
}

// An address no one claims keeps its reading while its counter lives, so
// that a workload claiming it later pays only from then on, and is
// forgotten once its counter is gone.
func TestLedgerForgetsGoneCounters(t *testing.T) {
	l, path := openLedger(t)
	l.Assign("wl", []netip.AddrPort{addrA})
	observe(l, addrA, "i", 100, 0)
	l.Assign("wl", nil)
	for range limboObserves - 1 {
		observe(l, addrB, "j", 0, 0)
	}
	l = reopen(t, l, path)
	if _, ok := l.addrs[addrA]; !ok {
		t.Fatal("the reading of an unclaimed address was forgotten too early")
	}
	observe(l, addrB, "j", 0, 0)
	if _, ok := l.addrs[addrA]; ok {
		t.Errorf("the reading of an unclaimed address missing from %d observations is kept", limboObserves)
	}
}

func TestOpenLedgerRejectsBadFiles(t *testing.T) {
	valid := `{"version":1,"seq":2,"observes":3,"unattributed":{"tx":0,"rx":0},` +
		`"workloads":[{"id":"wl","tx":1,"rx":2,"claims":[{"a":"10.0.0.1:80","s":2}]}],` +
		`"pending":[{"id":"old","totals":[{"tx":5,"rx":6}]}],` +
		`"readings":[{"a":"10.0.0.1:80","i":"b/n","tx":1,"rx":2,"seen":3}]}`
	tests := []struct {
		name, data, want string
	}{
		{"empty file", ``, "EOF"},
		{"truncated", valid[:len(valid)/2], "unexpected EOF"},
		{"another version", strings.Replace(valid, `"version":1`, `"version":2`, 1), "version 2"},
		{"unknown field", strings.Replace(valid, `"seq":2`, `"seq":2,"extra":1`, 1), "unknown field"},
		{"data after", valid + `{}`, "data after"},
		{"workload twice", strings.Replace(valid, `"workloads":[`, `"workloads":[{"id":"wl","tx":0,"rx":0,"claims":[]},`, 1), "listed twice"},
		{"claim from the future", strings.Replace(valid, `"s":2`, `"s":3`, 1), "sequence number 3"},
		{"claim without number", strings.Replace(valid, `"s":2`, `"s":0`, 1), "sequence number 0"},
		{"bad address", strings.Replace(valid, `"a":"10.0.0.1:80","s"`, `"a":"10.0.0.1","s"`, 1), "10.0.0.1"},
		{"mapped address", strings.Replace(valid, `"a":"10.0.0.1:80","s"`, `"a":"[::ffff:10.0.0.1]:80","s"`, 1), "not in the form the kernel counts"},
		{"reading from the future", strings.Replace(valid, `"seen":3`, `"seen":4`, 1), "after the last one"},
		{"removed workload without totals", strings.Replace(valid, `"totals":[{"tx":5,"rx":6}]`, `"totals":[]`, 1), "without totals"},
		{"negative number", strings.Replace(valid, `"tx":1,"rx":2,"claims"`, `"tx":-1,"rx":2,"claims"`, 1), "cannot unmarshal"},
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "valid.json")
	if err := os.WriteFile(path, []byte(valid), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLedger(path)
	if err != nil {
		t.Fatalf("the valid file: %v", err)
	}
	checkTotals(t, l.Totals(), map[string]Totals{"wl": {Tx: 1, Rx: 2}, "old": {Tx: 5, Rx: 6}})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "bad.json")
			if err := os.WriteFile(path, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := OpenLedger(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("OpenLedger: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// The file is JSON written by hand: every ID must come back as it was.
func TestLedgerIDsRoundTrip(t *testing.T) {
	l, path := openLedger(t)
	want := make(map[string]Totals)
	for i, id := range []string{"", "plain-1", "quo\"te", `back\slash`, "new\nline", "tab\t\x00nul", "ü", "<&>", "\x7f", "\u2028"} {
		a := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}), 80)
		l.Assign(id, []netip.AddrPort{a})
		observe(l, a, id, uint64(i), 1)
		want[id] = Totals{Tx: uint64(i), Rx: 1}
		l.Remove(id)
		l.Assign(id, []netip.AddrPort{a})
	}
	l = reopen(t, l, path)
	checkTotals(t, reportSaved(l), want)
	for _, st := range l.addrs {
		if _, ok := want[st.reading.Instance]; !ok {
			t.Errorf("instance %q came back changed", st.reading.Instance)
		}
	}
}

func TestLedgerConcurrentUse(t *testing.T) {
	l, _ := openLedger(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			id := fmt.Sprint("wl", g)
			for i := range 200 {
				l.Assign(id, []netip.AddrPort{addrA, addrB})
				observe(l, addrA, "i", uint64(i), 0)
				l.Totals()
				if i%50 == 0 {
					if err := l.Save(); err != nil {
						t.Error(err)
					}
					reportSaved(l)
				}
			}
		})
	}
	wg.Wait()
}

// fakeKernel counts like Kernel, with counters that know what the ledger
// was shown of them, so that the model below needs no instance logic.
type fakeKernel struct {
	boot, made int
	counters   map[netip.AddrPort]*fakeCounter
}

type fakeCounter struct {
	instance string
	value    Totals
	observed Totals // the value last shown to the ledger
}

func (k *fakeKernel) newCounter() *fakeCounter {
	k.made++
	return &fakeCounter{instance: fmt.Sprintf("boot%d/%d", k.boot, k.made)}
}

func (k *fakeKernel) sync(want map[netip.AddrPort]bool) map[netip.AddrPort]*fakeCounter {
	final := make(map[netip.AddrPort]*fakeCounter)
	for a, c := range k.counters {
		if !want[a] {
			final[a] = c
			delete(k.counters, a)
		}
	}
	for a := range want {
		if k.counters[a] == nil {
			k.counters[a] = k.newCounter()
		}
	}
	return final
}

func (k *fakeKernel) reboot() {
	k.boot++
	for a := range k.counters {
		k.counters[a] = k.newCounter()
	}
}

// ledgerModel is how attribution ought to go, written plainly.
type ledgerModel struct {
	seq     uint64
	claims  map[netip.AddrPort]map[string]uint64
	live    map[string]Totals
	pending map[string][]Totals
}

func (m *ledgerModel) owner(a netip.AddrPort) (string, bool) {
	var owner string
	var best uint64
	for id, seq := range m.claims[a] {
		if seq > best {
			owner, best = id, seq
		}
	}
	return owner, best > 0
}

// report is what Report returns: a removed workload's final totals in
// place of one of its ID set again.
func (m *ledgerModel) report() map[string]Totals {
	out := maps.Clone(m.live)
	for id, q := range m.pending {
		out[id] = q[0]
	}
	return out
}

// totals is what Totals returns: the live workload before a removed one.
func (m *ledgerModel) totals() map[string]Totals {
	out := make(map[string]Totals)
	for id, q := range m.pending {
		out[id] = q[0]
	}
	maps.Copy(out, m.live)
	return out
}

// observe shows the counters to both.
func observe2(l *Ledger, m *ledgerModel, counters map[netip.AddrPort]*fakeCounter) {
	readings := make(map[netip.AddrPort]Reading)
	for a, c := range counters {
		readings[a] = Reading{Tx: c.value.Tx, Rx: c.value.Rx, Instance: c.instance}
		delta := Totals{Tx: c.value.Tx - c.observed.Tx, Rx: c.value.Rx - c.observed.Rx}
		c.observed = c.value
		if id, ok := m.owner(a); ok {
			t := m.live[id]
			t.add(delta)
			m.live[id] = t
		}
	}
	l.Observe(readings)
}

// runLedgerOps drives a ledger and a fake kernel the way the daemon does,
// with choices from next, and checks after every step that the totals are
// those of the model, that none goes backwards, and that no byte is
// unattributed.
func runLedgerOps(t *testing.T, steps int, next func(n int) int) {
	pool := []netip.AddrPort{addrA, addrB, addrC, netip.MustParseAddrPort("[fd00::2]:80"), netip.MustParseAddrPort("[::ffff:10.0.0.5]:80")}
	ids := []string{"w0", "w1", "w2", "w3"}
	path := filepath.Join(t.TempDir(), "ledger.json")
	l, err := OpenLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	k := &fakeKernel{counters: make(map[netip.AddrPort]*fakeCounter)}
	m := &ledgerModel{claims: make(map[netip.AddrPort]map[string]uint64), live: make(map[string]Totals), pending: make(map[string][]Totals)}
	prev := map[string]Totals{}
	for step := range steps {
		var op string
		switch next(8) {
		case 0, 1: // traffic
			if len(k.counters) == 0 {
				continue
			}
			a := pool[next(len(pool))]
			if c := k.counters[normalize(a)]; c != nil {
				c.value.add(Totals{Tx: uint64(next(1000)), Rx: uint64(next(1000))})
			}
			op = "traffic"
		case 2:
			observe2(l, m, k.counters)
			op = "observe"
		case 3, 4: // a change of routes: one to three workloads change at once
			type change struct {
				ID     string
				Remove bool
				Addrs  []netip.AddrPort
			}
			var changes []change
			claims := make(map[netip.AddrPort]map[string]uint64)
			for a, cs := range m.claims {
				claims[a] = maps.Clone(cs)
			}
			for range 1 + next(3) {
				c := change{ID: ids[next(len(ids))], Remove: next(4) == 0}
				for _, a := range pool {
					if next(3) == 0 {
						c.Addrs = append(c.Addrs, a)
					}
				}
				changes = append(changes, c)
				for a := range claims {
					if _, had := claims[a][c.ID]; had && (c.Remove || !containsAddr(c.Addrs, a)) {
						delete(claims[a], c.ID)
					}
				}
				if !c.Remove {
					for _, a := range c.Addrs {
						a = normalize(a)
						if claims[a] == nil {
							claims[a] = make(map[string]uint64)
						}
						if _, ok := claims[a][c.ID]; !ok {
							m.seq++
							claims[a][c.ID] = m.seq
						}
					}
				}
			}
			union := make(map[netip.AddrPort]bool)
			for a, cs := range claims {
				if len(cs) > 0 {
					union[a] = true
				}
			}
			// The daemon's order: the final readings, a reading, the changes.
			observe2(l, m, k.sync(union))
			observe2(l, m, k.counters)
			for _, c := range changes {
				if c.Remove {
					l.Remove(c.ID)
					if tot, ok := m.live[c.ID]; ok {
						if q := m.pending[c.ID]; len(q) > 0 {
							q[len(q)-1].add(tot)
						} else {
							m.pending[c.ID] = []Totals{tot}
						}
						delete(m.live, c.ID)
					}
				} else {
					l.Assign(c.ID, c.Addrs)
					if _, ok := m.live[c.ID]; !ok {
						m.live[c.ID] = Totals{}
					}
				}
			}
			m.claims = claims
			op = fmt.Sprintf("changes %v", changes)
			prev = map[string]Totals{}
		case 5:
			k.reboot()
			op = "reboot"
		case 6: // a restart; TestLedgerCrashSafety covers a crash
			l = reopen(t, l, path)
			op = "save and reopen"
		case 7:
			if next(2) == 0 {
				if err := l.Save(); err != nil {
					t.Fatal(err)
				}
				op = "save"
				break
			}
			got, want := reportSaved(l), m.report()
			if !maps.Equal(got, want) {
				t.Fatalf("step %d: Report %v, want %v", step, got, want)
			}
			for id, q := range m.pending {
				if len(q) > 1 {
					m.pending[id] = q[1:]
				} else {
					delete(m.pending, id)
				}
			}
			op = "report"
			prev = map[string]Totals{}
		}
		got := l.Totals()
		if want := m.totals(); !maps.Equal(got, want) {
			t.Fatalf("step %d (%s): totals %v, want %v", step, op, got, want)
		}
		for id, p := range prev {
			if g := got[id]; g.Tx < p.Tx || g.Rx < p.Rx {
				t.Fatalf("step %d (%s): totals of %s went back from %+v to %+v", step, op, id, p, g)
			}
		}
		prev = got
		if u := l.Unattributed(); u != (Totals{}) {
			t.Fatalf("step %d (%s): %+v unattributed", step, op, u)
		}
	}
}

func containsAddr(addrs []netip.AddrPort, a netip.AddrPort) bool {
	for _, b := range addrs {
		if normalize(b) == a {
			return true
		}
	}
	return false
}

func TestLedgerRandomAgainstModel(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 1))
			runLedgerOps(t, 300, r.IntN)
		})
	}
}

func FuzzLedgerOps(f *testing.F) {
	f.Add([]byte{3, 0, 1, 2, 0, 0, 2, 5, 2, 7, 1, 3, 1, 0, 2, 7, 0, 6, 2, 7, 0})
	f.Add([]byte{3, 1, 0, 0, 0, 3, 2, 1, 1, 1, 0, 0, 2, 2, 4, 3, 0, 0, 2, 3, 7, 1, 6, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		runLedgerOps(t, len(data), func(n int) int {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return int(b) % n
		})
	})
}

func FuzzOpenLedger(f *testing.F) {
	f.Add([]byte(`{"version":1,"seq":2,"observes":3,"unattributed":{"tx":0,"rx":0},` +
		`"workloads":[{"id":"wl","tx":1,"rx":2,"claims":[{"a":"10.0.0.1:80","s":2}]}],` +
		`"pending":[{"id":"old","totals":[{"tx":5,"rx":6}]}],` +
		`"readings":[{"a":"10.0.0.1:80","i":"b/n","tx":1,"rx":2,"seen":3}]}`))
	f.Add([]byte(`{"version":1,"workloads":[{"id":"a","claims":[{"a":"[fd00::1]:1","s":1}]}],"seq":1}`))
	f.Add([]byte(`{"version":1,"readings":[{"a":"10.0.0.1:80"},{"a":"10.0.0.1:80"}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "ledger.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := OpenLedger(path)
		if err != nil {
			return
		}
		// What loads must survive a round trip.
		l.changes++
		again := reopen(t, l, path)
		if got, want := again.Totals(), l.Totals(); !maps.Equal(got, want) {
			t.Errorf("totals %v after a round trip, want %v", got, want)
		}
		observe(again, addrA, "x", 1, 1)
		observe(again, addrA, "x", 2, 2)
	})
}

// BenchmarkLedgerSave saves the ledger of 10,000 workloads with an address
// each, all of them observed since the last Save, as every second or two.
func BenchmarkLedgerSave(b *testing.B) {
	l, path := openLedger(b)
	addrs := manyLedgerAddrs(10000)
	readings := make(map[netip.AddrPort]Reading, len(addrs))
	for i, a := range addrs {
		l.Assign(fmt.Sprintf("1234-%d-workload-name", i), []netip.AddrPort{a})
		readings[a] = Reading{Instance: "6f0a63d3-f11f-40e9-bc2c-f6e3c620fbfb/0123456789abcdef"}
	}
	var n uint64
	for b.Loop() {
		n++
		for a, r := range readings {
			r.Tx, r.Rx = n*1000, n*10
			readings[a] = r
		}
		l.Observe(readings)
		if err := l.Save(); err != nil {
			b.Fatal(err)
		}
	}
	if fi, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(fi.Size()), "file-bytes")
	}
}

// BenchmarkLedgerEncode is the part of BenchmarkLedgerSave under the lock.
func BenchmarkLedgerEncode(b *testing.B) {
	l, _ := openLedger(b)
	for i, a := range manyLedgerAddrs(10000) {
		l.Assign(fmt.Sprintf("1234-%d-workload-name", i), []netip.AddrPort{a})
		observe(l, a, "6f0a63d3-f11f-40e9-bc2c-f6e3c620fbfb/0123456789abcdef", 1<<40, 1<<30)
	}
	for b.Loop() {
		l.mu.Lock()
		l.encode()
		l.mu.Unlock()
	}
}

func manyLedgerAddrs(n int) []netip.AddrPort {
	var addrs []netip.AddrPort
	for i := range n {
		addrs = append(addrs, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), 443))
	}
	return addrs
}

// reportSaved is Report followed by a save that succeeded.
func reportSaved(l *Ledger) map[string]Totals {
	totals, done := l.Report()
	done(true)
	return totals
}

// TestLedgerFailedSaveKeepsFinalBills guards the bills of deleted
// workloads: a Report whose save fails (a full disk) forgets nothing, and
// the next Report still gives them.
func TestLedgerFailedSaveKeepsFinalBills(t *testing.T) {
	l, _ := openLedger(t)
	l.Assign("gone", []netip.AddrPort{addrA})
	observe(l, addrA, "i", 100, 10)
	l.Remove("gone")
	totals, done := l.Report()
	checkTotals(t, totals, map[string]Totals{"gone": {Tx: 100, Rx: 10}})
	done(false)
	checkTotals(t, reportSaved(l), map[string]Totals{"gone": {Tx: 100, Rx: 10}})
	checkTotals(t, reportSaved(l), map[string]Totals{})
}

// TestLedgerDeletesDoNotPileUp guards the ledger against a tenant that
// sets and deletes one wlID over and over: the removed instances merge into
// one final total of that wlID, the saved ledger stays small, and Totals,
// which the metrics show, gives the live instance.
func TestLedgerDeletesDoNotPileUp(t *testing.T) {
	l, _ := openLedger(t)
	var tx uint64
	for range 20000 {
		l.Assign("wl", []netip.AddrPort{addrA})
		tx += 10
		observe(l, addrA, "i", tx, 0)
		l.Remove("wl")
	}
	l.Assign("wl", []netip.AddrPort{addrA})
	observe(l, addrA, "i", tx+7, 0)
	if n := len(l.pending["wl"]); n != 1 {
		t.Fatalf("%d pending entries of one wlID", n)
	}
	if size := len(l.encode()); size > 4096 {
		t.Fatalf("ledger of %d bytes", size)
	}
	checkTotals(t, l.Totals(), map[string]Totals{"wl": {Tx: 7}})
	checkTotals(t, reportSaved(l), map[string]Totals{"wl": {Tx: 200000}})
	checkTotals(t, reportSaved(l), map[string]Totals{"wl": {Tx: 7}})
}

// TestLedgerOneDirectionReset guards the count of a counter whose one
// direction was reset: the reset direction counts whole, the other only
// what it moved since the last reading.
func TestLedgerOneDirectionReset(t *testing.T) {
	l, _ := openLedger(t)
	l.Assign("wl", []netip.AddrPort{addrA})
	observe(l, addrA, "i", 1000, 500)
	observe(l, addrA, "i", 40, 600) // tx reset, rx went on
	checkTotals(t, l.Totals(), map[string]Totals{"wl": {Tx: 1040, Rx: 600}})
}
