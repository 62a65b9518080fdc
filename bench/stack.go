package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/threefoldtech/zbus"
	"golang.org/x/sys/unix"

	"github.com/threefoldtech/gateway/pkg/gateway/stubs"
	"github.com/threefoldtech/gateway/pkg/meter"
	"github.com/threefoldtech/gateway/pkg/traefik"
)

// Stack settings.
const (
	// benchDomain is the gateway domain of the stack; name routes live
	// under it.
	benchDomain = "gw.bench"
	// stopTimeout is how long a child may take after SIGTERM before it gets
	// SIGKILL.
	stopTimeout = 15 * time.Second
	// readyTimeout bounds the wait for redis, the gateway and Traefik to
	// answer after a start.
	readyTimeout = 60 * time.Second
	// callTimeout bounds every zbus call.
	callTimeout = 30 * time.Second
	// backendHeader marks the answers of the bench backend, so that a 200
	// from anything else is never taken for the route.
	backendHeader = "X-Bench-Backend"
	// meterTablePrefix starts the name of the nftables table of each stack's
	// gateway (--metering.table), never the node's gateway_meter.
	meterTablePrefix = "gwbench_"
)

// child is a process the bench started. Its output is appended to a log
// file in the work folder.
type child struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startChild runs bin with args in a process group of its own, so that a
// Ctrl-C reaches only the bench, which then stops its children in order. Its
// environment is the bench's plus env.
func startChild(name, logPath string, env []string, bin string, args ...string) (*child, error) {
	return startChildEnv(name, logPath, append(os.Environ(), env...), bin, args...)
}

// startChildEnv is startChild with env the whole environment.
func startChildEnv(name, logPath string, env []string, bin string, args ...string) (*child, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after stopTimeout, and waits for the
// exit. It is safe to call more than once.
func (c *child) stop() {
	if c == nil || c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(stopTimeout):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// becomeSubreaper makes the bench the parent of every orphan among its
// descendants: Traefik, which outlives the gateway on purpose, and whatever
// an interrupted `go test` leaves behind. reapOrphans stops them by PID.
func becomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// reapOrphans stops every process whose parent is the bench and that no
// exec.Cmd of the bench waits for: descendants orphaned on the way. It is the
// last line; the normal paths stop everything they start themselves.
func reapOrphans(logf func(format string, args ...any)) {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.ppid != self {
			continue
		}
		logf("stopping leftover process %d (%s)", pid, st.comm)
		stopPID(pid)
	}
}

// stopPID stops a process the bench is responsible for but did not start
// itself (Traefik, started by the gateway): SIGTERM, then SIGKILL, by PID.
// It reaps the process if it became the bench's child.
func stopPID(pid int) {
	if pid <= 0 || gone(pid) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(stopTimeout)
	for time.Now().Before(deadline) {
		if gone(pid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for range 250 {
		if gone(pid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gone tells whether pid has exited, and reaps it if it is the bench's
// child. A zombie of the bench is gone only once reaped: its other threads
// may still be exiting.
func gone(pid int) bool {
	var ws syscall.WaitStatus
	if got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); err == nil && got == pid {
		return true
	}
	if syscall.Kill(pid, 0) != nil {
		return true
	}
	st, err := readStat(pid)
	if err != nil {
		return true
	}
	return (st.state == 'Z' || st.state == 'X') && st.ppid != os.Getpid()
}

// alive tells whether pid is a process that has not exited.
func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	st, err := readStat(pid)
	return err == nil && st.state != 'Z' && st.state != 'X'
}

// procStat is the part of /proc/<pid>/stat the bench reads.
type procStat struct {
	comm  string
	state byte
	ppid  int
	// cpu is user plus system time in clock ticks.
	cpu uint64
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	// After the command: state ppid pgrp session tty_nr tpgid flags minflt
	// cminflt majflt cmajflt utime stime ...
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 13 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	ppid, err1 := strconv.Atoi(f[1])
	utime, err2 := strconv.ParseUint(f[11], 10, 64)
	stime, err3 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, fmt.Errorf("parsing /proc/%d/stat: %w", pid, err)
	}
	return procStat{comm: string(b[open+1 : end]), state: f[0][0], ppid: ppid, cpu: utime + stime}, nil
}

// cpuTotals are the machine's CPU time and the part of it that was busy, in
// clock ticks, from the first line of /proc/stat.
func cpuTotals() (busy, total uint64, err error) { return readCPUTotals(true) }

// processCPUTotals is cpuTotals without the time spent in interrupts:
// the softirq work of loopback traffic is not accounted to the processes
// that cause it.
func processCPUTotals() (busy, total uint64, err error) { return readCPUTotals(false) }

func readCPUTotals(irq bool) (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	// user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parsing /proc/stat: %w", err)
		}
		total += n
		if i != 3 && i != 4 && (irq || (i != 5 && i != 6)) {
			busy += n
		}
	}
	return busy, total, nil
}

// selfCPU is the CPU time of the bench and of the children it reaped, in
// clock ticks.
func selfCPU() (uint64, error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, err
	}
	end := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 15 {
		return 0, errors.New("parsing /proc/self/stat")
	}
	var sum uint64
	for _, v := range f[11:15] { // utime stime cutime cstime
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing /proc/self/stat: %w", err)
		}
		sum += n
	}
	return sum, nil
}

// rss returns the resident set size of pid in bytes, from VmRSS.
func rss(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("unexpected VmRSS line %q", line)
			}
			kb, err := strconv.ParseUint(f[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// freeAddr returns 127.0.0.1:port for a port free for both TCP and UDP a
// moment ago (the DNS address needs both).
func freeAddr() (string, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("finding a free port: %w", err)
		}
		addr := l.Addr().String()
		l.Close()
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		u.Close()
		return addr, nil
	}
	return "", errors.New("finding a free port: none free for both tcp and udp")
}

// tools are the programs the stack runs.
type tools struct {
	gateway, traefik, redis string
}

// stack is a local node: a redis-server on a unix socket, a backend that
// answers 200, and the gateway with the Traefik it runs, on one state folder
// and one metering table that live across gateway restarts.
type stack struct {
	tools tools
	work  string
	root  string
	logf  func(format string, args ...any)
	// meterTable is the gateway's nftables table, of a name of its own so
	// that a bench never touches the node's counters nor another bench's.
	// The gateway creates it and leaves it; close removes it.
	meterTable string
	// meterUsed tells that a gateway ran, so the table may exist;
	// meterRemoved that close has removed it.
	meterUsed, meterRemoved bool

	redis             *child
	socket            string
	backend, backend2 *http.Server
	// backendURL is the backend as routes name it; backendURL2 is a second
	// one, the zbus measurement's routes switch between the two.
	backendURL, backendURL2 string
	client                  zbus.Client
	stub                    *stubs.GatewayStub

	gw *gatewayRun
}

// gatewayRun is one run of the gateway process.
type gatewayRun struct {
	proc     *child
	throttle time.Duration
	managed  bool
	// web, websecure and metrics are Traefik's entry points.
	web, websecure, metrics string
	// dns and dnsAPI are the gateway's DNS server and its API, closed is a
	// port nothing listens on, gwMetrics the gateway's own metrics. A
	// restart keeps them all: Traefik's configuration is then the same, and
	// the new gateway adopts the running Traefik.
	dns, dnsAPI, closed, gwMetrics string
	// traefik is the PID of the Traefik of this run, 0 if unmanaged.
	traefik int
	// extra flags end the command line: a change of Traefik's settings.
	extra []string
	// zbusUp is from the start of the process to the answer of its first
	// zbus call (List): a call made before the gateway serves waits in the
	// broker's queue, and is answered as soon as it does.
	zbusUp time.Duration
}

// newStack starts redis-server and the backend in work. close stops them.
func newStack(ctx context.Context, t tools, work string, logf func(string, ...any)) (*stack, error) {
	var nonce [6]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("naming the metering table: %w", err)
	}
	s := &stack{tools: t, work: work, root: filepath.Join(work, "root"), logf: logf,
		meterTable: meterTablePrefix + hex.EncodeToString(nonce[:])}
	if err := os.MkdirAll(s.root, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", s.root, err)
	}
	if err := s.startRedis(ctx); err != nil {
		s.close()
		return nil, err
	}
	if err := s.startBackend(); err != nil {
		s.close()
		return nil, err
	}
	client, err := zbus.NewRedisClient("unix://" + s.socket)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("creating the zbus client: %w", err)
	}
	s.client = client
	s.stub = stubs.NewGatewayStub(client)
	return s, nil
}

func (s *stack) startRedis(ctx context.Context) error {
	s.socket = filepath.Join(s.work, "redis.sock")
	p, err := startChild("redis-server", filepath.Join(s.work, "redis.log"), nil, s.tools.redis,
		"--port", "0", "--unixsocket", s.socket, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", s.work)
	if err != nil {
		return err
	}
	s.redis = p
	return poll(ctx, readyTimeout, 20*time.Millisecond, "redis-server to answer PING", func() error {
		if p.exited() {
			return fmt.Errorf("redis-server exited (log %s)", p.log)
		}
		c, err := net.DialTimeout("unix", s.socket, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		buf := make([]byte, 7)
		if _, err := c.Read(buf); err != nil {
			return err
		}
		if string(buf) != "+PONG\r\n" {
			return fmt.Errorf("answer %q", buf)
		}
		return nil
	})
}

// startBackend serves 200 on 127.0.0.1, in this process, twice.
func (s *stack) startBackend() error {
	var err error
	if s.backend, s.backendURL, err = serveOK(); err != nil {
		return err
	}
	s.backend2, s.backendURL2, err = serveOK()
	return err
}

// serveOK serves 200, marked with backendHeader, on a free loopback port.
func serveOK() (*http.Server, string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("starting the backend: %w", err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set(backendHeader, "1")
			_, _ = w.Write([]byte("ok\n"))
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.Serve(l) }()
	return srv, "http://" + l.Addr().String(), nil
}

// startGateway starts the gateway with the given Traefik throttle; managed
// false runs it without Traefik (to fill the folder quickly). It returns once
// the gateway answers on zbus and, when managed, Traefik answers /ping.
func (s *stack) startGateway(ctx context.Context, throttle time.Duration, managed bool) error {
	if s.gw != nil {
		return errors.New("starting the gateway: one is running")
	}
	addrs := make([]string, 7)
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return err
		}
		addrs[i] = a
	}
	return s.runGateway(ctx, &gatewayRun{throttle: throttle, managed: managed,
		web: addrs[0], websecure: addrs[1], metrics: addrs[2],
		dns: addrs[3], dnsAPI: addrs[4], closed: addrs[5], gwMetrics: addrs[6]})
}

// restartGateway stops the gateway process alone and starts it again with
// the same command line, so that the new one adopts the running Traefik
// (its traffic goes on) and runs its start again: the metering table and
// counters of every route are made anew. adopted tells whether the Traefik
// that serves after the restart is the one from before.
func (s *stack) restartGateway(ctx context.Context) (adopted bool, err error) {
	old := s.gw
	if old == nil {
		return false, errors.New("restarting the gateway: none is running")
	}
	old.proc.stop()
	g := *old
	g.proc = nil
	// Until the new run finds it, stopGateway stops the old Traefik by
	// this PID.
	if err := s.runGateway(ctx, &g); err != nil {
		return false, err
	}
	return g.traefik == old.traefik, nil
}

// runGateway starts the gateway process of g and waits for it as
// startGateway says.
func (s *stack) runGateway(ctx context.Context, g *gatewayRun) error {
	args := []string{
		"--broker=unix://" + s.socket,
		"--root=" + s.root,
		"--public.domain=" + benchDomain,
		"--public.ipv4=127.0.0.1",
		"--backends.allow=127.0.0.0/8",
		"--traefik.binary=" + s.tools.traefik,
		"--traefik.managed=" + strconv.FormatBool(g.managed),
		"--traefik.web=" + g.web,
		"--traefik.websecure=" + g.websecure,
		"--traefik.metrics=" + g.metrics,
		"--traefik.throttle=" + g.throttle.String(),
		// /debug/pprof on the loopback entry point, for the profile.
		"--traefik.debug",
		"--dns.address=" + g.dns,
		"--dns.api=" + g.dnsAPI,
		// The gateway's own DNS server: the delegation check it runs at
		// start gets a quick answer instead of a timeout.
		"--resolver=" + g.dns,
		// A closed loopback port: never the real Let's Encrypt.
		"--acme.caserver=https://" + g.closed + "/dir",
		"--acme.email=bench@" + benchDomain,
		"--metrics.address=" + g.gwMetrics,
		"--metering.table=" + s.meterTable,
	}
	args = append(args, g.extra...)
	// Set before the start: close then removes the table the gateway may
	// have made, whatever happens next.
	s.meterUsed = true
	start := time.Now()
	p, err := startChild("gateway", filepath.Join(s.work, "gateway.log"), nil, s.tools.gateway, args...)
	if err != nil {
		return err
	}
	g.proc = p
	g.zbusUp = 0
	s.gw = g
	what := "the gateway to answer on zbus"
	if g.managed {
		what += " and traefik to answer /ping"
	}
	ping := &http.Client{Timeout: time.Second}
	return poll(ctx, readyTimeout, 50*time.Millisecond, what, func() error {
		if p.exited() {
			return fmt.Errorf("gateway exited (log %s)", p.log)
		}
		if g.zbusUp == 0 {
			if _, err := s.list(ctx); err != nil {
				return err
			}
			g.zbusUp = time.Since(start)
		}
		if !g.managed {
			return nil
		}
		resp, err := ping.Get("http://" + g.metrics + "/ping")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("traefik /ping: %s", resp.Status)
		}
		pid, err := s.traefikPID()
		if err != nil {
			return err
		}
		g.traefik = pid
		return nil
	})
}

// stopGateway stops the gateway, then the Traefik it ran, both by PID.
func (s *stack) stopGateway() {
	g := s.gw
	if g == nil {
		return
	}
	g.proc.stop()
	pids := []int{g.traefik}
	if pid, err := s.traefikPID(); err == nil && pid != g.traefik {
		pids = append(pids, pid)
	}
	for _, pid := range pids {
		if isTraefik(pid) {
			stopPID(pid)
		}
	}
	s.gw = nil
}

// close stops everything the stack started and removes the metering table
// its gateway made. It is safe to call more than once and on a half-built
// stack.
func (s *stack) close() {
	s.stopGateway()
	s.removeMeterTable()
	if s.redis != nil {
		s.redis.stop()
	}
	for _, b := range []*http.Server{s.backend, s.backend2} {
		if b != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = b.Shutdown(ctx)
			cancel()
		}
	}
}

// removeMeterTable deletes the stack's metering table, once, after the
// gateway stopped: the gateway leaves its table in place on purpose.
func (s *stack) removeMeterTable() {
	if !s.meterUsed || s.meterRemoved || s.gw != nil {
		return
	}
	s.meterRemoved = true
	k, err := meter.OpenKernel(meter.KernelConfig{Table: s.meterTable})
	if err == nil {
		err = k.Remove()
		k.Close()
	}
	if err != nil {
		s.logf("removing the metering table inet %s: %v (remove it with `nft delete table inet %s`)", s.meterTable, err, s.meterTable)
	}
}

func (s *stack) pidFile() string {
	return filepath.Join(s.root, traefik.StateDirName, traefik.PIDFileName)
}

// traefikPID reads the pidfile the gateway writes and checks that the
// process runs Traefik.
func (s *stack) traefikPID() (int, error) {
	data, err := os.ReadFile(s.pidFile())
	if err != nil {
		return 0, err
	}
	var rec struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return 0, fmt.Errorf("reading %s: %w", s.pidFile(), err)
	}
	if !isTraefik(rec.PID) {
		return 0, fmt.Errorf("pid %d of %s is not a running traefik", rec.PID, s.pidFile())
	}
	return rec.PID, nil
}

// isTraefik tells whether pid is a live process running a Traefik binary,
// so that a stale pidfile never makes the bench stop another process.
func isTraefik(pid int) bool {
	if !alive(pid) {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	return strings.Contains(filepath.Base(string(argv0)), "traefik")
}

// call runs fn, which calls the stub, with a deadline, and turns the stub's
// panic on a transport error into an error.
func call(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("zbus call: %v", r)
		}
	}()
	return fn(ctx)
}

func (s *stack) list(ctx context.Context) (n int, err error) {
	err = call(ctx, func(ctx context.Context) error {
		l, err := s.stub.List(ctx)
		n = len(l)
		return err
	})
	return n, err
}

func (s *stack) metrics(ctx context.Context) (n int, err error) {
	err = call(ctx, func(ctx context.Context) error {
		m, err := s.stub.Metrics(ctx)
		n = len(m.Request)
		return err
	})
	return n, err
}

func (s *stack) setNamed(ctx context.Context, wlID, prefix string) error {
	return s.setNamedTo(ctx, wlID, prefix, s.backendURL)
}

// setNamedTo is setNamed with the backend named.
func (s *stack) setNamedTo(ctx context.Context, wlID, prefix, backend string) error {
	return call(ctx, func(ctx context.Context) error {
		_, err := s.stub.SetNamedProxy(ctx, wlID, prefix, []string{backend}, false)
		if err != nil {
			return fmt.Errorf("SetNamedProxy(%q, %q): %w", wlID, prefix, err)
		}
		return nil
	})
}

func (s *stack) deleteNamed(ctx context.Context, wlID string) error {
	return call(ctx, func(ctx context.Context) error {
		if err := s.stub.DeleteNamedProxy(ctx, wlID); err != nil {
			return fmt.Errorf("DeleteNamedProxy(%q): %w", wlID, err)
		}
		return nil
	})
}

// poll calls cond every interval until it returns nil, ctx ends or timeout
// passes; the error then names what was awaited and cond's last error.
func poll(ctx context.Context, timeout, interval time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: not after %s: %w", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(interval):
		}
	}
}
