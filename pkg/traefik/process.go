package traefik

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/threefoldtech/gateway/internal/quote"
)

// Defaults of ProcessConfig.
const (
	// DefaultBinary is the default ProcessConfig.Binary, looked up on PATH.
	DefaultBinary = "traefik"
	// DefaultBackoffMin is the default ProcessConfig.BackoffMin.
	DefaultBackoffMin = 100 * time.Millisecond
	// DefaultBackoffMax is the default ProcessConfig.BackoffMax.
	DefaultBackoffMax = 10 * time.Second
	// DefaultStopTimeout is the default ProcessConfig.StopTimeout: above the
	// 2s a request in flight may need to finish.
	DefaultStopTimeout = 5 * time.Second
)

const (
	// aliveInterval is how often an adopted Traefik, not our child, is
	// checked for life.
	aliveInterval = 100 * time.Millisecond
	// configCheckInterval is how often the static configuration is hashed
	// to notice a change.
	configCheckInterval = time.Second
	// stableAfter is how long a Traefik must stay up for the backoff to go
	// back to BackoffMin.
	stableAfter = 10 * time.Second
	// killWait bounds the wait for a process to vanish after SIGKILL.
	killWait = 5 * time.Second
)

// errStopped is returned inside Process once Stop was called: no Traefik
// starts after it.
var errStopped = errors.New("traefik process stopped")

// ProcessConfig configures the supervision of Traefik.
type ProcessConfig struct {
	// Binary is the Traefik executable, a path or a name looked up on PATH.
	// Default "traefik". Traefik runs it by its absolute path, symbolic
	// links resolved.
	Binary string
	// ConfigFile is the static configuration file Traefik runs with, the
	// one WriteState returns. Required.
	ConfigFile string
	// StateDir holds the pidfile, PIDFileName, and Traefik's output,
	// LogFileName (stdout and stderr, appended to, so an adopted Traefik
	// keeps logging after the gateway restarted). Required; created 0755.
	StateDir string
	// Env is Traefik's environment ("KEY=value", e.g. the HTTPREQ_*
	// settings of lego). Of the gateway's own environment Traefik only gets
	// the few variables inheritedEnv names; Env wins over them. Only Env,
	// not the gateway's environment, counts as a change that restarts
	// Traefik.
	Env []string
	// BackoffMin is the wait before restarting a Traefik that exited.
	// Default 100ms. It doubles after each quick exit, up to BackoffMax, and
	// goes back to BackoffMin once a Traefik stayed up for 10s.
	BackoffMin time.Duration
	// BackoffMax is the longest wait between restarts. Default 10s.
	BackoffMax time.Duration
	// StopTimeout is how long a Traefik being stopped, or replaced without
	// a handover, may take after SIGTERM before it gets SIGKILL, and how
	// long one handed over may take to close its listening sockets. Default
	// 5s, above the 2s a request in flight may need; its websockets and
	// passthrough connections, which it would keep for HandoverDrain, are
	// cut then.
	StopTimeout time.Duration
	// MetricsAddress is the address of the internal entry point,
	// StaticOptions.MetricsAddress. With it, a Traefik whose static
	// configuration or binary changed is handed over to its successor on
	// the same sockets, without refusing a connection (see handover); the
	// entry points must have reusePort. Without it, or when the running
	// Traefik's sockets cannot be shared, the old Traefik is stopped before
	// the new one starts.
	MetricsAddress string
	// HandoverTimeout bounds a handover: the successor's start until it
	// serves every router of its predecessor. Default 60s. Past it, the
	// successor gets the traffic if its API answers; otherwise it is
	// stopped, the predecessor keeps serving, and the handover is tried
	// again later.
	HandoverTimeout time.Duration
	// HandoverDrain is how long a Traefik handed over may keep its
	// connections after SIGTERM: the StaticOptions.HandoverDrain of the
	// configuration it runs. Default DefaultHandoverDrain (10m). The
	// gateway kills it when it still runs StopTimeout after that.
	HandoverDrain time.Duration
	// Logger receives the supervision log, with component=traefik.
	Logger zerolog.Logger
	// Registry receives the supervision's metrics,
	// gateway_traefik_starts_total and gateway_traefik_exits_total. Nil: no
	// metrics are registered.
	Registry prometheus.Registerer
}

// Process runs Traefik and keeps it running. Traefik outlives the gateway: it
// runs in its own session, is not killed when Run returns, and a later
// Process with the same binary and configuration file adopts it instead of
// starting another one. It is replaced only when the static configuration or
// Env changed.
//
// The state of the supervision (which Traefik runs, whether it is being
// handed over, lost or stopped) is a supervisor, owned by one goroutine at a
// time: the one running Run, which moves it from state to state. Stop sends
// that goroutine a request; the others read the snapshot it publishes.
type Process struct {
	cfg     ProcessConfig
	log     zerolog.Logger
	metrics *processMetrics
	argv    []string
	env     []string
	pidFile string
	logFile string

	// owner holds the supervisor while no goroutine runs with it: Run takes
	// it for as long as it runs, Stop when no Run does.
	owner chan *supervisor
	// requests carries Stop's request to the goroutine running Run.
	requests chan stopRequest
	// stopping ends when Stop is called, by halt: from then on no Traefik
	// starts, and a handover under way gives up.
	stopping context.Context
	halt     context.CancelFunc
	// snap is the supervisor's last published snapshot.
	snap atomic.Pointer[snapshot]
	// started is closed once a Traefik runs, adopted or started: the tests
	// wait on it. Only supervisor.set closes it.
	started chan struct{}
	// running is set while Run runs.
	running atomic.Bool
	// crashAt, a test seam, is asked at each step of a handover; true makes
	// the gateway die there: the handover returns errCrashed at once,
	// leaving the processes, the steering and the pidfile as a killed
	// gateway would, and Run returns. Set before Run; nil in the gateway.
	crashAt func(handoverStep) bool
}

// NewProcess fills the defaults of cfg and validates it. It starts nothing.
func NewProcess(cfg ProcessConfig) (*Process, error) {
	cfg.provision()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Env = slices.Clone(cfg.Env)
	metrics, err := newProcessMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}

	stopping, halt := context.WithCancel(context.Background())
	p := &Process{
		cfg:      cfg,
		log:      cfg.Logger.With().Str("component", "traefik").Logger(),
		metrics:  metrics,
		argv:     traefikArgv(cfg.Binary, cfg.ConfigFile),
		env:      traefikEnv(os.Environ(), cfg.Env),
		pidFile:  filepath.Join(cfg.StateDir, PIDFileName),
		logFile:  filepath.Join(cfg.StateDir, LogFileName),
		owner:    make(chan *supervisor, 1),
		requests: make(chan stopRequest),
		stopping: stopping,
		halt:     halt,
		started:  make(chan struct{}),
	}
	p.snap.Store(&snapshot{state: stateIdle})
	p.owner <- &supervisor{p: p, state: stateIdle}
	return p, nil
}

// inheritedEnv names the variables of the gateway's environment that Traefik
// gets besides ProcessConfig.Env; a name ending in "_" stands for every
// variable it begins. Nothing else is passed on: the gateway's environment
// holds secrets Traefik has no use for (GATEWAY_BROKER with the broker's
// password, the node's REDIS_*), which a flaw in Traefik, or anything that
// reads its /proc/<pid>/environ, would leak.
//   - PATH: the search path a program expects to find.
//   - TZ: the time zone of Traefik's log.
//   - SSL_CERT_FILE, SSL_CERT_DIR: where Go finds the system's roots, which
//     Traefik trusts for the ACME server and https backends.
//   - LEGO_: the operator's settings of lego, the ACME client inside Traefik
//     (LEGO_CA_CERTIFICATES, LEGO_CA_SERVER_NAME, LEGO_DISABLE_CNAME_SUPPORT).
//
// Left out on purpose: HTTP_PROXY, HTTPS_PROXY and NO_PROXY, which Traefik
// applies to its backends too and would send private traffic to a proxy;
// GODEBUG, which can turn on HTTP/2 websockets (http2xconnect=1) that the
// entry points' read timeout cuts; TRAEFIK_*, static configuration Traefik
// ignores beside a configuration file.
var inheritedEnv = []string{"PATH", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "LEGO_"}

// traefikEnv is Traefik's environment: the entries of environ, the gateway's,
// that inheritedEnv names and env does not set, then env.
func traefikEnv(environ, env []string) []string {
	set := make(map[string]bool, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	var out []string
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || set[k] {
			continue
		}
		if slices.ContainsFunc(inheritedEnv, func(name string) bool {
			if strings.HasSuffix(name, "_") {
				return strings.HasPrefix(k, name) && len(k) > len(name)
			}
			return k == name
		}) {
			out = append(out, kv)
		}
	}
	return append(out, env...)
}

// provision fills the defaults of the fields left zero.
func (c *ProcessConfig) provision() {
	if c.Binary == "" {
		c.Binary = DefaultBinary
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.HandoverTimeout == 0 {
		c.HandoverTimeout = DefaultHandoverTimeout
	}
	if c.HandoverDrain == 0 {
		c.HandoverDrain = DefaultHandoverDrain
	}
}

// validate checks a provisioned c and makes its paths absolute: the command
// line Traefik runs with is how the next gateway recognises it, so it must
// not depend on PATH or the working folder. Binary also loses its symbolic
// links: the next gateway checks that the file a Traefik runs,
// /proc/<pid>/exe, is the one its command line names, and a link moved to
// another Traefik (an upgrade) must not make ours look foreign.
func (c *ProcessConfig) validate() error {
	bin, err := exec.LookPath(c.Binary)
	if err == nil {
		bin, err = filepath.Abs(bin)
	}
	if err == nil {
		bin, err = filepath.EvalSymlinks(bin)
	}
	if err != nil {
		return fmt.Errorf("process option Binary %s: %w", quote.Short(c.Binary), err)
	}
	c.Binary = bin
	if c.ConfigFile == "" {
		return errors.New("process option ConfigFile: required")
	}
	if c.ConfigFile, err = absOption("ConfigFile", c.ConfigFile); err != nil {
		return err
	}
	if c.StateDir == "" {
		return errors.New("process option StateDir: required")
	}
	if c.StateDir, err = absOption("StateDir", c.StateDir); err != nil {
		return err
	}
	for _, kv := range c.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.ContainsRune(kv, 0) {
			return fmt.Errorf("process option Env: %s is not KEY=value", quote.Short(kv))
		}
	}
	if c.BackoffMin < 0 || c.BackoffMax < c.BackoffMin {
		return fmt.Errorf("process options BackoffMin %s and BackoffMax %s: need 0 < BackoffMin <= BackoffMax", c.BackoffMin, c.BackoffMax)
	}
	if c.StopTimeout < 0 {
		return fmt.Errorf("process option StopTimeout %s: must not be negative", c.StopTimeout)
	}
	if c.HandoverTimeout < 0 {
		return fmt.Errorf("process option HandoverTimeout %s: must not be negative", c.HandoverTimeout)
	}
	if c.HandoverDrain < 0 {
		return fmt.Errorf("process option HandoverDrain %s: must not be negative", c.HandoverDrain)
	}
	if c.MetricsAddress != "" {
		if _, err := netip.ParseAddrPort(c.MetricsAddress); err != nil {
			return fmt.Errorf("process option MetricsAddress %s: not an ip:port", quote.Short(c.MetricsAddress))
		}
	}
	return nil
}

// absOption returns the absolute form of path, the process option field.
func absOption(field, path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("process option %s %s: %w", field, quote.Short(path), err)
	}
	return abs, nil
}

// traefikArgv is the command line of our Traefik; it is also how a running
// Traefik is recognised as ours.
func traefikArgv(binary, configFile string) []string {
	return []string{binary, "--configFile=" + configFile}
}

// status is the supervisor's last published snapshot.
func (p *Process) status() snapshot {
	return *p.snap.Load()
}

// pid is the process id of the current Traefik, or 0 when there is none.
// The tests watch restarts and adoptions through it.
func (p *Process) pid() int {
	return p.status().pid
}

// Run adopts the Traefik left running by an earlier gateway, or starts one,
// then keeps it running: it restarts it with backoff when it exits and
// replaces it when the static configuration changes. It returns nil when ctx
// ends, leaving Traefik running, or once Stop was called. The goroutine
// running Run owns the supervision's state; Stop sends it a request.
func (p *Process) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("supervising traefik: Run called while already running")
	}
	defer p.running.Store(false)
	var s *supervisor
	select {
	case s = <-p.owner: // a Stop without Run may hold it for a moment
	case <-ctx.Done():
		return nil
	}
	defer func() { p.owner <- s }()
	s.run(ctx)
	return nil
}

// Stop stops Traefik for good: SIGTERM, SIGKILL after StopTimeout or when
// ctx ends, then removes the pidfile. Run returns and does not restart it.
// Without a Run it stops the Traefik of the pidfile, if it is ours. Meant for
// tests and explicit shutdown; the gateway's own exit leaves Traefik running.
// It may be called again, and concurrently with Run.
func (p *Process) Stop(ctx context.Context) error {
	// From now on nothing starts, and a handover under way gives up, so that
	// the request below is taken soon.
	p.halt()
	done := make(chan error, 1)
	select {
	case p.requests <- stopRequest{ctx: ctx, done: done}:
		return <-done
	case s := <-p.owner:
		// No Run: Stop owns the state meanwhile.
		defer func() { p.owner <- s }()
		return s.stop(ctx)
	}
}

// spawn starts a Traefik as our child, in its own session. It is not the
// current one until install.
func (p *Process) spawn(hash string) (*instance, error) {
	if err := os.MkdirAll(p.cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating traefik state folder: %w", err)
	}
	// Only this Process writes the pidfile, and not now: what is there was
	// left by a crash.
	if err := removeStaleTemps(p.cfg.StateDir, PIDFileName); err != nil {
		p.log.Warn().Err(err).Msg("cleaning the traefik state folder")
	}
	out, err := os.OpenFile(p.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening traefik log: %w", err)
	}
	defer out.Close()

	cmd := &exec.Cmd{
		Path:   p.argv[0],
		Args:   p.argv,
		Env:    p.env,
		Dir:    p.cfg.StateDir,
		Stdout: out, // an *os.File is handed over as is: no copying goroutine
		Stderr: out,
		// Its own session: neither the gateway's exit nor a signal to the
		// gateway's process group reaches Traefik.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}

	if p.stopping.Err() != nil {
		return nil, errStopped
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", p.argv[0], err)
	}
	p.metrics.starts[startStarted].Inc()
	inst := &instance{
		pid:   cmd.Process.Pid,
		hash:  hash,
		since: time.Now(),
		child: cmd,
		done:  make(chan struct{}),
		pidfd: -1,
	}
	// The reaper outlives Run: Traefik stays our child until it exits.
	go func() {
		_ = cmd.Wait()
		close(inst.done)
	}()
	return inst, nil
}

// end terminates inst and counts its exit, for reason, once it exited.
func (p *Process) end(ctx context.Context, inst *instance, reason exitReason) error {
	err := p.terminate(ctx, inst)
	if err == nil {
		p.metrics.exits[reason].Inc()
	}
	return err
}

// terminate sends SIGTERM to inst and waits for it to exit; SIGKILL follows
// after StopTimeout or when ctx ends.
func (p *Process) terminate(ctx context.Context, inst *instance) error {
	if err := inst.signal(syscall.SIGTERM); err != nil && !inst.exited() {
		p.log.Warn().Err(err).Int("pid", inst.pid).Msg("sending SIGTERM to traefik")
	}
	grace, cancel := context.WithTimeout(ctx, p.cfg.StopTimeout)
	defer cancel()
	if inst.wait(grace) {
		return nil
	}
	p.log.Warn().Int("pid", inst.pid).Stringer("after", p.cfg.StopTimeout).Msg("traefik did not stop, sending SIGKILL")
	if err := inst.signal(syscall.SIGKILL); err != nil && !inst.exited() {
		return fmt.Errorf("killing traefik pid %d: %w", inst.pid, err)
	}
	killed, cancel := context.WithTimeout(context.Background(), killWait)
	defer cancel()
	if !inst.wait(killed) {
		return fmt.Errorf("killing traefik pid %d: still running %s after SIGKILL", inst.pid, killWait)
	}
	return nil
}

// configHash hashes the static configuration and Env: the inputs that make
// a running Traefik out of date.
func (p *Process) configHash() (string, error) {
	b, err := os.ReadFile(p.cfg.ConfigFile)
	if err != nil {
		return "", fmt.Errorf("reading traefik static configuration: %w", err)
	}
	return configHash(b, p.cfg.Env), nil
}

// configHash is the hex sha256 of a static configuration and the sorted
// extra environment, each length-prefixed so no two inputs collide.
func configHash(config []byte, env []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "config %d\n", len(config))
	h.Write(config)
	sorted := slices.Clone(env)
	slices.Sort(sorted)
	for _, kv := range sorted {
		fmt.Fprintf(h, "\nenv %d\n%s", len(kv), kv)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// roundMs rounds d for the log.
func roundMs(d time.Duration) time.Duration {
	return d.Round(time.Millisecond)
}
