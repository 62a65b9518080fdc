package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets the report checks.
const (
	// scaleSize is the number of routes present from which the scale
	// targets apply (issue 12); below it, "no worse than today".
	scaleSize = 10000
	// targetPerFileRatio is the most ours' time to route may take relative
	// to the per-file floor's at scaleSize and above.
	targetPerFileRatio = 0.33
	// targetOneFileRatio is the most ours' time to route may take relative
	// to the one-file floor's at scaleSize and above.
	targetOneFileRatio = 1.5
	// targetCPURatio is the most Traefik CPU per change ours may cost
	// relative to the per-file floor's at scaleSize and above.
	targetCPURatio = 0.3
	// targetTodayRatio is "no worse than today" below scaleSize: today's
	// gateway wrote one file per route and was within this of the per-file
	// floor, in time to route and in Traefik CPU.
	targetTodayRatio = 1.2
	// targetStart is the longest the gateway may take from its start to
	// answering on zbus, with the routes on disk.
	targetStart = time.Second
	// targetAPI is the longest List and Metrics may take, p50.
	targetAPI = 100 * time.Millisecond
	// targetZbusRatio is the most a Set call may cost relative to its
	// floor, a no-op call plus one synced small write.
	targetZbusRatio = 1.2
	// targetMeterRatio is the least throughput with metering may keep of
	// the throughput without it.
	targetMeterRatio = 0.95
)

// report is everything one run measured, and how.
type report struct {
	started  time.Time
	elapsed  time.Duration
	command  string
	machine  machine
	versions versions
	opts     options
	seed     uint64

	routes []sizeResult
	// routesTook is how long the time-to-route part took.
	routesTook time.Duration
	// cpuBusy is how many cores were busy on average during the
	// time-to-route part, cpuOthers how many of them by processes that are
	// not the bench's.
	cpuBusy, cpuOthers float64
	// keygen are the times of RSA-2048 key generations.
	keygen []time.Duration

	dns        DNSBenchResult
	dnsErr     error
	dnsSkipped bool

	acme        acmeResult
	acmeErr     error
	acmeSkipped bool

	metering        meteringResult
	meteringErr     error
	meteringSkipped bool
}

// machine describes the computer the run was on.
type machine struct {
	cpu     string
	cores   int
	memory  uint64
	kernel  string
	distrib string
}

// versions are the versions of what was measured and measured with.
type versions struct {
	goVersion, traefik, redis, tree string
}

func readMachine() machine {
	m := machine{cpu: "unknown", cores: runtime.NumCPU(), kernel: "unknown", distrib: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "model name":
				if m.cpu == "unknown" {
					m.cpu = strings.TrimSpace(v)
				}
			case "processor":
				n++
			}
		}
		if n > 0 {
			m.cores = n
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(v); len(f) == 2 {
					kb, _ := strconv.ParseUint(f[0], 10, 64)
					m.memory = kb * 1024
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.distrib = strings.Trim(v, `"`)
			}
		}
	}
	return m
}

// readVersions asks each tool for its version; a failure is shown as such
// in the report rather than ending the run.
func readVersions(ctx context.Context, t tools, repo string) versions {
	v := versions{goVersion: runtime.Version()}
	v.traefik = firstField(ctx, t.traefik, []string{"version"}, "Version:")
	v.redis = firstField(ctx, t.redis, []string{"--version"}, "v=")
	if out, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--short", "HEAD").Output(); err == nil {
		v.tree = strings.TrimSpace(string(out))
		if st, err := exec.CommandContext(ctx, "git", "-C", repo, "status", "--porcelain").Output(); err == nil && len(st) > 0 {
			v.tree += " with uncommitted changes"
		}
	} else {
		v.tree = "unknown (not a git checkout)"
	}
	return v
}

// firstField runs bin with args and returns the word after prefix on the
// first line that holds it.
func firstField(ctx context.Context, bin string, args []string, prefix string) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if _, rest, ok := strings.Cut(line, prefix); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return f[0]
			}
		}
	}
	return fmt.Sprintf("unknown (%s %s: %v)", filepath.Base(bin), strings.Join(args, " "), err)
}

// summary describes a set of durations.
type summary struct {
	n              int
	p50, p99, mean time.Duration
}

// summarize returns nearest-rank percentiles: p99 of 50 samples is the
// largest.
func summarize(ds []time.Duration) summary {
	if len(ds) == 0 {
		return summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return summary{n: len(s), p50: rank(0.50), p99: rank(0.99), mean: sum / time.Duration(len(s))}
}

func routeSummary(ss []sample, f func(sample) time.Duration) summary {
	ds := make([]time.Duration, len(ss))
	for i, s := range ss {
		ds[i] = f(s)
	}
	return summarize(ds)
}

func minMax(ds []time.Duration) (lo, hi time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	return slices.Min(ds), slices.Max(ds)
}

// p50Range is "p50 (min–max)" of ds, or "–" for none.
func p50Range(ds []time.Duration) string {
	if len(ds) == 0 {
		return "–"
	}
	lo, hi := minMax(ds)
	if len(ds) == 1 {
		return ms(ds[0])
	}
	return fmt.Sprintf("%s (%s)", ms(summarize(ds).p50), fmtRange(lo, hi))
}

// fmtRange writes lo–hi in one unit: seconds when hi is 10 s or more, as ms
// does, milliseconds otherwise.
func fmtRange(lo, hi time.Duration) string {
	if hi >= 10*time.Second {
		return fmt.Sprintf("%.1f–%.1f s", lo.Seconds(), hi.Seconds())
	}
	return strings.TrimSuffix(ms(lo), " ms") + "–" + ms(hi)
}

func durations(ss []sample, f func(sample) time.Duration) []time.Duration {
	ds := make([]time.Duration, len(ss))
	for i, s := range ss {
		ds[i] = f(s)
	}
	return ds
}

func routeOf(s sample) time.Duration { return s.route }
func callOf(s sample) time.Duration  { return s.call }
func delOf(s sample) time.Duration   { return s.del }
func cpuOf(s sample) time.Duration   { return s.traefikCPU }

// ratio returns a/b, or NaN when b is zero.
func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

func fmtRatio(r float64) string {
	if math.IsNaN(r) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", r)
}

// ms formats d in milliseconds, or seconds from 10 s.
func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
}

func mib(b uint64) string {
	if b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

func µs(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }

// stat summarises one variant's samples at one size.
func (sr sizeResult) stat(v variant, f func(sample) time.Duration) summary {
	return routeSummary(sr.samples[v], f)
}

// verdict says whether a target is met, plainly.
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// yesNo is verdict for a table cell.
func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// routeTargets are the time-to-route targets at the size of sr: the
// largest ratio ours may have to the per-file floor, and to the one-file
// floor (NaN: no target).
func routeTargets(size int) (perFileMax, oneFileMax float64) {
	if size >= scaleSize {
		return targetPerFileRatio, targetOneFileRatio
	}
	return targetTodayRatio, math.NaN()
}

func cpuTarget(size int) float64 {
	if size >= scaleSize {
		return targetCPURatio
	}
	return targetTodayRatio
}

// within tells whether r is at most most; a NaN target always holds.
func within(r, most float64) bool {
	return math.IsNaN(most) || r <= most
}

// routeRatios are ours' p50 over each floor's p50, of f.
func (sr sizeResult) ratios(f func(sample) time.Duration) (perFileR, oneFileR float64) {
	o := sr.stat(ours, f).p50
	return ratio(o, sr.stat(perFile, f).p50), ratio(o, sr.stat(oneFile, f).p50)
}

// routeMet tells whether time to route meets its targets at sr's size.
func (sr sizeResult) routeMet() bool {
	pf, of := sr.ratios(routeOf)
	pMax, oMax := routeTargets(sr.size)
	return within(pf, pMax) && within(of, oMax)
}

func (sr sizeResult) cpuMet() bool {
	pf, _ := sr.ratios(cpuOf)
	return within(pf, cpuTarget(sr.size))
}

func (sr sizeResult) zbusRatio() float64 {
	if sr.zbus == nil {
		return math.NaN()
	}
	return ratio(summarize(sr.zbus.set).p50, summarize(sr.zbus.floor).p50)
}

// printTable writes the main results as plain text tables.
func (r *report) printTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "routes\tvariant\tn\tp50\tmin\tmax\tcall p50\tdelete p50\ttraefik cpu p50\t")
	for _, sr := range r.routes {
		for _, v := range variants {
			if len(sr.samples[v]) == 0 {
				continue
			}
			rs := durations(sr.samples[v], routeOf)
			lo, hi := minMax(rs)
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", sr.size, v, len(rs), ms(summarize(rs).p50), ms(lo), ms(hi),
				ms(sr.stat(v, callOf).p50), ms(sr.stat(v, delOf).p50), ms(sr.stat(v, cpuOf).p50))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "routes\tours/per-file\tours/one-file\tcpu ours/per-file\tstart p50\tList p50\tMetrics p50\tSet/floor\t")
	for _, sr := range r.routes {
		pf, of := sr.ratios(routeOf)
		cpf, _ := sr.ratios(cpuOf)
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", sr.size, fmtRatio(pf), fmtRatio(of), fmtRatio(cpf),
			ms(summarize(sr.starts).p50), ms(summarize(sr.list).p50), ms(summarize(sr.metrics).p50), fmtRatio(sr.zbusRatio()))
	}
	tw.Flush()
	for _, sr := range r.routes {
		if h := sr.handover; h != nil {
			fmt.Fprintf(w, "handover at %d routes: %d requests, %d failed, slowest %s, successor ready after %s\n", sr.size, h.requests, h.failed, ms(h.slowest), ms(h.readyAfter))
		}
		if st := sr.storm; st != nil {
			fmt.Fprintf(w, "boot storm at %d routes: %d calls in %s, %.0f traefik reloads, traefik cpu %s\n", sr.size, st.calls, ms(st.took), st.reloads, ms(st.traefikCPU))
		}
		if b := sr.burst; b != nil {
			fmt.Fprintf(w, "burst of %d at %d routes: ours %s, per-file floor %s\n", b.routes, sr.size, p50Range(b.ours), p50Range(b.floor))
		}
	}
	switch {
	case r.dnsSkipped:
		fmt.Fprintln(w, "dns: skipped")
	case r.dnsErr != nil:
		fmt.Fprintf(w, "dns: %v\n", r.dnsErr)
	default:
		fmt.Fprintf(w, "dns: gateway %.0f q/s, dnsmasq %.0f q/s (%s)\n", r.dns.OursQPS, r.dns.DnsmasqQPS, fmtRatio(r.dns.Ratio))
	}
	switch {
	case r.meteringSkipped:
		fmt.Fprintln(w, "metering: skipped")
	case r.meteringErr != nil:
		fmt.Fprintf(w, "metering: %v\n", r.meteringErr)
	default:
		for _, kr := range r.metering.kinds {
			fmt.Fprintf(w, "metering, %s: metered %.0f MB/s, unmetered %.0f MB/s (%s, target ≥ %.2f×: %s)\n",
				kr.kind.name, medianMBps(kr.metered), medianMBps(kr.unmetered), fmtRatio(kr.ratio()), targetMeterRatio,
				metOrNot(kr.ratio() >= targetMeterRatio))
		}
	}
	fmt.Fprintf(w, "run time %s (time to route and the rest with the gateway: %s)\n", r.elapsed.Round(time.Second), r.routesTook.Round(time.Second))
}

// markdown renders the whole report.
func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("<!-- Generated by `make bench` (go run ./bench -out docs/BENCHMARKS.md). Do not edit by hand: run it again. -->\n\n")
	p("# Benchmarks\n\n")
	p("*Generated by `make bench` on %s in %s; do not edit by hand, run it again.* ",
		r.started.UTC().Format("2006-01-02 15:04 MST"), r.elapsed.Round(time.Second))
	p("Every number comes from that one run on the one machine below. Absolute numbers move with the machine; the ratios, measured ")
	p("side by side in the same run, much less.\n\n")

	p("## Setup\n\n")
	p("| | |\n|---|---|\n")
	p("| Command | `%s` |\n", r.command)
	p("| Date | %s |\n", r.started.UTC().Format(time.RFC3339))
	p("| Run time | %s (with the gateway's stack: %s) |\n", r.elapsed.Round(time.Second), r.routesTook.Round(time.Second))
	p("| CPU | %s, %d cores |\n", r.machine.cpu, r.machine.cores)
	p("| Memory | %.1f GiB |\n", float64(r.machine.memory)/(1<<30))
	p("| Kernel | Linux %s (%s) |\n", r.machine.kernel, r.machine.distrib)
	p("| Go | %s |\n", r.versions.goVersion)
	p("| Traefik | %s |\n", r.versions.traefik)
	p("| redis-server | %s |\n", r.versions.redis)
	if r.dnsErr == nil && !r.dnsSkipped {
		p("| dnsperf, dnsmasq | %s, %s |\n", r.dns.DNSPerfVersion, r.dns.DnsmasqVersion)
	}
	p("| Gateway tree | %s |\n", r.versions.tree)
	p("| Samples | sizes %s; time to route %d per variant and size; %d gateway restarts, %d List and Metrics calls, %d zbus rounds per size; sample order seed %d |\n",
		joinInts(r.opts.sizes), r.opts.samples, r.opts.startSamples, r.opts.apiCalls, r.opts.zbusRounds, r.seed)
	p("| Other load | %.2f of %d cores busy on average with the gateway's stack, %.2f of them by processes other than the bench's |\n\n",
		r.cpuBusy, r.machine.cores, max(0, r.cpuOthers))

	r.writeSummary(p)
	r.writeTimeToRoute(p)
	r.writeCPU(p)
	r.writeStart(p)
	r.writeStorm(p)
	r.writeBursts(p)
	r.writeZbus(p)
	r.writeReload(p)
	r.writeProfile(p)
	r.writeDNS(p)
	r.writeACME(p)
	r.writeMemory(p)
	r.writeMetering(p)
	r.writeHandover(p)
	r.writeNotes(p)
	return b.String()
}

type printer func(format string, args ...any)

// scaleSizes and belowSizes split the sizes measured at scaleSize.
func (r *report) splitSizes() (below, scale []sizeResult) {
	for _, sr := range r.routes {
		if sr.size >= scaleSize {
			scale = append(scale, sr)
		} else {
			below = append(below, sr)
		}
	}
	return below, scale
}

func (r *report) writeSummary(p printer) {
	p("## Summary\n\n")
	below, scale := r.splitSizes()
	if len(r.routes) > 0 {
		if len(scale) == 0 {
			p("- **Time to route** and **Traefik CPU per change** at %s routes: not measured in this run (sizes %s).\n",
				groupInt(scaleSize), joinInts(r.opts.sizes))
		}
		for _, sr := range scale {
			o := sr.stat(ours, routeOf).p50
			pf, of := sr.ratios(routeOf)
			p("- **Time to route** at %s routes, p50: ours %s, per-file floor %s (%s; target ≤ %.2f×: %s), one-file floor %s (%s; target ≤ %.1f×: %s).\n",
				groupInt(sr.size), ms(o), ms(sr.stat(perFile, routeOf).p50), fmtRatio(pf), targetPerFileRatio, verdict(pf <= targetPerFileRatio),
				ms(sr.stat(oneFile, routeOf).p50), fmtRatio(of), targetOneFileRatio, verdict(of <= targetOneFileRatio))
			cpf, _ := sr.ratios(cpuOf)
			p("- **Traefik CPU per change** (publish + delete) at %s routes, p50: ours %s, per-file floor %s (%s; target ≤ %.1f×: %s); one-file floor %s.\n",
				groupInt(sr.size), ms(sr.stat(ours, cpuOf).p50), ms(sr.stat(perFile, cpuOf).p50), fmtRatio(cpf), targetCPURatio,
				verdict(cpf <= targetCPURatio), ms(sr.stat(oneFile, cpuOf).p50))
		}
		if len(below) > 0 {
			var parts []string
			ok := true
			for _, sr := range below {
				pf, _ := sr.ratios(routeOf)
				cpf, _ := sr.ratios(cpuOf)
				ok = ok && sr.routeMet() && sr.cpuMet()
				parts = append(parts, fmt.Sprintf("%s routes %s vs %s (%s), CPU %s vs %s (%s)", groupInt(sr.size),
					ms(sr.stat(ours, routeOf).p50), ms(sr.stat(perFile, routeOf).p50), fmtRatio(pf),
					ms(sr.stat(ours, cpuOf).p50), ms(sr.stat(perFile, cpuOf).p50), fmtRatio(cpf)))
			}
			p("- **No worse than today** below %s routes, ours vs the per-file floor (today's layout), time to route and Traefik CPU per change, p50: %s. Target ≤ %.1f× each: %s.\n",
				groupInt(scaleSize), strings.Join(parts, "; "), targetTodayRatio, verdict(ok))
		}
		var starts, apis []string
		startOK, apiOK := true, true
		for _, sr := range r.routes {
			st, l, m := summarize(sr.starts).p50, summarize(sr.list).p50, summarize(sr.metrics).p50
			startOK = startOK && len(sr.starts) > 0 && st < targetStart
			apiOK = apiOK && len(sr.list) > 0 && l < targetAPI && m < targetAPI
			starts = append(starts, fmt.Sprintf("%s routes %s", groupInt(sr.size), ms(st)))
			apis = append(apis, fmt.Sprintf("%s routes %s and %s", groupInt(sr.size), ms(l), ms(m)))
		}
		p("- **Gateway start** with the routes on disk to serving zbus, p50: %s. Target < %s: %s.\n", strings.Join(starts, "; "), targetStart, verdict(startOK))
		p("- **`List()` and `Metrics()`**, p50: %s. Target < %s each: %s.\n", strings.Join(apis, "; "), ms(targetAPI), verdict(apiOK))
		var hos []string
		hoOK := true
		for _, sr := range r.routes {
			if h := sr.handover; h != nil {
				hoOK = hoOK && h.failed == 0
				hos = append(hos, fmt.Sprintf("%s routes %d of %s failed, slowest %s", groupInt(sr.size), h.failed, groupInt(int(h.requests)), ms(h.slowest)))
			}
		}
		if len(hos) > 0 {
			p("- **Traefik handover** under HTTPS load: %s. Target 0 failed: %s.\n", strings.Join(hos, "; "), verdict(hoOK))
		}
		for _, sr := range r.routes {
			if st := sr.storm; st != nil {
				p("- **Boot storm** at %s routes: %s identical Set calls from %d callers in %s (%.0f calls/s); Traefik reloads caused: %.0f. Target 0: %s.\n",
					groupInt(sr.size), groupInt(st.calls), populateCallers, ms(st.took), float64(st.calls)/st.took.Seconds(), st.reloads, verdict(st.reloads == 0))
			}
			if b := sr.burst; b != nil {
				o, f := summarize(b.ours).p50, summarize(b.floor).p50
				p("- **Bursts** of %d new routes at %s routes present, %d callers, until all serve, p50: ours %s, per-file floor %s (%s).\n",
					b.routes, groupInt(sr.size), populateCallers, ms(o), ms(f), fmtRatio(ratio(o, f)))
			}
		}
		var zs []string
		zOK, zAny := true, false
		for _, sr := range r.routes {
			if sr.zbus == nil {
				continue
			}
			zAny = true
			rt := sr.zbusRatio()
			zOK = zOK && rt <= targetZbusRatio
			zs = append(zs, fmt.Sprintf("%s routes %s vs %s (%s)", groupInt(sr.size), µs(summarize(sr.zbus.set).p50), µs(summarize(sr.zbus.floor).p50), fmtRatio(rt)))
		}
		if zAny {
			p("- **zbus**: SetNamedProxy vs its floor (a no-op zbus call that does one synced small write), p50: %s. Target ≤ %.1f×: %s.\n",
				strings.Join(zs, "; "), targetZbusRatio, verdict(zOK))
		}
	}
	if !r.dnsSkipped && r.dnsErr == nil {
		p("- **DNS**: %.0f queries/s vs dnsmasq's %.0f (%s).\n", r.dns.OursQPS, r.dns.DnsmasqQPS, fmtRatio(r.dns.Ratio))
	}
	if !r.meteringSkipped && r.meteringErr == nil {
		var parts []string
		ok := true
		for _, kr := range r.metering.kinds {
			ok = ok && kr.ratio() >= targetMeterRatio
			parts = append(parts, fmt.Sprintf("%s %.0f vs %.0f MB/s (%s)", kr.kind.name, medianMBps(kr.metered), medianMBps(kr.unmetered), fmtRatio(kr.ratio())))
		}
		p("- **Metering cost**, throughput of one download with metering vs without, p50: %s. Target ≥ %.2f×: %s.\n",
			strings.Join(parts, "; "), targetMeterRatio, verdict(ok))
	}
	if len(r.routes) > 0 {
		var parts []string
		for _, sr := range r.routes {
			parts = append(parts, fmt.Sprintf("%s routes %s and %s", groupInt(sr.size), mib(sr.rss[rssGateway]), mib(sr.rss[rssOurs])))
		}
		p("- **Memory** (RSS), the gateway and its Traefik: %s.\n", strings.Join(parts, "; "))
	}
	limit, what := fullRunTarget, "`make bench`"
	if r.opts.quick {
		limit, what = quickRunTarget, "`-quick`"
	}
	p("- **Run time** of %s: %s. Target < %s: %s.\n\n", what, r.elapsed.Round(time.Second), fmtMinutes(limit), verdict(r.elapsed < limit))
}

// plural is n and noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func fmtMinutes(d time.Duration) string { return fmt.Sprintf("%.0f minutes", d.Minutes()) }

func (r *report) writeTimeToRoute(p printer) {
	p("## 1. Time to route\n\n")
	p("From the start of publishing a name route (HTTP, one backend on 127.0.0.1 that answers 200) to the first 200 from that backend ")
	p("through Traefik: HTTPS to the websecure entry point with SNI and Host the new name, certificate not verified (no CA: Traefik serves ")
	var probes, resumed int64
	for _, sr := range r.routes {
		probes, resumed = probes+sr.probes, resumed+sr.resumed
	}
	p("its default certificate), a new TCP connection and TLS session every %s, %s timeout per probe; the client offers to resume its ", pollInterval, probeTimeout)
	p("last session, which Traefik accepted for %.0f%% of the %d probes. After each sample the route is deleted the way it was made and the ",
		100*float64(resumed)/float64(max(probes, 1)), probes)
	p("bench waits for a 404, then until that Traefik's throttle window has closed (throttle + %s) and it has used at most %d clock tick of ", settleMargin, quietTicks)
	p("CPU in %s: every sample starts from an idle Traefik, and the number of routes stays constant.\n\n", quietWindow)
	p("Three Traefiks, the same binary and static configuration (the one the gateway generated, copied, with the file provider pointed at ")
	p("another folder and every entry point on another loopback port, throttle %s), each holding the same routes, samples of the three ", r.opts.throttle)
	p("interleaved in random order, one Traefik busy at a time (each sample ends on an idle Traefik; the floors' Traefiks are stopped ")
	p("between sizes, while their folders are filled, and started again on them):\n\n")
	p("- **ours**: `SetNamedProxy` and `DeleteNamedProxy` through zbus (redis-server on a unix socket) to the gateway, which runs its Traefik. ")
	p("The routes present were added through zbus.\n")
	p("- **per-file floor**: one file per route, as the gateway wrote them before its routes were grouped (a router with the certificate ")
	p("resolver of the domain's wildcard, and its service); a route is its file made in a folder Traefik does not watch and renamed in, ")
	p("one event, no fsync; a delete removes it.\n")
	p("- **one-file floor**: every route in one file, each rendered as the running gateway renders it (read back from the folder its ")
	p("Traefik watches, whatever the files are called, with whatever else the gateway keeps there); a route is the whole file rendered ")
	p("beforehand, written outside and renamed over the old one: the file provider's own limit, one file to parse and one event.\n\n")
	p("Targets: at %s routes ours ≤ %.2f× the per-file floor and ≤ %.1f× the one-file floor; below, no worse than today, ≤ %.1f× the per-file floor ",
		groupInt(scaleSize), targetPerFileRatio, targetOneFileRatio, targetTodayRatio)
	p("(today's gateway wrote one file per route and was within %.1f× of it). p50 with (min–max); \"call\" is the zbus call or the file ", targetTodayRatio)
	p("write alone; \"delete\" is from the start of the delete to the first 404.\n\n")
	p("| Routes present | Variant | Samples | time to route p50 (min–max) | call p50 | delete p50 |\n")
	p("|---:|---|---:|---:|---:|---:|\n")
	for _, sr := range r.routes {
		for _, v := range []variant{ours, perFile, oneFile} {
			if len(sr.samples[v]) == 0 {
				continue
			}
			name := string(v)
			if v == ours {
				name = "**ours**"
			}
			p("| %s | %s | %d | %s | %s | %s |\n", groupInt(sr.size), name, len(sr.samples[v]), p50Range(durations(sr.samples[v], routeOf)),
				ms(sr.stat(v, callOf).p50), ms(sr.stat(v, delOf).p50))
		}
	}
	p("\n| Routes present | ours / per-file floor | target | ours / one-file floor | target | met |\n")
	p("|---:|---:|---:|---:|---:|---|\n")
	for _, sr := range r.routes {
		pf, of := sr.ratios(routeOf)
		pMax, oMax := routeTargets(sr.size)
		oTarget := "–"
		if !math.IsNaN(oMax) {
			oTarget = fmt.Sprintf("≤ %.1f×", oMax)
		}
		p("| %s | %s | ≤ %.2g× | %s | %s | %s |\n", groupInt(sr.size), fmtRatio(pf), pMax, fmtRatio(of), oTarget, yesNo(sr.routeMet()))
	}
	p("\n")
	var missed []string
	for _, sr := range r.routes {
		if !sr.routeMet() {
			missed = append(missed, groupInt(sr.size))
		}
	}
	if len(missed) == 0 {
		p("The targets are met at every size.")
	} else {
		p("**Not met** at %s routes.", strings.Join(missed, ", "))
	}
	for _, sr := range r.routes {
		if _, of := sr.ratios(routeOf); of < 1 && sr.size > 0 {
			p(" At %s routes the one-file floor is slower than ours (%s): one file that holds every route is not the cheapest shape for "+
				"Traefik's file provider, so this floor bounds only how few files and events a change can take.", groupInt(sr.size), fmtRatio(of))
			break
		}
	}
	p("\n\n")
	for _, sr := range r.routes {
		if sr.reloads >= 0 && len(sr.samples[ours]) > 0 {
			p("At %s routes the gateway's Traefik counted %.0f reloads (`%s`) over ours' %d samples, a publish and a delete each. ",
				groupInt(sr.size), sr.reloads, reloadsMetric, len(sr.samples[ours]))
		}
	}
	p("\n\n")
}

// writeCPU shows what a change costs each Traefik in CPU.
func (r *report) writeCPU(p printer) {
	p("## 2. Traefik CPU per change\n\n")
	p("The CPU time (user + system, /proc/<pid>/stat) each Traefik used per sample of section 1: from the publish to an idle Traefik after ")
	p("the delete, two changes and the probes' handshakes. Targets: at %s routes ours ≤ %.1f× the per-file floor's; below, ≤ %.1f×. p50 (min–max).\n\n",
		groupInt(scaleSize), targetCPURatio, targetTodayRatio)
	p("| Routes present | ours | per-file floor | one-file floor | ours / per-file floor | target | met |\n")
	p("|---:|---:|---:|---:|---:|---:|---|\n")
	for _, sr := range r.routes {
		pf, _ := sr.ratios(cpuOf)
		p("| %s | %s | %s | %s | %s | ≤ %.2g× | %s |\n", groupInt(sr.size), p50Range(durations(sr.samples[ours], cpuOf)),
			p50Range(durations(sr.samples[perFile], cpuOf)), p50Range(durations(sr.samples[oneFile], cpuOf)), fmtRatio(pf), cpuTarget(sr.size), yesNo(sr.cpuMet()))
	}
	p("\nTraefik's file provider re-reads and re-parses every file of its folder on every event in it, and rebuilds every router on every ")
	p("configuration it applies: what a change costs grows with the routes present, and with the number of files they are in.\n\n")
}

func (r *report) writeStart(p printer) {
	p("## 3. Gateway start, List and Metrics\n\n")
	p("**Start**: the gateway process alone stopped (SIGTERM, waited for) and started again on the same state, its Traefik running: from the ")
	p("start of the process to the answer of a `List` sent through zbus right away (the call waits in the broker's queue until the gateway ")
	p("serves). The new gateway adopts the running Traefik. %d restarts per size. **List** and **Metrics**: %d calls of each through zbus, ",
		r.opts.startSamples, r.opts.apiCalls)
	p("one after the other, on an idle gateway. **Cold start** (no target): from starting the gateway, with no Traefik running, to its ")
	p("new Traefik serving the last route present. Targets: start < %s, List and Metrics < %s, p50. p50 (min–max).\n\n", targetStart, ms(targetAPI))
	p("| Routes present | start to zbus | adopted Traefik | List | Metrics | met | cold start, to routes served |\n")
	p("|---:|---:|---:|---:|---:|---|---:|\n")
	for _, sr := range r.routes {
		ok := len(sr.starts) > 0 && summarize(sr.starts).p50 < targetStart && summarize(sr.list).p50 < targetAPI && summarize(sr.metrics).p50 < targetAPI
		p("| %s | %s | %d of %d | %s | %s | %s | %s |\n", groupInt(sr.size), p50Range(sr.starts), sr.adopted, len(sr.starts),
			p50Range(sr.list), p50Range(sr.metrics), yesNo(ok), coldString(sr, ours))
	}
	p("\n")
}

func (r *report) writeStorm(p printer) {
	p("## 4. Boot storm\n\n")
	var st *stormResult
	var size int
	for _, sr := range r.routes {
		if sr.storm != nil {
			st, size = sr.storm, sr.size
		}
	}
	if st == nil {
		p("Not measured in this run (it runs at the largest size, when routes are present, with `-storm-calls` > 0).\n\n")
		return
	}
	p("What a node's restart does to the gateway: every workload sends its route again. %s `SetNamedProxy` calls from %d concurrent callers, ",
		groupInt(st.calls), populateCallers)
	p("each re-applying exactly what one of the %s routes present already is (same name, backend and mode), to the gateway and its idle ", groupInt(size))
	p("Traefik. Reloads are read from Traefik's `%s` on its metrics endpoint before the storm and after it, once Traefik is idle again. ", reloadsMetric)
	p("Target: 0 reloads.\n\n")
	p("| Routes present | calls | total time | calls/s | Traefik reloads | met | Traefik CPU | gateway CPU |\n")
	p("|---:|---:|---:|---:|---:|---|---:|---:|\n")
	p("| %s | %s | %s | %.0f | %.0f | %s | %s | %s |\n\n", groupInt(size), groupInt(st.calls), ms(st.took), float64(st.calls)/st.took.Seconds(),
		st.reloads, yesNo(st.reloads == 0), ms(st.traefikCPU), ms(st.gatewayCPU))
}

func (r *report) writeHandover(p printer) {
	p("## 12. Traefik handover\n\n")
	found := false
	for _, sr := range r.routes {
		h := sr.handover
		if h == nil {
			continue
		}
		if !found {
			p("The gateway stopped and started again with another `--traefik.readtimeout`, which changes Traefik's static configuration, ")
			p("as an upgrade does, under load: %d clients sending HTTPS requests to one route through the websecure entry point without pause, ", handoverClients)
			p("half on a new TLS connection each, half on a kept one, from %s before the stop to %s after the old Traefik exited. ", handoverBefore, handoverAfter)
			p("The new gateway hands Traefik over to a successor on the same sockets (docs/OPERATIONS.md, \"Handover\"). ")
			p("A request fails on any error or any answer but the backend's 200. Successor ready: from its start to serving every router ")
			p("of its predecessor, as the gateway logs it. Target: 0 failed requests.\n\n")
			p("| Routes present | requests | failed | met | slowest request | p99 | successor ready | gateway stop to old Traefik's exit |\n")
			p("|---:|---:|---:|---|---:|---:|---:|---:|\n")
			found = true
		}
		p("| %s | %s | %d | %s | %s | %s | %s | %s |\n", groupInt(sr.size), groupInt(int(h.requests)), h.failed, yesNo(h.failed == 0),
			ms(h.slowest), ms(h.p99), ms(h.readyAfter), ms(h.wall))
	}
	if !found {
		p("Not measured in this run.\n\n")
		return
	}
	for _, sr := range r.routes {
		if h := sr.handover; h != nil && h.firstFailure != "" {
			p("\nAt %s routes, failures from %s to %s after the gateway's stop; the first: `%s`\n", groupInt(sr.size), ms(h.failedFrom), ms(h.failedTo), h.firstFailure)
		}
	}
	p("\n")
}

func (r *report) writeBursts(p printer) {
	p("## 5. Bursts\n\n")
	found := false
	for _, sr := range r.routes {
		b := sr.burst
		if b == nil {
			continue
		}
		if !found {
			p("%d new routes at once: through the gateway, `SetNamedProxy` from %d concurrent callers (**ours**); and the same routes written by ",
				b.routes, populateCallers)
			p("hand, one file each in the per-file floor's layout, by %d concurrent writers, each file made outside the folder and renamed in ", populateCallers)
			p("(**per-file floor**). Timed from the first call or write to the Traefik's API (`/api/overview`, asked every %s) counting every ", burstPoll)
			p("new router; each of the routes is then checked to serve through the websecure entry point, and all are removed again. ")
			p("Traefik CPU is from the start of the burst to an idle Traefik after the removal. No target: the comparison is the measure.\n\n")
			p("| Routes present | ours, all served | ours, calls returned | per-file floor, all served | ours / floor | Traefik CPU ours | Traefik CPU floor |\n")
			p("|---:|---:|---:|---:|---:|---:|---:|\n")
			found = true
		}
		p("| %s | %s | %s | %s | %s | %s | %s |\n", groupInt(sr.size), p50Range(b.ours), p50Range(b.oursCalls), p50Range(b.floor),
			fmtRatio(ratio(summarize(b.ours).p50, summarize(b.floor).p50)), p50Range(b.oursCPU), p50Range(b.floorCPU))
	}
	if !found {
		p("Not measured in this run.\n\n")
		return
	}
	p("\nThe per-file floor's Traefik re-reads its whole folder once per file renamed in, one after the other: the bursts run where the ")
	p("routes present are few (`-burst-sizes`), as at %s routes the floor would take one full reload per new route.\n\n", groupInt(scaleSize))
}

func (r *report) writeZbus(p printer) {
	p("## 6. zbus\n\n")
	found := false
	for _, sr := range r.routes {
		z := sr.zbus
		if z == nil {
			continue
		}
		if !found {
			p("From the bench process, against the gateway running without Traefik, on the same broker, in rounds of one call of each: ")
			p("**no-op**, a call to an object the bench serves on the broker that does nothing; **floor**, a call to the same object that does ")
			p("one synced small write (a route's file: temporary file in a staging folder, fsync, rename, fsync of the folder — what makes a ")
			p("change survive a power cut); **write**, that write alone in the bench; **Set**, `SetNamedProxy` switching one of %d routes to ", zbusRoutes)
			p("its other backend, so each call changes its route. %d rounds per size. Target: Set ≤ %.1f× the floor, p50.\n\n", len(z.set), targetZbusRatio)
			p("| Routes present | no-op | write alone | floor (no-op + synced write) | Set | Set / floor | met |\n")
			p("|---:|---:|---:|---:|---:|---:|---|\n")
			found = true
		}
		rt := sr.zbusRatio()
		p("| %s | %s | %s | %s | %s | %s | %s |\n", groupInt(sr.size), µs(summarize(z.noop).p50), µs(summarize(z.write).p50),
			µs(summarize(z.floor).p50), µs(summarize(z.set).p50), fmtRatio(rt), yesNo(rt <= targetZbusRatio))
	}
	if !found {
		p("Not measured in this run (`-zbus-rounds 0`).\n\n")
		return
	}
	p("\n")
}

func (r *report) writeReload(p printer) {
	p("## 7. Traefik reload cost\n\n")
	p("One change on an idle Traefik is applied at once (the throttle only holds back a change that follows another within its window), ")
	p("so a floor's time to route is Traefik's reload: notice the event, re-read and parse the folder, rebuild every router and service, ")
	p("switch. \"Start\" is from starting each Traefik on a folder that already holds the routes to serving the last of them.\n\n")
	p("| Routes present | per-file floor, change p50 | one-file floor, change p50 | per-file floor, start | one-file floor, start | ours (gateway and Traefik), start |\n")
	p("|---:|---:|---:|---:|---:|---:|\n")
	for _, sr := range r.routes {
		p("| %s | %s | %s | %s | %s | %s |\n", groupInt(sr.size), ms(sr.stat(perFile, routeOf).p50), ms(sr.stat(oneFile, routeOf).p50),
			coldString(sr, perFile), coldString(sr, oneFile), coldString(sr, ours))
	}
	p("\n")
	k := summarize(r.keygen)
	p("Traefik generates a new self-signed RSA-2048 default certificate on **every** reload when none is configured ")
	p("(`pkg/tls/tlsmanager.go`, `getDefaultCertificate`); the gateway configures one (its reserved file, `docs/OPERATIONS.md`), the floors none. Generating an RSA-2048 key with the same Go ")
	p("on this machine takes %s p50, %s p99 (%d keys, in the bench process). ", ms(k.p50), ms(k.p99), k.n)
	for _, sr := range r.routes {
		if d := sr.samples[perFileDefCert]; len(d) > 0 {
			f := sr.stat(perFile, routeOf).p50
			p("With a default certificate configured (a `tls.stores.default.defaultCertificate` in a dynamic file of the per-file floor, %s) ", plural(len(d), "sample"))
			p("the per-file floor at %s routes goes from %s to %s p50 (%s). ", groupInt(sr.size), ms(f), ms(summarize(durations(d, routeOf)).p50),
				fmtRatio(ratio(summarize(durations(d, routeOf)).p50, f)))
		}
	}
	p("That is the cost the gateway's own default certificate takes off every change of ours.\n\n")
}

func (r *report) writeProfile(p printer) {
	for _, sr := range r.routes {
		pr := sr.profile
		if pr == nil {
			continue
		}
		p("### Where ours' Traefik spends its CPU at %s routes\n\n", groupInt(pr.size))
		p("A CPU profile of ours' Traefik (`api.debug`, `--traefik.debug`, on its loopback entry point) over %ds, while the bench ", pr.seconds)
		p("published and deleted %d routes through the gateway one after the other, as the samples do (not timed); ", pr.changes)
		p("`go tool pprof -top -cum`, the functions with the most CPU under them:\n\n")
		p("```\n")
		for _, line := range strings.Split(strings.TrimRight(pr.top, "\n"), "\n") {
			p("%s\n", line)
		}
		p("```\n\n")
	}
}

func coldString(sr sizeResult, v variant) string {
	if sr.size == 0 {
		return "–"
	}
	d, ok := sr.cold[v]
	if !ok {
		return "–"
	}
	return ms(d)
}

func (r *report) writeMemory(p printer) {
	p("## 10. Memory\n\n")
	p("Resident set size (VmRSS of /proc/<pid>/status) after the samples of each size.\n\n")
	p("| Routes present | gateway | its Traefik | per-file floor's Traefik | one-file floor's Traefik |\n")
	p("|---:|---:|---:|---:|---:|\n")
	for _, sr := range r.routes {
		p("| %s | %s | %s | %s | %s |\n", groupInt(sr.size), mib(sr.rss[rssGateway]), mib(sr.rss[rssOurs]), mib(sr.rss[rssPerFile]), mib(sr.rss[rssOneFile]))
	}
	p("\n")
}

func (r *report) writeDNS(p printer) {
	p("## 8. DNS\n\n")
	switch {
	case r.dnsSkipped:
		p("Skipped (`-skip-dns`).\n\n")
	case r.dnsErr != nil:
		p("Not measured: %s\n\n", oneLine(r.dnsErr))
	default:
		p("%s\n", r.dns.Markdown())
	}
}

func (r *report) writeACME(p printer) {
	p("## 9. Certificates\n\n")
	switch {
	case r.acmeSkipped:
		p("Skipped (`-skip-acme`).\n\n")
	case r.acmeErr != nil:
		p("Not measured: %s\n\n", oneLine(r.acmeErr))
	default:
		p("From the zbus call to the first TLS handshake verified against the CA's root, with Pebble as the CA, ")
		p("as the ACME end-to-end tests measure it: `go %s`, %d runs. ", strings.Join(acmeTestArgs, " "), r.acme.Runs)
		p("Pebble answers without Retry-After, so lego sometimes waits its fixed ~5 s before checking again: the spread is lego's, not the gateway's.\n\n")
		p("%s\n", r.acme.Markdown())
	}
}

func metOrNot(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func (r *report) writeMetering(p printer) {
	p("## 11. Metering cost\n\n")
	switch {
	case r.meteringSkipped:
		p("Skipped (`-skip-metering`).\n\n")
		return
	case r.meteringErr != nil:
		p("Not measured: %s\n\n", oneLine(r.meteringErr))
		return
	}
	m := r.metering
	p("The gateway counts every byte between Traefik and each route's backends in the kernel, in an nftables table of its own ")
	p("(`--metering.table`, family inet): two base chains, on the output and input hooks, look up the address and port of every TCP ")
	p("packet the node sends and receives, and those of a backend go through its pair of counters. What that costs the traffic: the ")
	p("throughput of one download over one connection through Traefik's websecure entry point (HTTPS, SNI and Host the route's name, ")
	p("certificate not verified), with the table and without it, side by side in the same run, for two name routes on a stack of their ")
	p("own — one to a backend that serves HTTP, TLS terminated by Traefik, and one TLS passthrough route to a backend that serves HTTPS, ")
	p("Traefik copying the bytes. The backends and the client run in the bench process on 127.0.0.1, so both legs, client–Traefik and ")
	p("Traefik–backend, are loopback traffic. Each sample downloads %d MiB or for %s, whichever ends first, timed from the request ",
		m.size>>20, m.limit)
	p("(connection and TLS session up) to the last byte, in MB/s (10⁶ bytes); one unrecorded download of each route comes first.\n\n")
	p("How the toggle works: before each block of samples, of either state, the bench restarts the gateway, which adopts the running ")
	p("Traefik and makes the table and the counters of every route again at its start, and checks with `meter.Kernel.Read` that both ")
	p("backend addresses are counted. **With** metering measures that table as it is; **without** first deletes it ")
	p("(`meter.Kernel.Remove`; the gateway goes on routing, and reads no counters from the missing table) and checks that it is gone, right ")
	p("away and after each sample. Both then wait until the gateway and Traefik are idle. %d rounds, each one sample of each state and route, in the ", m.rounds)
	p("order MU UM MU …, so that the machine's noise hits both states and neither always goes first. ")
	p("Target: metered ≥ %.2f× unmetered, of the median MB/s.\n\n", targetMeterRatio)
	p("| Route | unmetered p50 | (min–max) | metered p50 | (min–max) | metered/unmetered | ≥ %.2f× | rounds where metered was slower | counted/moved (metered) |\n", targetMeterRatio)
	p("|---|---:|---:|---:|---:|---:|---|---:|---:|\n")
	var missed []string
	var undercount bool
	for _, kr := range m.kinds {
		ulo, uhi := spread(kr.unmetered)
		mlo, mhi := spread(kr.metered)
		clo, chi := kr.countedRange()
		ok := "yes"
		if !(kr.ratio() >= targetMeterRatio) {
			ok = "**no**"
			missed = append(missed, kr.kind.name)
		}
		if clo < 1 {
			undercount = true
		}
		p("| %s | %.0f MB/s | %.0f–%.0f | %.0f MB/s | %.0f–%.0f | %s | %s | %d of %d | %.4f–%.4f× |\n", kr.kind.name,
			medianMBps(kr.unmetered), ulo, uhi, medianMBps(kr.metered), mlo, mhi, fmtRatio(kr.ratio()), ok,
			kr.slowerRounds(), min(len(kr.metered), len(kr.unmetered)), clo, chi)
	}
	p("\n")
	if len(missed) > 0 {
		p("**The target is not met** for %s: with the table in place the download is more than %.0f%% slower in this run. ",
			strings.Join(missed, " and "), 100*(1-targetMeterRatio))
		p("Where metered was slower in most rounds the cost is the table's, not the machine's noise: its chains see every TCP packet of ")
		p("the node, counted or not — here both legs of each download, on loopback — while the gateway process used at most %s of CPU ",
			ms(m.maxGatewayCPU()))
		p("during any sample. ")
		p("Where the two spreads (min–max) overlap widely and the rounds go both ways, the run is too noisy to tell.\n\n")
	} else {
		p("The target is met for both routes.\n\n")
	}
	notes := []string{"Counted/moved is how much the counter of what the backend sent grew over a metered sample, over the bytes of the " +
		"body that arrived: the counters count whole IP packets, headers included (and, for passthrough, the TLS records' framing), so " +
		"it is at least 1 when no byte escapes them; the bench fails a sample where it is not."}
	if undercount {
		notes = append(notes, "**Some samples counted fewer bytes than were moved.**")
	}
	if len(m.restarts) > 0 {
		notes = append(notes, fmt.Sprintf("The gateway was restarted %d times (p50 %s until counted and served again) and adopted the "+
			"running Traefik %d of those times.", len(m.restarts), ms(summarize(m.restarts).p50), m.adopted))
	}
	if m.unsettled > 0 {
		notes = append(notes, fmt.Sprintf("%d blocks of samples started before the gateway and Traefik were idle (the wait timed out).", m.unsettled))
	}
	if m.capped > 0 {
		notes = append(notes, fmt.Sprintf("%d samples were ended by the %s bound before %d MiB.", m.capped, m.limit, m.size>>20))
	}
	if !math.IsNaN(m.busy) {
		load := fmt.Sprintf("During the rounds processes kept %.2f of %d cores busy on average (interrupts left out), %.2f of them "+
			"processes other than the bench, its Traefik and its redis-server", m.busy, r.machine.cores, m.others)
		if m.others > 0.2 {
			load += ": **expect noise**, the samples share the machine with that load"
		}
		notes = append(notes, load+".")
	}
	p("%s\n\n", strings.Join(notes, " "))
}

func (r *report) writeNotes(p printer) {
	notes := []string{
		"Traefik tries to get the wildcard certificate of the gateway domain from the ACME server when a router names its resolver and " +
			"fails at once (the bench gives it a closed port, never Let's Encrypt); on a node with the certificate that attempt does not happen",
		"zos's default throttle (2 s) is no longer measured: on an idle Traefik it does not delay the first change, only the changes " +
			"that follow within its window, and it needs a Traefik of its own per size",
	}
	for _, sr := range r.routes {
		if sr.populated > 0 {
			notes = append(notes, fmt.Sprintf("%s routes were added through zbus in %s (%.0f calls/s, %d concurrent callers, the gateway running without Traefik)",
				groupInt(sr.populated), sr.populate.Round(100*time.Millisecond), float64(sr.populated)/sr.populate.Seconds(), populateCallers))
		}
		if sr.unsettled > 0 {
			notes = append(notes, fmt.Sprintf("at %s routes %d samples started before Traefik was idle (the wait timed out after %s)",
				groupInt(sr.size), sr.unsettled, settleTimeout))
		}
	}
	if r.cpuOthers > 0.2 {
		notes = append(notes, fmt.Sprintf("other processes kept %.2f cores busy on average with the gateway's stack: expect noise, mostly in the max", r.cpuOthers))
	}
	p("## Notes\n\n")
	for _, n := range notes {
		p("- %s.\n", n)
	}
	p("\n")
}

func oneLine(err error) string {
	s := strings.ReplaceAll(err.Error(), "\n", " ")
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return "`" + strings.ReplaceAll(s, "`", "'") + "`"
}

// groupInt writes n with thousands separators.
func groupInt(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}
