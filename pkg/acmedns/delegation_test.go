package acmedns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeResolver is a DNS server that answers from a fixed set of records,
// as a recursive resolver would after following the delegation.
type fakeResolver struct {
	records  []string // zone file lines
	rcode    int      // forced rcode for every answer, when not 0
	referral bool     // NS answers go to the authority section, without AA
	truncate bool     // UDP answers carry TC and no records
	// forward, when set, returns the server that questions at or below
	// testZone go to, as a resolver following the delegation would; ""
	// stands for a server that does not answer (SERVFAIL).
	forward func() string
	rrs     []dns.RR // records, parsed by startFakeResolver
}

func (f *fakeResolver) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	if f.rcode != 0 {
		m.Rcode = f.rcode
		_ = w.WriteMsg(m)
		return
	}
	if _, udp := w.LocalAddr().(*net.UDPAddr); udp && f.truncate {
		m.Truncated = true
		_ = w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	if f.forward != nil && isBelowOrAt(strings.ToLower(q.Name), testZone) {
		f.forwardTo(w, m, r)
		return
	}
	nameExists := false
	for _, rr := range f.rrs {
		if !strings.EqualFold(rr.Header().Name, q.Name) {
			continue
		}
		nameExists = true
		if t := rr.Header().Rrtype; t == q.Qtype || t == dns.TypeCNAME {
			if f.referral && t == dns.TypeNS {
				m.Ns = append(m.Ns, rr)
				continue
			}
			m.Answer = append(m.Answer, rr)
		}
	}
	if !nameExists {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

// forwardTo answers r, through m, with what the server of f.forward says.
func (f *fakeResolver) forwardTo(w dns.ResponseWriter, m, r *dns.Msg) {
	m.Rcode = dns.RcodeServerFailure
	if addr := f.forward(); addr != "" {
		c := &dns.Client{Net: "udp", Timeout: waitTimeout}
		if resp, _, err := c.Exchange(r, addr); err == nil {
			m.Rcode, m.Answer, m.Ns = resp.Rcode, resp.Answer, resp.Ns
		}
	}
	_ = w.WriteMsg(m)
}

// startFakeResolver serves f on UDP and TCP on one loopback port until the
// test ends and returns the address.
func startFakeResolver(tb testing.TB, f *fakeResolver) string {
	tb.Helper()
	for _, line := range f.records {
		rr, err := dns.NewRR(line)
		if err != nil {
			tb.Fatalf("parsing test record %q: %v", line, err)
		}
		f.rrs = append(f.rrs, rr)
	}
	pc, l, err := listen("127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	servers := []*dns.Server{
		{PacketConn: pc, Handler: f, NotifyStartedFunc: notify},
		{Listener: l, Handler: f, NotifyStartedFunc: notify},
	}
	errs := make(chan error, 2)
	for _, s := range servers {
		go func() { errs <- s.ActivateAndServe() }()
	}
	tb.Cleanup(func() {
		for _, s := range servers {
			_ = s.Shutdown()
		}
		for range servers {
			<-errs
		}
	})
	for range servers {
		select {
		case <-started:
		case err := <-errs:
			tb.Fatalf("fake resolver: %v", err)
		case <-time.After(waitTimeout):
			tb.Fatal("fake resolver not started in time")
		}
	}
	return pc.LocalAddr().String()
}

func TestCheckDelegation(t *testing.T) {
	nodeIP := netip.MustParseAddr("198.51.100.7")
	good := []string{
		testZone + " 3600 IN NS gw.example.",
		"gw.example. 3600 IN A 198.51.100.7",
	}
	tests := []struct {
		name     string
		resolver fakeResolver
		nodeIPs  []netip.Addr
		wantErr  string // "" for nil; else the error contains it
		notDeleg bool   // the error wraps ErrNotDelegated
	}{
		{
			name:     "NS at the gateway domain, which resolves to the node",
			resolver: fakeResolver{records: good},
		},
		{
			name: "one of two NS targets is the node",
			resolver: fakeResolver{records: []string{
				testZone + " 3600 IN NS ns1.other.",
				testZone + " 3600 IN NS ns2.node.example.",
				"ns1.other. 3600 IN A 203.0.113.9",
				"ns2.node.example. 3600 IN AAAA 2001:db8::7",
			}},
			nodeIPs: []netip.Addr{nodeIP, netip.MustParseAddr("2001:db8::7")},
		},
		{
			// An authoritative (non-recursive) server answers with a
			// referral, which is a delegation all the same.
			name:     "referral in the authority section",
			resolver: fakeResolver{records: good, referral: true},
		},
		{
			// Large NS sets come back truncated over UDP.
			name:     "truncated UDP answer is asked again over TCP",
			resolver: fakeResolver{records: good, truncate: true},
		},
		{
			name:     "missing NS (NXDOMAIN)",
			resolver: fakeResolver{records: []string{"gw.example. 3600 IN A 198.51.100.7"}},
			wantErr:  "no NS record for _acme-challenge.gw.example: the DNS provider must delegate it to this node",
			notDeleg: true,
		},
		{
			name: "missing NS (name exists with other records)",
			resolver: fakeResolver{records: []string{
				testZone + ` 3600 IN TXT "stale"`,
			}},
			wantErr:  "no NS record for _acme-challenge.gw.example: the DNS provider must delegate it to this node",
			notDeleg: true,
		},
		{
			name: "NS pointing elsewhere",
			resolver: fakeResolver{records: []string{
				testZone + " 3600 IN NS ns1.other.",
				"ns1.other. 3600 IN A 203.0.113.9",
			}},
			wantErr:  "NS of _acme-challenge.gw.example point at ns1.other. (203.0.113.9), not at this node (198.51.100.7)",
			notDeleg: true,
		},
		{
			name: "NS target without address",
			resolver: fakeResolver{records: []string{
				testZone + " 3600 IN NS ns1.nowhere.",
			}},
			wantErr:  "ns1.nowhere. (no address: A answer NXDOMAIN; AAAA answer NXDOMAIN)",
			notDeleg: true,
		},
		{
			// A CNAME (as for acme-dns) is not what the gateway expects.
			name: "CNAME instead of NS",
			resolver: fakeResolver{records: []string{
				testZone + " 3600 IN CNAME x.auth.example.",
			}},
			wantErr:  "is a CNAME to x.auth.example.",
			notDeleg: true,
		},
		{
			name:     "resolver failure is reported, not taken for a missing delegation",
			resolver: fakeResolver{rcode: dns.RcodeServerFailure},
			wantErr:  "SERVFAIL",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startFakeResolver(t, &tt.resolver)
			nodeIPs := tt.nodeIPs
			if nodeIPs == nil {
				nodeIPs = []netip.Addr{nodeIP}
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			err := CheckDelegation(ctx, addr, testDomain, nodeIPs)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckDelegation: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CheckDelegation error %v, want one containing %q", err, tt.wantErr)
			}
			if errors.Is(err, ErrNotDelegated) != tt.notDeleg {
				t.Errorf("errors.Is(err, ErrNotDelegated) = %v, want %v", !tt.notDeleg, tt.notDeleg)
			}
		})
	}
}

// TestCheckDelegationAgainstServer checks the NS answer of our own Server
// at the end of a delegation.
func TestCheckDelegationAgainstServer(t *testing.T) {
	srv := startServer(t, newTestStore(t, nil))
	// Our server holds the NS but refuses the A of gw.example (outside its
	// zone), so the check finds no address: that is the message.
	err := CheckDelegation(context.Background(), srv.Addr(), testDomain, []netip.Addr{netip.MustParseAddr("198.51.100.7")})
	if err == nil || !strings.Contains(err.Error(), "gw.example. (no address: A answer REFUSED") {
		t.Errorf("CheckDelegation error %v, want the NS at gw.example. without address", err)
	}
}

func TestCheckDelegationValidates(t *testing.T) {
	ctx := context.Background()
	if err := CheckDelegation(ctx, "127.0.0.1:1", "gw.example", nil); err == nil {
		t.Error("no node IP accepted")
	}
	if err := CheckDelegation(ctx, "127.0.0.1:1", "not a domain", []netip.Addr{netip.MustParseAddr("127.0.0.1")}); err == nil {
		t.Error("bad domain accepted")
	}
	// Nothing listens: a quick error that is not about the delegation.
	ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err := CheckDelegation(ctx, "127.0.0.1:1", "gw.example", []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if err == nil || errors.Is(err, ErrNotDelegated) {
		t.Errorf("unreachable resolver: error %v, want a query error", err)
	}
}
