package traefik

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
)

// fakeTraefikEnv turns the test binary into a stand-in for Traefik: it waits
// for SIGTERM, so the supervision can be tested without the real binary.
const fakeTraefikEnv = "GATEWAY_TEST_FAKE_TRAEFIK"

func init() {
	if os.Getenv(fakeTraefikEnv) != "1" {
		return
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	select {
	case <-sig:
		os.Exit(0)
	case <-time.After(2 * time.Minute): // never outlive a crashed test for long
		os.Exit(3)
	}
}

func TestConfigHash(t *testing.T) {
	base := configHash([]byte("a: 1\n"), []string{"A=1", "B=2"})
	if len(base) != 64 {
		t.Fatalf("hash %q is not hex sha256", base)
	}
	if got := configHash([]byte("a: 1\n"), []string{"B=2", "A=1"}); got != base {
		t.Errorf("the order of Env changed the hash")
	}
	differs := []struct {
		name   string
		config string
		env    []string
	}{
		{"config changed", "a: 2\n", []string{"A=1", "B=2"}},
		{"env value changed", "a: 1\n", []string{"A=1", "B=3"}},
		{"env entry added", "a: 1\n", []string{"A=1", "B=2", "C=3"}},
		// Framing: moving bytes between config and env is a change.
		{"env folded into config", "a: 1\n\nenv 3\nA=1", []string{"B=2"}},
		{"env entries joined", "a: 1\n", []string{"A=1\nenv 3\nB=2"}},
	}
	for _, tt := range differs {
		if configHash([]byte(tt.config), tt.env) == base {
			t.Errorf("%s: same hash", tt.name)
		}
	}
}

func TestNewProcessRejects(t *testing.T) {
	dir := t.TempDir()
	valid := func() ProcessConfig {
		return ProcessConfig{Binary: "/bin/sh", ConfigFile: filepath.Join(dir, "t.yaml"), StateDir: dir}
	}
	tests := []struct {
		name string
		edit func(*ProcessConfig)
		want string
	}{
		{"binary not found", func(c *ProcessConfig) { c.Binary = "no-such-traefik-binary" }, "Binary"},
		{"no config file", func(c *ProcessConfig) { c.ConfigFile = "" }, "ConfigFile"},
		{"no state dir", func(c *ProcessConfig) { c.StateDir = "" }, "StateDir"},
		{"env without =", func(c *ProcessConfig) { c.Env = []string{"HTTPREQ_ENDPOINT"} }, "Env"},
		{"env without key", func(c *ProcessConfig) { c.Env = []string{"=x"} }, "Env"},
		{"backoff min above max", func(c *ProcessConfig) {
			c.BackoffMin, c.BackoffMax = time.Minute, time.Second
		}, "BackoffMin"},
		{"negative stop timeout", func(c *ProcessConfig) { c.StopTimeout = -1 }, "StopTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.edit(&c)
			if _, err := NewProcess(c); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewProcess: %v, want an error about %s", err, tt.want)
			}
		})
	}
	if _, err := NewProcess(valid()); err != nil {
		t.Errorf("NewProcess(valid): %v", err)
	}

	// The registry is an input: a clash is the caller's to see.
	c := valid()
	c.Registry = prometheus.NewRegistry()
	if _, err := NewProcess(c); err != nil {
		t.Fatalf("NewProcess with a registry: %v", err)
	}
	if _, err := NewProcess(c); err == nil || !strings.Contains(err.Error(), "registering") {
		t.Errorf("second NewProcess on one registry: %v, want a registration error", err)
	}
}

// processCounts reads the supervision counters of reg.
type processCounts struct{ started, adopted, stopped, replaced, crashed float64 }

func readProcessCounts(t testing.TB, reg *prometheus.Registry) processCounts {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	var c processCounts
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			label := m.GetLabel()[0].GetValue()
			v := m.GetCounter().GetValue()
			switch mf.GetName() + "/" + label {
			case metricStarts + "/started":
				c.started = v
			case metricStarts + "/adopted":
				c.adopted = v
			case metricExits + "/stopped":
				c.stopped = v
			case metricExits + "/replaced":
				c.replaced = v
			case metricExits + "/crashed":
				c.crashed = v
			default:
				t.Errorf("unexpected series %s{%s}", mf.GetName(), label)
			}
		}
	}
	return c
}

// wantProcessCounts checks the counters of reg, read with testutil as a
// scrape would see them.
func wantProcessCounts(t testing.TB, reg *prometheus.Registry, want processCounts) {
	t.Helper()
	if got := readProcessCounts(t, reg); got != want {
		t.Errorf("counters %+v, want %+v", got, want)
	}
	if n := testutil.CollectAndCount(reg, metricStarts, metricExits); n != 5 {
		t.Errorf("%d series, want 5, each created up front", n)
	}
}

// fakeProcess returns a Process running the test binary as a fake Traefik on
// a config file in a fresh folder. Every process it runs is killed at the end
// of the test, by pid, after checking it is still a fake of this test.
func fakeProcess(t testing.TB, dir string, env ...string) (*Process, ProcessConfig) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return fakeProcessOf(t, exe, dir, env...)
}

// fakeProcessOf is fakeProcess running binary, a copy of the test binary.
func fakeProcessOf(t testing.TB, binary, dir string, env ...string) (*Process, ProcessConfig) {
	t.Helper()
	return fakeProcessMetered(t, binary, dir, nil, env...)
}

// fakeProcessMetered is fakeProcessOf with its metrics on reg.
func fakeProcessMetered(t testing.TB, binary, dir string, reg prometheus.Registerer, env ...string) (*Process, ProcessConfig) {
	t.Helper()
	cfg := ProcessConfig{
		Registry:    reg,
		Binary:      binary,
		ConfigFile:  filepath.Join(dir, "traefik.yaml"),
		StateDir:    dir,
		Env:         append([]string{fakeTraefikEnv + "=1"}, env...),
		StopTimeout: 2 * time.Second,
		Logger:      testLogger(t),
	}
	if _, err := os.Stat(cfg.ConfigFile); errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(cfg.ConfigFile, []byte("first: true\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := NewProcess(cfg)
	if err != nil {
		t.Fatalf("NewProcess: %v", err)
	}
	return p, cfg
}

// runProcess runs p.Run until the test ends or the returned cancel is
// called, and waits for Run to return.
func runProcess(t testing.TB, p *Process) (cancel func()) {
	t.Helper()
	ctx, cancelCtx := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var stopped bool
	cancel = func() {
		if stopped {
			return
		}
		stopped = true
		cancelCtx()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after its context ended")
		}
	}
	t.Cleanup(cancel)
	select {
	case <-p.started:
	case err := <-done:
		t.Fatalf("Run returned before starting traefik: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no traefik started within 10s")
	}
	return cancel
}

// killAtCleanup kills pid at the end of the test if it still runs argv.
func killAtCleanup(t testing.TB, pid int, argv []string) {
	t.Helper()
	t.Cleanup(func() {
		cmdline, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "cmdline"))
		if err == nil && matchCmdline(splitCmdline(cmdline), argv) == cmdlineSame {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

func itoa(n int) string { return strconv.Itoa(n) }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive tells whether pid runs and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	state, err := procState(pid)
	return err == nil && state != 'Z' && state != 'X'
}

func TestProcessSupervisesFake(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	p, cfg := fakeProcessMetered(t, exe, dir, reg)
	argv := traefikArgv(p.cfg.Binary, cfg.ConfigFile)
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	cancel := runProcess(t, p)

	first := p.pid()
	if first == 0 {
		t.Fatal("PID is 0 after Started")
	}
	killAtCleanup(t, first, argv)
	rec, err := readPidFile(filepath.Join(dir, PIDFileName))
	if err != nil || rec.PID != first {
		t.Fatalf("pidfile %+v, %v; want pid %d", rec, err, first)
	}
	wantProcessCounts(t, reg, processCounts{started: 1})

	// Killed: restarted with a new pid.
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "restart after SIGKILL", func() bool {
		pid := p.pid()
		return pid != 0 && pid != first
	})
	second := p.pid()
	killAtCleanup(t, second, argv)
	wantProcessCounts(t, reg, processCounts{started: 2, crashed: 1})

	// The gateway goes away: the fake keeps running, and a new Process
	// adopts it.
	cancel()
	if !alive(second) {
		t.Fatal("traefik did not outlive Run")
	}
	// Leaving Traefik running is no exit.
	wantProcessCounts(t, reg, processCounts{started: 2, crashed: 1})
	reg2 := prometheus.NewRegistry()
	p2, _ := fakeProcessMetered(t, exe, dir, reg2)
	t.Cleanup(func() { _ = p2.Stop(context.Background()) })
	cancel2 := runProcess(t, p2)
	if got := p2.pid(); got != second {
		t.Fatalf("second Process runs pid %d, want the adopted %d", got, second)
	}
	wantProcessCounts(t, reg2, processCounts{adopted: 1})

	// Adopted, not our child: its death is noticed by polling.
	if err := syscall.Kill(second, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "restart of an adopted traefik", func() bool {
		pid := p2.pid()
		return pid != 0 && pid != second
	})
	third := p2.pid()
	killAtCleanup(t, third, argv)
	wantProcessCounts(t, reg2, processCounts{adopted: 1, started: 1, crashed: 1})

	// The static configuration changes under a running Process.
	if err := os.WriteFile(cfg.ConfigFile, []byte("second: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "replacement after a configuration change", func() bool {
		pid := p2.pid()
		return pid != 0 && pid != third
	})
	fourth := p2.pid()
	killAtCleanup(t, fourth, argv)
	waitFor(t, 3*time.Second, "old traefik gone", func() bool { return !alive(third) })
	wantProcessCounts(t, reg2, processCounts{adopted: 1, started: 2, crashed: 1, replaced: 1})

	// Stop ends it for good and Run returns.
	if err := p2.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	cancel2()
	if alive(fourth) {
		t.Errorf("pid %d still runs after Stop", fourth)
	}
	if _, err := os.Stat(filepath.Join(dir, PIDFileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pidfile left after Stop: %v", err)
	}
	// Stop's exit is not a crash, even when Run saw it first.
	wantProcessCounts(t, reg2, processCounts{adopted: 1, started: 2, crashed: 1, replaced: 1, stopped: 1})
}

func TestProcessReplacesOnConfigChangeBetweenRuns(t *testing.T) {
	dir := t.TempDir()
	p, cfg := fakeProcess(t, dir)
	argv := traefikArgv(p.cfg.Binary, cfg.ConfigFile)
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	cancel := runProcess(t, p)
	first := p.pid()
	killAtCleanup(t, first, argv)
	cancel()

	// The gateway comes back with another Env: the running one is stale.
	p2, _ := fakeProcess(t, dir, "HTTPREQ_ENDPOINT=http://127.0.0.1:1")
	t.Cleanup(func() { _ = p2.Stop(context.Background()) })
	runProcess(t, p2)
	second := p2.pid()
	killAtCleanup(t, second, argv)
	if second == first {
		t.Fatalf("pid %d adopted although Env changed", first)
	}
	waitFor(t, 3*time.Second, "stale traefik gone", func() bool { return !alive(first) })
}

func TestProcessIgnoresForeignPidFile(t *testing.T) {
	dir := t.TempDir()
	// A pid recycled by another program, with the hash of our configuration.
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sleep.Process.Kill()
		_ = sleep.Wait()
	})

	p, cfg := fakeProcess(t, dir)
	argv := traefikArgv(p.cfg.Binary, cfg.ConfigFile)
	config, err := os.ReadFile(cfg.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	rec := pidRecord{PID: sleep.Process.Pid, Hash: configHash(config, cfg.Env)}
	if err := writePidFile(filepath.Join(dir, PIDFileName), rec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	runProcess(t, p)
	pid := p.pid()
	killAtCleanup(t, pid, argv)
	if pid == sleep.Process.Pid {
		t.Fatalf("adopted the sleep process %d", pid)
	}
	if !alive(sleep.Process.Pid) {
		t.Fatalf("the sleep process was signalled")
	}
	if got, _ := readPidFile(filepath.Join(dir, PIDFileName)); got.PID != pid {
		t.Errorf("pidfile names %d, want %d", got.PID, pid)
	}
}

// copyTestBinary copies the test binary, a fake Traefik, into a new folder
// every user may read and returns its path. The folder is removed at the end
// of the test.
func copyTestBinary(t testing.TB) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: its folders are 0700, and one test runs the copy as
	// another user.
	dir, err := os.MkdirTemp("", "fake-traefik-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "traefik")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// startImpostor starts cmd, a fake Traefik the Process under test did not
// start, and kills it at the end of the test. It returns once the process
// runs with cmd's command line.
func startImpostor(t testing.TB, cmd *exec.Cmd) int {
	t.Helper()
	cmd.Env = append(os.Environ(), fakeTraefikEnv+"=1")
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the impostor: %v", err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// Until it execs, the child is a copy of the test process.
	waitFor(t, 5*time.Second, "impostor started", func() bool {
		cmdline, err := readCmdline(pid)
		return err == nil && slices.Equal(cmdline, cmd.Args)
	})
	return pid
}

// A process whose command line is exactly our Traefik's is not ours unless it
// runs our binary as our user: never adopted, never signalled (before, the
// command line alone decided, and any program started with ours was taken
// over, or killed as a stray).
func TestProcessLeavesImpostorsAlone(t *testing.T) {
	testBinary, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// impostor returns the command of a process with our command line,
		// argv, our binary being bin.
		impostor func(t *testing.T, bin string, argv []string) *exec.Cmd
		// pidFile writes a pidfile naming the impostor, with our hash.
		pidFile bool
	}{
		{"another program started with our command line, named by the pidfile", func(t *testing.T, bin string, argv []string) *exec.Cmd {
			// exec -a: Path is what runs, Args what /proc shows.
			return &exec.Cmd{Path: testBinary, Args: argv}
		}, true},
		{"another program started with our command line, no pidfile", func(t *testing.T, bin string, argv []string) *exec.Cmd {
			return &exec.Cmd{Path: testBinary, Args: argv}
		}, false},
		{"our binary run by another user, named by the pidfile", func(t *testing.T, bin string, argv []string) *exec.Cmd {
			if os.Geteuid() != 0 {
				t.Skip("starting a process as another user needs root")
			}
			return &exec.Cmd{Path: bin, Args: argv, SysProcAttr: &syscall.SysProcAttr{
				Credential: &syscall.Credential{Uid: 65534, Gid: 65534},
			}}
		}, true},
		{"our binary run by another user, no pidfile", func(t *testing.T, bin string, argv []string) *exec.Cmd {
			if os.Geteuid() != 0 {
				t.Skip("starting a process as another user needs root")
			}
			return &exec.Cmd{Path: bin, Args: argv, SysProcAttr: &syscall.SysProcAttr{
				Credential: &syscall.Credential{Uid: 65534, Gid: 65534},
			}}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := copyTestBinary(t)
			p, cfg := fakeProcessOf(t, bin, dir)
			argv := traefikArgv(p.cfg.Binary, cfg.ConfigFile)
			impostor := startImpostor(t, tt.impostor(t, bin, argv))
			if tt.pidFile {
				config, err := os.ReadFile(cfg.ConfigFile)
				if err != nil {
					t.Fatal(err)
				}
				rec := pidRecord{PID: impostor, Hash: configHash(config, cfg.Env)}
				if err := writePidFile(filepath.Join(dir, PIDFileName), rec); err != nil {
					t.Fatal(err)
				}
			}

			t.Cleanup(func() { _ = p.Stop(context.Background()) })
			runProcess(t, p)
			// Started: adopt and stopStrays are done, and a Traefik they
			// stopped would be gone, since they wait for its exit.
			pid := p.pid()
			killAtCleanup(t, pid, argv)
			if pid == impostor {
				t.Fatalf("adopted the impostor %d", impostor)
			}
			if !alive(impostor) {
				t.Fatalf("the impostor %d was signalled", impostor)
			}
			if rec, err := readPidFile(filepath.Join(dir, PIDFileName)); err != nil || rec.PID != pid {
				t.Errorf("pidfile %+v, %v; want our pid %d", rec, err, pid)
			}
			// Stop signals ours only.
			if err := p.Stop(context.Background()); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if alive(pid) || !alive(impostor) {
				t.Errorf("after Stop: ours %d alive %v, the impostor %d alive %v", pid, alive(pid), impostor, alive(impostor))
			}
		})
	}
}

// A Traefik whose binary was replaced on disk (an upgrade) is ours, but
// runs the old binary: it is replaced, not adopted.
func TestProcessReplacesTraefikOfAReplacedBinary(t *testing.T) {
	dir := t.TempDir()
	bin := copyTestBinary(t)
	p, cfg := fakeProcessOf(t, bin, dir)
	argv := traefikArgv(p.cfg.Binary, cfg.ConfigFile)
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	cancel := runProcess(t, p)
	first := p.pid()
	killAtCleanup(t, first, argv)
	cancel()

	// The upgrade: a new file renamed over the binary.
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin+".new", b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}

	p2, _ := fakeProcessOf(t, bin, dir)
	t.Cleanup(func() { _ = p2.Stop(context.Background()) })
	runProcess(t, p2)
	second := p2.pid()
	killAtCleanup(t, second, argv)
	if second == first {
		t.Fatalf("pid %d adopted although its binary was replaced", first)
	}
	waitFor(t, 3*time.Second, "old traefik gone", func() bool { return !alive(first) })
}

// A Traefik an earlier gateway started through a symbolic link to our binary
// runs our binary: adopted, not replaced.
func TestProcessAdoptsTraefikStartedThroughALink(t *testing.T) {
	dir := t.TempDir()
	bin := copyTestBinary(t)
	link := filepath.Join(filepath.Dir(bin), "traefik-link")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	p, cfg := fakeProcessOf(t, link, dir)
	if p.cfg.Binary != bin {
		t.Fatalf("Binary %q, want the link resolved to %q", p.cfg.Binary, bin)
	}
	// As the earlier gateway did: the link on the command line.
	old := startImpostor(t, &exec.Cmd{Path: link, Args: traefikArgv(link, cfg.ConfigFile)})
	config, err := os.ReadFile(cfg.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := writePidFile(filepath.Join(dir, PIDFileName), pidRecord{PID: old, Hash: configHash(config, cfg.Env)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	runProcess(t, p)
	if got := p.pid(); got != old {
		killAtCleanup(t, got, p.argv)
		t.Fatalf("runs pid %d, want the running %d adopted", got, old)
	}
}

// Traefik gets its own environment and the allow-listed variables of the
// gateway's, never the rest: the gateway's environment holds the broker's
// password.
func TestTraefikEnv(t *testing.T) {
	environ := []string{
		"PATH=/usr/bin:/bin",
		"TZ=Europe/Brussels",
		"SSL_CERT_FILE=/etc/ssl/ca.pem",
		"SSL_CERT_DIR=/etc/ssl/certs",
		"LEGO_CA_CERTIFICATES=/etc/gateway/ca.pem",
		"GATEWAY_BROKER=tcp://s3cret@127.0.0.1:6379",
		"REDIS_PASSWORD=s3cret",
		"HOME=/root",
		"HTTPS_PROXY=http://proxy:3128",
		"GODEBUG=http2xconnect=1",
		"TRAEFIK_LOG_LEVEL=DEBUG",
		"LEGO_=empty suffix",
		"LEGOX=not the prefix",
		"PATHX=not PATH",
		"HTTPREQ_ENDPOINT=http://the-gateway-env",
		"not a variable",
	}
	env := []string{"HTTPREQ_ENDPOINT=http://127.0.0.1:8053", "HTTPREQ_USERNAME=traefik", "TZ=UTC"}
	got := traefikEnv(environ, env)
	want := []string{
		"PATH=/usr/bin:/bin",
		"SSL_CERT_FILE=/etc/ssl/ca.pem",
		"SSL_CERT_DIR=/etc/ssl/certs",
		"LEGO_CA_CERTIFICATES=/etc/gateway/ca.pem",
		// Env last, and alone for the keys it sets.
		"HTTPREQ_ENDPOINT=http://127.0.0.1:8053",
		"HTTPREQ_USERNAME=traefik",
		"TZ=UTC",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("traefikEnv =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestProcessStopWithoutRun(t *testing.T) {
	dir := t.TempDir()
	p, cfg := fakeProcess(t, dir)
	argv := traefikArgv(p.cfg.Binary, cfg.ConfigFile)
	cancel := runProcess(t, p)
	pid := p.pid()
	killAtCleanup(t, pid, argv)
	cancel()

	// Explicit shutdown from a fresh Process: it finds Traefik by the pidfile.
	p2, _ := fakeProcess(t, dir)
	if err := p2.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	waitFor(t, 3*time.Second, "traefik gone after Stop", func() bool { return !alive(pid) })
	// Stop is final: Run does not start another.
	if err := p2.Run(context.Background()); err != nil {
		t.Errorf("Run after Stop: %v", err)
	}
	if p2.pid() != 0 {
		t.Errorf("Run after Stop started pid %d", p2.pid())
	}
}

func testLogger(t testing.TB) zerolog.Logger {
	if os.Getenv("GATEWAY_TEST_LOG") == "" {
		return zerolog.Nop()
	}
	return zerolog.New(zerolog.NewTestWriter(t)).With().Timestamp().Logger()
}

// Run's loop owns the state and answers Stop: a Stop during the wait before
// a restart ends Run, and nothing starts after it. Guards the request path
// of the wait (Stop once set a flag each step of Run had to check), the
// published states, and a second Run beside the first.
func TestProcessStopWhileLost(t *testing.T) {
	dir := t.TempDir()
	_, cfg := fakeProcess(t, dir)
	cfg.BackoffMin, cfg.BackoffMax = time.Minute, time.Minute // lost long enough to be seen
	reg := prometheus.NewRegistry()
	cfg.Registry = reg
	p, err := NewProcess(cfg)
	if err != nil {
		t.Fatalf("NewProcess: %v", err)
	}
	argv := traefikArgv(p.cfg.Binary, cfg.ConfigFile)
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	if st := p.status(); st != (snapshot{state: stateIdle}) {
		t.Fatalf("before Run: %v pid %d, want idle", st.state, st.pid)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.started:
	case err := <-done:
		t.Fatalf("Run returned before starting traefik: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no traefik started within 10s")
	}
	st := p.status()
	if st.state != stateRunning || st.pid == 0 {
		t.Fatalf("started: %v pid %d, want running with a pid", st.state, st.pid)
	}
	first := st.pid
	killAtCleanup(t, first, argv)
	if err := p.Run(ctx); err == nil {
		t.Error("a second Run beside the first: nil, want an error")
	}

	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "lost after SIGKILL", func() bool {
		st := p.status()
		return st.state == stateLost && st.pid == 0
	})

	stopCtx, stopCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer stopCancel()
	if err := p.Stop(stopCtx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Stop")
	}
	if st := p.status(); st != (snapshot{state: stateStopped}) {
		t.Errorf("after Stop: %v pid %d, want stopped without a pid", st.state, st.pid)
	}
	if _, err := os.Stat(filepath.Join(dir, PIDFileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pidfile left after Stop: %v", err)
	}
	// Stop is final, for a new Run too.
	if err := p.Run(context.Background()); err != nil {
		t.Errorf("Run after Stop: %v", err)
	}
	wantProcessCounts(t, reg, processCounts{started: 1, crashed: 1})
}
