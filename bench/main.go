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
// loopback, in a temporary folder, and stops every one of them by PID when
// it ends, interrupted or not.
package main

import (
	"context"
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
)

// options are the command line.
type options struct {
	out          string
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

// Run-time targets of the bench itself.
const (
	fullRunTarget  = 30 * time.Minute
	quickRunTarget = 3 * time.Minute
)

func parseFlags(args []string) (options, error) {
	o := options{throttle: 100 * time.Millisecond}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&o.out, "out", "", "write the Markdown report to this file (default: print it on stdout only)")
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
	rep := &report{
		started:  start,
		command:  "go run ./bench " + strings.Join(os.Args[1:], " "),
		machine:  readMachine(),
		versions: readVersions(ctx, t, repo),
		opts:     o,
		seed:     o.seed,
	}
	rep.command = strings.TrimSpace(rep.command)
	logf("sizes %v, %d samples per variant, seed %d, work folder %s", o.sizes, o.samples, o.seed, work)

	// The subprocess and DNS benchmarks first, on a quiet machine.
	if o.skipDNS {
		rep.dnsSkipped = true
	} else {
		logf("measuring DNS for %s per server", o.dnsDuration)
		rep.dns, rep.dnsErr = benchDNS(ctx, o.dnsDuration)
		if rep.dnsErr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			logf("dns benchmark failed: %v", rep.dnsErr)
		}
	}

	if o.skipACME {
		rep.acmeSkipped = true
	} else {
		rep.acme, rep.acmeErr = benchACME(ctx, repo, o.acmeRuns, logf)
		// The tests' Traefiks that outlived them are the bench's now: stop
		// them before they sit through the rest of the run.
		reapOrphans(logf)
		if rep.acmeErr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			logf("certificate timing failed: %v", rep.acmeErr)
		}
	}

	keygens := 30
	if o.quick {
		keygens = 10
	}
	logf("timing %d RSA-2048 key generations", keygens)
	if rep.keygen, err = measureKeygen(ctx, keygens); err != nil {
		return err
	}
	if o.skipMetering {
		rep.meteringSkipped = true
	} else {
		mo := meteringOptions{rounds: meterRounds, size: meterSize, limit: meterLimit, throttle: o.throttle, verbose: o.verbose}
		if o.quick {
			mo.rounds, mo.size, mo.limit = meterRoundsQuick, meterSizeQuick, meterLimitQuick
		}
		rep.metering, rep.meteringErr = benchMetering(ctx, t, work, mo, logf)
		reapOrphans(logf)
		if rep.meteringErr != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			logf("metering cost failed: %v", rep.meteringErr)
		}
	}

	defCert, err := newDefaultCert(work)
	if err != nil {
		return err
	}

	s, err := newStack(ctx, t, work, logf)
	if err != nil {
		return err
	}
	defer s.close()
	busy0, total0, err1 := cpuTotals()
	self0, err2 := selfCPU()
	routesStart := time.Now()
	rep.routes, err = benchRoutes(ctx, s, routeOptions{
		sizes: o.sizes, samples: o.samples, diagSamples: o.diagSamples, startSamples: o.startSamples, apiCalls: o.apiCalls,
		zbusRounds: o.zbusRounds, stormCalls: o.stormCalls, profileSecs: o.profileSecs, burstRoutes: o.burstRoutes, burstRounds: o.burstRounds,
		burstSizes: o.burstSizes, throttle: o.throttle, seed: o.seed, defCert: defCert, verbose: o.verbose, handover: !o.skipHandover,
	}, logf)
	// Stopped and reaped, the children's CPU time counts in selfCPU.
	s.close()
	if err != nil {
		return fmt.Errorf("time to route: %w", err)
	}
	rep.routesTook = time.Since(routesStart)
	busy1, total1, err3 := cpuTotals()
	self1, err4 := selfCPU()
	if errors.Join(err1, err2, err3, err4) == nil && total1 > total0 {
		cores := float64(rep.machine.cores)
		rep.cpuBusy = cores * float64(busy1-busy0) / float64(total1-total0)
		rep.cpuOthers = rep.cpuBusy - cores*float64(self1-self0)/float64(total1-total0)
	}
	rep.elapsed = time.Since(start)

	rep.printTable(os.Stdout)
	md := rep.markdown()
	if o.out == "" {
		fmt.Println()
		fmt.Print(md)
	} else {
		if err := writeFileAtomic(o.out, []byte(md)); err != nil {
			return err
		}
		logf("wrote %s", o.out)
	}
	failed = false
	return nil
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

// writeFileAtomic replaces path with data through a temporary file.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
