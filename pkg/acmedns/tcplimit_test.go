package acmedns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Environment of the test binary run as a child process of
// TestServerKeepsDescriptorsForTheGateway: it then opens TCP connections to
// the server instead of running tests.
const (
	tcpClientsAddrEnv  = "ACMEDNS_TEST_TCP_CLIENTS_ADDR"
	tcpClientsCountEnv = "ACMEDNS_TEST_TCP_CLIENTS_COUNT"
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(tcpClientsAddrEnv); addr != "" {
		os.Exit(runTCPClients(addr, os.Getenv(tcpClientsCountEnv)))
	}
	os.Exit(m.Run())
}

// probeOutcome is what became of a TCP connection that sent one query.
type probeOutcome int

const (
	probeAnswered probeOutcome = iota
	probeClosed                // by the server, without an answer
	probeOpen                  // neither answered nor closed in time
)

func (o probeOutcome) String() string {
	return [...]string{"answered", "closed", "open"}[o]
}

// probeTCP connects to server from the local address src, sends a query
// and waits at most wait for the answer. It returns the connection, left
// open, and what became of it.
func probeTCP(server string, src netip.Addr, wait time.Duration) (net.Conn, probeOutcome, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: wait}
	c, err := d.Dial("tcp", server)
	if err != nil {
		return nil, 0, fmt.Errorf("dialing %s from %s: %w", server, src, err)
	}
	dc := &dns.Conn{Conn: c}
	if err := c.SetDeadline(time.Now().Add(wait)); err != nil {
		c.Close()
		return nil, 0, err
	}
	if err := dc.WriteMsg(question(testZone, dns.TypeSOA)); err != nil {
		return c, probeClosed, nil // the server closed it first
	}
	resp, err := dc.ReadMsg()
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return c, probeOpen, nil
	case err != nil:
		return c, probeClosed, nil // EOF or reset
	case resp.Rcode != dns.RcodeSuccess:
		c.Close()
		return nil, 0, fmt.Errorf("answer from %s: rcode %s", server, dns.RcodeToString[resp.Rcode])
	}
	return c, probeAnswered, nil
}

// loopback returns the IPv4 loopback address 127.0.x.y for n = x*256+y.
func loopback(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 0, byte(n >> 8), byte(n)})
}

// probe is a connection opened by probeAll and what became of it.
type probe struct {
	conn    net.Conn
	outcome probeOutcome
}

// probeAll opens count connections to server one after the other, from
// the sources of source(i), each sending a query. The connections stay
// open until the test ends.
func probeAll(tb testing.TB, server string, count int, source func(i int) netip.Addr) []probe {
	tb.Helper()
	out := make([]probe, count)
	for i := range count {
		// A second, far less than the timeouts that close a connection
		// admitted and idle: "closed" means refused.
		c, o, err := probeTCP(server, source(i), time.Second)
		if err != nil {
			tb.Fatalf("connection %d: %v", i, err)
		}
		tb.Cleanup(func() { c.Close() })
		out[i] = probe{conn: c, outcome: o}
	}
	return out
}

// checkProbes fails the test unless the first answered probes were
// answered and the rest closed.
func checkProbes(tb testing.TB, probes []probe, answered int) {
	tb.Helper()
	for i, p := range probes {
		want := probeAnswered
		if i >= answered {
			want = probeClosed
		}
		if p.outcome != want {
			tb.Errorf("connection %d of %d (%d to admit): %s, want %s", i, len(probes), answered, p.outcome, want)
		}
	}
}

// exchangeTCPFrom asks server over TCP from src until it answers, or fails
// the test after waitTimeout: slots are given back once the server sees
// their connections closed.
func exchangeTCPFrom(tb testing.TB, server string, src netip.Addr) {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		c, o, err := probeTCP(server, src, time.Second)
		if err != nil {
			tb.Fatal(err)
		}
		c.Close()
		if o == probeAnswered {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("tcp query from %s: %s, still after %v", src, o, waitTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServerCapsTCPConnections guards the overall cap on TCP connections:
// without one, a few hundred idle clients took the descriptors the
// gateway's route writes need.
func TestServerCapsTCPConnections(t *testing.T) {
	srv := startServer(t, newTestStore(t, nil))
	limits := srv.tcpLimits
	if limits != (tcpLimits{conns: DefaultMaxTCPConns, perSource: DefaultMaxTCPConnsPerSource}) {
		t.Logf("limits lowered to %+v by the open-file limit", limits)
	}
	// Spread over enough sources that none reaches its own cap.
	total := limits.conns + 50
	sources := 2 * ((total + limits.perSource - 1) / limits.perSource)
	probes := probeAll(t, srv.Addr(), total, func(i int) netip.Addr { return loopback(10 + i%sources) })
	checkProbes(t, probes, limits.conns)
	if t.Failed() {
		return
	}
	// UDP does not care.
	if resp := exchange(t, "udp", srv.Addr(), question(testZone, dns.TypeSOA)); resp.Rcode != dns.RcodeSuccess {
		t.Errorf("udp rcode %s while tcp is full", dns.RcodeToString[resp.Rcode])
	}
	// Once some clients leave, others get in.
	for _, p := range probes[:10] {
		p.conn.Close()
	}
	exchangeTCPFrom(t, srv.Addr(), loopback(9))
}

// TestServerCapsTCPConnectionsPerSource guards the cap per source: one
// host must not take the slots of all the others.
func TestServerCapsTCPConnectionsPerSource(t *testing.T) {
	srv := startServer(t, newTestStore(t, nil))
	perSource := srv.tcpLimits.perSource
	greedy, other := loopback(20), loopback(21)
	probes := probeAll(t, srv.Addr(), perSource+5, func(int) netip.Addr { return greedy })
	checkProbes(t, probes, perSource)
	exchangeTCPFrom(t, srv.Addr(), other)
	// The greedy source gets a slot back when it gives one up.
	probes[0].conn.Close()
	exchangeTCPFrom(t, srv.Addr(), greedy)
}

// TestServerKeepsDescriptorsForTheGateway guards the point of the caps:
// however many TCP clients come, the process keeps descriptors for the
// files the gateway writes. The open-file limit is lowered to 256 for the
// test, so the default caps must be lowered to fit; the clients run in a
// child process, so that their sockets do not count against the limit.
func TestServerKeepsDescriptorsForTheGateway(t *testing.T) {
	const nofile, clients, files = 256, 300, 20
	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	if orig.Cur < nofile {
		t.Skipf("open-file limit %d below the %d of the test", orig.Cur, nofile)
	}
	lowered := orig
	lowered.Cur = nofile
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lowered); err != nil {
		t.Fatal(err)
	}
	// Registered first, so run last: after the server and the child are
	// gone.
	t.Cleanup(func() {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restoring the open-file limit: %v", err)
		}
	})
	dir := t.TempDir()

	srv := startServer(t, newTestStore(t, nil))
	if want := (tcpLimits{conns: nofile / nofileShare, perSource: DefaultMaxTCPConnsPerSource}); srv.tcpLimits != want {
		t.Errorf("limits %+v with an open-file limit of %d, want %+v", srv.tcpLimits, nofile, want)
	}

	answered, closed, open := startTCPClients(t, srv.Addr(), clients)
	t.Logf("of %d clients: %d answered, %d closed, %d left waiting", clients, answered, closed, open)
	if answered > srv.tcpLimits.conns {
		t.Errorf("%d tcp connections answered at once, want at most %d", answered, srv.tcpLimits.conns)
	}
	// The clients hold their connections: the "gateway" still writes.
	for i := range files {
		f, err := os.CreateTemp(dir, "route-*.yaml")
		if err != nil {
			t.Fatalf("creating file %d with %d tcp clients connected: %v", i, clients, err)
		}
		_, werr := f.WriteString("http: {}\n")
		if err := errors.Join(werr, f.Close()); err != nil {
			t.Fatalf("writing file %d: %v", i, err)
		}
	}
	if resp := exchange(t, "udp", srv.Addr(), question(testZone, dns.TypeSOA)); resp.Rcode != dns.RcodeSuccess {
		t.Errorf("udp rcode %s with %d tcp clients connected", dns.RcodeToString[resp.Rcode], clients)
	}
}

// startTCPClients runs count clients of server in a child process (this
// test binary, see TestMain) until the test ends, and returns what became
// of their connections once they all know.
func startTCPClients(tb testing.TB, server string, count int) (answered, closed, open int) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), tcpClientsAddrEnv+"="+server, tcpClientsCountEnv+"="+strconv.Itoa(count))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting tcp clients: %v", err)
	}
	tb.Cleanup(func() {
		stdin.Close() // the child's cue to leave
		if err := cmd.Wait(); err != nil {
			tb.Errorf("tcp clients: %v", err)
		}
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
		io.Copy(io.Discard, stdout)
	}()
	select {
	case s := <-line:
		if _, err := fmt.Sscanf(s, "%d %d %d", &answered, &closed, &open); err != nil {
			tb.Fatalf("tcp clients said %q: %v", s, err)
		}
	case <-time.After(3 * waitTimeout):
		tb.Fatal("tcp clients did not report in time")
	}
	return answered, closed, open
}

// runTCPClients is the child process of startTCPClients: it opens count
// connections to addr at once, from many sources, each sending a query;
// prints how many were answered, closed and left waiting; and holds them
// until its standard input ends.
func runTCPClients(addr, count string) int {
	n, err := strconv.Atoi(count)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// Go raises the soft open-file limit at start, but say it.
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &rl)
	}
	var (
		mu     sync.Mutex
		counts [3]int
		conns  []net.Conn
		wg     sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			// 6 per source, below the cap per source.
			c, o, err := probeTCP(addr, loopback(256+i/6), 3*time.Second)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				o = probeOpen
			}
			mu.Lock()
			defer mu.Unlock()
			counts[o]++
			if c != nil {
				conns = append(conns, c)
			}
		})
	}
	wg.Wait()
	fmt.Printf("%d %d %d\n", counts[probeAnswered], counts[probeClosed], counts[probeOpen])
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return 0
}

// TestServerDropsIdleTCPClients guards the read timeout: a client that
// connects and sends nothing gives its slot back within seconds.
func TestServerDropsIdleTCPClients(t *testing.T) {
	srv := startServer(t, newTestStore(t, nil))
	c, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	start := time.Now()
	if err := c.SetReadDeadline(start.Add(tcpReadTimeout + waitTimeout)); err != nil {
		t.Fatal(err)
	}
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("idle connection still open after %v", time.Since(start))
	}
	if d := time.Since(start); d < tcpReadTimeout/2 {
		t.Errorf("idle connection closed after %v (%v), want about %v", d, err, tcpReadTimeout)
	}
}

// TestLimitedConnDeadlines guards the bounds a limitedConn puts on the
// deadlines miekg/dns sets: none later than the connection's lifetime, and
// none at all on writes.
func TestLimitedConnDeadlines(t *testing.T) {
	const lifetime = 100 * time.Millisecond
	tests := []struct {
		name string
		do   func(c net.Conn) error
	}{
		{name: "read without deadline ends with the lifetime", do: func(c net.Conn) error {
			if err := c.SetReadDeadline(time.Time{}); err != nil {
				return err
			}
			_, err := c.Read(make([]byte, 1))
			return err
		}},
		{name: "read with a later deadline ends with the lifetime", do: func(c net.Conn) error {
			if err := c.SetDeadline(time.Now().Add(time.Hour)); err != nil {
				return err
			}
			_, err := c.Read(make([]byte, 1))
			return err
		}},
		// miekg/dns's server sets no write deadline: a client that does
		// not read must not block a write for ever.
		{name: "write nobody reads ends", do: func(c net.Conn) error {
			if err := c.SetWriteDeadline(time.Time{}); err != nil {
				return err
			}
			_, err := c.Write([]byte("answer"))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client := net.Pipe() // nobody reads or writes the client end
			t.Cleanup(func() { client.Close() })
			c := &limitedConn{Conn: server, expires: time.Now().Add(lifetime), release: func() {}}
			t.Cleanup(func() { c.Close() })
			errs := make(chan error, 1)
			go func() { errs <- tt.do(c) }()
			select {
			case err := <-errs:
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Errorf("error %v, want a timeout", err)
				}
			case <-time.After(waitTimeout):
				t.Fatal("still blocked")
			}
		})
	}
}

// TestTCPLimitsFor guards the defaults and the lowering of the limits to
// the open-file limit.
func TestTCPLimitsFor(t *testing.T) {
	tests := []struct {
		name                string
		maxConns, perSource int
		nofile              uint64
		want                tcpLimits
		wantClamped         bool
		wantErr             bool
	}{
		{name: "defaults", nofile: 1 << 20, want: tcpLimits{DefaultMaxTCPConns, DefaultMaxTCPConnsPerSource}},
		{name: "unknown open-file limit keeps the defaults", want: tcpLimits{DefaultMaxTCPConns, DefaultMaxTCPConnsPerSource}},
		{name: "values given are kept", maxConns: 10, perSource: 2, nofile: 1 << 20, want: tcpLimits{10, 2}},
		{name: "a quarter of the open-file limit is fine", nofile: 4 * DefaultMaxTCPConns, want: tcpLimits{DefaultMaxTCPConns, DefaultMaxTCPConnsPerSource}},
		// The regression: a low limit must not let TCP clients take it all.
		{name: "lowered to a quarter of the open-file limit", nofile: 256, want: tcpLimits{64, DefaultMaxTCPConnsPerSource}, wantClamped: true},
		{name: "per source never above the total", nofile: 20, want: tcpLimits{5, 5}, wantClamped: true},
		{name: "at least one", nofile: 3, want: tcpLimits{1, 1}, wantClamped: true},
		{name: "negative total is refused", maxConns: -1, wantErr: true},
		{name: "negative per source is refused", perSource: -1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, clamped, err := tcpLimitsFor(tt.maxConns, tt.perSource, tt.nofile)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want one: %v", err, tt.wantErr)
			}
			if got != tt.want || clamped != tt.wantClamped {
				t.Errorf("got %+v, clamped %v; want %+v, %v", got, clamped, tt.want, tt.wantClamped)
			}
		})
	}
}

// TestSourceOf guards what counts as one source for the cap per source.
func TestSourceOf(t *testing.T) {
	tests := []struct {
		name, a, b string
		same       bool
	}{
		{name: "ports do not matter", a: "192.0.2.1:1000", b: "192.0.2.1:2000", same: true},
		{name: "IPv4 addresses differ", a: "192.0.2.1:1000", b: "192.0.2.2:1000"},
		{name: "IPv4-mapped is IPv4", a: "[::ffff:192.0.2.1]:1000", b: "192.0.2.1:1000", same: true},
		// A host holds a whole /64: it must not get 2^64 quotas.
		{name: "one IPv6 /64 is one source", a: "[2001:db8::1]:1000", b: "[2001:db8::ffff:1]:1000", same: true},
		{name: "IPv6 /64s differ", a: "[2001:db8::1]:1000", b: "[2001:db8:0:1::1]:1000"},
		{name: "zones do not matter", a: "[fe80::1%eth0]:1000", b: "[fe80::2%eth1]:1000", same: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := sourceOf(net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tt.a))), sourceOf(net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tt.b)))
			if !a.IsValid() || (a == b) != tt.same {
				t.Errorf("sources %s and %s; want the same: %v", a, b, tt.same)
			}
		})
	}
}

// TestLimitListenerReleasesOnce guards the counting of slots: a
// connection closed twice gives its slot back once.
func TestLimitListenerReleasesOnce(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newLimitListener(tl, tcpLimits{conns: 2, perSource: 2}, zerolog.Nop())
	t.Cleanup(func() { l.Close() })
	accept := func(src netip.Addr) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		c, err := d.Dial("tcp", tl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		sc, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return sc
	}
	counts := func() (int, int) {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.total, len(l.bySource)
	}
	a, b := accept(loopback(30)), accept(loopback(31))
	for range 3 {
		a.Close()
	}
	if total, sources := counts(); total != 1 || sources != 1 {
		t.Errorf("after closing one of two three times: %d connections from %d sources, want 1 and 1", total, sources)
	}
	c := accept(loopback(30)) // the slot given back
	b.Close()
	c.Close()
	if total, sources := counts(); total != 0 || sources != 0 {
		t.Errorf("after closing all: %d connections from %d sources, want none", total, sources)
	}
}

// failingListener fails every Accept, the way a listener does when the
// process is out of descriptors.
type failingListener struct {
	net.Listener // nil: only Accept and Close are called
	mu           sync.Mutex
	calls        int
}

func (f *failingListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
}

func (f *failingListener) Close() error { return nil }

// TestLimitListenerBacksOff guards against the busy loop of miekg/dns's
// server, which retries a failed accept at once: the listener pauses,
// longer each time, and Close ends the pause.
func TestLimitListenerBacksOff(t *testing.T) {
	f := &failingListener{}
	l := newLimitListener(f, tcpLimits{conns: 1, perSource: 1}, zerolog.Nop())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := l.Accept(); errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-l.closing:
				return
			default:
			}
		}
	}()
	time.Sleep(300 * time.Millisecond) // the span the calls are counted over
	f.mu.Lock()
	calls := f.calls
	f.mu.Unlock()
	// 5+10+20+40+80+160 ms: 6 or 7 calls; a busy loop makes millions.
	if calls > 10 {
		t.Errorf("%d accepts in 300ms of failures, want at most 10", calls)
	}
	start := time.Now()
	l.Close()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Close did not end the pause")
	}
	if d := time.Since(start); d > acceptBackoffMax/2 {
		t.Errorf("Close ended the pause after %v", d)
	}
}
