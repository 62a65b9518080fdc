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
	// targetFloorRatio is the most ours may take relative to the floor.
	targetFloorRatio = 1.2
	// targetZbusRatio is the most SetNamedProxy may cost relative to a
	// no-op call through zbus.
	targetZbusRatio = 2.0
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

	zbus    zbusResult
	zbusErr error

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

func µs(ns float64) string { return fmt.Sprintf("%.0f µs", ns/1e3) }

// stat summarises one variant's samples at one size.
func (sr sizeResult) stat(v variant, f func(sample) time.Duration) summary {
	return routeSummary(sr.samples[v], f)
}

// printTable writes the results as plain text tables.
func (r *report) printTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "routes\tvariant\tn\tp50\tp99\tmean\tcall p50\tdelete p50\t")
	for _, sr := range r.routes {
		for _, v := range variants {
			if len(sr.samples[v]) == 0 {
				continue
			}
			rs, cs, ds := sr.stat(v, routeOf), sr.stat(v, callOf), sr.stat(v, delOf)
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", sr.size, v, rs.n, ms(rs.p50), ms(rs.p99), ms(rs.mean), ms(cs.p50), ms(ds.p50))
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "routes\tours/floor p50\tp99\tzos/ours p50\tp99\t")
	for _, sr := range r.routes {
		o, f, z := sr.stat(ours, routeOf), sr.stat(floor, routeOf), sr.stat(zos, routeOf)
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t\n", sr.size, fmtRatio(ratio(o.p50, f.p50)), fmtRatio(ratio(o.p99, f.p99)),
			fmtRatio(ratio(z.p50, o.p50)), fmtRatio(ratio(z.p99, o.p99)))
	}
	tw.Flush()
	if r.zbusErr == nil {
		fmt.Fprintf(w, "\nzbus: no-op %s, SetNamedProxy %s (%s), DirWrite %s\n", µs(r.zbus.Noop), µs(r.zbus.SetNamedProxy),
			fmtRatio(r.zbus.SetNamedProxy/r.zbus.Noop), µs(r.zbus.DirWrite))
	} else {
		fmt.Fprintf(w, "\nzbus: %v\n", r.zbusErr)
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
			lo, hi := kr.countedRange()
			fmt.Fprintf(w, "metering, %s: metered %.0f MB/s, unmetered %.0f MB/s (%s, target ≥ %.2f×: %s; slower in %d of %d rounds), counted/moved %.4f–%.4f×\n",
				kr.kind.name, medianMBps(kr.metered), medianMBps(kr.unmetered), fmtRatio(kr.ratio()), targetMeterRatio,
				metOrNot(kr.ratio() >= targetMeterRatio), kr.slowerRounds(), min(len(kr.metered), len(kr.unmetered)), lo, hi)
		}
	}
	k := summarize(r.keygen)
	fmt.Fprintf(w, "rsa-2048 keygen: p50 %s, p99 %s (%d keys)\n", ms(k.p50), ms(k.p99), k.n)
	for _, sr := range r.routes {
		fmt.Fprintf(w, "rss with %d routes: gateway %s, traefik %s (zos %s)\n", sr.size, mib(sr.phases[phaseMain].gatewayRSS),
			mib(sr.phases[phaseMain].traefikRSS), mib(sr.phases[phaseZos].traefikRSS))
	}
	fmt.Fprintf(w, "cpu during time to route: %.2f cores busy, %.2f by other processes\n", r.cpuBusy, r.cpuOthers)
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
	p("| Run time | %s (time to route: %s) |\n", r.elapsed.Round(time.Second), r.routesTook.Round(time.Second))
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
	p("| Samples | %d per main variant and size, %d per diagnostic variant; sizes %s; sample order seed %d |\n",
		r.opts.samples, r.opts.diagSamples, joinInts(r.opts.sizes), r.seed)
	p("| Other load | %.2f of %d cores busy on average during time to route, %.2f of them by processes other than the bench's |\n\n",
		r.cpuBusy, r.machine.cores, max(0, r.cpuOthers))

	r.writeSummary(p)
	r.writeTimeToRoute(p)
	r.writeReload(p)
	r.writeZbus(p)
	r.writeDNS(p)
	r.writeACME(p)
	r.writeMemory(p)
	r.writeMetering(p)
	r.writeNotes(p)
	return b.String()
}

type printer func(format string, args ...any)

func (r *report) writeSummary(p printer) {
	p("## Summary\n\n")
	var missed int
	var parts []string
	for _, sr := range r.routes {
		o, f := sr.stat(ours, routeOf), sr.stat(floor, routeOf)
		rt := ratio(o.p50, f.p50)
		if !(rt <= targetFloorRatio) {
			missed++
		}
		parts = append(parts, fmt.Sprintf("%s routes %s vs %s (%s)", groupInt(sr.size), ms(o.p50), ms(f.p50), fmtRatio(rt)))
	}
	verdict := "met at every size"
	if missed > 0 {
		verdict = fmt.Sprintf("**not met** at %d of %d sizes — see [where ours' time goes](#where-ours-time-goes)", missed, len(r.routes))
	}
	p("- **Time to route**, p50, ours vs the floor: %s. Target ≤ %.1f×: %s.\n", strings.Join(parts, "; "), targetFloorRatio, verdict)
	if !r.opts.skipZos {
		var zs []string
		for _, sr := range r.routes {
			o, z := sr.stat(ours, routeOf), sr.stat(zos, routeOf)
			zs = append(zs, fmt.Sprintf("%s routes %s (%s ours)", groupInt(sr.size), ms(z.p50), fmtRatio(ratio(z.p50, o.p50))))
		}
		p("- **zos's default throttle** (%s), p50: %s.\n", r.opts.zosThrottle, strings.Join(zs, "; "))
	}
	if len(r.routes) > 0 {
		var rs []string
		for _, sr := range r.routes {
			rs = append(rs, fmt.Sprintf("%s routes %s", groupInt(sr.size), ms(sr.stat(floor, routeOf).p50)))
		}
		p("- **Traefik's reload** (one change on an idle Traefik, the floor), p50: %s.\n", strings.Join(rs, "; "))
	}
	if n := len(r.routes); n > 0 {
		last := r.routes[n-1]
		o, f := last.stat(ours, cpuOf), last.stat(floor, cpuOf)
		p("- **Traefik CPU** per route published and deleted with %s routes, p50: ours %s, floor %s (%s).\n",
			groupInt(last.size), ms(o.p50), ms(f.p50), fmtRatio(ratio(o.p50, f.p50)))
	}
	if r.zbusErr == nil {
		rt := r.zbus.SetNamedProxy / r.zbus.Noop
		ok := "met"
		if rt > targetZbusRatio {
			ok = "**not met**"
		}
		p("- **zbus**: SetNamedProxy %s per call vs %s for a no-op call (%s; target ≤ %.0f×: %s); the synced write alone is %s.\n",
			µs(r.zbus.SetNamedProxy), µs(r.zbus.Noop), fmtRatio(rt), targetZbusRatio, ok, µs(r.zbus.DirWrite))
	}
	if !r.dnsSkipped && r.dnsErr == nil {
		p("- **DNS**: %.0f queries/s vs dnsmasq's %.0f (%s).\n", r.dns.OursQPS, r.dns.DnsmasqQPS, fmtRatio(r.dns.Ratio))
	}
	if !r.meteringSkipped && r.meteringErr == nil {
		var parts []string
		missed := 0
		for _, kr := range r.metering.kinds {
			if !(kr.ratio() >= targetMeterRatio) {
				missed++
			}
			parts = append(parts, fmt.Sprintf("%s %.0f vs %.0f MB/s (%s)", kr.kind.name, medianMBps(kr.metered), medianMBps(kr.unmetered), fmtRatio(kr.ratio())))
		}
		verdict := "met for both"
		if missed > 0 {
			verdict = fmt.Sprintf("**not met** for %d of %d — see [metering cost](#7-metering-cost)", missed, len(r.metering.kinds))
		}
		p("- **Metering cost**, throughput of one download with metering vs without, p50: %s. Target ≥ %.2f×: %s.\n",
			strings.Join(parts, "; "), targetMeterRatio, verdict)
	}
	if len(r.routes) > 0 {
		first, last := r.routes[0], r.routes[len(r.routes)-1]
		p("- **Memory** (RSS): gateway %s with %s routes, %s with %s; Traefik %s and %s.\n",
			mib(first.phases[phaseMain].gatewayRSS), groupInt(first.size), mib(last.phases[phaseMain].gatewayRSS), groupInt(last.size),
			mib(first.phases[phaseMain].traefikRSS), mib(last.phases[phaseMain].traefikRSS))
	}
	p("\n")
}

func (r *report) writeTimeToRoute(p printer) {
	p("## 1. Time to route\n\n")
	p("From the start of publishing a name route (HTTP, one backend on 127.0.0.1 that answers 200) to the first 200 from that backend ")
	p("through Traefik: HTTPS to the websecure entry point with SNI and Host the new name, certificate not verified (no CA: Traefik serves ")
	var probes, resumed int64
	for _, sr := range r.routes {
		for _, pr := range sr.phases {
			probes, resumed = probes+pr.probes, resumed+pr.resumed
		}
	}
	p("its default certificate), a new TCP connection and TLS session every %s, %s timeout per probe. ", pollInterval, probeTimeout)
	p("The client offers to resume its last session with the name, which Traefik accepted for %.0f%% of the %d probes: a resumed ",
		100*float64(resumed)/float64(max(probes, 1)), probes)
	p("handshake costs Traefik no RSA signature, so the probes take less of the CPU the reload needs. ")
	p("After each sample the route is deleted the way it was made and the bench waits for Traefik to answer 404, then until Traefik's ")
	p("throttle window has closed (throttle + %s) and Traefik has used at most %d clock tick of CPU in %s: every sample starts from an idle ",
		settleMargin, quietTicks, quietWindow)
	p("Traefik, as a workload deployed on a quiet node does, and the number of routes stays constant. The routes present were added ")
	p("through zbus beforehand, each a real name route to the backend.\n\n")
	p("Variants:\n\n")
	p("- **ours**: `SetNamedProxy` through zbus (redis-server on a unix socket), the gateway run with `--traefik.throttle %s`.\n", r.opts.throttle)
	p("- **floor**: the same route file written by hand (the file the gateway wrote for a first route, names changed): written in a folder ")
	p("Traefik does not watch and renamed into `<root>/proxy/`, so Traefik sees one event; no zbus, no fsync. The best any control plane ")
	p("can do with this Traefik and throttle.\n")
	if !r.opts.skipZos {
		p("- **zos**: ours with the gateway run with `--traefik.throttle %s`, Traefik's default `providersThrottleDuration`, which the ", r.opts.zosThrottle)
		p("upstream zos gateway runs with.\n")
	}
	if r.opts.diagSamples > 0 {
		p("- Diagnostics, %d samples each: **writer** — the gateway's own writer (`pkg/traefik` `Dir.Write`: temporary file in a staging ", r.opts.diagSamples)
		p("folder Traefik does not watch, write, chmod, fsync, rename into the watched folder, fsync it) called by the bench, i.e. ours without ")
		p("zbus; **writer-outside** — the same steps written out in the bench, a control for the writer; **floor-defcert** — the floor against a Traefik given a ")
		p("default certificate (section 2).\n")
	}
	p("\nours, floor, writer and writer-outside samples are interleaved in random order against one gateway and Traefik; floor-defcert and zos ")
	p("each run against another start of the gateway on the same folder. p99 is the nearest-rank 99th percentile: of 50 samples, the largest. ")
	p("\"call\" is the zbus call or the file write alone; \"delete\" is from the start of the delete to the first 404.\n\n")

	p("| Routes present | Variant | Samples | p50 | p99 | mean | call p50 | delete p50 |\n")
	p("|---:|---|---:|---:|---:|---:|---:|---:|\n")
	for _, sr := range r.routes {
		for _, v := range variants {
			if len(sr.samples[v]) == 0 {
				continue
			}
			rs, cs, ds := sr.stat(v, routeOf), sr.stat(v, callOf), sr.stat(v, delOf)
			name := string(v)
			if v == ours || v == floor || v == zos {
				name = "**" + name + "**"
			}
			p("| %s | %s | %d | %s | %s | %s | %s | %s |\n", groupInt(sr.size), name, rs.n, ms(rs.p50), ms(rs.p99), ms(rs.mean), ms(cs.p50), ms(ds.p50))
		}
	}
	p("\n| Routes present | ours / floor p50 | ours / floor p99 | ≤ %.1f× | zos / ours p50 | zos / ours p99 |\n", targetFloorRatio)
	p("|---:|---:|---:|---|---:|---:|\n")
	for _, sr := range r.routes {
		o, f, z := sr.stat(ours, routeOf), sr.stat(floor, routeOf), sr.stat(zos, routeOf)
		rt := ratio(o.p50, f.p50)
		mark := "yes"
		if !(rt <= targetFloorRatio) {
			mark = "**no**"
		}
		p("| %s | %s | %s | %s | %s | %s |\n", groupInt(sr.size), fmtRatio(rt), fmtRatio(ratio(o.p99, f.p99)), mark,
			fmtRatio(ratio(z.p50, o.p50)), fmtRatio(ratio(z.p99, o.p99)))
	}
	p("\n")
	if !r.opts.skipZos {
		p("On an idle Traefik the throttle does not delay the first change: Traefik applies it and only holds back the changes that follow ")
		p("within the window. The delete that follows each publish shows what zos's 2 s throttle costs a node that makes several changes in ")
		p("a row: its \"delete p50\" above is about the throttle period, against ours' reload time.\n\n")
	}
	r.writeBreakdown(p)
}

// writeBreakdown splits the gap between ours and the floor with the
// diagnostic variants: zbus (ours − writer), the writer's temporary file in
// the watched folder (writer − writer-outside) and the fsyncs
// (writer-outside − floor).
func (r *report) writeBreakdown(p printer) {
	p("### Where ours' time goes\n\n")
	if r.opts.diagSamples == 0 {
		p("Not measured (`-diag-samples 0`).\n\n")
		return
	}
	p("Differences of p50s, each the cost of one step between the floor and ours:\n\n")
	p("| Routes present | ours − floor | zbus and the module (ours − writer) | writer vs. its control (writer − writer-outside) | fsyncs (writer-outside − floor) | zbus call alone (p50) |\n")
	p("|---:|---:|---:|---:|---:|---:|\n")
	var gapped, tmpDominates, fixWorks int
	for _, sr := range r.routes {
		o, f := sr.stat(ours, routeOf).p50, sr.stat(floor, routeOf).p50
		w, wo := sr.stat(writer, routeOf).p50, sr.stat(writerOutside, routeOf).p50
		gap := o - f
		if gap > 0 && ratio(o, f) > targetFloorRatio {
			gapped++
			if w-wo > gap/2 {
				tmpDominates++
			}
			if ratio(wo, f) <= targetFloorRatio {
				fixWorks++
			}
		}
		p("| %s | %s | %s | %s | %s | %s |\n", groupInt(sr.size), signed(gap), signed(o-w), signed(w-wo), signed(wo-f), ms(sr.stat(ours, callOf).p50))
	}
	p("\n")
	r.writeCPU(p)
	if gapped == 0 {
		p("Ours is within %.1f× of the floor at every size.\n\n", targetFloorRatio)
		return
	}
	p("How Traefik %s handles a change (read in its source): the file provider re-reads and re-parses **every** file of the folder on **every** ", r.versions.traefik)
	p("inotify event in the folder, whatever the file (`pkg/provider/file/file.go`, `addWatcher`); the aggregator passes the first ")
	p("configuration after a quiet period on at once, then sleeps `providersThrottleDuration` before passing on the newest one ")
	p("(`pkg/provider/aggregator/aggregator.go`, `maybeThrottledProvide`) — even when that first configuration is unchanged. Any event in the ")
	p("folder before the route's own rename (a temporary file created there, say) re-reads the folder, finds no new route, and opens the ")
	p("throttle window; the configuration with the route then waits for the window to close — one throttle period on an idle Traefik ")
	p("(%s here, %s with zos's default) — and, with many routes, for that useless re-read to finish before its own starts.\n\n", r.opts.throttle, r.opts.zosThrottle)
	if tmpDominates > 0 {
		var maxCall time.Duration
		for _, sr := range r.routes {
			maxCall = max(maxCall, sr.stat(ours, callOf).p50)
		}
		p("The table shows it: at %d of the %d sizes where ours misses the target, the temporary file in the watched folder is most of the gap; ", tmpDominates, gapped)
		p("the zbus call itself, fsyncs included, takes %s p50 at most (the rest of ours − writer is the noise of %d-sample diagnostics).",
			ms(maxCall), r.opts.diagSamples)
		if fixWorks > 0 {
			p(" The writer-outside variant — the same writer, fsyncs included, with the temporary file elsewhere — is within %.1f× of the floor at %d of those sizes.", targetFloorRatio, fixWorks)
		}
		p("\n\n")
	} else {
		p("In this run the temporary file does not account for most of the gap: see the other columns.\n\n")
	}
	p("What would close the gap (a change to `pkg/traefik/writer.go`, not made by the bench): create the temporary file outside the watched ")
	p("folder, on the same filesystem — a sibling folder such as `<root>/proxy.tmp/`, or a subfolder of `proxy/` (Traefik watches the folder, ")
	p("not its subfolders) — with mode 0644 at creation rather than a chmod after, then fsync, rename into `proxy/` and fsync `proxy/` as now. ")
	p("Traefik then sees one event per change, the rename, and crash consistency is unchanged.\n\n")
}

// writeCPU shows what each variant costs Traefik in CPU, whatever it does
// to latency.
func (r *report) writeCPU(p printer) {
	p("Traefik's CPU per sample — publishing one route and deleting it, the probes' handshakes included — p50, and the CPU of one event ")
	p("in the folder that changes nothing (a file Traefik does not load, renamed in or removed):\n\n")
	p("| Routes present | ours | floor | writer | writer-outside | event that changes nothing |\n")
	p("|---:|---:|---:|---:|---:|---:|\n")
	for _, sr := range r.routes {
		rr := summarize(sr.phases[phaseMain].reread)
		p("| %s | %s | %s | %s | %s | %s |\n", groupInt(sr.size), msOrDash(sr.stat(ours, cpuOf)), msOrDash(sr.stat(floor, cpuOf)),
			msOrDash(sr.stat(writer, cpuOf)), msOrDash(sr.stat(writerOutside, cpuOf)), msOrDash(rr))
	}
	p("\n")
	if len(r.routes) == 0 {
		return
	}
	last := r.routes[len(r.routes)-1]
	rr := summarize(last.phases[phaseMain].reread)
	if rr.n > 0 {
		p("Traefik re-reads the whole folder on every event in it, whatever the file: at %s routes an event that changes nothing costs ",
			groupInt(last.size))
		p("about %s of CPU (p50). The gateway's writer therefore stages its temporary file outside the folder: a publish is one rename, ", ms(rr.p50))
		p("the same single event as the floor (a temporary file inside would add create, write and chmod events, each a whole re-read).\n\n")
	}
}

func signed(d time.Duration) string {
	if d < 0 {
		return "−" + ms(-d)
	}
	return "+" + ms(d)
}

func (r *report) writeReload(p printer) {
	p("## 2. Traefik reload cost\n\n")
	p("The floor is Traefik's reload cost plus the probe's resolution: one event on an idle Traefik is passed on at once (the throttle ")
	p("only delays a change that follows another within the throttle period), so the floor is the time to notice the event, re-read ")
	p("and parse the whole folder, rebuild every router and service, and switch. \"Start\" is from starting the gateway on a folder that ")
	p("already holds the routes to Traefik serving them.\n\n")
	p("| Routes present | change applied (floor) p50 | p99 | with a default certificate (floor-defcert) p50 | start, throttle %s |", r.opts.throttle)
	if !r.opts.skipZos {
		p(" start, throttle %s |", r.opts.zosThrottle)
	}
	p("\n|---:|---:|---:|---:|---:|")
	if !r.opts.skipZos {
		p("---:|")
	}
	p("\n")
	for _, sr := range r.routes {
		f, d := sr.stat(floor, routeOf), sr.stat(floorDefCert, routeOf)
		p("| %s | %s | %s | %s | %s |", groupInt(sr.size), ms(f.p50), ms(f.p99), msOrDash(d), coldString(sr, phaseMain))
		if !r.opts.skipZos {
			p(" %s |", coldString(sr, phaseZos))
		}
		p("\n")
	}
	p("\n")
	k := summarize(r.keygen)
	p("Traefik generates a new self-signed RSA-2048 default certificate on **every** reload when none is configured ")
	p("(`pkg/tls/tlsmanager.go`, `getDefaultCertificate`), and the gateway configures none. Generating an RSA-2048 key with the same Go ")
	p("on this machine takes %s p50, %s p99 (%d keys, in the bench process). ", ms(k.p50), ms(k.p99), k.n)
	if len(r.routes) > 0 && len(r.routes[0].samples[floorDefCert]) > 0 {
		sr := r.routes[0]
		f, d := sr.stat(floor, routeOf), sr.stat(floorDefCert, routeOf)
		p("With a default certificate configured (a `tls.stores.default.defaultCertificate` in a dynamic file) the floor at %s routes goes ",
			groupInt(sr.size))
		p("from %s to %s p50 (%s). ", ms(f.p50), ms(d.p50), fmtRatio(ratio(d.p50, f.p50)))
	}
	p("A gateway that writes a default certificate once (the wildcard of its domain when it has one, a self-signed one otherwise) would ")
	p("take that cost off every change, for ours and the floor alike.\n\n")
	if len(r.routes) < 2 {
		return
	}
	first, last := r.routes[0], r.routes[len(r.routes)-1]
	f0, fN := first.stat(floor, routeOf), last.stat(floor, routeOf)
	o := last.stat(ours, routeOf)
	if last.size > first.size {
		per := (fN.p50 - f0.p50) * 1000 / time.Duration(last.size-first.size)
		p("Each 1,000 routes add about %s to a reload (p50, from %s to %s routes). ", ms(per), groupInt(first.size), groupInt(last.size))
	}
	if rr := summarize(last.phases[phaseMain].reread); rr.n > 0 {
		p("At %s routes, re-reading the folder alone — an event that changes nothing — costs Traefik %s of CPU (p50). ", groupInt(last.size), ms(rr.p50))
	}
	share := ratio(fN.p50, o.p50)
	if share >= 0.5 {
		p("**At %s routes Traefik's reload dominates time to route**: %s of ours' %s p50 (%.0f%%) is Traefik re-reading the folder ",
			groupInt(last.size), ms(fN.p50), ms(o.p50), 100*share)
		p("and rebuilding its routers — work that grows with the number of routes, not with the change. What would cut it:\n\n")
		p("- One event per change (section 1), which the writer keeps to: each extra event in the folder costs a whole re-read, at this ")
		p("size a reload of its own.\n")
		p("- Fewer, bigger files: the re-read opens and parses one file per route; routes grouped in a few files (say by a hash of ")
		p("the workload ID, each rewritten whole with the same temporary file and rename) cut the per-file cost, at the price of ")
		p("rewriting a bigger file per change.\n")
		p("- A default certificate (above), which takes the key generation off every reload.\n")
		p("- What remains is Traefik rebuilding every router on each change; no file-based provider avoids it.\n\n")
	} else {
		p("At %s routes the reload is %s of ours' %s p50 (%.0f%%): it does not dominate.\n\n", groupInt(last.size), ms(fN.p50), ms(o.p50), 100*share)
	}
}

func msOrDash(s summary) string {
	if s.n == 0 {
		return "–"
	}
	return ms(s.p50)
}

func coldString(sr sizeResult, phase string) string {
	pr, ok := sr.phases[phase]
	if !ok || sr.size == 0 {
		return "–"
	}
	return ms(pr.coldLoad)
}

func (r *report) writeZbus(p printer) {
	p("## 3. zbus\n\n")
	p("`go %s` compares `SetNamedProxy` through zbus with a no-op method served on the same broker; `go %s` measures the module's ",
		strings.Join(zbusBenchArgs, " "), strings.Join(dirWriteBenchArgs, " "))
	p("write alone: temporary file, fsync, rename, fsync of the folder — the two fsyncs make a route survive a crash of the node.\n\n")
	if r.zbusErr != nil {
		p("Not measured: %s\n\n", oneLine(r.zbusErr))
		return
	}
	rt := r.zbus.SetNamedProxy / r.zbus.Noop
	ok := "yes"
	if rt > targetZbusRatio {
		ok = "**no**"
	}
	p("| No-op call | SetNamedProxy | ratio | ≤ %.0f× | synced write (DirWrite) | write's share of SetNamedProxy |\n", targetZbusRatio)
	p("|---:|---:|---:|---|---:|---:|\n")
	p("| %s | %s | %s | %s | %s | %.0f%% |\n\n", µs(r.zbus.Noop), µs(r.zbus.SetNamedProxy), fmtRatio(rt), ok, µs(r.zbus.DirWrite),
		100*r.zbus.DirWrite/r.zbus.SetNamedProxy)
	extra := r.zbus.SetNamedProxy - r.zbus.Noop
	p("SetNamedProxy costs %s more than a no-op call; the synced write is %s of it, the rest is validation, rendering and the index. ",
		µs(extra), µs(r.zbus.DirWrite))
	if rt > targetZbusRatio {
		rest := r.zbus.SetNamedProxy - r.zbus.DirWrite
		p("Without the write the call would cost %s, %s a no-op call: the target is missed on the two fsyncs alone, ", µs(rest), fmtRatio(rest/r.zbus.Noop))
		p("which are what makes a route survive a crash of the node (the fsync of the file before the rename, of the folder after it). ")
		p("Against Traefik's side of time to route (section 1) they are small, and no Traefik event waits on them once the temporary ")
		p("file is outside the watched folder.\n\n")
	} else {
		p("The fsyncs are the price of crash consistency; against Traefik's side of time to route (section 1) they are small.\n\n")
	}
}

func (r *report) writeDNS(p printer) {
	p("## 4. DNS\n\n")
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
	p("## 5. Certificates\n\n")
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

func (r *report) writeMemory(p printer) {
	p("## 6. Memory\n\n")
	p("Resident set size (VmRSS of /proc/<pid>/status) after the samples of each size.\n\n")
	p("| Routes present | gateway | Traefik (throttle %s) |", r.opts.throttle)
	if !r.opts.skipZos {
		p(" Traefik (throttle %s) |", r.opts.zosThrottle)
	}
	p("\n|---:|---:|---:|")
	if !r.opts.skipZos {
		p("---:|")
	}
	p("\n")
	for _, sr := range r.routes {
		p("| %s | %s | %s |", groupInt(sr.size), mib(sr.phases[phaseMain].gatewayRSS), mib(sr.phases[phaseMain].traefikRSS))
		if !r.opts.skipZos {
			p(" %s |", mib(sr.phases[phaseZos].traefikRSS))
		}
		p("\n")
	}
	p("\n")
}

func metOrNot(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func (r *report) writeMetering(p printer) {
	p("## 7. Metering cost\n\n")
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
		"Traefik tries to get the wildcard certificate of the gateway domain from the ACME server on every change and fails at once " +
			"(the bench gives it a closed port, never Let's Encrypt); on a node with the certificate that attempt does not happen",
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
		notes = append(notes, fmt.Sprintf("other processes kept %.2f cores busy on average during time to route: expect noise, mostly in p99", r.cpuOthers))
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
