package acmedns

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// summary describes one answer compactly for comparisons.
type summary struct {
	rcode  int
	aa     bool
	answer []string // see rrString
	ns     []string
}

// rrString shows what the tests care about in an RR: its owner, type and
// data (SOA without its serial).
func rrString(rr dns.RR) string {
	h := rr.Header()
	switch rr := rr.(type) {
	case *dns.SOA:
		return fmt.Sprintf("%s SOA %s %s %d %d %d %d", h.Name, rr.Ns, rr.Mbox, rr.Refresh, rr.Retry, rr.Expire, rr.Minttl)
	case *dns.NS:
		return fmt.Sprintf("%s NS %s", h.Name, rr.Ns)
	case *dns.TXT:
		return fmt.Sprintf("%s TXT %s", h.Name, strings.Join(rr.Txt, "|"))
	default:
		return rr.String()
	}
}

func summarize(m *dns.Msg) summary {
	s := summary{rcode: m.Rcode, aa: m.Authoritative}
	for _, rr := range m.Answer {
		s.answer = append(s.answer, rrString(rr))
	}
	for _, rr := range m.Ns {
		s.ns = append(s.ns, rrString(rr))
	}
	return s
}

const soaString = testZone + " SOA gw.example. hostmaster.gw.example. 3600 600 86400 1"

// TestServerAnswers asks a running server over UDP and over TCP.
func TestServerAnswers(t *testing.T) {
	store := newTestStore(t, nil)
	for _, p := range [][2]string{
		{testZone, acmeValue},
		{testZone, acmeValue2},
		{"x.deep." + testZone, acmeValue},
	} {
		if err := store.Present(p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
	srv := startServer(t, store)

	tests := []struct {
		name  string
		qname string
		qtype uint16
		class uint16 // ClassINET when 0
		want  summary
	}{
		{
			name: "SOA at the apex", qname: testZone, qtype: dns.TypeSOA,
			want: summary{rcode: dns.RcodeSuccess, aa: true, answer: []string{soaString}},
		},
		{
			// The NS must agree with the delegation, which names the
			// gateway domain.
			name: "NS at the apex names the gateway domain", qname: testZone, qtype: dns.TypeNS,
			want: summary{rcode: dns.RcodeSuccess, aa: true, answer: []string{testZone + " NS gw.example."}},
		},
		{
			// Apex and wildcard values share the name; both are checked.
			name: "TXT returns every value at the name", qname: testZone, qtype: dns.TypeTXT,
			want: summary{rcode: dns.RcodeSuccess, aa: true, answer: []string{
				testZone + " TXT " + acmeValue, testZone + " TXT " + acmeValue2,
			}},
		},
		{
			// Let's Encrypt randomises the case of query names (0x20).
			name: "query names are case-insensitive and echoed", qname: "_ACME-challenge.Gw.Example.", qtype: dns.TypeTXT,
			want: summary{rcode: dns.RcodeSuccess, aa: true, answer: []string{
				"_ACME-challenge.Gw.Example. TXT " + acmeValue, "_ACME-challenge.Gw.Example. TXT " + acmeValue2,
			}},
		},
		{
			name: "other type at the apex is NODATA with SOA", qname: testZone, qtype: dns.TypeA,
			want: summary{rcode: dns.RcodeSuccess, aa: true, ns: []string{soaString}},
		},
		{
			name: "TXT at an empty non-terminal is NODATA", qname: "deep." + testZone, qtype: dns.TypeTXT,
			want: summary{rcode: dns.RcodeSuccess, aa: true, ns: []string{soaString}},
		},
		{
			name: "name in the zone holding nothing is NXDOMAIN with SOA", qname: "nothing." + testZone, qtype: dns.TypeTXT,
			want: summary{rcode: dns.RcodeNameError, aa: true, ns: []string{soaString}},
		},
		{
			name: "ANY at the apex returns all its records", qname: testZone, qtype: dns.TypeANY,
			want: summary{rcode: dns.RcodeSuccess, aa: true, answer: []string{
				soaString, testZone + " NS gw.example.", testZone + " TXT " + acmeValue, testZone + " TXT " + acmeValue2,
			}},
		},
		{
			// Not an open resolver: nothing outside the zone.
			name: "name outside the zone is REFUSED", qname: "example.com.", qtype: dns.TypeA,
			want: summary{rcode: dns.RcodeRefused},
		},
		{
			name: "the gateway domain itself is REFUSED", qname: "gw.example.", qtype: dns.TypeA,
			want: summary{rcode: dns.RcodeRefused},
		},
		{
			// "x\._acme-challenge" is one label: the name is outside.
			name: "an escaped dot is no label boundary", qname: `x\._acme-challenge.gw.example.`, qtype: dns.TypeTXT,
			want: summary{rcode: dns.RcodeRefused},
		},
		{
			name: "a name that only ends like the zone is REFUSED", qname: "x_acme-challenge.gw.example.", qtype: dns.TypeTXT,
			want: summary{rcode: dns.RcodeRefused},
		},
		{
			name: "CHAOS class is REFUSED", qname: "version.bind.", qtype: dns.TypeTXT, class: dns.ClassCHAOS,
			want: summary{rcode: dns.RcodeRefused},
		},
		{
			name: "zone transfer is REFUSED", qname: testZone, qtype: dns.TypeAXFR,
			want: summary{rcode: dns.RcodeRefused},
		},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				q := question(tt.qname, tt.qtype)
				if tt.class != 0 {
					q.Question[0].Qclass = tt.class
				}
				q.RecursionDesired = true
				resp := exchange(t, network, srv.Addr(), q)
				if got := summarize(resp); !equalSummary(got, tt.want) {
					t.Errorf("answer\n got %+v\nwant %+v", got, tt.want)
				}
				if resp.RecursionAvailable {
					t.Error("RA set: the server is not a resolver")
				}
				if !resp.RecursionDesired {
					t.Error("RD not copied from the query")
				}
				if len(resp.Question) != 1 || resp.Question[0] != q.Question[0] {
					t.Errorf("question %v, want %v echoed", resp.Question, q.Question)
				}
				if resp.Truncated {
					t.Error("TC set on a small answer")
				}
			})
		}
	}
}

func equalSummary(a, b summary) bool {
	return a.rcode == b.rcode && a.aa == b.aa && slices.Equal(a.answer, b.answer) && slices.Equal(a.ns, b.ns)
}

// TestServerValueLifecycle follows values through present, cleanup and
// expiry as DNS clients see them.
func TestServerValueLifecycle(t *testing.T) {
	clock := newFakeClock()
	store := newTestStore(t, clock)
	srv := startServer(t, store)
	ask := func() (int, []string) {
		t.Helper()
		resp := exchange(t, "udp", srv.Addr(), question(testZone, dns.TypeTXT))
		return resp.Rcode, txtValues(resp.Answer)
	}

	// No value yet: the apex exists, so NODATA rather than NXDOMAIN.
	if rcode, values := ask(); rcode != dns.RcodeSuccess || len(values) != 0 {
		t.Fatalf("before present: rcode %s values %q, want NOERROR and none", dns.RcodeToString[rcode], values)
	}
	// Two concurrent values (apex and wildcard), both answered.
	if err := store.Present(testZone, acmeValue); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	if err := store.Present(testZone, acmeValue2); err != nil {
		t.Fatal(err)
	}
	if _, values := ask(); !slices.Equal(values, []string{acmeValue, acmeValue2}) {
		t.Fatalf("after two presents: values %q, want both", values)
	}
	// Cleanup of one value leaves the other.
	store.Cleanup(testZone, acmeValue2)
	if _, values := ask(); !slices.Equal(values, []string{acmeValue}) {
		t.Fatalf("after cleanup: values %q, want %q only", values, acmeValue)
	}
	// The other expires on its own.
	clock.Advance(DefaultValueTTL)
	if rcode, values := ask(); rcode != dns.RcodeSuccess || len(values) != 0 {
		t.Fatalf("after expiry: rcode %s values %q, want NOERROR and none", dns.RcodeToString[rcode], values)
	}
}

// TestServerLongAnswers covers values longer than a TXT string and answers
// larger than a UDP message.
func TestServerLongAnswers(t *testing.T) {
	store := newTestStore(t, nil)
	long := strings.Repeat("abcdefghij", 60) // 600 bytes
	if err := store.Present("long."+testZone, long); err != nil {
		t.Fatal(err)
	}
	var many []string
	for i := range 20 {
		v := fmt.Sprintf("%02d%s", i, acmeValue[2:])
		many = append(many, v)
		if err := store.Present("many."+testZone, v); err != nil {
			t.Fatal(err)
		}
	}
	var tooMany []string
	for i := range 25 {
		v := fmt.Sprintf("%02d%s", i, acmeValue[2:])
		tooMany = append(tooMany, v)
		if err := store.Present("toomany."+testZone, v); err != nil {
			t.Fatal(err)
		}
	}
	srv := startServer(t, store)

	t.Run("value longer than 255 bytes is split into strings", func(t *testing.T) {
		q := question("long."+testZone, dns.TypeTXT)
		q.SetEdns0(1232, false)
		resp := exchange(t, "udp", srv.Addr(), q)
		if len(resp.Answer) != 1 {
			t.Fatalf("%d answers, want 1", len(resp.Answer))
		}
		txt := resp.Answer[0].(*dns.TXT).Txt
		if len(txt) != 3 || len(txt[0]) != 255 || len(txt[1]) != 255 || strings.Join(txt, "") != long {
			t.Errorf("strings of lengths %d, want 255, 255, 90 joining to the value", lengths(txt))
		}
	})
	t.Run("UDP answer too large for 512 bytes is truncated", func(t *testing.T) {
		c := &dns.Client{Net: "udp", Timeout: waitTimeout}
		resp, _, err := c.Exchange(question("many."+testZone, dns.TypeTXT), srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if !resp.Truncated {
			t.Error("TC not set")
		}
		if len(resp.Answer) >= len(many) {
			t.Errorf("%d answers in 512 bytes, want fewer than %d", len(resp.Answer), len(many))
		}
	})
	t.Run("EDNS buffer size is honoured up to 1232 bytes", func(t *testing.T) {
		q := question("many."+testZone, dns.TypeTXT)
		q.SetEdns0(4096, true)
		resp := exchange(t, "udp", srv.Addr(), q)
		if resp.Truncated || len(resp.Answer) != len(many) {
			t.Errorf("TC %v with %d answers, want all %d", resp.Truncated, len(resp.Answer), len(many))
		}
		opt := resp.IsEdns0()
		if opt == nil {
			t.Fatal("no OPT in the answer to a query with OPT")
		}
		if opt.UDPSize() != maxUDPSize || !opt.Do() || opt.Version() != 0 {
			t.Errorf("OPT size %d DO %v version %d, want %d, true (copied), 0", opt.UDPSize(), opt.Do(), opt.Version(), maxUDPSize)
		}
	})
	t.Run("UDP answers stay within 1232 bytes whatever the client says", func(t *testing.T) {
		// Larger UDP answers fragment, and fragments get lost or forged.
		q := question("toomany."+testZone, dns.TypeTXT)
		q.SetEdns0(4096, false)
		resp := exchange(t, "udp", srv.Addr(), q)
		resp.Compress = true // as it was sent
		if !resp.Truncated || resp.Len() > maxUDPSize {
			t.Errorf("TC %v, %d bytes; want TC and at most %d bytes", resp.Truncated, resp.Len(), maxUDPSize)
		}
	})
	t.Run("TCP returns all values", func(t *testing.T) {
		resp := exchange(t, "tcp", srv.Addr(), question("toomany."+testZone, dns.TypeTXT))
		if got := txtValues(resp.Answer); !slices.Equal(got, tooMany) || resp.Truncated {
			t.Errorf("values %q (TC %v), want %q", got, resp.Truncated, tooMany)
		}
	})
}

func lengths(ss []string) []int {
	out := make([]int, len(ss))
	for i, s := range ss {
		out[i] = len(s)
	}
	return out
}

// TestServerRejects sends raw packets the server must refuse before its
// handler sees them.
func TestServerRejects(t *testing.T) {
	srv := startServer(t, newTestStore(t, nil))
	tests := []struct {
		name  string
		build func() *dns.Msg
		rcode int
	}{
		{
			name:  "UPDATE opcode is NOTIMP",
			build: func() *dns.Msg { m := question(testZone, dns.TypeSOA); m.Opcode = dns.OpcodeUpdate; return m },
			rcode: dns.RcodeNotImplemented,
		},
		{
			name:  "NOTIFY opcode is NOTIMP",
			build: func() *dns.Msg { m := question(testZone, dns.TypeSOA); m.Opcode = dns.OpcodeNotify; return m },
			rcode: dns.RcodeNotImplemented,
		},
		{
			name: "two questions are FORMERR",
			build: func() *dns.Msg {
				m := question(testZone, dns.TypeTXT)
				m.Question = append(m.Question, m.Question[0])
				return m
			},
			rcode: dns.RcodeFormatError,
		},
		{
			name:  "no question is FORMERR",
			build: func() *dns.Msg { m := question(testZone, dns.TypeTXT); m.Question = nil; return m },
			rcode: dns.RcodeFormatError,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.build()
			m.Id = 4242
			b, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			conn, err := net.Dial("udp", srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			if err := conn.SetDeadline(time.Now().Add(waitTimeout)); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write(b); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 512)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("reading answer: %v", err)
			}
			resp := new(dns.Msg)
			if err := resp.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			if resp.Id != 4242 || resp.Rcode != tt.rcode {
				t.Errorf("answer id %d rcode %s, want 4242 %s", resp.Id, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
		})
	}
}

// TestHandler calls the handler directly with queries the server would
// filter out, to show the handler copes with them on its own.
func TestHandler(t *testing.T) {
	h := newTestHandler(t, newTestStore(t, nil))
	tests := []struct {
		name  string
		build func() *dns.Msg
		rcode int // -1: no answer at all
		opt   bool
	}{
		{
			// Answering answers would let two servers ping-pong forever.
			name:  "a response gets no answer",
			build: func() *dns.Msg { m := question(testZone, dns.TypeSOA); m.Response = true; return m },
			rcode: -1,
		},
		{
			name:  "a nil message gets no answer",
			build: func() *dns.Msg { return nil },
			rcode: -1,
		},
		{
			name:  "NOTIFY opcode is NOTIMP",
			build: func() *dns.Msg { m := question(testZone, dns.TypeSOA); m.Opcode = dns.OpcodeNotify; return m },
			rcode: dns.RcodeNotImplemented,
		},
		{
			name:  "no question is FORMERR",
			build: func() *dns.Msg { m := question(testZone, dns.TypeSOA); m.Question = nil; return m },
			rcode: dns.RcodeFormatError,
		},
		{
			name: "two OPT records are FORMERR",
			build: func() *dns.Msg {
				m := question(testZone, dns.TypeSOA)
				m.SetEdns0(1232, false)
				m.Extra = append(m.Extra, m.Extra[0])
				return m
			},
			rcode: dns.RcodeFormatError,
		},
		{
			name: "EDNS version 1 is BADVERS with OPT",
			build: func() *dns.Msg {
				m := question(testZone, dns.TypeSOA)
				m.SetEdns0(1232, false)
				m.Extra[0].(*dns.OPT).SetVersion(1)
				return m
			},
			rcode: dns.RcodeBadVers,
			opt:   true,
		},
		{
			name:  "OPT as question type is FORMERR",
			build: func() *dns.Msg { return question(testZone, dns.TypeOPT) },
			rcode: dns.RcodeFormatError,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := serve(t, h, tt.build(), true)
			if tt.rcode == -1 {
				if resp != nil {
					t.Errorf("answered %v, want no answer", resp)
				}
				return
			}
			if resp == nil {
				t.Fatal("no answer")
			}
			if resp.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if (resp.IsEdns0() != nil) != tt.opt {
				t.Errorf("OPT in answer: %v, want %v", resp.IsEdns0() != nil, tt.opt)
			}
			if resp.RecursionAvailable {
				t.Error("RA set")
			}
		})
	}
}

// TestHandlerEscapesValues guards the TXT encoding of values that the
// httpreq handler would refuse but the Store takes.
func TestHandlerEscapesValues(t *testing.T) {
	store := newTestStore(t, nil)
	value := "a\"b\\c d\x00\xff"
	if err := store.Present(testZone, value); err != nil {
		t.Fatal(err)
	}
	resp := serve(t, newTestHandler(t, store), question(testZone, dns.TypeTXT), false)
	if resp == nil || len(resp.Answer) != 1 {
		t.Fatalf("answer %v, want one TXT", resp)
	}
	// Unpacking escapes again; the wire bytes are what count.
	b, err := resp.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), string([]byte{byte(len(value))})+value) {
		t.Errorf("packed answer does not hold the raw value %q", value)
	}
}

func TestAcceptQuery(t *testing.T) {
	const qr = 1 << 15
	tests := []struct {
		name string
		hdr  dns.Header
		want dns.MsgAcceptAction
	}{
		{name: "one question is accepted", hdr: dns.Header{Qdcount: 1}, want: dns.MsgAccept},
		{name: "one question with OPT is accepted", hdr: dns.Header{Qdcount: 1, Arcount: 1}, want: dns.MsgAccept},
		{name: "a response is ignored", hdr: dns.Header{Bits: qr, Qdcount: 1}, want: dns.MsgIgnore},
		{name: "NOTIFY is not implemented", hdr: dns.Header{Bits: dns.OpcodeNotify << 11, Qdcount: 1}, want: dns.MsgRejectNotImplemented},
		{name: "no question is rejected", hdr: dns.Header{}, want: dns.MsgReject},
		{name: "answer records are rejected", hdr: dns.Header{Qdcount: 1, Ancount: 1}, want: dns.MsgReject},
		{name: "huge counts are rejected", hdr: dns.Header{Qdcount: 1, Arcount: 65535}, want: dns.MsgReject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := acceptQuery(tt.hdr); got != tt.want {
				t.Errorf("acceptQuery(%+v) = %v, want %v", tt.hdr, got, tt.want)
			}
		})
	}
}

// TestWireMatchesHandler guards the UDP fast path: for each query, the
// answer from raw bytes (first building, then hitting the cache) must be
// the Handler's answer.
func TestWireMatchesHandler(t *testing.T) {
	store := newTestStore(t, nil)
	for _, p := range [][2]string{
		{testZone, acmeValue}, {testZone, acmeValue2},
		{"long." + testZone, strings.Repeat("y", 300)},
		{"x.deep." + testZone, acmeValue},
	} {
		if err := store.Present(p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if err := store.Present("many."+testZone, strings.Repeat(string(rune('a'+i)), 43)); err != nil {
			t.Fatal(err)
		}
	}
	h := newTestHandler(t, store)
	edns := func(m *dns.Msg, do bool) *dns.Msg { m.SetEdns0(1232, do); return m }
	tests := []struct {
		name  string
		query *dns.Msg
	}{
		{name: "TXT at the apex", query: question(testZone, dns.TypeTXT)},
		{name: "TXT with mixed case", query: question("_Acme-CHALLENGE.gw.Example.", dns.TypeTXT)},
		{name: "TXT with EDNS", query: edns(question(testZone, dns.TypeTXT), false)},
		{name: "TXT with EDNS and DO", query: edns(question(testZone, dns.TypeTXT), true)},
		{name: "SOA", query: question(testZone, dns.TypeSOA)},
		{name: "NS in upper case", query: question(strings.ToUpper(testZone), dns.TypeNS)},
		{name: "NODATA", query: question(testZone, dns.TypeAAAA)},
		{name: "empty non-terminal", query: question("deep."+testZone, dns.TypeTXT)},
		{name: "NXDOMAIN", query: question("none."+testZone, dns.TypeTXT)},
		{name: "REFUSED outside", query: question("gw.example.", dns.TypeTXT)},
		{name: "long value", query: edns(question("long."+testZone, dns.TypeTXT), false)},
		{name: "truncated answer", query: question("many."+testZone, dns.TypeTXT)},
		{name: "ANY", query: question(testZone, dns.TypeANY)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.query.Id = 777
			tt.query.RecursionDesired = true
			tt.query.CheckingDisabled = true
			raw, err := tt.query.Pack()
			if err != nil {
				t.Fatal(err)
			}
			want := serve(t, h, tt.query, true)
			for _, pass := range []string{"first", "cached"} {
				out, o := h.appendAnswer(nil, raw, true)
				got := new(dns.Msg)
				if err := got.Unpack(out); err != nil {
					t.Fatalf("%s: unpacking: %v", pass, err)
				}
				if g, w := strings.ToLower(got.String()), strings.ToLower(want.String()); g != w {
					t.Errorf("%s: wire answer\n%s\nhandler answer\n%s", pass, got, want)
				}
				if got.Question[0].Name != tt.query.Question[0].Name {
					t.Errorf("%s: question %q, want %q as asked", pass, got.Question[0].Name, tt.query.Question[0].Name)
				}
				// The cache keeps the rcode to count with its answer.
				if want := (outcome{typeOf(tt.query.Question[0].Qtype), resultOf(want.Rcode)}); o != want {
					t.Errorf("%s: counted as %s/%s, want %s/%s", pass, queryTypeNames[o.qtype], queryResultNames[o.result],
						queryTypeNames[want.qtype], queryResultNames[want.result])
				}
				for _, rr := range got.Answer {
					if rr.Header().Name != tt.query.Question[0].Name {
						t.Errorf("%s: answer owner %q, want %q as asked", pass, rr.Header().Name, tt.query.Question[0].Name)
					}
				}
			}
		})
	}
}

// TestWireHeaderChecks covers the answers the UDP path gives before any
// unpacking.
func TestWireHeaderChecks(t *testing.T) {
	h := newTestHandler(t, newTestStore(t, nil))
	valid, err := question(testZone, dns.TypeTXT).Pack()
	if err != nil {
		t.Fatal(err)
	}
	with := func(mod func(b []byte)) []byte {
		b := append([]byte(nil), valid...)
		mod(b)
		return b
	}
	tests := []struct {
		name  string
		query []byte
		rcode int // -1: no answer
	}{
		{name: "shorter than a header gets nothing", query: valid[:11], rcode: -1},
		{name: "a response gets nothing", query: with(func(b []byte) { b[2] |= flagQR }), rcode: -1},
		{name: "UPDATE is NOTIMP", query: with(func(b []byte) { b[2] |= dns.OpcodeUpdate << 3 }), rcode: dns.RcodeNotImplemented},
		{name: "two questions are FORMERR", query: with(func(b []byte) { b[5] = 2 }), rcode: dns.RcodeFormatError},
		{name: "a name cut short is FORMERR", query: valid[:len(valid)-10], rcode: dns.RcodeFormatError},
		{name: "a compression loop is FORMERR", query: append(header(9, 0, 1, 0, 0, 0), 0xc0, 12, 0, 16, 0, 1), rcode: dns.RcodeFormatError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, o := h.appendAnswer(nil, tt.query, true)
			// The question is not read: every one counts as type none.
			want := outcome{typeNone, resultDropped}
			if tt.rcode != -1 {
				want.result = resultOf(tt.rcode)
			}
			if o != want {
				t.Errorf("counted as %s/%s, want %s/%s", queryTypeNames[o.qtype], queryResultNames[o.result],
					queryTypeNames[want.qtype], queryResultNames[want.result])
			}
			if tt.rcode == -1 {
				if out != nil {
					t.Errorf("answered %x, want nothing", out)
				}
				return
			}
			m := new(dns.Msg)
			if err := m.Unpack(out); err != nil {
				t.Fatal(err)
			}
			if m.Id != uint16(tt.query[0])<<8|uint16(tt.query[1]) {
				t.Errorf("id %d not copied", m.Id)
			}
			if m.Rcode != tt.rcode || !m.Response || m.Authoritative || m.RecursionAvailable {
				t.Errorf("answer %v, want %s with QR, no AA, no RA", m.MsgHdr, dns.RcodeToString[tt.rcode])
			}
		})
	}
}

// BenchmarkAppendAnswer measures the UDP path for the query ACME
// validation sends, cached.
func BenchmarkAppendAnswer(b *testing.B) {
	store := newTestStore(b, nil)
	if err := store.Present(testZone, acmeValue); err != nil {
		b.Fatal(err)
	}
	h := newTestHandler(b, store)
	raw, err := question("_acme-CHALLENGE.gw.example.", dns.TypeTXT).Pack()
	if err != nil {
		b.Fatal(err)
	}
	out := make([]byte, 0, 2048)
	var o outcome
	b.ReportAllocs()
	for b.Loop() {
		// As the UDP loop does: answer, then count.
		out, o = h.appendAnswer(out[:0], raw, true)
		h.metrics.count(o)
	}
}

// BenchmarkServeDNS measures the Handler as miekg/dns calls it (TCP).
func BenchmarkServeDNS(b *testing.B) {
	store := newTestStore(b, nil)
	if err := store.Present(testZone, acmeValue); err != nil {
		b.Fatal(err)
	}
	h := newTestHandler(b, store)
	q := question("_acme-CHALLENGE.gw.example.", dns.TypeTXT)
	w := newRecorder(false)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeDNS(w, q)
		w.written = w.written[:0]
	}
}
