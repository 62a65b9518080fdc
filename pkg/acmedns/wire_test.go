package acmedns

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

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
				out := h.appendAnswer(nil, raw, true)
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
			out := h.appendAnswer(nil, tt.query, true)
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

// TestServerAnswersFromTheQueriedAddress guards the packet-info path of a
// server bound to all addresses: a client that sent to 127.0.0.2 accepts
// only an answer from 127.0.0.2.
func TestServerAnswersFromTheQueriedAddress(t *testing.T) {
	for _, address := range []string{"0.0.0.0:0", ":0"} { // IPv4, dual stack
		t.Run(address, func(t *testing.T) {
			srv, err := New(Config{Domain: testDomain, Address: address, Store: newTestStore(t, nil), Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			errs := make(chan error, 1)
			go func() { errs <- srv.Run(t.Context()) }()
			t.Cleanup(func() {
				srv.Close()
				if err := <-errs; err != nil {
					t.Errorf("Run: %v", err)
				}
			})
			select {
			case <-srv.Ready():
			case err := <-errs:
				t.Fatalf("Run: %v", err)
			case <-time.After(waitTimeout):
				t.Fatal("not ready")
			}
			_, port, err := net.SplitHostPort(srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
				c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
				resp, _, err := c.Exchange(question(testZone, dns.TypeSOA), net.JoinHostPort(ip, port))
				if err != nil {
					t.Errorf("asking %s: %v", ip, err)
					continue
				}
				if resp.Rcode != dns.RcodeSuccess {
					t.Errorf("asking %s: rcode %s", ip, dns.RcodeToString[resp.Rcode])
				}
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
	b.ReportAllocs()
	for b.Loop() {
		out = h.appendAnswer(out[:0], raw, true)
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

// TestServerConcurrentClients guards the batched UDP path: answers read
// and written many at a time must each reach the client that asked, with
// the answer to its own question.
func TestServerConcurrentClients(t *testing.T) {
	store := newTestStore(t, nil)
	const clients, queries = 16, 25
	for i := range clients {
		if err := store.Present(fmt.Sprintf("c%d.%s", i, testZone), fmt.Sprintf("value-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	srv := startServer(t, store)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			conn, err := net.Dial("udp", srv.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			c := &dns.Conn{Conn: conn}
			name := fmt.Sprintf("C%d.%s", i, testZone)
			// Send them all first, so that they queue up and are read in
			// batches, then read the answers.
			for j := range queries {
				q := question(name, dns.TypeTXT)
				q.Id = uint16(i*1000 + j)
				if err := c.WriteMsg(q); err != nil {
					t.Error(err)
					return
				}
			}
			if err := conn.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
				t.Error(err)
				return
			}
			seen := make(map[uint16]bool)
			for range queries {
				resp, err := c.ReadMsg()
				if err != nil {
					t.Errorf("client %d: %v (after %d answers)", i, err, len(seen))
					return
				}
				want := fmt.Sprintf("value-%d", i)
				if got := txtValues(resp.Answer); len(got) != 1 || got[0] != want || resp.Question[0].Name != name {
					t.Errorf("client %d: answer %q to %q, want %q", i, got, resp.Question[0].Name, want)
				}
				seen[resp.Id] = true
			}
			if len(seen) != queries {
				t.Errorf("client %d: %d distinct ids, want %d", i, len(seen), queries)
			}
		})
	}
	wg.Wait()
}
