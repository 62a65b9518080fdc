package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/threefoldtech/gateway/test/harness"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"github.com/threefoldtech/gateway/pkg/acmedns"
)

// DNS benchmark settings.
const (
	// dnsBenchDomain is the gateway domain both servers answer for.
	dnsBenchDomain = "gw.bench"
	// dnsBenchValue is the TXT value both servers hold, shaped like a real
	// DNS-01 value (43 bytes of base64url).
	dnsBenchValue = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo"
	// dnsBenchClients is dnsperf's -c: how many client sockets it sends
	// from.
	dnsBenchClients = 4
	// dnsBenchOutstanding is dnsperf's -q (and its default): queries in
	// flight at once. Enough to keep either server busy; more overflows
	// dnsmasq's socket buffer, and each query lost there idles a slot for
	// dnsperf's 5 s timeout, which would understate dnsmasq.
	dnsBenchOutstanding = 100
	// dnsBenchRounds is how many times each server is measured, alternately,
	// so that drift in the machine's load hits both alike.
	dnsBenchRounds = 3
	// dnsBenchWarmup is run against each server, unmeasured, first.
	dnsBenchWarmup = time.Second
	// dnsBenchStartTimeout bounds the wait for a server to answer.
	dnsBenchStartTimeout = 5 * time.Second
)

// DNSBenchResult is the outcome of benchDNS: the query rate of the
// gateway's embedded DNS server and of dnsmasq for the same TXT query, on
// the same machine in the same run.
type DNSBenchResult struct {
	// Skipped tells the DNS part did not run (-skip-dns); Error why it
	// failed.
	Skipped bool   `json:",omitempty"`
	Error   string `json:",omitempty"`
	// Duration is how long each server was measured, in total.
	Duration Duration
	// Query is the question asked, in dnsperf's format.
	Query string
	// Clients and Outstanding are dnsperf's -c and -q.
	Clients, Outstanding int
	// OursQPS and DnsmasqQPS are the mean queries per second over the
	// rounds, as dnsperf reports them.
	OursQPS, DnsmasqQPS float64
	// OursRounds and DnsmasqRounds are the queries per second of each
	// round.
	OursRounds, DnsmasqRounds []float64
	// OursLost and DnsmasqLost are the queries dnsperf saw no answer to.
	OursLost, DnsmasqLost int64
	// Ratio is OursQPS / DnsmasqQPS; 1 or more means ours is at least as
	// fast.
	Ratio float64
	// GoVersion is the Go version the embedded server was built with.
	GoVersion string
	// DNSPerfVersion and DnsmasqVersion are the versions of the tools,
	// e.g. "2.10.0" and "2.90".
	DNSPerfVersion, DnsmasqVersion string
}

// benchDNS measures the queries per second of the gateway's embedded DNS
// server (pkg/acmedns, run in this process on 127.0.0.1) and of dnsmasq (a
// child process on 127.0.0.1) answering the same TXT query, with dnsperf.
// Each server is measured for duration in total, split in alternating
// rounds after a warm-up, so the call takes a little over twice duration.
// dnsmasq is stopped on every path.
func benchDNS(ctx context.Context, duration time.Duration, logf func(string, ...any)) (DNSBenchResult, error) {
	res := DNSBenchResult{
		Duration:    Duration(duration),
		Query:       "_acme-challenge." + dnsBenchDomain + " TXT",
		Clients:     dnsBenchClients,
		Outstanding: dnsBenchOutstanding,
		GoVersion:   runtime.Version(),
	}
	if duration < dnsBenchRounds*100*time.Millisecond {
		return res, fmt.Errorf("benchmarking dns: duration %s is too short (at least %s)", duration, dnsBenchRounds*100*time.Millisecond)
	}
	var err error
	if res.DNSPerfVersion, err = toolVersion(ctx, "dnsperf", []string{"-h"}, "Version "); err != nil {
		return res, fmt.Errorf("benchmarking dns: %w", err)
	}
	if res.DnsmasqVersion, err = toolVersion(ctx, "dnsmasq", []string{"--version"}, "Dnsmasq version "); err != nil {
		return res, fmt.Errorf("benchmarking dns: %w", err)
	}

	dir, err := os.MkdirTemp("", "gateway-bench-dns-")
	if err != nil {
		return res, fmt.Errorf("benchmarking dns: creating temporary folder: %w", err)
	}
	defer os.RemoveAll(dir)
	queryFile := filepath.Join(dir, "queries.txt")
	if err := os.WriteFile(queryFile, []byte(res.Query+"\n"), 0o644); err != nil {
		return res, fmt.Errorf("benchmarking dns: writing query file: %w", err)
	}

	ours, stopOurs, err := startOurDNS(ctx)
	if err != nil {
		return res, fmt.Errorf("benchmarking dns: %w", err)
	}
	defer stopOurs()
	theirs, stopDnsmasq, err := startDnsmasq(ctx, logf)
	if err != nil {
		return res, fmt.Errorf("benchmarking dns: %w", err)
	}
	defer stopDnsmasq()

	for _, addr := range []string{ours, theirs} {
		if _, err := runDNSPerf(ctx, addr, queryFile, dnsBenchWarmup); err != nil {
			return res, fmt.Errorf("benchmarking dns: warming up %s: %w", addr, err)
		}
	}
	round := duration / dnsBenchRounds
	for range dnsBenchRounds {
		o, err := runDNSPerf(ctx, ours, queryFile, round)
		if err != nil {
			return res, fmt.Errorf("benchmarking dns: measuring the gateway: %w", err)
		}
		d, err := runDNSPerf(ctx, theirs, queryFile, round)
		if err != nil {
			return res, fmt.Errorf("benchmarking dns: measuring dnsmasq: %w", err)
		}
		res.OursRounds = append(res.OursRounds, o.qps)
		res.DnsmasqRounds = append(res.DnsmasqRounds, d.qps)
		res.OursLost += o.lost
		res.DnsmasqLost += d.lost
	}
	res.OursQPS = mean(res.OursRounds)
	res.DnsmasqQPS = mean(res.DnsmasqRounds)
	if res.DnsmasqQPS > 0 {
		res.Ratio = res.OursQPS / res.DnsmasqQPS
	}
	return res, nil
}

// startOurDNS runs the gateway's DNS server on 127.0.0.1 with the bench
// value presented, and returns its address once it answers.
func startOurDNS(ctx context.Context) (addr string, stop func(), err error) {
	store, err := acmedns.NewStore(acmedns.StoreConfig{})
	if err != nil {
		return "", nil, fmt.Errorf("creating store: %w", err)
	}
	zone := acmedns.ChallengeZone(dnsBenchDomain)
	if err := store.Present(zone, dnsBenchValue); err != nil {
		return "", nil, fmt.Errorf("presenting the bench value: %w", err)
	}
	srv, err := acmedns.New(acmedns.Config{
		Domain: dnsBenchDomain, Address: "127.0.0.1:0", Store: store, Logger: zerolog.Nop(),
	})
	if err != nil {
		return "", nil, fmt.Errorf("creating dns server: %w", err)
	}
	errs := make(chan error, 1)
	go func() { errs <- srv.Run(ctx) }()
	stop = func() {
		srv.Close()
		<-errs
	}
	select {
	case <-srv.Ready():
	case err := <-errs:
		return "", nil, fmt.Errorf("running dns server: %w", err)
	case <-time.After(dnsBenchStartTimeout):
		srv.Close()
		return "", nil, errors.New("dns server not ready in time")
	}
	if err := waitForTXT(ctx, srv.Addr(), zone, nil); err != nil {
		stop()
		return "", nil, fmt.Errorf("checking the gateway's dns server: %w", err)
	}
	return srv.Addr(), stop, nil
}

// startDnsmasq starts dnsmasq on a free port of 127.0.0.1 with the bench
// value as its only record and returns its address once it answers. stop
// ends it by PID: SIGTERM, then SIGKILL if it lingers.
func startDnsmasq(ctx context.Context, logf func(string, ...any)) (addr string, stop func(), err error) {
	zone := acmedns.ChallengeZone(dnsBenchDomain)
	tb := newTB("dnsmasq", os.TempDir(), logf)
	const attempts = 5
	for i := 0; ; i++ {
		var p *harness.Proc
		err := catch(func() {
			addr = harness.Addr(tb)
			p = harness.Start(tb, "dnsmasq", nil,
				"--no-daemon", "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--pid-file",
				"--log-facility=-", "--listen-address=127.0.0.1", "--bind-interfaces",
				"--port="+strconv.Itoa(harness.PortOf(tb, addr)),
				"--txt-record="+strings.TrimSuffix(zone, ".")+","+dnsBenchValue)
		})
		if err == nil {
			err = waitForTXT(ctx, addr, zone, p.Done())
			if err == nil {
				return addr, tb.close, nil
			}
			err = fmt.Errorf("%w (output: %s)", err, strings.TrimSpace(p.Output()))
		}
		tb.close()
		// The port may have been taken between FreePort and dnsmasq.
		if i+1 >= attempts || ctx.Err() != nil {
			return "", nil, fmt.Errorf("starting dnsmasq on %s: %w", addr, err)
		}
	}
}

// waitForTXT asks addr for the TXT at name until it answers with the bench
// value, the start timeout passes or exited is closed.
func waitForTXT(ctx context.Context, addr, name string, exited <-chan struct{}) error {
	c := &dns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	return harness.PollEvery(ctx, dnsBenchStartTimeout, 50*time.Millisecond, func() error {
		select {
		case <-exited:
			cancel()
			return errors.New("exited")
		default:
		}
		resp, _, err := c.ExchangeContext(ctx, m, addr)
		if err != nil {
			return err
		}
		if len(resp.Answer) != 1 {
			return fmt.Errorf("%d answers (rcode %s), want one TXT", len(resp.Answer), dns.RcodeToString[resp.Rcode])
		}
		if txt, ok := resp.Answer[0].(*dns.TXT); !ok || strings.Join(txt.Txt, "") != dnsBenchValue {
			return fmt.Errorf("answer %v, want TXT %q", resp.Answer[0], dnsBenchValue)
		}
		return nil
	})
}

// dnsperfRun is what one dnsperf run reports.
type dnsperfRun struct {
	qps  float64
	lost int64
}

// runDNSPerf sends the queries of queryFile to addr for d and returns the
// rate dnsperf reports.
func runDNSPerf(ctx context.Context, addr, queryFile string, d time.Duration) (dnsperfRun, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return dnsperfRun{}, fmt.Errorf("parsing address %q: %w", addr, err)
	}
	cmd := exec.CommandContext(ctx, "dnsperf",
		"-s", host, "-p", port, "-d", queryFile,
		"-l", strconv.FormatFloat(d.Seconds(), 'f', 3, 64),
		"-c", strconv.Itoa(dnsBenchClients), "-q", strconv.Itoa(dnsBenchOutstanding),
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return dnsperfRun{}, fmt.Errorf("running dnsperf: %w (output: %s)", err, lastLines(out, 5))
	}
	return parseDNSPerf(out)
}

// parseDNSPerf reads the "Queries per second:" and "Queries lost:" lines of
// dnsperf's statistics.
func parseDNSPerf(out []byte) (dnsperfRun, error) {
	var r dnsperfRun
	var haveQPS bool
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "Queries per second:"); ok {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return r, fmt.Errorf("parsing dnsperf line %q: %w", line, err)
			}
			r.qps, haveQPS = q, true
		}
		if v, ok := strings.CutPrefix(line, "Queries lost:"); ok {
			fields := strings.Fields(v)
			if len(fields) > 0 {
				n, err := strconv.ParseInt(fields[0], 10, 64)
				if err != nil {
					return r, fmt.Errorf("parsing dnsperf line %q: %w", line, err)
				}
				r.lost = n
			}
		}
	}
	if !haveQPS {
		return r, fmt.Errorf("no \"Queries per second:\" in dnsperf output: %s", lastLines(out, 5))
	}
	return r, nil
}

// toolVersion runs name with args and returns what follows prefix on the
// first line that holds it, up to the next space.
func toolVersion(ctx context.Context, name string, args []string, prefix string) (string, error) {
	if _, err := exec.LookPath(name); err != nil {
		return "", fmt.Errorf("%s not found (run scripts/install-bench-tools.sh): %w", name, err)
	}
	// dnsperf -h exits with status 1; the output is what counts.
	out, _ := exec.CommandContext(ctx, name, args...).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if _, rest, ok := strings.Cut(line, prefix); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return f[0], nil
			}
		}
	}
	return "", fmt.Errorf("no %q in the output of %s %s", prefix, name, strings.Join(args, " "))
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
