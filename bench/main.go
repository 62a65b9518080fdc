// Command bench measures the gateway in one run on one machine and writes
// the report docs/BENCHMARKS.md (`make bench`): time to route and Traefik's
// CPU per change with 0 to 10,000 routes present, through zbus and the
// gateway's Traefik against two floors written by hand, each on a Traefik of
// its own (one file per route, the layout the gateway wrote before; all
// routes in one file, the file provider's own limit); the gateway's start,
// List and Metrics with those routes; a boot storm of identical calls;
// bursts of new routes; a Set call against its floor on zbus; the embedded
// DNS server against dnsmasq; certificates; the throughput cost of the
// kernel's byte counters (metering); and memory.
//
// It starts its own redis-server, gateway, Traefiks and backends on
// loopback with test/harness, in a temporary folder, and stops every one of
// them by PID when it ends, interrupted or not. The report is
// report.md.tmpl rendered from the run's Results, which the bench also
// writes as JSON beside it (docs/BENCHMARKS.json); -render renders a report
// again from such a file without measuring.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/threefoldtech/gateway/internal/atomicfile"
)

// options are the command line.
type options struct {
	out          string
	jsonOut      string
	render       string
	samples      int
	diagSamples  int
	startSamples int
	apiCalls     int
	zbusRounds   int
	stormCalls   int
	profileSecs  int
	burstRoutes  int
	burstRounds  int
	burstSizes   []int
	sizes        []int
	quick        bool
	skipDNS      bool
	skipACME     bool
	acmeRuns     int
	skipMetering bool
	skipHandover bool
	dnsDuration  time.Duration
	gateway      string
	keep         bool
	verbose      bool
	seed         uint64
	throttle     time.Duration
	timeout      time.Duration
}

func parseFlags(args []string) (options, error) {
	o := options{throttle: 100 * time.Millisecond}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&o.out, "out", "", "write the Markdown report to this file (default: print it on stdout only)")
	fs.StringVar(&o.jsonOut, "json", "", "write the results as JSON to this file (default: beside -out, its name ending in .json)")
	fs.StringVar(&o.render, "render", "", "measure nothing: render the report from this results JSON file")
	fs.IntVar(&o.samples, "samples", 15, "time-to-route samples per variant (ours, per-file floor, one-file floor) and size")
	fs.IntVar(&o.diagSamples, "diag-samples", 5, "samples of the per-file floor with a default certificate, at 0 routes (0: none)")
	fs.IntVar(&o.startSamples, "start-samples", 5, "restarts of the gateway per size, timed to its first zbus answer")
	fs.IntVar(&o.apiCalls, "api-calls", 9, "List and Metrics calls timed per size")
	fs.IntVar(&o.zbusRounds, "zbus-rounds", 400, "rounds of a no-op call, a synced-write call and a Set call per size (0: none)")
	fs.IntVar(&o.stormCalls, "storm-calls", 10000, "identical Set calls of the boot storm, at the largest size (0: none)")
	fs.IntVar(&o.profileSecs, "profile-seconds", 30, "seconds of CPU profile of ours' Traefik while routes change, at the largest size (0: none)")
	fs.IntVar(&o.burstRoutes, "burst-routes", 500, "new routes per burst (0: no bursts)")
	fs.IntVar(&o.burstRounds, "burst-rounds", 2, "bursts of each kind (ours, per-file floor)")
	burstSizes := fs.String("burst-sizes", "0", "numbers of routes present at which bursts are measured, comma separated, among -sizes")
	fs.DurationVar(&o.timeout, "timeout", 90*time.Minute, "stop everything and fail after this long")
	sizes := fs.String("sizes", "0,1000,10000", "numbers of routes present, comma separated")
	fs.BoolVar(&o.quick, "quick", false, "smoke run: sizes 0,1000, 5 samples, fewer of everything, short DNS, one ACME run (explicit flags win)")
	fs.BoolVar(&o.skipDNS, "skip-dns", false, "do not measure the DNS server")
	fs.BoolVar(&o.skipACME, "skip-acme", false, "do not time certificates (the ACME end-to-end tests, with Pebble)")
	fs.IntVar(&o.acmeRuns, "acme-runs", 3, "runs of the ACME end-to-end tests to time certificates")
	fs.BoolVar(&o.skipMetering, "skip-metering", false, "do not measure the throughput cost of metering")
	fs.BoolVar(&o.skipHandover, "skip-handover", false, "do not hand Traefik over under load at each size with routes")
	fs.DurationVar(&o.dnsDuration, "dns-duration", 10*time.Second, "how long dnsperf measures each DNS server")
	fs.StringVar(&o.gateway, "gateway", "", "gateway binary to measure (default: built from this tree into the work folder)")
	fs.BoolVar(&o.verbose, "v", false, "log every sample")
	fs.BoolVar(&o.keep, "keep", false, "keep the work folder (logs, route files) after the run")
	seed := fs.Uint64("seed", 0, "seed of the sample order (default: from the clock)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		quick := map[string]func(){
			"sizes":           func() { *sizes = "0,1000" },
			"samples":         func() { o.samples = 5 },
			"diag-samples":    func() { o.diagSamples = 3 },
			"start-samples":   func() { o.startSamples = 3 },
			"api-calls":       func() { o.apiCalls = 5 },
			"zbus-rounds":     func() { o.zbusRounds = 150 },
			"burst-rounds":    func() { o.burstRounds = 1 },
			"profile-seconds": func() { o.profileSecs = 10 },
			"acme-runs":       func() { o.acmeRuns = 1 },
			"dns-duration":    func() { o.dnsDuration = 3 * time.Second },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	var err error
	if o.sizes, err = parseSizes("-sizes", *sizes); err != nil {
		return o, err
	}
	if o.burstSizes, err = parseSizes("-burst-sizes", *burstSizes); err != nil {
		return o, err
	}
	if o.samples < 1 {
		return o, fmt.Errorf("-samples %d: need at least 1", o.samples)
	}
	for name, v := range map[string]int{"diag-samples": o.diagSamples, "start-samples": o.startSamples, "api-calls": o.apiCalls,
		"zbus-rounds": o.zbusRounds, "storm-calls": o.stormCalls, "profile-seconds": o.profileSecs, "burst-routes": o.burstRoutes, "burst-rounds": o.burstRounds} {
		if v < 0 || v > 100000 {
			return o, fmt.Errorf("-%s %d: from 0 to 100000", name, v)
		}
	}
	if o.burstRoutes > 999 {
		return o, fmt.Errorf("-burst-routes %d: at most 999", o.burstRoutes)
	}
	if o.jsonOut == "" && o.out != "" {
		o.jsonOut = strings.TrimSuffix(o.out, filepath.Ext(o.out)) + ".json"
	}
	o.seed = *seed
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	return o, nil
}

// parseSizes reads a comma separated list of numbers of routes.
func parseSizes(flagName, list string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || n > 99999 {
			return nil, fmt.Errorf("%s %q: %q is not a number of routes from 0 to 99999", flagName, list, f)
		}
		out = append(out, n)
	}
	return sortedSizes(out), nil
}

func main() { os.Exit(mainCode()) }

// mainCode runs the bench and returns the exit code; its deferred calls run
// on every path, a panic included.
func mainCode() int {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Since(start).Round(time.Second), fmt.Sprintf(format, args...))
	}
	if opts.render != "" {
		if err := renderFile(opts); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		return 0
	}
	if err := becomeSubreaper(); err != nil {
		logf("cannot become the subreaper of orphaned children (%v): a Traefik left behind by an interruption may survive", err)
	}
	defer reapOrphans(logf)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()
	if err := run(ctx, opts, start, logf); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, o options, start time.Time, logf func(string, ...any)) error {
	repo, err := repoRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "gateway-bench-")
	if err != nil {
		return fmt.Errorf("creating the work folder: %w", err)
	}
	failed := true
	defer func() {
		if o.keep || failed {
			logf("work folder kept: %s", work)
			return
		}
		os.RemoveAll(work)
	}()

	t, err := findTools(ctx, o, repo, work, logf)
	if err != nil {
		return err
	}
	r := &Results{
		Started:  start.UTC(),
		Command:  strings.TrimSpace("go run ./bench " + strings.Join(os.Args[1:], " ")),
		Quick:    o.quick,
		Machine:  readMachine(),
		Versions: readVersions(ctx, t, repo),
		Settings: Settings{Sizes: o.sizes, Samples: o.samples, DiagSamples: o.diagSamples, StartSamples: o.startSamples,
			APICalls: o.apiCalls, ZbusRounds: o.zbusRounds, Seed: o.seed, Throttle: Duration(o.throttle),
			ProbeInterval: Duration(pollInterval), ProbeTimeout: Duration(probeTimeout), SettleMargin: Duration(settleMargin),
			QuietWindow: Duration(quietWindow), SettleTimeout: Duration(settleTimeout), BurstPoll: Duration(burstPoll),
			HandoverBefore: Duration(handoverBefore), HandoverAfter: Duration(handoverAfter), QuietTicks: quietTicks,
			Callers: populateCallers, ZbusRoutes: zbusRoutes, HandoverClients: handoverClients, ReloadsMetric: reloadsMetric},
	}
	logf("sizes %v, %d samples per variant, seed %d, work folder %s", o.sizes, o.samples, o.seed, work)

	// The subprocess and DNS benchmarks first, on a quiet machine. A part
	// that fails is reported as such; only an interruption ends the run.
	part := func(name string, skip bool, errOut *string, fn func() error) error {
		if skip {
			return nil
		}
		err := fn()
		reapOrphans(logf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			logf("%s failed: %v", name, err)
			*errOut = oneLine(err)
		}
		return nil
	}
	r.DNS.Skipped, r.ACME.Skipped, r.Metering.Skipped = o.skipDNS, o.skipACME, o.skipMetering
	if err := part("dns benchmark", o.skipDNS, &r.DNS.Error, func() (err error) {
		logf("measuring DNS for %s per server", o.dnsDuration)
		r.DNS, err = benchDNS(ctx, o.dnsDuration, logf)
		return err
	}); err != nil {
		return err
	}
	// The tests' Traefiks that outlived them are the bench's now: part
	// stops them before they sit through the rest of the run.
	if err := part("certificate timing", o.skipACME, &r.ACME.Error, func() (err error) {
		r.ACME, err = benchACME(ctx, repo, o.acmeRuns, logf)
		return err
	}); err != nil {
		return err
	}
	keygens := 30
	if o.quick {
		keygens = 10
	}
	logf("timing %d RSA-2048 key generations", keygens)
	keygen, err := measureKeygen(ctx, keygens)
	if err != nil {
		return err
	}
	r.Keygen = stat(keygen)
	if err := part("metering cost", o.skipMetering, &r.Metering.Error, func() error {
		mo := meteringOptions{rounds: meterRounds, size: meterSize, limit: meterLimit, throttle: o.throttle, verbose: o.verbose}
		if o.quick {
			mo.rounds, mo.size, mo.limit = meterRoundsQuick, meterSizeQuick, meterLimitQuick
		}
		m, err := benchMetering(ctx, t, work, mo, logf)
		r.Metering = m.result()
		return err
	}); err != nil {
		return err
	}

	defCert, err := newDefaultCert(work)
	if err != nil {
		return err
	}
	s, err := newStack(t, work, logf)
	if err != nil {
		return err
	}
	defer s.close()
	busy0, total0, err1 := cpuTotals(true)
	self0, err2 := selfCPU()
	routesStart := time.Now()
	sizes, err := benchRoutes(ctx, s, routeOptions{
		sizes: o.sizes, samples: o.samples, diagSamples: o.diagSamples, startSamples: o.startSamples, apiCalls: o.apiCalls,
		zbusRounds: o.zbusRounds, stormCalls: o.stormCalls, profileSecs: o.profileSecs, burstRoutes: o.burstRoutes, burstRounds: o.burstRounds,
		burstSizes: o.burstSizes, throttle: o.throttle, seed: o.seed, defCert: defCert, verbose: o.verbose, handover: !o.skipHandover,
	}, logf)
	// Stopped and reaped, the children's CPU time counts in selfCPU.
	s.close()
	if err != nil {
		return fmt.Errorf("time to route: %w", err)
	}
	r.Stack = Duration(time.Since(routesStart))
	busy1, total1, err3 := cpuTotals(true)
	self1, err4 := selfCPU()
	if errors.Join(err1, err2, err3, err4) == nil && total1 > total0 {
		cores := float64(r.Machine.Cores)
		r.CPUBusy = cores * float64(busy1-busy0) / float64(total1-total0)
		r.CPUOthers = max(0, r.CPUBusy-cores*float64(self1-self0)/float64(total1-total0))
	}
	r.Elapsed = Duration(time.Since(start))
	summarize(r, sizes)
	if err := write(o, r, logf); err != nil {
		return err
	}
	failed = false
	return nil
}

// write renders the report of r and writes it, and r as JSON, where o says.
func write(o options, r *Results, logf func(string, ...any)) error {
	md, err := render(r)
	if err != nil {
		return err
	}
	if o.jsonOut != "" {
		data, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return fmt.Errorf("writing the results: %w", err)
		}
		if err := atomicfile.Write(o.jsonOut, append(data, '\n'), 0o644); err != nil {
			return err
		}
		logf("wrote %s", o.jsonOut)
	}
	if o.out == "" {
		fmt.Print(md)
		return nil
	}
	if err := atomicfile.Write(o.out, []byte(md), 0o644); err != nil {
		return err
	}
	logf("wrote %s", o.out)
	return nil
}

// renderFile renders the report from the results JSON o.render.
func renderFile(o options) error {
	data, err := os.ReadFile(o.render)
	if err != nil {
		return err
	}
	var r Results
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("reading %s: %w", o.render, err)
	}
	o.jsonOut = ""
	return write(o, &r, func(string, ...any) {})
}

// findTools locates Traefik and redis-server the way the Makefile passes
// them (TRAEFIK_BIN, REDIS_SERVER), and builds the gateway unless -gateway
// names one.
func findTools(ctx context.Context, o options, repo, work string, logf func(string, ...any)) (tools, error) {
	var t tools
	t.traefik = os.Getenv("TRAEFIK_BIN")
	if t.traefik == "" {
		// The script knows where the build with the current patches is
		// cached (it builds it when it is not).
		cmd := exec.CommandContext(ctx, filepath.Join(repo, "scripts", "install-traefik.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return t, fmt.Errorf("finding traefik with scripts/install-traefik.sh: %w", err)
		}
		t.traefik = strings.TrimSpace(string(out))
	}
	if _, err := os.Stat(t.traefik); err != nil {
		return t, fmt.Errorf("traefik not found at %s (set TRAEFIK_BIN or run scripts/install-deps.sh): %w", t.traefik, err)
	}
	t.redis = os.Getenv("REDIS_SERVER")
	if t.redis == "" {
		p, err := exec.LookPath("redis-server")
		if err != nil {
			return t, fmt.Errorf("redis-server not found (set REDIS_SERVER or run scripts/install-deps.sh): %w", err)
		}
		t.redis = p
	}
	if o.gateway != "" {
		t.gateway = o.gateway
		return t, nil
	}
	t.gateway = filepath.Join(work, "gateway")
	logf("building ./cmd/gateway")
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", t.gateway, "./cmd/gateway")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return t, fmt.Errorf("go build ./cmd/gateway: %w\n%s", err, out)
	}
	return t, nil
}

// repoRoot returns the folder of the gateway module's go.mod, from the
// current folder up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			if strings.Contains(string(b), "module github.com/threefoldtech/gateway\n") {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the bench inside the gateway repository (no go.mod of github.com/threefoldtech/gateway found)")
		}
		dir = parent
	}
}
