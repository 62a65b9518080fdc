package acmedns

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

// packed returns the wire form of m, for seeds.
func packed(tb testing.TB, m *dns.Msg) []byte {
	tb.Helper()
	b, err := m.Pack()
	if err != nil {
		tb.Fatalf("packing seed: %v", err)
	}
	return b
}

// header returns a bare 12-byte DNS header with the given counts.
func header(id, bits, qd, an, ns, ar uint16) []byte {
	b := make([]byte, 12)
	for i, v := range []uint16{id, bits, qd, an, ns, ar} {
		binary.BigEndian.PutUint16(b[2*i:], v)
	}
	return b
}

// FuzzHandler feeds arbitrary packets, through the same Unpack the server
// uses, to the Handler over UDP and TCP: it must never panic, and whatever
// it writes must be one well-formed answer to the query that fits the
// transport.
func FuzzHandler(f *testing.F) {
	withEDNS := func(m *dns.Msg, size uint16, do bool) *dns.Msg { m.SetEdns0(size, do); return m }
	valid := packed(f, question(testZone, dns.TypeTXT))
	f.Add(valid)
	f.Add(packed(f, withEDNS(question(testZone, dns.TypeTXT), 1232, true)))
	f.Add(packed(f, withEDNS(question("many."+testZone, dns.TypeTXT), 512, false)))
	f.Add(packed(f, question("_ACME-CHALLENGE.gw.EXAMPLE.", dns.TypeANY)))
	f.Add(packed(f, question("nothing."+testZone, dns.TypeA)))
	f.Add(packed(f, question("example.com.", dns.TypeNS)))
	f.Add(packed(f, question(`a\.b\\.`+testZone, dns.TypeTXT)))
	f.Add(packed(f, question(testZone, dns.TypeAXFR)))
	f.Add(packed(f, question(testZone, dns.TypeOPT)))
	badVers := withEDNS(question(testZone, dns.TypeSOA), 4096, false)
	badVers.Extra[0].(*dns.OPT).SetVersion(3)
	f.Add(packed(f, badVers))
	twoOPT := withEDNS(question(testZone, dns.TypeSOA), 4096, false)
	twoOPT.Extra = append(twoOPT.Extra, twoOPT.Extra[0])
	f.Add(packed(f, twoOPT))
	withOptions := withEDNS(question(testZone, dns.TypeTXT), 1232, false)
	withOptions.Extra[0].(*dns.OPT).Option = []dns.EDNS0{
		&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"},
		&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{192, 0, 2, 0}},
	}
	f.Add(packed(f, withOptions))
	resp := question(testZone, dns.TypeSOA)
	resp.Response = true
	f.Add(packed(f, resp))
	notify := question(testZone, dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	f.Add(packed(f, notify))
	// Truncated packets.
	f.Add(valid[:5])
	f.Add(valid[:12])
	f.Add(valid[:len(valid)-1])
	// A name that points at itself (compression loop) and a forward
	// pointer.
	f.Add(append(header(1, 0, 1, 0, 0, 0), 0xc0, 12, 0, 16, 0, 1))
	f.Add(append(header(1, 0, 1, 0, 0, 0), 0xc0, 20, 0, 16, 0, 1))
	// Huge counts with little behind them.
	f.Add(append(header(1, 0, 0xffff, 0xffff, 0xffff, 0xffff), valid[12:]...))
	f.Add(append(header(1, 0, 0, 0, 0, 0), valid[12:]...))
	f.Add(append(header(1, 0, 2, 0, 0, 0), append(valid[12:], valid[12:]...)...))

	store := newTestStore(f, nil)
	for _, p := range [][2]string{
		{testZone, acmeValue}, {testZone, acmeValue2},
		{"long." + testZone, strings.Repeat("x", 600)},
	} {
		if err := store.Present(p[0], p[1]); err != nil {
			f.Fatal(err)
		}
	}
	for i := range 30 {
		if err := store.Present("many."+testZone, strings.Repeat(string(rune('a'+i%26)), 40+i)); err != nil {
			f.Fatal(err)
		}
	}
	h := newTestHandler(f, store)

	f.Fuzz(func(t *testing.T, data []byte) {
		// The UDP path of the Server: raw bytes in, raw bytes out.
		wire, o := h.appendAnswer(nil, data, true)
		if wire == nil && o.result != resultDropped {
			t.Fatalf("no answer counted as %s", queryResultNames[o.result])
		}
		if wire != nil {
			if len(wire) > maxUDPSize {
				t.Fatalf("udp answer of %d bytes", len(wire))
			}
			m := new(dns.Msg)
			if err := m.Unpack(wire); err != nil {
				t.Fatalf("wire answer does not unpack: %v", err)
			}
			// Counted as answered, with the answer's rcode and question.
			if o.result != resultOf(m.Rcode) {
				t.Fatalf("answer %s counted as %s", dns.RcodeToString[m.Rcode], queryResultNames[o.result])
			}
			if o.qtype != typeNone && typeOfMsg(m) != o.qtype {
				t.Fatalf("answer to %v counted as type %s", m.Question, queryTypeNames[o.qtype])
			}
		}

		req := new(dns.Msg)
		if err := req.Unpack(data); err != nil {
			return // the server drops these before the handler
		}
		var slowUDP *dns.Msg
		for _, udp := range []bool{true, false} {
			w := newRecorder(udp)
			h.ServeDNS(w, req)
			if len(w.written) > 1 {
				t.Fatalf("udp=%v: %d messages written", udp, len(w.written))
			}
			if len(w.written) == 0 {
				if !req.Response {
					t.Fatalf("udp=%v: no answer to a query", udp)
				}
				continue
			}
			out := w.written[0]
			if udp && len(out) > maxUDPSize {
				t.Fatalf("udp answer of %d bytes", len(out))
			}
			resp := new(dns.Msg)
			if err := resp.Unpack(out); err != nil {
				t.Fatalf("udp=%v: answer does not unpack: %v", udp, err)
			}
			if resp.Id != req.Id || !resp.Response || resp.RecursionAvailable {
				t.Fatalf("udp=%v: answer header %+v to query %+v", udp, resp.MsgHdr, req.MsgHdr)
			}
			if resp.Authoritative && resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
				t.Fatalf("udp=%v: AA with rcode %s", udp, dns.RcodeToString[resp.Rcode])
			}
			if udp {
				slowUDP = resp
			}
		}

		// Where the header passes the server's check, the wire path (cache
		// included) must say what the handler says; names compare without
		// case, as DNS does.
		dh := dns.Header{Id: req.Id, Bits: binary.BigEndian.Uint16(data[2:]), Qdcount: binary.BigEndian.Uint16(data[4:]),
			Ancount: binary.BigEndian.Uint16(data[6:]), Nscount: binary.BigEndian.Uint16(data[8:]), Arcount: binary.BigEndian.Uint16(data[10:])}
		if acceptQuery(dh) != dns.MsgAccept {
			return
		}
		if (wire == nil) != (slowUDP == nil) {
			t.Fatalf("wire path answered %v, handler answered %v", wire != nil, slowUDP != nil)
		}
		if wire == nil {
			return
		}
		fast := new(dns.Msg)
		if err := fast.Unpack(wire); err != nil {
			t.Fatal(err)
		}
		if f, s := strings.ToLower(fast.String()), strings.ToLower(slowUDP.String()); f != s {
			t.Fatalf("wire path answer\n%s\ndiffers from the handler's\n%s", fast, slowUDP)
		}
		if fast.Question != nil && slowUDP.Question != nil && fast.Question[0].Name != slowUDP.Question[0].Name {
			t.Fatalf("wire path question %q, handler %q: the case must come back as asked", fast.Question[0].Name, slowUDP.Question[0].Name)
		}
	})
}

// FuzzIsBelowOrAt checks the zone test the handler uses against
// miekg/dns's own, on names in the form the handler gets them (unpacked).
func FuzzIsBelowOrAt(f *testing.F) {
	for _, s := range []string{
		testZone, "a." + testZone, "gw.example.", `x\._acme-challenge.gw.example.`,
		`x\\._acme-challenge.gw.example.`, "x_acme-challenge.gw.example.", `a\046` + testZone, ".",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		buf := make([]byte, 256)
		n, err := dns.PackDomainName(dns.Fqdn(s), buf, 0, nil, false)
		if err != nil {
			return
		}
		name, _, err := dns.UnpackDomainName(buf[:n], 0)
		if err != nil {
			return
		}
		name = strings.ToLower(name)
		if got, want := isBelowOrAt(name, testZone), dns.IsSubDomain(testZone, name); got != want {
			t.Fatalf("isBelowOrAt(%q) = %v, dns.IsSubDomain says %v", name, got, want)
		}
	})
}

// FuzzHTTPReqBody feeds arbitrary bodies to the httpreq handler: it must
// never panic, answer only 200, 400 or 413, and store exactly a valid value
// at a canonical name in the zone when it says 200.
func FuzzHTTPReqBody(f *testing.F) {
	for _, s := range []string{
		body(testZone, acmeValue),
		body("_ACME-challenge.GW.example", acmeValue),
		body("sub."+testZone, acmeValue),
		body("gw.example.", acmeValue),
		body(testZone, ""),
		body(testZone, `a\"b`),
		body(testZone, `\u0000`),
		body(`x\\.`+testZone, acmeValue),
		`{"fqdn":"` + testZone + `","value":"v","extra":1}`,
		`{"fqdn":"` + testZone + `","value":"v"} trailing`,
		`{"fqdn":1}`, `[]`, `null`, `{`, ``, `{"FQDN":"` + testZone + `","VALUE":"v"}`,
		`{"fqdn":"` + testZone + `","value":"v","fqdn":"example.com."}`,
		body(testZone, strings.Repeat("a", 5000)),
	} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, present bool) {
		store := newTestStore(t, nil)
		h := newTestHTTPReq(t, store)
		path := "/cleanup"
		if present {
			path = "/present"
		}
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(data))
		req.SetBasicAuth(testUser, testPass)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for body %q", rec.Code, data)
		}
		if rec.Code != http.StatusOK || !present {
			return
		}
		var b httpreqBody
		// encoding/json matches keys case-insensitively, as the handler.
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatalf("accepted a body encoding/json refuses: %v", err)
		}
		name := CanonicalName(b.FQDN)
		if !isBelowOrAt(name, testZone) || checkValue(b.Value) != nil {
			t.Fatalf("accepted fqdn %q value %q", b.FQDN, b.Value)
		}
		if got := values(store, name); !slices.Equal(got, []string{b.Value}) {
			t.Fatalf("store holds %q at %q, want %q", got, name, b.Value)
		}
	})
}

// FuzzCheckDomain guards the bound checkDomain adds to dnsname's: every
// domain it accepts has a challenge zone that is a valid name of at most
// 255 bytes in wire form, so that the Handler can serve it.
func FuzzCheckDomain(f *testing.F) {
	for _, s := range []string{
		// Two trailing dots make an empty label, whichever check trims one.
		"gw.example..", "..",
		testDomain, "GW.Example.", "", ".", "localhost", "*.gw.example", "g_w.example", "1.2.3.4",
		strings.Repeat("a", 63) + ".example", strings.Repeat("abcdefghi.", 23) + "abcdefg",
		strings.Repeat("abcdefghi.", 23) + "abcdefgh", strings.Repeat("abcdefghi.", 25) + "example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, domain string) {
		if checkDomain(domain) != nil {
			return
		}
		zone := ChallengeZone(domain)
		if n, ok := dns.IsDomainName(zone); !ok || n < 3 {
			t.Fatalf("checkDomain accepted %q, whose zone %q is not a domain name", domain, zone)
		}
		buf := make([]byte, 256)
		if _, err := dns.PackDomainName(zone, buf, 0, nil, false); err != nil {
			t.Fatalf("checkDomain accepted %q, whose zone %q does not pack: %v", domain, zone, err)
		}
		if _, err := NewHandler(HandlerConfig{Domain: domain, Store: newTestStore(t, nil), Logger: zerolog.Nop()}); err != nil {
			t.Fatalf("checkDomain accepted %q, NewHandler refused it: %v", domain, err)
		}
	})
}
