package meter

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestMarkOf(t *testing.T) {
	for _, tc := range []struct {
		seq  uint64
		want uint32
	}{
		{1, 0x80000001},
		// The low 31 bits: 2^31 claims go by before a mark comes back.
		{1<<31 + 5, 0x80000005},
		{1<<32 - 1, 0xffffffff},
	} {
		if got := markOf(tc.seq); got != tc.want {
			t.Errorf("markOf(%d) = %#x, want %#x", tc.seq, got, tc.want)
		}
	}
}

func TestPlanMarks(t *testing.T) {
	x, y := netip.MustParseAddrPort("10.0.0.1:80"), netip.MustParseAddrPort("[fd00::1]:443")
	for _, tc := range []struct {
		name      string
		cur, want Marks
		batch     string
	}{
		{"nothing changes", Marks{map[netip.AddrPort]uint32{x: 1}, map[uint32]bool{1: true}}, Marks{map[netip.AddrPort]uint32{x: 1}, map[uint32]bool{1: true}},
			"[] [] [] []"},
		{"a new claim", Marks{}, Marks{map[netip.AddrPort]uint32{x: 1, y: 2}, map[uint32]bool{1: true, 2: true}},
			"[1 2] [] [10.0.0.1:80 [fd00::1]:443] []"},
		// An element cannot change its value in place: it goes and comes
		// back in the same batch. The earlier claim stays live.
		{"an address taken over", Marks{map[netip.AddrPort]uint32{x: 1}, map[uint32]bool{1: true}}, Marks{map[netip.AddrPort]uint32{x: 2}, map[uint32]bool{1: true, 2: true}},
			"[2] [10.0.0.1:80] [10.0.0.1:80] []"},
		// Its connections are reset from the commit on.
		{"a claim ended", Marks{map[netip.AddrPort]uint32{x: 1, y: 2}, map[uint32]bool{1: true, 2: true}}, Marks{map[netip.AddrPort]uint32{y: 2}, map[uint32]bool{2: true}},
			"[] [10.0.0.1:80] [] [1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := planMarks(tc.cur, tc.want)
			if got := fmt.Sprint(b.addLive, b.delOwners, b.addOwners, b.delLive); got != tc.batch {
				t.Errorf("batch %s, want %s", got, tc.batch)
			}
			if b.empty() != (tc.batch == "[] [] [] []") {
				t.Errorf("empty() = %v", b.empty())
			}
		})
	}
}

// TestLedgerMarksOnlyOfSavedClaims guards issue 18: a claim gets a mark only
// once it is saved, since an unsaved one is numbered again after a restart;
// until then an address keeps the mark of its latest saved claim.
func TestLedgerMarksOnlyOfSavedClaims(t *testing.T) {
	l, path := openLedger(t)
	check := func(want string, saved bool) {
		t.Helper()
		m := l.Marks()
		if got := fmt.Sprint(m.Owners, m.Live); got != want {
			t.Errorf("marks %s, want %s", got, want)
		}
		if l.ClaimsSaved() != saved {
			t.Errorf("ClaimsSaved() = %v, want %v", !saved, saved)
		}
	}
	check("map[] map[]", true)
	l.Assign("a", []netip.AddrPort{addrA})
	check("map[] map[]", false)
	if err := l.Save(); err != nil {
		t.Fatal(err)
	}
	check("map[10.0.0.1:80:2147483649] map[2147483649:true]", true)
	// b takes addrA over, and claims addrB: a keeps addrA's mark until
	// b's claims are saved.
	l.Assign("b", []netip.AddrPort{addrA, addrB})
	check("map[10.0.0.1:80:2147483649] map[2147483649:true]", false)
	// An ended claim loses its mark at once.
	l.Remove("a")
	check("map[] map[]", false)
	l = reopen(t, l, path)
	check("map[10.0.0.1:80:2147483650 [fd00::1]:443:2147483651] map[2147483650:true 2147483651:true]", true)
}
