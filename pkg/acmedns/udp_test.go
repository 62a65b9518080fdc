package acmedns

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

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
