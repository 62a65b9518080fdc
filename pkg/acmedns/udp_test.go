package acmedns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"golang.org/x/net/ipv4"
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

// TestServerDropsAnswersItCannotSend guards the UDP write loop against an
// answer the kernel refuses: one query forged from source port 0 (sendmmsg
// fails with EINVAL on the first answer of its batch) made the loop resend
// that answer forever, a core spinning and no query answered again.
func TestServerDropsAnswersItCannotSend(t *testing.T) {
	// The bound is far above what an idle server uses and far below the
	// second of CPU time a spinning loop burns.
	const window, maxCPU = time.Second, 100 * time.Millisecond
	for _, address := range []string{"127.0.0.1:0", "0.0.0.0:0", ":0"} { // one address, IPv4, dual stack
		t.Run(address, func(t *testing.T) {
			srv := startServerConfig(t, Config{Domain: testDomain, Address: address, Store: newTestStore(t, nil), Logger: zerolog.Nop()})
			port := netip.MustParseAddrPort(srv.Addr()).Port()
			server := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
			forged := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0)
			query := packed(t, question(testZone, dns.TypeSOA))

			start := cpuTime(t)
			end := time.Now().Add(window)
			for round := 0; round == 0 || time.Now().Before(end); round++ {
				sendRawUDP(t, forged, server, query)
				// Answered within a second, though a forged query came first.
				c := &dns.Client{Net: "udp", Timeout: time.Second}
				resp, _, err := c.Exchange(question(testZone, dns.TypeSOA), server.String())
				if err != nil {
					t.Fatalf("round %d: query after a forged one: %v", round, err)
				}
				if resp.Rcode != dns.RcodeSuccess {
					t.Fatalf("round %d: rcode %s", round, dns.RcodeToString[resp.Rcode])
				}
				time.Sleep(window / 10) // pace the rounds over the window
			}
			used := cpuTime(t) - start
			t.Logf("CPU time used in %v: %v", window, used)
			if used > maxCPU {
				t.Errorf("process used %v of CPU time in %v after forged queries, want at most %v: the UDP loop spins", used, window, maxCPU)
			}
		})
	}
}

// sendRawUDP sends payload from src to dst, both IPv4, in an IPv4+UDP
// packet built by hand on a raw socket: the only way to forge the source
// port.
func sendRawUDP(tb testing.TB, src, dst netip.AddrPort, payload []byte) {
	tb.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW) // IP_HDRINCL implied
	if errors.Is(err, syscall.EPERM) {
		tb.Skipf("forging packets needs CAP_NET_RAW: %v", err)
	}
	if err != nil {
		tb.Fatalf("opening raw socket: %v", err)
	}
	defer syscall.Close(fd)
	const ipLen, udpLen = 20, 8
	pkt := make([]byte, ipLen+udpLen+len(payload))
	pkt[0] = 4<<4 | ipLen/4 // version, header length in words
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	pkt[8] = 64 // TTL
	pkt[9] = syscall.IPPROTO_UDP
	// The kernel fills in the ID and the header checksum (raw(7)).
	src4, dst4 := src.Addr().As4(), dst.Addr().As4()
	copy(pkt[12:16], src4[:])
	copy(pkt[16:20], dst4[:])
	udp := pkt[ipLen:]
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen+len(payload)))
	// Checksum 0: none, which IPv4 allows (RFC 768).
	copy(udp[udpLen:], payload)
	if err := syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet4{Addr: dst4}); err != nil {
		tb.Fatalf("sending raw packet to %s: %v", dst, err)
	}
}

// cpuTime returns the user and system CPU time the test process used so
// far, all threads together.
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestWriteAll guards the progress of the UDP write loop whatever the
// writer answers: each message is sent or dropped once, in order, and the
// writer is called at most once per message.
func TestWriteAll(t *testing.T) {
	errRefused := errors.New("refused")
	// Messages to port 0 are the ones the "kernel" refuses.
	refused := func(m *ipv4.Message) bool { return m.Addr.(*net.UDPAddr).Port == 0 }
	// sendmmsg sends up to the first refused message; when that is the
	// first, it says -1.
	sendmmsg := func(ms []ipv4.Message) (int, error) {
		for i := range ms {
			if refused(&ms[i]) {
				if i == 0 {
					return -1, errRefused
				}
				return i, nil
			}
		}
		return len(ms), nil
	}
	tests := []struct {
		name  string
		ports []int // of the messages, in order
		write func(ms []ipv4.Message) (int, error)
		// wantSent are the ports sent; the others are dropped.
		wantSent []int
		wantErr  error // of the drops
	}{
		{
			// The regression: -1 for a refused first message looped forever.
			name: "refused first message is dropped", ports: []int{0, 1, 2},
			write: sendmmsg, wantSent: []int{1, 2}, wantErr: errRefused,
		},
		{
			name: "refused messages in the middle and at the end are dropped", ports: []int{1, 0, 2, 0, 0, 3, 0},
			write: sendmmsg, wantSent: []int{1, 2, 3}, wantErr: errRefused,
		},
		{name: "all sent", ports: []int{1, 2, 3}, write: sendmmsg, wantSent: []int{1, 2, 3}},
		{name: "all refused", ports: []int{0, 0, 0}, write: sendmmsg, wantErr: errRefused},
		{
			// WriteBatch off Linux: one message per call, 0 and an error
			// when it fails.
			name: "one at a time", ports: []int{0, 1, 0, 2},
			write: func(ms []ipv4.Message) (int, error) {
				if refused(&ms[0]) {
					return 0, errRefused
				}
				return 1, nil
			},
			wantSent: []int{1, 2}, wantErr: errRefused,
		},
		{
			name: "partial writes are resumed", ports: []int{1, 2, 3, 4, 5},
			write:    func(ms []ipv4.Message) (int, error) { return min(len(ms), 2), nil },
			wantSent: []int{1, 2, 3, 4, 5},
		},
		{
			name: "a writer that sends nothing and says nothing cannot stall it", ports: []int{1, 2, 3},
			write:   func([]ipv4.Message) (int, error) { return 0, nil },
			wantErr: errNoProgress,
		},
		{
			name: "a writer that fails every call cannot stall it", ports: []int{1, 2, 3},
			write:   func([]ipv4.Message) (int, error) { return -1, errRefused },
			wantErr: errRefused,
		},
		{
			name: "a count beyond the batch is taken as all sent", ports: []int{1, 2},
			write:    func(ms []ipv4.Message) (int, error) { return len(ms) + 5, nil },
			wantSent: []int{1, 2},
		},
		{name: "empty batch", write: sendmmsg},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := make([]ipv4.Message, len(tt.ports))
			for i, p := range tt.ports {
				ms[i].Addr = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p}
			}
			var sent, dropped []int
			calls := 0
			write := func(ms []ipv4.Message) (int, error) {
				calls++
				if calls > len(tt.ports) {
					t.Fatalf("write called %d times for %d messages", calls, len(tt.ports))
				}
				n, err := tt.write(ms)
				for i := range min(max(n, 0), len(ms)) {
					sent = append(sent, ms[i].Addr.(*net.UDPAddr).Port)
				}
				return n, err
			}
			writeAll(ms, write, func(m *ipv4.Message, err error) {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("dropped with %v, want %v", err, tt.wantErr)
				}
				dropped = append(dropped, m.Addr.(*net.UDPAddr).Port)
			})
			if !slices.Equal(sent, tt.wantSent) {
				t.Errorf("sent %v, want %v", sent, tt.wantSent)
			}
			if len(sent)+len(dropped) != len(tt.ports) {
				t.Errorf("sent %v and dropped %v of %v", sent, dropped, tt.ports)
			}
		})
	}
}

// TestRateLog guards the bound on log lines of events anyone can cause.
func TestRateLog(t *testing.T) {
	var r rateLog
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	if n, ok := r.note(now); !ok || n != 1 {
		t.Errorf("first event: %d, %v; want a line for 1", n, ok)
	}
	for i := range 1000 {
		if _, ok := r.note(now.Add(time.Duration(i) * time.Millisecond)); ok {
			t.Fatalf("event %d within the interval logged", i)
		}
	}
	if n, ok := r.note(now.Add(rateLogInterval)); !ok || n != 1001 {
		t.Errorf("event after the interval: %d, %v; want a line for 1001", n, ok)
	}
}
