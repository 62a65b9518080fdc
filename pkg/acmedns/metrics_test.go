package acmedns

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
)

// counts reads every query counter of h.
func counts(h *Handler) [numQueryTypes][numQueryResults]float64 {
	var c [numQueryTypes][numQueryResults]float64
	for t := range c {
		for r := range c[t] {
			c[t][r] = testutil.ToFloat64(h.metrics.queries[t][r])
		}
	}
	return c
}

// sendRaw sends payload to addr as one query over network ("udp" or
// "tcp", with its length prefix), and returns the answer when answered is
// set. The connection stays open until the test ends: a server may still
// be reading the query.
func sendRaw(tb testing.TB, network, addr string, payload []byte, answered bool) []byte {
	tb.Helper()
	conn, err := net.Dial(network, addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(waitTimeout)); err != nil {
		tb.Fatal(err)
	}
	msg := payload
	if network == "tcp" {
		msg = binary.BigEndian.AppendUint16(nil, uint16(len(payload)))
		msg = append(msg, payload...)
	}
	if _, err := conn.Write(msg); err != nil {
		tb.Fatalf("sending over %s: %v", network, err)
	}
	if !answered {
		return nil
	}
	buf := make([]byte, 65535)
	if network == "udp" {
		n, err := conn.Read(buf)
		if err != nil {
			tb.Fatalf("reading the udp answer: %v", err)
		}
		return buf[:n]
	}
	if _, err := io.ReadFull(conn, buf[:2]); err != nil {
		tb.Fatalf("reading the tcp answer: %v", err)
	}
	n := int(binary.BigEndian.Uint16(buf))
	if _, err := io.ReadFull(conn, buf[:n]); err != nil {
		tb.Fatalf("reading the tcp answer: %v", err)
	}
	return buf[:n]
}

// TestServerCountsQueries queries a real server over UDP (its own loop,
// cache included) and TCP (miekg/dns's server, whose accept and invalid
// hooks answer some queries without the Handler): each query counts once,
// under the same labels on both.
func TestServerCountsQueries(t *testing.T) {
	store := newTestStore(t, nil)
	if err := store.Present(testZone, acmeValue); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv := startServerConfig(t, Config{Domain: testDomain, Address: "127.0.0.1:0", Store: store, Logger: zerolog.Nop(), Registry: reg})
	h := srv.handler

	msg := func(name string, qtype uint16, edit func(*dns.Msg)) []byte {
		m := question(name, qtype)
		if edit != nil {
			edit(m)
		}
		return packed(t, m)
	}
	valid := msg(testZone, dns.TypeTXT, nil)
	tests := []struct {
		name   string
		query  []byte
		qtype  queryType
		result queryResult
	}{
		{"TXT value", valid, typeTXT, resultNoError},
		// Over UDP, from the cache this time.
		{"TXT value again", valid, typeTXT, resultNoError},
		{"A of a missing name", msg("none."+testZone, dns.TypeA, nil), typeA, resultNXDomain},
		{"AAAA at the apex, NODATA", msg(testZone, dns.TypeAAAA, nil), typeAAAA, resultNoError},
		{"SOA", msg(strings.ToUpper(testZone), dns.TypeSOA, nil), typeSOA, resultNoError},
		{"NS", msg(testZone, dns.TypeNS, nil), typeNS, resultNoError},
		{"CAA", msg(testZone, dns.TypeCAA, nil), typeCAA, resultNoError},
		{"ANY", msg(testZone, dns.TypeANY, nil), typeANY, resultNoError},
		{"MX is another type", msg(testZone, dns.TypeMX, nil), typeOther, resultNoError},
		{"AXFR is refused", msg(testZone, dns.TypeAXFR, nil), typeOther, resultRefused},
		{"outside the zone", msg("example.com.", dns.TypeTXT, nil), typeTXT, resultRefused},
		{"EDNS version 1", msg(testZone, dns.TypeSOA, func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.Extra[0].(*dns.OPT).SetVersion(1)
		}), typeSOA, resultBadVers},
		// Answered on the header alone: the question is not read.
		{"NOTIFY", msg(testZone, dns.TypeSOA, func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }), typeNone, resultNotImp},
		{"two questions", append(header(7, 0, 2, 0, 0, 0), append(valid[12:], valid[12:]...)...), typeNone, resultFormErr},
		{"a compression loop", append(header(8, 0, 1, 0, 0, 0), 0xc0, 12, 0, 16, 0, 1), typeNone, resultFormErr},
		// Never answered.
		{"a response", msg(testZone, dns.TypeSOA, func(m *dns.Msg) { m.Response = true }), typeNone, resultDropped},
		{"shorter than a header", valid[:5], typeNone, resultDropped},
	}
	sent := 0
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				before := counts(h)
				answered := tt.result != resultDropped
				sent++
				if out := sendRaw(t, network, srv.Addr(), tt.query, answered); out != nil {
					m := new(dns.Msg)
					if err := m.Unpack(out); err != nil {
						t.Fatalf("unpacking the answer: %v", err)
					}
					if resultOf(m.Rcode) != tt.result {
						t.Fatalf("answered %s, want %s", dns.RcodeToString[m.Rcode], queryResultNames[tt.result])
					}
				}
				// The server counts once the answer is sent: after the
				// client may have it.
				want := before
				want[tt.qtype][tt.result]++
				deadline := time.Now().Add(waitTimeout)
				for counts(h) != want && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				if got := counts(h); got != want {
					for ty := range got {
						for r := range got[ty] {
							if got[ty][r] != want[ty][r] {
								t.Errorf("type=%s result=%s: %v, want %v", queryTypeNames[ty], queryResultNames[r], got[ty][r], want[ty][r])
							}
						}
					}
				}
			})
		}
	}

	// What the registry exposes is what was counted: every series, created
	// up front, summing to the queries sent.
	if n := testutil.CollectAndCount(reg, metricQueries); n != int(numQueryTypes)*int(numQueryResults) {
		t.Errorf("%d series, want %d", n, int(numQueryTypes)*int(numQueryResults))
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	if total != float64(sent) {
		t.Errorf("registry counts %v queries, %d were sent", total, sent)
	}
}

// waitCount waits until the counter of (qtype, result) of h reaches want.
func waitCount(tb testing.TB, h *Handler, qtype queryType, result queryResult, want float64) {
	tb.Helper()
	c := h.metrics.queries[qtype][result]
	deadline := time.Now().Add(waitTimeout)
	for testutil.ToFloat64(c) != want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := testutil.ToFloat64(c); got != want {
		tb.Errorf("type=%s result=%s: %v, want %v", queryTypeNames[qtype], queryResultNames[result], got, want)
	}
}

// An answer the system refuses to send (to a forged source port 0) counts
// as dropped, not under its rcode.
func TestServerCountsAnswersItCannotSend(t *testing.T) {
	srv := startServerConfig(t, Config{Domain: testDomain, Address: "127.0.0.1:0", Store: newTestStore(t, nil), Logger: zerolog.Nop(), Registry: prometheus.NewRegistry()})
	server := netip.MustParseAddrPort(srv.Addr())
	sendRawUDP(t, netip.AddrPortFrom(server.Addr(), 0), server, packed(t, question(testZone, dns.TypeSOA)))
	waitCount(t, srv.handler, typeSOA, resultDropped, 1)

	exchange(t, "udp", srv.Addr(), question(testZone, dns.TypeSOA))
	waitCount(t, srv.handler, typeSOA, resultNoError, 1)
	waitCount(t, srv.handler, typeSOA, resultDropped, 1)
}

// The registry is an input: a clash is the caller's to see, through each
// constructor.
func TestQueryMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := testServiceConfig(t)
	cfg.Registry = reg
	if _, err := NewService(cfg); err != nil {
		t.Fatalf("NewService: %v", err)
	}
	if n := testutil.CollectAndCount(reg, metricQueries); n != int(numQueryTypes)*int(numQueryResults) {
		t.Errorf("%d series registered, want %d", n, int(numQueryTypes)*int(numQueryResults))
	}
	if _, err := New(Config{Domain: testDomain, Store: newTestStore(t, nil), Registry: reg}); err == nil || !strings.Contains(err.Error(), "registering") {
		t.Errorf("New on a registry that has the counter: %v, want a registration error", err)
	}
	if _, err := NewHandler(HandlerConfig{Domain: testDomain, Store: newTestStore(t, nil), Registry: reg}); err == nil {
		t.Error("NewHandler on a registry that has the counter: no error")
	}
}
