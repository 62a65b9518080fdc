package main

import (
	"encoding/json"
	"math"
	"slices"
	"time"
)

// Targets the report checks.
const (
	// scaleSize is the number of routes present from which the scale
	// targets apply; below it, "no worse than today".
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
	// fullRunTarget and quickRunTarget bound the run time of the bench.
	fullRunTarget  = 30 * time.Minute
	quickRunTarget = 3 * time.Minute
)

// Results is everything one run measured and how, summarised: what the
// report is rendered from (report.md.tmpl) and what the bench writes as
// JSON beside it. Every comparison the report makes is here with its target
// and verdict, so that the template only formats.
type Results struct {
	Started time.Time
	// Elapsed is the whole run; Stack the part with the gateway's stack.
	Elapsed, Stack Duration
	Command        string
	Quick          bool
	Machine        Machine
	Versions       Versions
	Settings       Settings
	Targets        Targets
	// CPUBusy is how many cores were busy on average with the gateway's
	// stack, CPUOthers how many of them by processes not the bench's.
	CPUBusy, CPUOthers float64
	// Probes and Resumed count the time-to-route probes' TLS handshakes
	// and those that resumed a session.
	Probes, Resumed int64
	Sizes           []SizeResult
	// Keygen is the time of an RSA-2048 key generation in the bench.
	Keygen   Stat
	DNS      DNSBenchResult
	ACME     ACMEResult
	Metering MeteringResult
	Verdicts Verdicts
}

// Machine describes the computer the run was on.
type Machine struct {
	CPU     string
	Cores   int
	Memory  uint64
	Kernel  string
	Distrib string
}

// Versions are the versions of what was measured and measured with.
type Versions struct {
	Go, Traefik, Redis, Tree string
}

// Settings are the knobs of the run, and the constants of its method the
// report states.
type Settings struct {
	Sizes                                                    []int
	Samples, DiagSamples, StartSamples, APICalls, ZbusRounds int
	Seed                                                     uint64
	Throttle                                                 Duration
	ProbeInterval, ProbeTimeout, SettleMargin, QuietWindow   Duration
	SettleTimeout, BurstPoll, HandoverBefore, HandoverAfter  Duration
	QuietTicks, Callers, ZbusRoutes, HandoverClients         int
	ReloadsMetric                                            string
}

// Targets are the bounds the report checks results against.
type Targets struct {
	ScaleSize                                 int
	PerFile, OneFile, CPU, Today, Zbus, Meter float64
	Start, API, RunTime                       Duration
}

// SizeResult is what one number of routes present gave.
type SizeResult struct {
	Routes int
	// Ours, PerFile and OneFile are time to route on each variant;
	// DefCert is the per-file floor with a default certificate
	// (diagnostic, at 0 routes).
	Ours, PerFile, OneFile, DefCert *VariantResult `json:",omitempty"`
	// RouteVsPerFile and RouteVsOneFile are ours' p50 time to route over
	// each floor's; CPUVsPerFile the same of Traefik CPU per change; their
	// targets at this size (0: none) and whether they are met.
	RouteVsPerFile, RouteVsOneFile, CPUVsPerFile float64
	RoutePerFileMax, RouteOneFileMax, CPUMax     float64
	RouteMet, CPUMet                             bool
	// DefCertVsPerFile is DefCert's p50 time to route over the per-file
	// floor's.
	DefCertVsPerFile float64 `json:",omitempty"`
	// Cold is, per variant, from the start of its Traefik (for ours, of
	// the gateway) to serving the routes present.
	ColdOurs, ColdPerFile, ColdOneFile Duration
	// Starts are restarts of the gateway alone, to its first zbus answer;
	// Adopted counts those after which the same Traefik served.
	Starts        Stat
	Adopted       int
	List, Metrics Stat
	StartMet      bool
	// Reloads is how far ours' Traefik's reload counter moved over its
	// samples; nil if it could not be read.
	Reloads *float64 `json:",omitempty"`
	// Populated routes were added through zbus before this size, in
	// Populate.
	Populated int
	Populate  Duration
	// Unsettled counts the samples that started before Traefik was idle.
	Unsettled int
	// RSS is the resident set of each process after the samples, in bytes.
	RSS      RSS
	Zbus     *ZbusResult     `json:",omitempty"`
	Storm    *StormResult    `json:",omitempty"`
	Burst    *BurstResult    `json:",omitempty"`
	Handover *HandoverResult `json:",omitempty"`
	Profile  *ProfileResult  `json:",omitempty"`
}

// VariantResult is time to route on one variant at one size.
type VariantResult struct {
	Samples                  int
	Route, Call, Delete, CPU Stat
}

// RSS is the resident set of the gateway and of each Traefik, in bytes.
type RSS struct {
	Gateway, Traefik, PerFile, OneFile uint64
}

// ZbusResult is the cost of a Set call against its floor, p50 of Rounds.
type ZbusResult struct {
	Rounds                  int
	Noop, Write, Floor, Set Duration
	Ratio                   float64
	Met                     bool
}

// StormResult is the boot storm.
type StormResult struct {
	Calls                  int
	Took                   Duration
	Reloads                float64
	TraefikCPU, GatewayCPU Duration
	Met                    bool
}

// BurstResult is the bursts of new routes.
type BurstResult struct {
	Routes                                    int
	Ours, OursCalls, Floor, OursCPU, FloorCPU Stat
	Ratio                                     float64
}

// HandoverResult is one handover of Traefik under load.
type HandoverResult struct {
	Requests, Failed               int64
	FirstFailure                   string `json:",omitempty"`
	FailedFrom, FailedTo           Duration
	Slowest, P99, ReadyAfter, Wall Duration
}

// ProfileResult is where ours' Traefik spent its CPU while routes changed.
type ProfileResult struct {
	Seconds, Changes int
	// Top is `go tool pprof -top -cum` of the profile.
	Top string
}

// ACMEResult is the certificates' timings.
type ACMEResult struct {
	Skipped bool   `json:",omitempty"`
	Error   string `json:",omitempty"`
	Runs    int
	Command string
	Rows    []ACMERow
}

// ACMERow is one timing of the ACME tests over the runs.
type ACMERow struct {
	Name             string
	Samples          int
	Min, Median, Max Duration
}

// MeteringResult is the throughput cost of metering.
type MeteringResult struct {
	Skipped bool   `json:",omitempty"`
	Error   string `json:",omitempty"`
	Rounds  int
	SizeMiB int64
	Limit   Duration
	Kinds   []MeterKindResult
	// Missed names the kinds that miss the target; Undercount tells some
	// sample counted fewer bytes than were moved.
	Missed     []string `json:",omitempty"`
	Undercount bool
	// Restarts of the gateway before each block of samples, their p50
	// until counted and served again, and how many adopted Traefik.
	Restarts, Adopted int
	RestartP50        Duration
	Unsettled, Capped int
	MaxGatewayCPU     Duration
	// Busy and Others are the cores busy over the rounds and those of
	// them not the stack's; nil when /proc could not tell.
	Busy, Others *float64 `json:",omitempty"`
}

// MeterKindResult is the metering cost on one kind of route, in MB/s.
type MeterKindResult struct {
	Name                   string
	Unmetered, Metered     MBps
	Ratio                  float64
	Met                    bool
	SlowerRounds, Rounds   int
	CountedMin, CountedMax float64
}

// MBps is the p50, least and most throughput of samples, in MB/s.
type MBps struct{ P50, Min, Max float64 }

// Verdicts are the summary's targets over every size.
type Verdicts struct {
	// Below is "no worse than today", time to route and CPU, at every
	// size under scaleSize; RouteMissed the sizes where time to route
	// misses its targets.
	Below       bool
	RouteMissed []int `json:",omitempty"`
	Start, API  bool
	Handover    bool
	Zbus        bool
	Metering    bool
	RunTime     bool
	// OneFileSlower is the first size with routes where the one-file
	// floor was slower than ours, nil if none.
	OneFileSlower *SizeRatio `json:",omitempty"`
}

// SizeRatio is a ratio at a number of routes.
type SizeRatio struct {
	Routes int
	Ratio  float64
}

// Duration is a time.Duration written in JSON as Go writes it ("1.5s").
type Duration time.Duration

// D is d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a string ParseDuration accepts.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// Stat summarises a set of durations.
type Stat struct {
	N                  int
	P50, P99, Min, Max Duration
}

// stat returns nearest-rank percentiles: p99 of 50 samples is the largest.
func stat(ds []time.Duration) Stat {
	if len(ds) == 0 {
		return Stat{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return Duration(s[max(0, min(i, len(s)-1))])
	}
	return Stat{N: len(s), P50: rank(0.50), P99: rank(0.99), Min: Duration(s[0]), Max: Duration(s[len(s)-1])}
}

// ratio returns a/b, or 0 (no ratio) when b is zero.
func ratio(a, b Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// within tells whether r is at most most; a target of 0 always holds.
func within(r, most float64) bool { return most == 0 || r <= most }

// summarize turns the measurements of one run into its Results.
func summarize(r *Results, sizes []sizeResult) {
	r.Targets = Targets{ScaleSize: scaleSize, PerFile: targetPerFileRatio, OneFile: targetOneFileRatio, CPU: targetCPURatio,
		Today: targetTodayRatio, Zbus: targetZbusRatio, Meter: targetMeterRatio, Start: Duration(targetStart), API: Duration(targetAPI),
		RunTime: Duration(fullRunTarget)}
	if r.Quick {
		r.Targets.RunTime = Duration(quickRunTarget)
	}
	v := Verdicts{Below: true, Start: true, API: true, Handover: true, Zbus: true}
	for _, sr := range sizes {
		res := sr.result()
		r.Probes, r.Resumed = r.Probes+sr.probes, r.Resumed+sr.resumed
		if res.Routes < scaleSize {
			v.Below = v.Below && res.RouteMet && res.CPUMet
		}
		if !res.RouteMet {
			v.RouteMissed = append(v.RouteMissed, res.Routes)
		}
		if v.OneFileSlower == nil && res.Routes > 0 && res.RouteVsOneFile > 0 && res.RouteVsOneFile < 1 {
			v.OneFileSlower = &SizeRatio{res.Routes, res.RouteVsOneFile}
		}
		v.Start = v.Start && res.Starts.N > 0 && res.Starts.P50.D() < targetStart
		v.API = v.API && res.List.N > 0 && res.List.P50.D() < targetAPI && res.Metrics.P50.D() < targetAPI
		v.Handover = v.Handover && (res.Handover == nil || res.Handover.Failed == 0)
		v.Zbus = v.Zbus && (res.Zbus == nil || res.Zbus.Met)
		r.Sizes = append(r.Sizes, res)
	}
	v.Metering = r.Metering.Error == "" && !r.Metering.Skipped && len(r.Metering.Missed) == 0
	v.RunTime = r.Elapsed < r.Targets.RunTime
	r.Verdicts = v
}

// result summarises the samples of one size.
func (sr sizeResult) result() SizeResult {
	variant := func(v variant) *VariantResult {
		ss := sr.samples[v]
		if len(ss) == 0 {
			return nil
		}
		of := func(f func(sample) time.Duration) Stat {
			ds := make([]time.Duration, len(ss))
			for i, s := range ss {
				ds[i] = f(s)
			}
			return stat(ds)
		}
		return &VariantResult{Samples: len(ss), Route: of(func(s sample) time.Duration { return s.route }),
			Call: of(func(s sample) time.Duration { return s.call }), Delete: of(func(s sample) time.Duration { return s.del }),
			CPU: of(func(s sample) time.Duration { return s.traefikCPU })}
	}
	res := SizeResult{Routes: sr.size, Ours: variant(ours), PerFile: variant(perFile), OneFile: variant(oneFile), DefCert: variant(perFileDefCert),
		ColdOurs: Duration(sr.cold[ours]), ColdPerFile: Duration(sr.cold[perFile]), ColdOneFile: Duration(sr.cold[oneFile]),
		Starts: stat(sr.starts), Adopted: sr.adopted, List: stat(sr.list), Metrics: stat(sr.metrics),
		Populated: sr.populated, Populate: Duration(sr.populate), Unsettled: sr.unsettled,
		RSS: RSS{sr.rss[rssGateway], sr.rss[rssOurs], sr.rss[rssPerFile], sr.rss[rssOneFile]}}
	if sr.reloads >= 0 {
		res.Reloads = &sr.reloads
	}
	p50 := func(v *VariantResult, f func(*VariantResult) Stat) Duration {
		if v == nil {
			return 0
		}
		return f(v).P50
	}
	route := func(v *VariantResult) Stat { return v.Route }
	cpu := func(v *VariantResult) Stat { return v.CPU }
	res.RouteVsPerFile = ratio(p50(res.Ours, route), p50(res.PerFile, route))
	res.RouteVsOneFile = ratio(p50(res.Ours, route), p50(res.OneFile, route))
	res.CPUVsPerFile = ratio(p50(res.Ours, cpu), p50(res.PerFile, cpu))
	res.DefCertVsPerFile = ratio(p50(res.DefCert, route), p50(res.PerFile, route))
	res.RoutePerFileMax, res.CPUMax = targetTodayRatio, targetTodayRatio
	if sr.size >= scaleSize {
		res.RoutePerFileMax, res.RouteOneFileMax, res.CPUMax = targetPerFileRatio, targetOneFileRatio, targetCPURatio
	}
	res.RouteMet = within(res.RouteVsPerFile, res.RoutePerFileMax) && within(res.RouteVsOneFile, res.RouteOneFileMax)
	res.CPUMet = within(res.CPUVsPerFile, res.CPUMax)
	res.StartMet = res.Starts.N > 0 && res.Starts.P50.D() < targetStart && res.List.P50.D() < targetAPI && res.Metrics.P50.D() < targetAPI
	if z := sr.zbus; z != nil {
		zr := &ZbusResult{Rounds: len(z.set), Noop: stat(z.noop).P50, Write: stat(z.write).P50, Floor: stat(z.floor).P50, Set: stat(z.set).P50}
		zr.Ratio = ratio(zr.Set, zr.Floor)
		zr.Met = zr.Ratio <= targetZbusRatio
		res.Zbus = zr
	}
	if st := sr.storm; st != nil {
		res.Storm = &StormResult{Calls: st.calls, Took: Duration(st.took), Reloads: st.reloads, TraefikCPU: Duration(st.traefikCPU),
			GatewayCPU: Duration(st.gatewayCPU), Met: st.reloads == 0}
	}
	if b := sr.burst; b != nil {
		res.Burst = &BurstResult{Routes: b.routes, Ours: stat(b.ours), OursCalls: stat(b.oursCalls), Floor: stat(b.floor),
			OursCPU: stat(b.oursCPU), FloorCPU: stat(b.floorCPU)}
		res.Burst.Ratio = ratio(res.Burst.Ours.P50, res.Burst.Floor.P50)
	}
	if h := sr.handover; h != nil {
		res.Handover = &HandoverResult{Requests: h.requests, Failed: h.failed, FirstFailure: h.firstFailure, FailedFrom: Duration(h.failedFrom),
			FailedTo: Duration(h.failedTo), Slowest: Duration(h.slowest), P99: Duration(h.p99), ReadyAfter: Duration(h.readyAfter), Wall: Duration(h.wall)}
	}
	if p := sr.profile; p != nil {
		res.Profile = &ProfileResult{Seconds: p.seconds, Changes: p.changes, Top: p.top}
	}
	return res
}

// result summarises the metering samples.
func (m meteringResult) result() MeteringResult {
	res := MeteringResult{Rounds: m.rounds, SizeMiB: m.size >> 20, Limit: Duration(m.limit), Restarts: len(m.restarts),
		RestartP50: stat(m.restarts).P50, Adopted: m.adopted, Unsettled: m.unsettled, Capped: m.capped, MaxGatewayCPU: Duration(m.maxGatewayCPU())}
	if !math.IsNaN(m.busy) {
		res.Busy, res.Others = &m.busy, &m.others
	}
	// A part that failed may have no samples: no NaN nor Inf in JSON.
	mbps := func(ss []meterSample) MBps {
		if len(ss) == 0 {
			return MBps{}
		}
		lo, hi := spread(ss)
		return MBps{medianMBps(ss), lo, hi}
	}
	for _, kr := range m.kinds {
		k := MeterKindResult{Name: kr.kind.name, Unmetered: mbps(kr.unmetered), Metered: mbps(kr.metered), Ratio: kr.ratio(),
			SlowerRounds: kr.slowerRounds(), Rounds: min(len(kr.metered), len(kr.unmetered))}
		if math.IsNaN(k.Ratio) {
			k.Ratio = 0
		}
		k.Met = k.Ratio >= targetMeterRatio
		if len(kr.metered) > 0 {
			k.CountedMin, k.CountedMax = kr.countedRange()
		}
		if !k.Met {
			res.Missed = append(res.Missed, k.Name)
		}
		res.Undercount = res.Undercount || (len(kr.metered) > 0 && k.CountedMin < 1)
		res.Kinds = append(res.Kinds, k)
	}
	return res
}
