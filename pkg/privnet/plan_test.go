package privnet

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/threefoldtech/gateway/pkg/zosnet"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestAttachPlan(t *testing.T) {
	const a, b = zosnet.NetID("netA"), zosnet.NetID("netB")
	must := func(t *testing.T) func(state, error) state {
		return func(s state, err error) state {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	t.Run("a target keeps its port when the route changes", func(t *testing.T) {
		s := must(t)(state{}.attach("7-1-x", a, "n-a", []netip.AddrPort{ap("10.1.0.5:80"), ap("10.1.0.6:80")}, 16))
		s = must(t)(s.attach("7-1-x", a, "n-a", []netip.AddrPort{ap("10.1.0.6:80"), ap("10.1.0.7:80")}, 16))
		got := s.Routes["7-1-x"].Ports
		// 10.1.0.6 had 1025; 10.1.0.5's 1024 is released, not given to
		// 10.1.0.7.
		want := map[netip.AddrPort]uint16{ap("10.1.0.6:80"): 1025, ap("10.1.0.7:80"): 1026}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ports %v, want %v", got, want)
		}
		// A rollback puts the old targets back: the same ports.
		s = must(t)(s.attach("7-1-x", a, "n-a", []netip.AddrPort{ap("10.1.0.5:80"), ap("10.1.0.6:80")}, 16))
		want = map[netip.AddrPort]uint16{ap("10.1.0.5:80"): 1024, ap("10.1.0.6:80"): 1025}
		if got := s.Routes["7-1-x"].Ports; !reflect.DeepEqual(got, want) {
			t.Fatalf("after the rollback: ports %v, want %v", got, want)
		}
	})
	t.Run("two routes of one network share its link, not their ports", func(t *testing.T) {
		// Each route meters its own bytes: the meter counts by the
		// address Traefik connects to.
		s := must(t)(state{}.attach("7-1-x", a, "n-a", []netip.AddrPort{ap("10.1.0.5:80")}, 16))
		s = must(t)(s.attach("7-2-y", a, "n-a", []netip.AddrPort{ap("10.1.0.5:80")}, 16))
		if len(s.Links) != 1 || s.Routes["7-1-x"].Ports[ap("10.1.0.5:80")] == s.Routes["7-2-y"].Ports[ap("10.1.0.5:80")] {
			t.Fatalf("state %+v", s)
		}
		s = s.detach("7-1-x")
		if len(s.Links) != 1 {
			t.Fatal("the link went with one of its two routes")
		}
		if s = s.detach("7-2-y"); len(s.Links) != 0 || len(s.Routes) != 0 {
			t.Fatalf("state after both detached: %+v", s)
		}
	})
	t.Run("overlapping tenant ranges get distinct links", func(t *testing.T) {
		s := must(t)(state{}.attach("7-1-x", a, "n-a", []netip.AddrPort{ap("10.1.0.5:80")}, 16))
		s = must(t)(s.attach("8-1-x", b, "n-b", []netip.AddrPort{ap("10.1.0.5:80")}, 16))
		r := linkRange(netip.MustParsePrefix("100.64.0.0/16"))
		va, vb := s.via("7-1-x", r)[ap("10.1.0.5:80")], s.via("8-1-x", r)[ap("10.1.0.5:80")]
		if va.String() != "100.64.0.2:1024" || vb.String() != "100.64.0.6:1024" {
			t.Fatalf("via %s and %s", va, vb)
		}
	})
	t.Run("a route that moves to another network leaves the first", func(t *testing.T) {
		s := must(t)(state{}.attach("7-1-x", a, "n-a", []netip.AddrPort{ap("10.1.0.5:80")}, 16))
		s = must(t)(s.attach("7-1-x", b, "n-b", []netip.AddrPort{ap("10.1.0.5:80")}, 16))
		if _, ok := s.Links[a]; ok || s.Routes["7-1-x"].Released != nil {
			t.Fatalf("state %+v", s)
		}
	})
	t.Run("a freed link index is used again", func(t *testing.T) {
		s := must(t)(state{}.attach("7-1-x", a, "n-a", []netip.AddrPort{ap("10.1.0.5:80")}, 16))
		s = must(t)(s.attach("8-1-x", b, "n-b", []netip.AddrPort{ap("10.1.0.5:80")}, 16))
		s = s.detach("7-1-x")
		s = must(t)(s.attach("9-1-x", "netC", "n-c", []netip.AddrPort{ap("10.1.0.5:80")}, 16))
		if s.Links["netC"].Index != 0 {
			t.Fatalf("index %d, want 0", s.Links["netC"].Index)
		}
	})
	t.Run("the link range full", func(t *testing.T) {
		s := must(t)(state{}.attach("7-1-x", a, "n-a", []netip.AddrPort{ap("10.1.0.5:80")}, 1))
		before := s.clone()
		if _, err := s.attach("8-1-x", b, "n-b", []netip.AddrPort{ap("10.1.0.5:80")}, 1); !errors.Is(err, ErrLinksExhausted) {
			t.Fatalf("err = %v", err)
		}
		if !reflect.DeepEqual(s, before) {
			t.Fatal("a refused attach changed the state")
		}
	})
}

func TestLinkRange(t *testing.T) {
	r := linkRange(netip.MustParsePrefix("100.64.0.0/16"))
	if r.size() != 16384 {
		t.Fatalf("size %d", r.size())
	}
	gw, ten, bits := r.addrs(16383)
	if gw.String() != "100.64.255.253" || ten.String() != "100.64.255.254" || bits != 30 {
		t.Fatalf("last link: %s %s /%d", gw, ten, bits)
	}
	if s := linkRange(netip.MustParsePrefix("100.64.0.0/30")).size(); s != 1 {
		t.Fatalf("a /30 holds %d links", s)
	}
}
