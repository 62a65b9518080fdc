package harness

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DNSServer is a tiny authoritative DNS server on 127.0.0.1, UDP and TCP on
// the same port, answering the A and AAAA records a test sets. Names it does
// not know get NXDOMAIN.
type DNSServer struct {
	// Addr is 127.0.0.1:port, for --resolver.
	Addr string

	mu      sync.Mutex
	records map[string][]netip.Addr
}

// StartDNS starts a DNSServer and waits until both its UDP and TCP servers
// run.
func StartDNS(t testing.TB) *DNSServer {
	t.Helper()
	s := &DNSServer{records: map[string][]netip.Addr{}}
	var pc net.PacketConn
	var l net.Listener
	for range 20 {
		addr := Addr(t)
		var err error
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			continue
		}
		if l, err = net.Listen("tcp", addr); err != nil {
			pc.Close()
			continue
		}
		s.Addr = addr
		break
	}
	if s.Addr == "" {
		t.Fatalf("test DNS server: no free port for UDP and TCP")
	}
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	udp := &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: notify}
	tcp := &dns.Server{Listener: l, Handler: s, NotifyStartedFunc: notify}
	for _, srv := range []*dns.Server{udp, tcp} {
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	for range 2 {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatalf("test DNS server on %s did not start", s.Addr)
		}
	}
	return s
}

// Set replaces the records of name with ips (A for IPv4, AAAA for IPv6). No
// ips removes the name.
func (s *DNSServer) Set(t testing.TB, name string, ips ...string) {
	t.Helper()
	addrs := make([]netip.Addr, 0, len(ips))
	for _, v := range ips {
		a, err := netip.ParseAddr(v)
		if err != nil {
			t.Fatalf("DNSServer.Set(%q): %v", name, err)
		}
		addrs = append(addrs, a)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := canonical(name)
	if len(addrs) == 0 {
		delete(s.records, key)
		return
	}
	s.records[key] = addrs
}

func canonical(name string) string { return strings.ToLower(dns.Fqdn(name)) }

// ServeDNS answers one query.
func (s *DNSServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	s.mu.Lock()
	addrs, ok := s.records[canonical(q.Name)]
	s.mu.Unlock()
	if !ok {
		m.Rcode = dns.RcodeNameError
		_ = w.WriteMsg(m)
		return
	}
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 0}
	for _, a := range addrs {
		switch {
		case q.Qtype == dns.TypeA && a.Is4():
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IP(a.AsSlice())})
		case q.Qtype == dns.TypeAAAA && a.Is6():
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.IP(a.AsSlice())})
		}
	}
	_ = w.WriteMsg(m)
}
