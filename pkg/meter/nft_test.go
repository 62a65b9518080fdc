//go:build linux

package meter

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"
)

// TestMessagesSplitElementsByMap guards the netlink messages a batch makes,
// which size the socket's buffers: the elements of one map go up to
// elemsPerMessage to a message, never two maps in one, and a chain takes
// a second message for its rule.
func TestMessagesSplitElementsByMap(t *testing.T) {
	var b batch
	for i := range 300 {
		b.count(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 80), "0123456789abcdef")
	}
	for i := range 10 {
		b.count(netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfd, 15: byte(i)}), 443), "0123456789abcdef")
	}
	msgs := messages(b.steps())
	elems := map[int][]int{} // message sizes by map
	for _, m := range msgs {
		if m[0].op != addElem {
			if len(m) != 1 {
				t.Errorf("a message of %d %s steps", len(m), m[0].op)
			}
			continue
		}
		for _, s := range m {
			if s.op != addElem || mapIndex(s.obj) != mapIndex(m[0].obj) {
				t.Fatalf("a message of elements mixes %s of map %d with %s", m[0], mapIndex(m[0].obj), s)
			}
		}
		elems[mapIndex(m[0].obj)] = append(elems[mapIndex(m[0].obj)], len(m))
	}
	want := map[int][]int{0: {256, 44}, 1: {10}, 2: {256, 44}, 3: {10}}
	for i, sizes := range want {
		if !slices.Equal(elems[i], sizes) {
			t.Errorf("elements of map %d in messages of %v, want %v", i, elems[i], sizes)
		}
	}
	// Begin and end, a counter each, a chain and its rule each, and the
	// elements' six messages.
	if got, want := batchMessages(msgs), 2+620+2*620+6; got != want {
		t.Errorf("%d messages, want %d", got, want)
	}
}

// TestKey guards the layout the base rules load: the address, then the
// port in the first two bytes of 32 bits.
func TestKey(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want []byte
	}{
		{"10.0.0.1:443", []byte{10, 0, 0, 1, 0x01, 0xbb, 0, 0}},
		{"[fd00::1]:80", []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80, 0, 0}},
	} {
		if got := key(netip.MustParseAddrPort(tc.addr)); !bytes.Equal(got, tc.want) {
			t.Errorf("key(%s) = %x, want %x", tc.addr, got, tc.want)
		}
	}
}
