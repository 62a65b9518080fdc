package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/threefoldtech/zbus"

	"github.com/threefoldtech/gateway/pkg/gateway"
	"github.com/threefoldtech/gateway/pkg/gateway/stubs"
	"github.com/threefoldtech/gateway/pkg/traefik"
)

// GatewayOptions are the choices of a test for StartGateway. Zero fields get
// the defaults the end-to-end tests share; addresses are always free
// loopback ports chosen by StartGateway.
type GatewayOptions struct {
	// Redis is the broker; required.
	Redis *Redis
	// Root is the gateway's state folder. Default: a new t.TempDir().
	Root string
	// Domain is --public.domain. Default "gw.test".
	Domain string
	// IPv4 is --public.ipv4. Default "127.0.0.1".
	IPv4 string
	// FromNetwork starts the gateway without --public.domain and
	// --public.ipv4: it reads them from the node's network daemon
	// (StartNetworkd). Domain is then the one the test expects it to get.
	FromNetwork bool
	// Resolver is --resolver (host:port of a test DNS server). Optional.
	Resolver string
	// Allow is --backends.allow. Default 127.0.0.0/8.
	Allow []string
	// Throttle is --traefik.throttle. Default 50ms.
	Throttle time.Duration
	// CAServer is --acme.caserver. Default: https on a closed loopback
	// port, so no test ever reaches a real ACME server.
	CAServer string
	// CACertificates is --acme.cacertificates. Optional.
	CACertificates string
	// Traefik is the Traefik binary. Default: LookBinary(TRAEFIK_BIN).
	Traefik string
	// Unmanaged runs the gateway with --traefik.managed=false: no Traefik,
	// and the gateway is ready once it answers on zbus.
	Unmanaged bool
	// Binary is the gateway binary. Default: GatewayBinary, built from
	// this tree.
	Binary string
	// Extra flags appended to the command line.
	Extra []string
	// Env is added to the gateway's environment.
	Env []string
	// ReadyTimeout bounds the wait for zbus and Traefik. Default 30s.
	ReadyTimeout time.Duration
}

// Gateway is a gateway process started by a test, with the Traefik it runs.
type Gateway struct {
	// Proc is the current gateway process (it changes on Restart).
	Proc *Proc
	// Root is the state folder.
	Root string
	// Domain is the gateway domain.
	Domain string
	// WebAddr, WebSecureAddr and MetricsAddr are Traefik's entry points
	// (127.0.0.1:port).
	WebAddr, WebSecureAddr, MetricsAddr string
	// OwnMetricsAddr is the gateway's own Prometheus endpoint.
	OwnMetricsAddr string
	// MeterTable is the nftables table of the gateway's byte counters.
	MeterTable string
	// DNSAddr and DNSAPIAddr are the embedded DNS server and its httpreq
	// endpoint.
	DNSAddr, DNSAPIAddr string
	// Redis is the broker the gateway serves on.
	Redis *Redis
	// Client is the zbus client of the test.
	Client zbus.Client
	// Stub is the generated zbus stub; its methods panic on transport
	// errors, see Call.
	Stub *stubs.GatewayStub
	// ZbusUp is how long the current gateway process took from its start
	// to its first answer on zbus (a List sent right away waits in the
	// broker's queue until the gateway serves).
	ZbusUp time.Duration

	owner   testing.TB // the test that started the gateway
	bin     string
	args    []string
	env     []string
	timeout time.Duration
	managed bool
	began   time.Time // start of the current process

	mu       sync.Mutex
	traefiks []int // every Traefik PID seen, stopped at cleanup
}

// StartGateway builds the gateway, starts it on free loopback ports and waits
// until its zbus object answers List and Traefik answers /ping. Traefik
// survives the gateway by design, so a cleanup registered before the start
// stops every Traefik the gateway ran, by PID, and dumps Traefik's log if the
// test failed.
func StartGateway(t testing.TB, opts GatewayOptions) *Gateway {
	t.Helper()
	if opts.Redis == nil {
		t.Fatalf("StartGateway: GatewayOptions.Redis is required")
	}
	bin := opts.Binary
	if bin == "" {
		bin = GatewayBinary(t)
	}
	traefikBin := opts.Traefik
	if traefikBin == "" {
		traefikBin = LookBinary(t, "TRAEFIK_BIN", "traefik", "scripts/install-traefik.sh")
	}
	g := &Gateway{
		Root:           opts.Root,
		Domain:         opts.Domain,
		WebAddr:        Addr(t),
		WebSecureAddr:  Addr(t),
		MetricsAddr:    Addr(t),
		OwnMetricsAddr: Addr(t),
		MeterTable:     MeterTable(t),
		DNSAddr:        Addr(t),
		DNSAPIAddr:     Addr(t),
		Redis:          opts.Redis,
		owner:          t,
		bin:            bin,
		env:            opts.Env,
		timeout:        opts.ReadyTimeout,
		managed:        !opts.Unmanaged,
	}
	if g.Root == "" {
		g.Root = t.TempDir()
	}
	if g.Domain == "" {
		g.Domain = "gw.test"
	}
	if g.timeout == 0 {
		g.timeout = 30 * time.Second
	}
	ipv4 := opts.IPv4
	if ipv4 == "" {
		ipv4 = "127.0.0.1"
	}
	allow := opts.Allow
	if len(allow) == 0 {
		allow = []string{"127.0.0.0/8"}
	}
	throttle := opts.Throttle
	if throttle == 0 {
		throttle = 50 * time.Millisecond
	}
	caServer := opts.CAServer
	if caServer == "" {
		caServer = "https://" + Addr(t) + "/dir"
	}
	g.args = []string{
		"--broker=" + opts.Redis.URL(),
		"--root=" + g.Root,
		"--workers=4",
		"--backends.allow=" + strings.Join(allow, ","),
		"--traefik.binary=" + traefikBin,
		"--traefik.managed=" + strconv.FormatBool(g.managed),
		"--traefik.web=" + g.WebAddr,
		"--traefik.websecure=" + g.WebSecureAddr,
		"--traefik.metrics=" + g.MetricsAddr,
		"--traefik.throttle=" + throttle.String(),
		"--acme.email=test@gw.test",
		"--acme.caserver=" + caServer,
		"--dns.address=" + g.DNSAddr,
		"--dns.api=" + g.DNSAPIAddr,
		"--metrics.address=" + g.OwnMetricsAddr,
		"--metering.table=" + g.MeterTable,
		"--log.level=debug",
	}
	if !opts.FromNetwork {
		g.args = append(g.args, "--public.domain="+g.Domain, "--public.ipv4="+ipv4)
	}
	if opts.Resolver != "" {
		g.args = append(g.args, "--resolver="+opts.Resolver)
	}
	if opts.CACertificates != "" {
		g.args = append(g.args, "--acme.cacertificates="+opts.CACertificates)
	}
	g.args = append(g.args, opts.Extra...)

	client, err := zbus.NewRedisClient(opts.Redis.URL())
	if err != nil {
		t.Fatalf("zbus client for %s: %v", opts.Redis.URL(), err)
	}
	g.Client = client
	g.Stub = stubs.NewGatewayStub(client)

	// Registered before the start: cleanups run last-in first-out, so this
	// one runs after the gateway is stopped, and even when the start fails.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("traefik log (%s), lines above debug and the last lines:\n%s", g.TraefikLogPath(), logExcerpt(g.TraefikLogPath()))
		}
		g.stopTraefiks()
	})
	g.start(t)
	return g
}

// Args returns the gateway's command line.
func (g *Gateway) Args() []string { return slices.Clone(g.args) }

// start runs the gateway with g's flags and waits until it is ready. The
// process is stopped when the test that called StartGateway ends, not t: a
// subtest that restarts the gateway leaves it running for the next one.
func (g *Gateway) start(t testing.TB) {
	t.Helper()
	g.began, g.ZbusUp = time.Now(), 0
	p, err := StartE(g.bin, g.env, g.args...)
	if err != nil {
		t.Fatalf("starting the gateway: %v", err)
	}
	owner := g.owner
	owner.Cleanup(func() {
		p.Stop()
		if owner.Failed() {
			owner.Logf("output of gateway (pid %d) %v:\n%s", p.PID(), g.args, p.Output())
		}
	})
	g.Proc = p
	g.WaitReady(t)
}

// WaitReady waits until the gateway's zbus object answers List and, unless
// it runs unmanaged, Traefik answers /ping with 200. It fails at once if the
// gateway exits.
func (g *Gateway) WaitReady(t testing.TB) {
	t.Helper()
	proc := g.Proc
	deadline := time.Now().Add(g.timeout)
	for {
		select {
		case <-proc.Done():
			t.Fatalf("gateway exited before it was ready: %v\n%s", proc.err, proc.Output())
		default:
		}
		err := g.ready()
		if err == nil {
			g.TraefikPID() // remembered for the cleanup
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %s for the gateway to answer on zbus and Traefik to answer /ping: %v", g.timeout, err)
		}
		select {
		case <-proc.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ready tells whether the gateway answers List and Traefik answers /ping.
func (g *Gateway) ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := Call(func() error { _, err := g.Stub.List(ctx); return err }); err != nil {
		return fmt.Errorf("List: %w", err)
	}
	if g.ZbusUp == 0 {
		g.ZbusUp = time.Since(g.began)
	}
	if !g.managed {
		return nil
	}
	return g.Ping()
}

// Ping asks Traefik's /ping on the metrics entry point.
func (g *Gateway) Ping() error {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + g.MetricsAddr + "/ping")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("traefik /ping: %s", resp.Status)
	}
	return nil
}

// Kill sends SIGKILL to the gateway and waits for it to exit. Traefik keeps
// running.
func (g *Gateway) Kill() { g.Proc.Kill() }

// Restart starts the gateway again with the same flags and root and waits
// until it is ready. The previous process must have exited. The new process
// lives until the test that called StartGateway ends, so subtests may
// restart a shared gateway.
func (g *Gateway) Restart(t testing.TB) {
	t.Helper()
	select {
	case <-g.Proc.Done():
	default:
		t.Fatalf("Restart: the gateway (pid %d) is still running", g.Proc.PID())
	}
	g.start(t)
}

// RestartWith starts the gateway again, as Restart, with extra appended to
// its command line: a later flag wins, so a test changes a setting of the
// running node as an upgrade would.
func (g *Gateway) RestartWith(t testing.TB, extra ...string) {
	t.Helper()
	g.args = append(g.args, extra...)
	g.Restart(t)
}

// PIDFile is Traefik's pidfile, written by the gateway.
func (g *Gateway) PIDFile() string { return filepath.Join(g.Root, "traefik", "traefik.pid") }

// TraefikLogPath is Traefik's log file.
func (g *Gateway) TraefikLogPath() string { return filepath.Join(g.Root, "traefik", "traefik.log") }

// TraefikPID reads the pidfile and returns Traefik's PID, or 0 if there is
// none or the process is gone. Every PID it sees is stopped at cleanup.
func (g *Gateway) TraefikPID() int {
	pid, err := ReadTraefikPID(g.PIDFile())
	if err != nil || !isTraefik(pid) {
		return 0
	}
	g.mu.Lock()
	if !slices.Contains(g.traefiks, pid) {
		g.traefiks = append(g.traefiks, pid)
	}
	g.mu.Unlock()
	return pid
}

// ReadTraefikPID reads the "pid" field of a JSON pidfile.
func ReadTraefikPID(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var f struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		// Accept a bare number too, in case the format changes.
		n, err2 := strconv.Atoi(string(bytes.TrimSpace(data)))
		if err2 != nil {
			return 0, fmt.Errorf("reading %s: %w", path, err)
		}
		return n, nil
	}
	if f.PID <= 0 {
		return 0, fmt.Errorf("reading %s: no pid", path)
	}
	return f.PID, nil
}

// stopTraefiks stops every Traefik the test saw, and the one in the pidfile
// now, by PID.
func (g *Gateway) stopTraefiks() {
	g.TraefikPID()
	g.mu.Lock()
	pids := slices.Clone(g.traefiks)
	g.mu.Unlock()
	for _, pid := range pids {
		if isTraefik(pid) {
			KillPID(pid)
		}
	}
}

// isTraefik tells whether pid is a live process running a Traefik binary, so
// that a stale pidfile never makes the test kill an unrelated process.
func isTraefik(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil || isZombie(pid) {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	return strings.Contains(filepath.Base(string(argv0)), "traefik")
}

// ProcessAlive tells whether pid is a live process (not a zombie).
func ProcessAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil && !isZombie(pid)
}

// Call runs fn, which calls the stub, and turns the stub's panic on a
// transport error (Redis down, context expired) into an error.
func Call(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("zbus call: %v", r)
		}
	}()
	return fn()
}

// callTimeout bounds each of the call helpers below.
const callTimeout = 10 * time.Second

// SetNamedProxy calls SetNamedProxy and fails the test on any error. It
// returns the fqdn.
func (g *Gateway) SetNamedProxy(t testing.TB, wlID, prefix string, backends []string, passthrough bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var fqdn string
	err := Call(func() (err error) {
		fqdn, err = g.Stub.SetNamedProxy(ctx, wlID, prefix, backends, passthrough)
		return err
	})
	if err != nil {
		t.Fatalf("SetNamedProxy(%q, %q, %q, %v): %v", wlID, prefix, backends, passthrough, err)
	}
	return fqdn
}

// SetFQDNProxy calls SetFQDNProxy and returns its error (transport errors
// included).
func (g *Gateway) SetFQDNProxy(wlID, fqdn string, backends []string, passthrough bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return Call(func() error { return g.Stub.SetFQDNProxy(ctx, wlID, fqdn, backends, passthrough) })
}

// DeleteNamedProxy calls DeleteNamedProxy and fails the test on any error.
func (g *Gateway) DeleteNamedProxy(t testing.TB, wlID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := Call(func() error { return g.Stub.DeleteNamedProxy(ctx, wlID) }); err != nil {
		t.Fatalf("DeleteNamedProxy(%q): %v", wlID, err)
	}
}

// List calls List and returns its result (transport errors included).
func (g *Gateway) List() ([]gateway.Proxy, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var list []gateway.Proxy
	err := Call(func() (err error) {
		list, err = g.Stub.List(ctx)
		return err
	})
	return list, err
}

// Metrics calls Metrics and returns its result (transport errors included).
func (g *Gateway) Metrics() (gateway.GatewayMetrics, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var m gateway.GatewayMetrics
	err := Call(func() (err error) {
		m, err = g.Stub.Metrics(ctx)
		return err
	})
	return m, err
}

// RouteFile is the dynamic-configuration file that holds the route of
// wlID: its group file, shared with other routes.
func (g *Gateway) RouteFile(wlID string) string {
	return filepath.Join(g.Root, traefik.RoutesDirName, traefik.GroupName(wlID)+traefik.FileExt)
}

// RouteConfig returns the configuration of the route of wlID as its group
// file holds it (the elements named wlID), nil when it holds none.
func (g *Gateway) RouteConfig(t testing.TB, wlID string) *traefik.Configuration {
	t.Helper()
	path := g.RouteFile(wlID)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := traefik.Unmarshal(data)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return traefik.Split(cfg)[wlID]
}

// logExcerpt returns the lines of Traefik's log above debug level (at most
// 100) and its last 40 lines, from the last 1 MiB of the file.
func logExcerpt(path string) string {
	lines := strings.Split(strings.TrimRight(tailFile(path, 1<<20), "\n"), "\n")
	var important []string
	for _, l := range lines {
		if !strings.Contains(l, " DBG ") && !strings.Contains(l, " TRC ") {
			important = append(important, l)
		}
	}
	important = important[max(0, len(important)-100):]
	last := lines[max(0, len(lines)-40):]
	return strings.Join(important, "\n") + "\n--- last lines ---\n" + strings.Join(last, "\n")
}

// tailFile returns the last limit bytes of path, or why it could not.
func tailFile(path string, limit int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(0, st.Size()-limit)
	buf := make([]byte, st.Size()-off)
	n, err := f.ReadAt(buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return err.Error()
	}
	return string(buf[:n])
}
