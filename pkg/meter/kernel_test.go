//go:build linux

package meter

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// payload is what each test connection moves each way.
const payload = 4 << 20

// openKernel opens a Kernel on a table in ns, closed when the test ends.
func openKernel(t testing.TB, ns *netns, log zerolog.Logger) *Kernel {
	t.Helper()
	k, err := OpenKernel(KernelConfig{Table: "meter_test", NetNS: ns.fd, Logger: log})
	if err != nil {
		t.Fatalf("opening the kernel meter (the kernel tests need root and nf_tables): %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// listen opens a TCP listener in ns on addr ("127.0.0.1:0", "[::1]:0").
func listen(t testing.TB, ns *netns, addr string) (net.Listener, netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	var err error
	ns.do(func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		t.Fatalf("listening on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, netip.MustParseAddrPort(ln.Addr().String())
}

// exchange moves n bytes to the server of ln and n bytes back, over a
// connection made in ns, and returns once both sides read everything. The
// connection stays open until the test ends, so that sent can be asked.
func exchange(t testing.TB, ns *netns, ln net.Listener, n int) (client, server net.Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	type accepted struct {
		c   net.Conn
		err error
	}
	served := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- accepted{err: err}
			return
		}
		c.SetDeadline(deadline)
		if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil {
			served <- accepted{c, fmt.Errorf("server reading: %w", err)}
			return
		}
		_, err = c.Write(make([]byte, n))
		served <- accepted{c, err}
	}()
	var err error
	ns.do(func() { client, err = net.DialTimeout("tcp", ln.Addr().String(), time.Until(deadline)) })
	if err != nil {
		t.Fatalf("dialing %s: %v", ln.Addr(), err)
	}
	t.Cleanup(func() { client.Close() })
	client.SetDeadline(deadline)
	if _, err := client.Write(make([]byte, n)); err != nil {
		t.Fatalf("client writing: %v", err)
	}
	if _, err := io.CopyN(io.Discard, client, int64(n)); err != nil {
		t.Fatalf("client reading: %v", err)
	}
	s := <-served
	if s.c != nil {
		t.Cleanup(func() { s.c.Close() })
	}
	if s.err != nil {
		t.Fatalf("server: %v", s.err)
	}
	return client, s.c
}

// sent is the number of payload bytes c sent, retransmissions included.
func sent(t testing.TB, c net.Conn) uint64 {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	err = raw.Control(func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if err != nil {
		t.Fatalf("reading TCP_INFO: %v", err)
	}
	return info.Bytes_sent
}

// pairs reads the counters with their packet counts.
func pairs(t testing.TB, k *Kernel) map[netip.AddrPort]*pair {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	conn, err := k.connection()
	if err != nil {
		t.Fatal(err)
	}
	c, err := k.counters(conn)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[netip.AddrPort]*pair)
	for a, ps := range c {
		if len(ps) != 1 {
			t.Fatalf("%d pairs of counters for %s, want 1", len(ps), a)
		}
		out[a] = ps[0]
	}
	return out
}

// checkBytes checks that p counted at least the n bytes of payload that
// went each way over client and server, and no more than the payload they
// sent (retransmissions included, as loopback drops when its backlog is
// full) plus the headers its packets can carry. Call it after reading p:
// the payload sent only grows.
func checkBytes(t testing.TB, p *pair, n uint64, client, server net.Conn) {
	t.Helper()
	overhead := uint64(MaxHeaderOverhead6)
	if p.addr.Addr().Is4() {
		overhead = MaxHeaderOverhead4
	}
	payload := [2]uint64{tx: sent(t, client), rx: sent(t, server)}
	for _, d := range directions {
		if max := payload[d] + p.packets[d]*overhead; p.bytes[d] < n || p.bytes[d] > max {
			t.Errorf("%s %s: %d bytes in %d packets, want %d to %d (%d bytes of payload sent)", p.addr, d, p.bytes[d], p.packets[d], n, max, payload[d])
		}
	}
}

func TestKernelCountsBothWays(t *testing.T) {
	ns := newNetNS(t)
	k := openKernel(t, ns, zerolog.Nop())
	ln4, a4 := listen(t, ns, "127.0.0.1:0")
	ln6, a6 := listen(t, ns, "[::1]:0")
	lnOther, other := listen(t, ns, "127.0.0.1:0")

	final, err := k.Sync([]netip.AddrPort{a4, a6})
	if err != nil {
		t.Fatal(err)
	}
	if len(final) != 0 {
		t.Errorf("Sync of new addresses returned final readings %v", final)
	}
	before, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 2 || before[a4].Instance == "" || before[a4].Instance == before[a6].Instance {
		t.Fatalf("readings of two new addresses: %v", before)
	}
	for a, r := range before {
		if r.Tx != 0 || r.Rx != 0 {
			t.Errorf("new counters of %s: %+v, want zero", a, r)
		}
	}

	c4, s4 := exchange(t, ns, ln4, payload)
	c6, s6 := exchange(t, ns, ln6, payload)
	exchange(t, ns, lnOther, payload)

	ps := pairs(t, k)
	if len(ps) != 2 {
		t.Errorf("counters for %d addresses, want 2 (%s is not synced and must not count)", len(ps), other)
	}
	checkBytes(t, ps[a4], payload, c4, s4)
	checkBytes(t, ps[a6], payload, c6, s6)
	after, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.AddrPort{a4, a6} {
		if after[a].Instance != before[a].Instance {
			t.Errorf("instance of %s changed from %q to %q while counting", a, before[a].Instance, after[a].Instance)
		}
		if after[a].Tx != ps[a].bytes[tx] || after[a].Rx < ps[a].bytes[rx] {
			t.Errorf("Read of %s: %+v, want what the dump said: %d and %d", a, after[a], ps[a].bytes[tx], ps[a].bytes[rx])
		}
	}
}

func TestKernelSyncReturnsFinalReadings(t *testing.T) {
	ns := newNetNS(t)
	k := openKernel(t, ns, zerolog.Nop())
	ln4, a4 := listen(t, ns, "127.0.0.1:0")
	_, a6 := listen(t, ns, "[::1]:0")
	if _, err := k.Sync([]netip.AddrPort{a4, a6}); err != nil {
		t.Fatal(err)
	}
	exchange(t, ns, ln4, payload)
	counted := pairs(t, k)[a4]
	was, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}

	final, err := k.Sync([]netip.AddrPort{a6})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := final[a4]
	if len(final) != 1 || !ok {
		t.Fatalf("final readings %v, want one for %s", final, a4)
	}
	// Nothing moved since the dump but maybe a late ACK or FIN.
	if got.Instance != was[a4].Instance || got.Tx < counted.bytes[tx] || got.Rx < counted.bytes[rx] ||
		got.Tx > counted.bytes[tx]+3*MaxHeaderOverhead4 || got.Rx > counted.bytes[rx]+3*MaxHeaderOverhead4 {
		t.Errorf("final reading of %s: %+v, want instance %q, %d and %d bytes", a4, got, was[a4].Instance, counted.bytes[tx], counted.bytes[rx])
	}

	// The address no longer counts, and its counters are gone.
	exchange(t, ns, ln4, payload)
	now, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := now[a4]; ok || len(now) != 1 {
		t.Errorf("readings after dropping %s: %v", a4, now)
	}
	if final, err := k.Sync([]netip.AddrPort{a6}); err != nil || len(final) != 0 {
		t.Errorf("second Sync: %v, %v; want no final reading twice", final, err)
	}

	// Counted again, it starts from zero under another instance.
	if _, err := k.Sync([]netip.AddrPort{a4, a6}); err != nil {
		t.Fatal(err)
	}
	again, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}
	if r := again[a4]; r.Instance == got.Instance || r.Tx != 0 || r.Rx != 0 {
		t.Errorf("reading of %s counted again: %+v, want zero under an instance other than %q", a4, r, got.Instance)
	}
}

func TestKernelReopenKeepsCounting(t *testing.T) {
	ns := newNetNS(t)
	k := openKernel(t, ns, zerolog.Nop())
	ln, a := listen(t, ns, "127.0.0.1:0")
	if _, err := k.Sync([]netip.AddrPort{a}); err != nil {
		t.Fatal(err)
	}
	exchange(t, ns, ln, payload)
	before, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Read(); err == nil {
		t.Error("Read after Close succeeded")
	}

	// The gateway is down: the kernel counts on.
	exchange(t, ns, ln, payload)

	var logs bytes.Buffer
	k = openKernel(t, ns, zerolog.New(&logs))
	after, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}
	if after[a].Instance != before[a].Instance || after[a].Tx < before[a].Tx+payload || after[a].Rx < before[a].Rx+payload {
		t.Errorf("reading after reopening: %+v, want %+v plus %d bytes each way", after[a], before[a], payload)
	}
	if strings.Contains(logs.String(), "replacing") {
		t.Errorf("a table of the right shape was replaced: %s", logs.String())
	}
	if final, err := k.Sync([]netip.AddrPort{a}); err != nil || len(final) != 0 {
		t.Errorf("Sync of the same address after reopening: %v, %v", final, err)
	}
	if r, _ := k.Read(); r[a].Instance != before[a].Instance {
		t.Errorf("Sync of the same address changed its instance from %q to %q", before[a].Instance, r[a].Instance)
	}
}

// A Sync that dies between its two batches leaves counters that no longer
// count; the next Sync must return them, or count on with them.
func TestKernelSyncRecoversUnwiredCounters(t *testing.T) {
	tests := []struct {
		name  string
		again bool // whether the next Sync lists the address again
	}{
		{name: "address dropped: final reading", again: false},
		{name: "address back: counts on", again: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetNS(t)
			k := openKernel(t, ns, zerolog.Nop())
			ln, a := listen(t, ns, "127.0.0.1:0")
			if _, err := k.Sync([]netip.AddrPort{a}); err != nil {
				t.Fatal(err)
			}
			exchange(t, ns, ln, payload)
			was, err := k.Read()
			if err != nil {
				t.Fatal(err)
			}
			unwireOnly(t, k, a)
			exchange(t, ns, ln, payload) // not counted
			if r, err := k.Read(); err != nil || r[a] != was[a] {
				t.Fatalf("reading of unwired counters: %+v, %v; want %+v", r[a], err, was[a])
			}

			var want []netip.AddrPort
			if tc.again {
				want = append(want, a)
			}
			final, err := k.Sync(want)
			if err != nil {
				t.Fatal(err)
			}
			if tc.again {
				if len(final) != 0 {
					t.Errorf("final readings %v, want none", final)
				}
				exchange(t, ns, ln, payload)
				r, err := k.Read()
				if err != nil {
					t.Fatal(err)
				}
				if r[a].Instance != was[a].Instance || r[a].Tx < was[a].Tx+payload {
					t.Errorf("reading after rewiring: %+v, want %+v plus %d bytes", r[a], was[a], payload)
				}
				return
			}
			if final[a] != was[a] || len(final) != 1 {
				t.Errorf("final readings %v, want %s: %+v", final, a, was[a])
			}
			if r, err := k.Read(); err != nil || len(r) != 0 {
				t.Errorf("readings after the final one: %v, %v", r, err)
			}
		})
	}
}

// unwireOnly does what the first batch of a Sync dropping a does, and not
// the second: as if the gateway died in between.
func unwireOnly(t testing.TB, k *Kernel, a netip.AddrPort) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	conn, err := k.connection()
	if err != nil {
		t.Fatal(err)
	}
	w, err := k.wiring(conn)
	if err != nil {
		t.Fatal(err)
	}
	var b batch
	b.unwire(a, w[a])
	if err := k.flush(&b); err != nil {
		t.Fatal(err)
	}
}

// remembers tells whether the next Sync of k starts from the wiring it
// remembers, rather than from a reading of the whole table.
func remembers(t testing.TB, k *Kernel) bool {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	gen, err := k.generation()
	if err != nil {
		t.Fatal(err)
	}
	return k.wired != nil && gen == k.gen
}

// missGeneration makes k take the ruleset's generation for the one it left,
// as if the kernel had not bumped it for the changes since.
func missGeneration(t testing.TB, k *Kernel) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	gen, err := k.generation()
	if err != nil {
		t.Fatal(err)
	}
	k.gen = gen
}

// handEdit changes the ruleset of ns behind the Kernel's back, in one batch
// over a connection of its own.
func handEdit(t testing.TB, ns *netns, edit func(c *nftables.Conn)) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(ns.fd))
	if err != nil {
		t.Fatal(err)
	}
	edit(c)
	if err := c.Flush(); err != nil {
		t.Fatalf("editing the ruleset by hand: %v", err)
	}
}

// unwireByHand removes the map elements of a, and the chains they lead to,
// those of the pair with nonce.
func unwireByHand(c *nftables.Conn, k *Kernel, a netip.AddrPort, nonce string) {
	for _, d := range directions {
		c.SetDeleteElements(k.maps[d][family(a)], []nftables.SetElement{{Key: key(a)}})
		c.DelChain(&nftables.Chain{Name: objName(d, a, nonce), Table: k.table})
	}
}

// handNonce is the nonce of counters added by hand.
const handNonce = "00000000000000ff"

// checkFinal checks that got is the reading want, plus at most a few late
// packets (an ACK, a FIN) each way.
func checkFinal(t testing.TB, a netip.AddrPort, got, want Reading) {
	t.Helper()
	const late = 3 * MaxHeaderOverhead6
	if got.Instance != want.Instance || got.Tx < want.Tx || got.Rx < want.Rx || got.Tx > want.Tx+late || got.Rx > want.Rx+late {
		t.Errorf("final reading of %s: %+v, want %+v", a, got, want)
	}
}

// A Sync from the remembered wiring touches only the addresses that come
// and go: it must return the same final readings, and count the same, as
// one that reads the whole table.
func TestKernelSyncFromRememberedWiring(t *testing.T) {
	ns := newNetNS(t)
	k := openKernel(t, ns, zerolog.Nop())
	lnA, a := listen(t, ns, "127.0.0.1:0")
	lnB, b := listen(t, ns, "[::1]:0")
	many := manyAddrs(64)
	if _, err := k.Sync(append([]netip.AddrPort{a}, many...)); err != nil {
		t.Fatal(err)
	}
	if !remembers(t, k) {
		t.Fatal("the wiring is not remembered after a Sync of the whole table")
	}
	exchange(t, ns, lnA, payload)
	was, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}
	if !remembers(t, k) {
		t.Fatal("Read forgot the wiring of a table as the Kernel left it")
	}

	// a goes and b comes: a's counters are read by name.
	final, err := k.Sync(append([]netip.AddrPort{b}, many...))
	if err != nil {
		t.Fatal(err)
	}
	if len(final) != 1 {
		t.Errorf("final readings %v, want one for %s", final, a)
	}
	checkFinal(t, a, final[a], was[a])
	if !remembers(t, k) {
		t.Error("the wiring is not remembered after a Sync from it")
	}
	c, s := exchange(t, ns, lnB, payload)
	ps := pairs(t, k)
	if _, ok := ps[a]; ok || len(ps) != 1+len(many) {
		t.Errorf("counters for %d addresses (%s among them: %v), want %d, not %s", len(ps), a, ok, 1+len(many), a)
	}
	checkBytes(t, ps[b], payload, c, s)

	// Most go at once: their counters are read in one dump.
	final, err = k.Sync([]netip.AddrPort{b})
	if err != nil {
		t.Fatal(err)
	}
	if len(final) != len(many) {
		t.Errorf("%d final readings, want %d", len(final), len(many))
	}
	for _, m := range many {
		checkFinal(t, m, final[m], was[m])
	}
	if r, err := k.Read(); err != nil || len(r) != 1 {
		t.Errorf("readings after dropping all but %s: %v, %v", b, r, err)
	}
	if final, err := k.Sync([]netip.AddrPort{b}); err != nil || len(final) != 0 {
		t.Errorf("Sync without changes: %v, %v; want no final reading twice", final, err)
	}
	if !remembers(t, k) {
		t.Error("the wiring is not remembered after Syncs from it")
	}
}

// Whatever changes the ruleset behind the Kernel's back bumps the
// ruleset's generation, and the next Sync reads the whole table and repairs
// it, as it did before the Kernel remembered its wiring.
func TestKernelSyncRepairsHandEdits(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *nftables.Conn, k *Kernel, a netip.AddrPort, nonce string)
		// repair is whether the table must be made again (Repair) first.
		repair bool
		// final is the pair whose final reading the Sync returns for a,
		// if any: the one a counted with, or the one added by hand.
		final string
		// same is whether a counts on with its counters.
		same bool
	}{
		{
			name: "address unwired: counts on",
			edit: func(c *nftables.Conn, k *Kernel, a netip.AddrPort, nonce string) {
				unwireByHand(c, k, a, nonce)
			},
			same: true,
		},
		{
			name: "counter deleted: the rest returned, counted anew",
			edit: func(c *nftables.Conn, k *Kernel, a netip.AddrPort, nonce string) {
				unwireByHand(c, k, a, nonce)
				c.DeleteObject(&nftables.NamedObj{Table: k.table, Name: objName(tx, a, nonce), Type: nftables.ObjTypeCounter})
			},
			final: "counted",
		},
		{
			name: "other pair added: returned, counts on",
			edit: func(c *nftables.Conn, k *Kernel, a netip.AddrPort, nonce string) {
				for _, d := range directions {
					c.AddObj(&nftables.NamedObj{Table: k.table, Name: objName(d, a, handNonce), Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
				}
			},
			final: "added",
			same:  true,
		},
		{
			name: "another table changed: nothing to repair",
			edit: func(c *nftables.Conn, k *Kernel, a netip.AddrPort, nonce string) {
				c.AddTable(&nftables.Table{Name: "other", Family: nftables.TableFamilyINet})
			},
			same: true,
		},
		{
			name: "table removed: made again after Repair",
			edit: func(c *nftables.Conn, k *Kernel, a netip.AddrPort, nonce string) {
				c.DelTable(k.table)
			},
			repair: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetNS(t)
			k := openKernel(t, ns, zerolog.Nop())
			ln, a := listen(t, ns, "127.0.0.1:0")
			_, other := listen(t, ns, "[::1]:0")
			addrs := []netip.AddrPort{a, other}
			if _, err := k.Sync(addrs); err != nil {
				t.Fatal(err)
			}
			exchange(t, ns, ln, payload)
			was, err := k.Read()
			if err != nil {
				t.Fatal(err)
			}
			handEdit(t, ns, func(c *nftables.Conn) { tc.edit(c, k, a, pairs(t, k)[a].nonce) })
			if remembers(t, k) {
				t.Fatal("the generation did not tell of the hand edit")
			}
			if tc.repair {
				if err := k.Repair(); err != nil {
					t.Fatal(err)
				}
			}

			final, err := k.Sync(addrs)
			if err != nil {
				t.Fatal(err)
			}
			switch tc.final {
			case "":
				if len(final) != 0 {
					t.Errorf("final readings %v, want none", final)
				}
			case "counted":
				// Only the rx counter is left.
				checkFinal(t, a, final[a], Reading{Rx: was[a].Rx, RxPackets: was[a].RxPackets, Instance: was[a].Instance})
			case "added":
				checkFinal(t, a, final[a], Reading{Instance: k.bootID + "/" + handNonce})
			}
			if len(final) > 1 {
				t.Errorf("final readings %v, want at most one, for %s", final, a)
			}
			if !remembers(t, k) {
				t.Error("the wiring is not remembered after the repair")
			}
			ps := pairs(t, k) // one pair for each address
			if len(ps) != len(addrs) {
				t.Errorf("counters for %d addresses, want %d", len(ps), len(addrs))
			}
			exchange(t, ns, ln, payload)
			r, err := k.Read()
			if err != nil {
				t.Fatal(err)
			}
			want := Reading{Tx: payload, Rx: payload}
			if tc.same {
				want = Reading{Tx: was[a].Tx + payload, Rx: was[a].Rx + payload, Instance: was[a].Instance}
			}
			if got := r[a]; got.Tx < want.Tx || got.Rx < want.Rx || (got.Instance == was[a].Instance) != tc.same {
				t.Errorf("reading of %s after the repair: %+v, want at least %+v (same instance as %q: %v)", a, got, want, was[a].Instance, tc.same)
			}
		})
	}
}

// Should the generation miss a change, Read notices counters that differ
// from the remembered wiring, so that the next Sync reads the whole table.
func TestKernelReadForgetsWiringThatDiffers(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *nftables.Conn, k *Kernel, a netip.AddrPort, nonce string)
	}{
		{
			name: "counter deleted",
			edit: func(c *nftables.Conn, k *Kernel, a netip.AddrPort, nonce string) {
				unwireByHand(c, k, a, nonce)
				c.DeleteObject(&nftables.NamedObj{Table: k.table, Name: objName(rx, a, nonce), Type: nftables.ObjTypeCounter})
			},
		},
		{
			name: "other pair added",
			edit: func(c *nftables.Conn, k *Kernel, a netip.AddrPort, nonce string) {
				for _, d := range directions {
					c.AddObj(&nftables.NamedObj{Table: k.table, Name: objName(d, a, handNonce), Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
				}
			},
		},
		{
			name: "table removed",
			edit: func(c *nftables.Conn, k *Kernel, a netip.AddrPort, nonce string) {
				c.DelTable(k.table)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetNS(t)
			k := openKernel(t, ns, zerolog.Nop())
			_, a := listen(t, ns, "127.0.0.1:0")
			if _, err := k.Sync([]netip.AddrPort{a}); err != nil {
				t.Fatal(err)
			}
			handEdit(t, ns, func(c *nftables.Conn) { tc.edit(c, k, a, pairs(t, k)[a].nonce) })
			missGeneration(t, k)
			if _, err := k.Read(); err != nil {
				t.Fatal(err)
			}
			if remembers(t, k) {
				t.Error("Read kept a wiring the counters contradict")
			}
		})
	}
}

// A Sync whose changes fail, as they do when the wiring it remembers is
// wrong, syncs the whole table in the same call instead of failing the
// change of routes, and returns what the failed changes would have.
func TestKernelSyncFallsBackToWholeTable(t *testing.T) {
	ns := newNetNS(t)
	var logs bytes.Buffer
	k := openKernel(t, ns, zerolog.New(&logs))
	ln, a := listen(t, ns, "127.0.0.1:0")
	_, b := listen(t, ns, "[::1]:0")
	if _, err := k.Sync([]netip.AddrPort{a, b}); err != nil {
		t.Fatal(err)
	}
	exchange(t, ns, ln, payload)
	was, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}
	// Dropping a unwires it first: its elements are gone, so that fails.
	handEdit(t, ns, func(c *nftables.Conn) { unwireByHand(c, k, a, pairs(t, k)[a].nonce) })
	missGeneration(t, k)

	final, err := k.Sync([]netip.AddrPort{b})
	if err != nil {
		t.Fatal(err)
	}
	if len(final) != 1 {
		t.Errorf("final readings %v, want one for %s", final, a)
	}
	checkFinal(t, a, final[a], was[a])
	if !strings.Contains(logs.String(), "syncing the whole table") {
		t.Errorf("no log line about syncing the whole table: %q", logs.String())
	}
	if r, err := k.Read(); err != nil || len(r) != 1 {
		t.Errorf("readings after dropping %s: %v, %v", a, r, err)
	}
	if !remembers(t, k) {
		t.Error("the wiring is not remembered after the whole table's Sync")
	}
}

func TestKernelReplacesTableOfAnotherShape(t *testing.T) {
	ns := newNetNS(t)
	conn, err := nftables.New(nftables.WithNetNSFd(ns.fd))
	if err != nil {
		t.Fatal(err)
	}
	table := conn.AddTable(&nftables.Table{Name: "meter_test", Family: nftables.TableFamilyINet})
	accept := nftables.ChainPolicyAccept
	conn.AddChain(&nftables.Chain{Name: "tx", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	k := openKernel(t, ns, zerolog.New(&logs))
	if !strings.Contains(logs.String(), "replacing a table of an unexpected shape") {
		t.Errorf("no log line about replacing the table: %q", logs.String())
	}
	ln, a := listen(t, ns, "[::1]:0")
	if _, err := k.Sync([]netip.AddrPort{a}); err != nil {
		t.Fatal(err)
	}
	c, srv := exchange(t, ns, ln, payload)
	checkBytes(t, pairs(t, k)[a], payload, c, srv)
}

func TestKernelSyncNormalizesAndRejects(t *testing.T) {
	ns := newNetNS(t)
	k := openKernel(t, ns, zerolog.Nop())
	for _, bad := range []netip.AddrPort{{}, netip.MustParseAddrPort("10.0.0.1:0")} {
		if _, err := k.Sync([]netip.AddrPort{bad}); err == nil {
			t.Errorf("Sync(%s) succeeded", bad)
		}
	}
	mapped := netip.MustParseAddrPort("[::ffff:10.0.0.1]:80")
	if _, err := k.Sync([]netip.AddrPort{mapped, netip.MustParseAddrPort("[fe80::1%lo]:80")}); err != nil {
		t.Fatal(err)
	}
	r, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10.0.0.1:80", "[fe80::1]:80"} {
		if _, ok := r[netip.MustParseAddrPort(want)]; !ok || len(r) != 2 {
			t.Errorf("readings %v, want one for %s", r, want)
		}
	}
}

// Thousands of addresses go in and out in one batch each, and cost two
// rules per base chain whatever their number. BenchmarkKernelSync times
// 10,000.
func TestKernelSyncScales(t *testing.T) {
	ns := newNetNS(t)
	k := openKernel(t, ns, zerolog.Nop())
	addrs := manyAddrs(1000)
	start := time.Now()
	if _, err := k.Sync(addrs); err != nil {
		t.Fatal(err)
	}
	t.Logf("Sync of %d new addresses: %v", len(addrs), time.Since(start))
	start = time.Now()
	r, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Read of %d addresses: %v", len(r), time.Since(start))
	if len(r) != len(addrs) {
		t.Errorf("%d readings, want %d", len(r), len(addrs))
	}
	for _, c := range k.baseChains() {
		rules, err := k.conn.GetRules(k.table, c)
		if err != nil {
			t.Fatal(err)
		}
		if len(rules) != 2 {
			t.Errorf("chain %s has %d rules, want 2", c.Name, len(rules))
		}
	}
	start = time.Now()
	final, err := k.Sync(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Sync dropping %d addresses: %v", len(final), time.Since(start))
	if len(final) != len(addrs) {
		t.Errorf("%d final readings, want %d", len(final), len(addrs))
	}
}

// manyAddrs returns n addresses, half IPv4, half IPv6.
func manyAddrs(n int) []netip.AddrPort {
	var addrs []netip.AddrPort
	for i := range n {
		ip := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		if i%2 == 1 {
			ip = netip.AddrFrom16([16]byte{0xfd, 0, 14: byte(i >> 8), 15: byte(i)})
		}
		addrs = append(addrs, netip.AddrPortFrom(ip, 443))
	}
	return addrs
}

// BenchmarkKernelSync times adding 10,000 addresses in one Sync, reading
// them, and dropping them in one Sync.
func BenchmarkKernelSync(b *testing.B) {
	ns := newNetNS(b)
	k := openKernel(b, ns, zerolog.Nop())
	addrs := manyAddrs(10000)
	for b.Loop() {
		if _, err := k.Sync(addrs); err != nil {
			b.Fatal(err)
		}
		if _, err := k.Read(); err != nil {
			b.Fatal(err)
		}
		if final, err := k.Sync(nil); err != nil || len(final) != len(addrs) {
			b.Fatalf("%d final readings, %v", len(final), err)
		}
	}
}

func TestKernelRemove(t *testing.T) {
	ns := newNetNS(t)
	k := openKernel(t, ns, zerolog.Nop())
	if err := k.Remove(); err != nil {
		t.Fatal(err)
	}
	tables, err := k.conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 0 {
		t.Errorf("tables left after Remove: %v", tables)
	}
}

// BenchmarkKernelSyncOne times what one route change costs with 32 and
// with 10,000 addresses counted: one address added, then dropped, each by a
// Sync of the whole set; and one Read of them all.
func BenchmarkKernelSyncOne(b *testing.B) {
	for _, n := range []int{32, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ns := newNetNS(b)
			k := openKernel(b, ns, zerolog.Nop())
			addrs := manyAddrs(n + 1)
			if _, err := k.Sync(addrs[:n]); err != nil {
				b.Fatal(err)
			}
			b.Run("add and drop one", func(b *testing.B) {
				for b.Loop() {
					if _, err := k.Sync(addrs); err != nil {
						b.Fatal(err)
					}
					if _, err := k.Sync(addrs[:n]); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("read all", func(b *testing.B) {
				for b.Loop() {
					if _, err := k.Read(); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
