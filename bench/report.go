package main

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// reportTemplate is the report's prose and tables, filled from Results.
//
//go:embed report.md.tmpl
var reportTemplate string

// render fills the report template from r.
func render(r *Results) (string, error) {
	tmpl, err := template.New("report").Funcs(reportFuncs).Parse(reportTemplate)
	if err != nil {
		return "", fmt.Errorf("parsing the report template: %w", err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, r); err != nil {
		return "", fmt.Errorf("rendering the report: %w", err)
	}
	return b.String(), nil
}

// reportFuncs format the numbers of the report.
var reportFuncs = template.FuncMap{
	"ms":    ms,
	"us":    func(d Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) },
	"sec":   func(d Duration) string { return d.D().Round(time.Second).String() },
	"rng":   p50Range,
	"ratio": fmtRatio,
	"group": groupInt,
	"join":  joinInts,
	"mib": func(b uint64) string {
		if b == 0 {
			return "–"
		}
		return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
	},
	"gib":   func(b uint64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<30)) },
	"f":     func(prec int, x float64) string { return strconv.FormatFloat(x, 'f', prec, 64) },
	"pct":   func(a, b int64) string { return fmt.Sprintf("%.0f%%", 100*float64(a)/float64(max(b, 1))) },
	"rate":  func(n int, d Duration) string { return fmt.Sprintf("%.0f", float64(n)/d.D().Seconds()) },
	"perf":  func(p float64) string { return fmt.Sprintf("%.0f%%", 100*(1-p)) },
	"yesno": func(ok bool) string { return map[bool]string{true: "yes", false: "**no**"}[ok] },
	"met":   func(ok bool) string { return map[bool]string{true: "met", false: "**not met**"}[ok] },
	"atmost": func(most float64) string {
		if most == 0 {
			return "–"
		}
		return fmt.Sprintf("≤ %.2g×", most)
	},
	"mins":   func(d Duration) string { return fmt.Sprintf("%.0f minutes", d.D().Minutes()) },
	"date":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") },
	"rfc":    func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"rounds": func(qps []float64) string { return joinFloats(qps, " / ") },
	"lines":  func(s string) string { return strings.TrimRight(s, "\n") },
	"sizes": func(ss []int) string {
		parts := make([]string, len(ss))
		for i, n := range ss {
			parts[i] = groupInt(n)
		}
		return strings.Join(parts, ", ")
	},
	"plural": func(n int, noun string) string {
		if n == 1 {
			return "1 " + noun
		}
		return fmt.Sprintf("%d %ss", n, noun)
	},
	"joinand": func(names []string) string { return strings.Join(names, " and ") },
	"group64": func(n int64) string { return groupInt(int(n)) },
	"deref":   func(x *float64) float64 { return *x },
	// cold is a time to serve the routes present; none at 0 routes.
	"cold": func(routes int, d Duration) string {
		if routes == 0 || d == 0 {
			return "–"
		}
		return ms(d)
	},
	"popdur": func(d Duration) string { return d.D().Round(100 * time.Millisecond).String() },
}

// ms formats d in milliseconds, or seconds from 10 s.
func ms(d Duration) string {
	switch {
	case d.D() >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.D().Seconds())
	case d.D() >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	case d.D() >= 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	}
}

// p50Range is "p50 (min–max)" of s, in one unit: seconds when the max is 10
// s or more, milliseconds otherwise; "–" for no samples.
func p50Range(s Stat) string {
	switch {
	case s.N == 0:
		return "–"
	case s.N == 1:
		return ms(s.P50)
	case s.Max.D() >= 10*time.Second:
		return fmt.Sprintf("%s (%.1f–%.1f s)", ms(s.P50), s.Min.D().Seconds(), s.Max.D().Seconds())
	}
	return fmt.Sprintf("%s (%s–%s)", ms(s.P50), strings.TrimSuffix(ms(s.Min), " ms"), ms(s.Max))
}

// fmtRatio writes r as "0.50×", "–" for no ratio.
func fmtRatio(r float64) string {
	if r == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", r)
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

func joinFloats(xs []float64, sep string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(s, sep)
}

// oneLine is err for a table cell or a sentence.
func oneLine(err error) string {
	s := strings.ReplaceAll(err.Error(), "\n", " ")
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return "`" + strings.ReplaceAll(s, "`", "'") + "`"
}

// readMachine describes this computer from /proc and /etc/os-release.
func readMachine() Machine {
	m := Machine{CPU: "unknown", Cores: runtime.NumCPU(), Kernel: "unknown", Distrib: "unknown"}
	lines := func(path string) []string {
		b, _ := os.ReadFile(path)
		return strings.Split(string(b), "\n")
	}
	for _, line := range lines("/proc/cpuinfo") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" && m.CPU == "unknown" {
			m.CPU = strings.TrimSpace(v)
		}
	}
	for _, line := range lines("/proc/meminfo") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			if f := strings.Fields(v); len(f) == 2 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				m.Memory = kb * 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	for _, line := range lines("/etc/os-release") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			m.Distrib = strings.Trim(v, `"`)
		}
	}
	return m
}

// readVersions asks each tool for its version; a failure is shown as such
// in the report rather than ending the run.
func readVersions(ctx context.Context, t tools, repo string) Versions {
	version := func(bin, arg, prefix string) string {
		s, err := toolVersion(ctx, bin, []string{arg}, prefix)
		if err != nil {
			return "unknown (" + err.Error() + ")"
		}
		return s
	}
	v := Versions{Go: runtime.Version(), Traefik: version(t.traefik, "version", "Version:"), Redis: version(t.redis, "--version", "v=")}
	if out, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--short", "HEAD").Output(); err == nil {
		v.Tree = strings.TrimSpace(string(out))
		if st, err := exec.CommandContext(ctx, "git", "-C", repo, "status", "--porcelain").Output(); err == nil && len(st) > 0 {
			v.Tree += " with uncommitted changes"
		}
	} else {
		v.Tree = "unknown (not a git checkout)"
	}
	return v
}
