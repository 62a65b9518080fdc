package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/threefoldtech/gateway/test/harness"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/google/nftables"

	"github.com/threefoldtech/gateway/internal/testcert"
	"github.com/threefoldtech/gateway/pkg/meter"
)

// Metering cost settings.
const (
	// meterRounds is how many metered and unmetered samples of each route
	// kind a run takes, one of each per round; meterRoundsQuick with -quick.
	// On a small machine a sample moves by a quarter from one to the next:
	// the medians need many of them more than long ones.
	meterRounds      = 9
	meterRoundsQuick = 5
	// meterSize is the most one sample downloads and meterLimit the longest
	// it downloads for, whichever comes first; the Quick ones with -quick.
	// The limits keep the part under 2 minutes (30 s with -quick) on a
	// machine that moves 64 MB/s.
	meterSize       = 128 << 20
	meterLimit      = 2500 * time.Millisecond
	meterSizeQuick  = 64 << 20
	meterLimitQuick = time.Second
	// meterChunk is the size of the backends' writes and of the client's
	// reads.
	meterChunk = 256 << 10
	// meterCountedTimeout bounds the wait for the gateway to count the
	// backends after its start; it counts them before it answers on zbus.
	meterCountedTimeout = 10 * time.Second
	// meterSettleTimeout bounds the wait for an idle gateway and Traefik
	// before a block of samples.
	meterSettleTimeout = 5 * time.Second
	// downloadPath is where the metering backends serve their download.
	downloadPath = "/download"
)

// meterKind is a kind of route the metering cost is measured on.
type meterKind struct {
	// name is how the report calls it.
	name string
	// id and prefix name the route; the host is prefix.benchDomain.
	id, prefix  string
	passthrough bool
}

var (
	meterHTTP        = meterKind{name: "HTTP (TLS terminated by Traefik)", id: "meter-http", prefix: "meterhttp"}
	meterPassthrough = meterKind{name: "TLS passthrough", id: "meter-tls", prefix: "metertls", passthrough: true}
)

func (k meterKind) host() string { return k.prefix + "." + benchDomain }

// meterSample is one download through Traefik over one connection.
type meterSample struct {
	// moved is how many bytes of the body arrived, in took: from sending
	// the request (the connection and TLS session are up) to the last byte
	// or the time bound.
	moved int64
	took  time.Duration
	// counted is how much the counter of what the backend sent (rx) grew
	// over a metered sample: whole IP packets, headers included.
	counted uint64
	// gatewayCPU and traefikCPU are the CPU time the gateway and Traefik
	// used over the sample.
	gatewayCPU, traefikCPU time.Duration
}

// mbps is the throughput in MB/s (10⁶ bytes).
func (s meterSample) mbps() float64 { return float64(s.moved) / s.took.Seconds() / 1e6 }

// meterKindResult is what one route kind gave.
type meterKindResult struct {
	kind               meterKind
	metered, unmetered []meterSample
}

func medianMBps(ss []meterSample) float64 {
	xs := make([]float64, len(ss))
	for i, s := range ss {
		xs[i] = s.mbps()
	}
	return median(xs)
}

// median is the middle value, or the mean of the middle two; NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// ratio is metered over unmetered, of the medians.
func (r meterKindResult) ratio() float64 {
	u := medianMBps(r.unmetered)
	if !(u > 0) {
		return math.NaN()
	}
	return medianMBps(r.metered) / u
}

// slowerRounds counts the rounds whose metered sample was slower than the
// unmetered one.
func (r meterKindResult) slowerRounds() int {
	n := 0
	for i := range min(len(r.metered), len(r.unmetered)) {
		if r.metered[i].mbps() < r.unmetered[i].mbps() {
			n++
		}
	}
	return n
}

// countedRange is the least and the most counted/moved of the metered
// samples.
func (r meterKindResult) countedRange() (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, s := range r.metered {
		v := float64(s.counted) / float64(s.moved)
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

// spread is the least and the most MB/s of ss.
func spread(ss []meterSample) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		lo, hi = min(lo, s.mbps()), max(hi, s.mbps())
	}
	return lo, hi
}

// meteringResult is what the metering cost measurement gave.
type meteringResult struct {
	rounds int
	size   int64
	limit  time.Duration
	kinds  []meterKindResult
	// restarts are the gateway restarts before each block of samples, until
	// the backends were counted and served again; adopted counts those
	// after which the same Traefik served.
	restarts []time.Duration
	adopted  int
	// capped counts the samples the time bound ended before size.
	capped int
	// unsettled counts the blocks of samples that started before the
	// gateway and Traefik were idle, the wait having timed out.
	unsettled int
	// busy is how many cores processes kept busy on average over the
	// rounds (interrupts left out), others how many of them processes
	// other than the bench, its Traefik and its redis-server (the gateways'
	// restarts count as others).
	busy, others float64
}

// maxGatewayCPU is the most CPU the gateway process used during a sample.
func (m meteringResult) maxGatewayCPU() time.Duration {
	var most time.Duration
	for _, kr := range m.kinds {
		for _, s := range append(slices.Clone(kr.metered), kr.unmetered...) {
			most = max(most, s.gatewayCPU)
		}
	}
	return most
}

// meteringOptions configure benchMetering.
type meteringOptions struct {
	rounds   int
	size     int64
	limit    time.Duration
	throttle time.Duration
	verbose  bool
}

// benchMetering measures the throughput of one download over one
// connection through Traefik's websecure entry point, with the gateway's
// kernel counters in place and without them, for an HTTP route and a TLS
// passthrough route. It runs a stack of its own in work/metering, so that
// its routes never count among time to route's, and stops it on return.
//
// Metering is turned on by restarting the gateway, which makes the table
// and the counters of every route again at its start and adopts the running
// Traefik, and off by the same restart followed by deleting the table (the
// traffic then goes through no rule of the gateway's): both states start
// from the same fresh gateway. The states alternate round by round in the
// order MU UM MU …: each round has one sample of each, and neither state
// always goes first.
func benchMetering(ctx context.Context, t tools, work string, o meteringOptions, logf func(string, ...any)) (meteringResult, error) {
	res := meteringResult{rounds: o.rounds, size: o.size, limit: o.limit}
	s, err := newStack(t, filepath.Join(work, "metering"), logf)
	if err != nil {
		return res, err
	}
	defer s.close()
	noise := make([]byte, meterChunk)
	if _, err := rand.Read(noise); err != nil {
		return res, fmt.Errorf("making the download: %w", err)
	}
	httpAddr, stopHTTP, err := serveDownload(noise, nil)
	if err != nil {
		return res, err
	}
	defer stopHTTP()
	// The client does not verify the passthrough backend's certificate.
	var certPEM, keyPEM []byte
	err = catch(func() {
		certPEM, keyPEM = testcert.SelfSigned(newTB("metering", work, logf), []string{meterPassthrough.host()}, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	})
	cert, err2 := tls.X509KeyPair(certPEM, keyPEM)
	if err = errors.Join(err, err2); err != nil {
		return res, fmt.Errorf("making the passthrough backend's certificate: %w", err)
	}
	tlsAddr, stopTLS, err := serveDownload(noise, &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		return res, err
	}
	defer stopTLS()
	backends := map[string]netip.AddrPort{meterHTTP.id: httpAddr, meterPassthrough.id: tlsAddr}

	if err := s.startGateway(ctx, o.throttle, true); err != nil {
		return res, err
	}
	for _, k := range []meterKind{meterHTTP, meterPassthrough} {
		b := "http://" + httpAddr.String()
		if k.passthrough {
			b = tlsAddr.String()
		}
		if err := setRoute(ctx, s, k, b); err != nil {
			return res, err
		}
	}
	probe := newProber(s.gw.WebSecureAddr)
	served := func() error {
		for _, k := range []meterKind{meterHTTP, meterPassthrough} {
			if _, _, err := probe.wait(ctx, k.host(), http.StatusOK, time.Now(), routeTimeout); err != nil {
				return err
			}
		}
		return nil
	}
	if err := served(); err != nil {
		return res, err
	}
	// The table exists now: the gateway made it at its start.
	kern, err := meter.OpenKernel(meter.KernelConfig{Table: s.gw.MeterTable})
	if err != nil {
		return res, fmt.Errorf("opening the gateway's metering table: %w", err)
	}
	defer kern.Close()
	counted := func() error {
		return harness.PollEvery(ctx, meterCountedTimeout, 20*time.Millisecond, func() error {
			got, err := kern.Read()
			if err != nil {
				return err
			}
			for id, a := range backends {
				if _, ok := got[a]; !ok {
					return fmt.Errorf("no counters for %s (route %s) in table %s ", a, id, s.gw.MeterTable)
				}
			}
			return nil
		})
	}
	if err := counted(); err != nil {
		return res, err
	}
	logf("metering: %d rounds of %d MiB or %s per sample, gateway table inet %s, backends %s (http) and %s (tls)",
		o.rounds, o.size>>20, o.limit, s.gw.MeterTable, httpAddr, tlsAddr)
	kinds := []*meterKindResult{{kind: meterHTTP}, {kind: meterPassthrough}}
	for _, kr := range kinds {
		if _, err := download(ctx, s.gw.WebSecureAddr, kr.kind.host(), o.size, o.limit); err != nil {
			return res, fmt.Errorf("warming up %s: %w", kr.kind.name, err)
		}
	}

	load := startLoad(s)
	for round := range o.rounds {
		order := []bool{true, false}
		if round%2 == 1 {
			order = []bool{false, true}
		}
		for _, on := range order {
			if err := meterState(ctx, s, kern, &res, on, counted, served, logf); err != nil {
				return res, fmt.Errorf("metering round %d: %w", round+1, err)
			}
			for _, kr := range kinds {
				smp, err := meterOne(ctx, s, kern, kr.kind, backends[kr.kind.id], on, o)
				if err != nil {
					return res, fmt.Errorf("metering round %d, %s, metered %t: %w", round+1, kr.kind.name, on, err)
				}
				if smp.moved < o.size {
					res.capped++
				}
				what := "unmetered"
				if on {
					kr.metered = append(kr.metered, smp)
					what = fmt.Sprintf("metered, counted %.4f× the bytes moved", float64(smp.counted)/float64(smp.moved))
				} else {
					kr.unmetered = append(kr.unmetered, smp)
				}
				if o.verbose || round+1 == o.rounds || round == 0 {
					logf("metering: round %d/%d, %s, %s: %.0f MB/s (%d MiB in %s; cpu gateway %s, traefik %s)", round+1, o.rounds,
						kr.kind.name, what, smp.mbps(), smp.moved>>20, smp.took.Round(time.Millisecond), smp.gatewayCPU, smp.traefikCPU)
				}
			}
		}
	}
	res.busy, res.others = load.end(s)
	for _, kr := range kinds {
		res.kinds = append(res.kinds, *kr)
		logf("metering: %s: metered %.0f MB/s, unmetered %.0f MB/s (p50), %s", kr.kind.name,
			medianMBps(kr.metered), medianMBps(kr.unmetered), fmtRatio(kr.ratio()))
	}
	return res, nil
}

// meterState restarts the gateway, for both states alike: the new gateway
// adopts the running Traefik and makes the table and the counters of every
// route again at its start, which counted checks. For the unmetered state it
// then deletes the table. It returns once the gateway and Traefik are idle,
// so that the samples of either state start from the same quiet stack.
func meterState(ctx context.Context, s *stack, kern *meter.Kernel, res *meteringResult, on bool, counted, served func() error, logf func(string, ...any)) error {
	start := time.Now()
	adopted, err := s.restartGateway(ctx)
	if err != nil {
		return fmt.Errorf("restarting the gateway: %w", err)
	}
	if err := counted(); err != nil {
		return err
	}
	if err := served(); err != nil {
		return err
	}
	res.restarts = append(res.restarts, time.Since(start))
	if adopted {
		res.adopted++
	} else {
		logf("metering: the gateway's restart replaced traefik (pid %d now)", s.gw.traefik)
	}
	if !on {
		if err := kern.Remove(); err != nil {
			return err
		}
		if there, err := tableExists(s.gw.MeterTable); err != nil || there {
			return fmt.Errorf("table %s still there after its removal (%v)", s.gw.MeterTable, err)
		}
	}
	if !waitIdle(ctx, []int{s.gw.Proc.PID(), s.gw.traefik}, meterSettleTimeout) {
		res.unsettled++
		logf("metering: the gateway and traefik not idle %s after the restart; measuring anyway", meterSettleTimeout)
	}
	return nil
}

// loadMark is where the machine's and the stack's CPU counters stood.
type loadMark struct {
	busy, total, ours uint64
	err               error
}

func startLoad(s *stack) loadMark {
	var m loadMark
	m.busy, m.total, m.err = cpuTotals(false)
	m.ours = stackCPU(s)
	return m
}

// end returns the cores busy since m, and those of them not busy with the
// bench, its Traefik or its redis-server; NaN when /proc could not tell.
func (m loadMark) end(s *stack) (busy, others float64) {
	b, t, err := cpuTotals(false)
	if err != nil || m.err != nil || t <= m.total {
		return math.NaN(), math.NaN()
	}
	cores := float64(runtime.NumCPU())
	busy = cores * float64(b-m.busy) / float64(t-m.total)
	ours := cores * float64(stackCPU(s)-m.ours) / float64(t-m.total)
	return busy, max(0, busy-ours)
}

// stackCPU is the CPU time of the bench process, its Traefik and its
// redis-server, in clock ticks.
func stackCPU(s *stack) uint64 {
	var sum uint64
	for _, pid := range []int{os.Getpid(), s.gw.traefik, s.redis.Proc.PID()} {
		if st, err := readStat(pid); err == nil {
			sum += st.cpu
		}
	}
	return sum
}

// meterOne takes one sample of kind k, whose backend is addr. A metered
// sample reads addr's counters before and after; an unmetered one checks
// that the table is still gone after it.
func meterOne(ctx context.Context, s *stack, kern *meter.Kernel, k meterKind, addr netip.AddrPort, metered bool, o meteringOptions) (meterSample, error) {
	var before meter.Reading
	if metered {
		got, err := kern.Read()
		if err != nil {
			return meterSample{}, err
		}
		before = got[addr]
	}
	gw0, tr0 := cpuTime(s.gw.Proc.PID()), cpuTime(s.gw.traefik)
	smp, err := download(ctx, s.gw.WebSecureAddr, k.host(), o.size, o.limit)
	if err != nil {
		return smp, err
	}
	smp.gatewayCPU, smp.traefikCPU = cpuTime(s.gw.Proc.PID())-gw0, cpuTime(s.gw.traefik)-tr0
	if !metered {
		// Read cannot tell: it reads no counters from a missing table.
		there, err := tableExists(s.gw.MeterTable)
		if err != nil {
			return smp, err
		}
		if there {
			return smp, fmt.Errorf("table %s came back during an unmetered sample", s.gw.MeterTable)
		}
		return smp, nil
	}
	got, err := kern.Read()
	if err != nil {
		return smp, err
	}
	after, ok := got[addr]
	if !ok || after.Instance != before.Instance {
		return smp, fmt.Errorf("the counters of %s were made again during the sample", addr)
	}
	smp.counted = after.Rx - before.Rx
	if smp.counted < uint64(smp.moved) {
		return smp, fmt.Errorf("the counter of %s grew by %d bytes, fewer than the %d downloaded", addr, smp.counted, smp.moved)
	}
	return smp, nil
}

// tableExists tells whether the inet table name exists.
func tableExists(name string) (bool, error) {
	conn, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("connecting to nftables: %w", err)
	}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("listing the inet tables: %w", err)
	}
	return slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == name }), nil
}

// setRoute publishes the name route of k to backend through zbus.
func setRoute(ctx context.Context, s *stack, k meterKind, backend string) error {
	return call(ctx, func(ctx context.Context) error {
		if _, err := s.stub.SetNamedProxy(ctx, k.id, k.prefix, []string{backend}, k.passthrough); err != nil {
			return fmt.Errorf("SetNamedProxy(%q, %q, %q, %t): %w", k.id, k.prefix, backend, k.passthrough, err)
		}
		return nil
	})
}

// download sends GET downloadPath for size bytes to host through Traefik's
// websecure entry point at addr, over a new connection with SNI and Host
// host (certificate not verified), and reads the body until its end or
// until limit has passed since the request.
func download(ctx context.Context, addr, host string, size int64, limit time.Duration) (meterSample, error) {
	var smp meterSample
	d := &tls.Dialer{Config: &tls.Config{ServerName: host, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}}
	dctx, cancel := context.WithTimeout(ctx, 5*probeTimeout)
	c, err := d.DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return smp, fmt.Errorf("connecting to %s for %s: %w", addr, host, err)
	}
	defer c.Close()
	defer context.AfterFunc(ctx, func() { c.Close() })()
	start := time.Now()
	_ = c.SetDeadline(start.Add(limit))
	if _, err := fmt.Fprintf(c, "GET %s?bytes=%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", downloadPath, size, host); err != nil {
		return smp, fmt.Errorf("asking %s for the download: %w", host, err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, meterChunk), nil)
	if err != nil {
		return smp, fmt.Errorf("reading the answer of %s: %w", host, err)
	}
	// No resp.Body.Close: it would read what is left of the body.
	if resp.StatusCode != http.StatusOK || resp.Header.Get(harness.HeaderBackend) == "" {
		return smp, fmt.Errorf("%s answered %s, not from the bench backend", host, resp.Status)
	}
	buf := make([]byte, meterChunk)
	for {
		n, err := resp.Body.Read(buf)
		smp.moved += int64(n)
		if err == io.EOF || errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return smp, ctx.Err()
			}
			return smp, fmt.Errorf("downloading from %s after %d bytes: %w", host, smp.moved, err)
		}
	}
	smp.took = time.Since(start)
	if smp.moved == 0 {
		return smp, fmt.Errorf("downloading from %s: nothing in %s", host, limit)
	}
	return smp, nil
}

// serveDownload serves, on 127.0.0.1 in this process, GET downloadPath with
// the bytes N parameter: N bytes, noise repeated. Anything else gets the
// small answer of the bench backend. With cfg it serves over TLS. stop
// closes it.
func serveDownload(noise []byte, cfg *tls.Config) (addr netip.AddrPort, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return addr, nil, fmt.Errorf("starting a download backend: %w", err)
	}
	addr = l.Addr().(*net.TCPAddr).AddrPort()
	if cfg != nil {
		l = tls.NewListener(l, cfg)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(harness.HeaderBackend, "1")
			n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
			if r.URL.Path != downloadPath || err != nil || n < 0 {
				_, _ = w.Write([]byte("ok\n"))
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			for n > 0 {
				m := min(n, int64(len(noise)))
				if _, err := w.Write(noise[:m]); err != nil {
					return
				}
				n -= m
			}
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.Serve(l) }()
	return addr, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	}, nil
}
