// Package harness starts the real parts the integration and end-to-end tests
// talk to — redis-server, the gateway binary, Traefik, Pebble, backends — on
// loopback, and stops every process it started by its PID when the test ends,
// whether it passed or not.
package harness

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is a process started by a test.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// Start runs name with args, its output kept for failure reports, and stops
// it by PID when the test ends.
func Start(t testing.TB, name string, env []string, args ...string) *Proc {
	t.Helper()
	p, err := StartE(name, env, args...)
	if err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("output of %s %v:\n%s", filepath.Base(name), args, p.Output())
		}
	})
	return p
}

// StartE is Start for callers that manage the process themselves; they must
// call Stop or Kill.
func StartE(name string, env []string, args ...string) (*Proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group: a signal to the test never reaches it by accident,
	// and Stop can take its children down with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{Name: filepath.Base(name), Cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// PID returns the process ID.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Output returns what the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Kill sends SIGKILL and waits for the exit.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM, then SIGKILL after 5 seconds, and waits for the exit.
// It is safe to call more than once.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Kill()
	}
}

// KillPID stops a process the test did not start itself but is responsible
// for (Traefik, started by the gateway): SIGTERM, then SIGKILL, by PID.
func KillPID(pid int) {
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil || isZombie(pid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'Z'
}

var (
	portsMu sync.Mutex
	// portsGiven are the ports this test binary handed out already: a port
	// is closed again right after the check, so without this two callers
	// could get the same one.
	portsGiven = map[int]bool{}
	portsRand  = rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
)

// FreePort returns a port on 127.0.0.1 that was free for TCP and UDP a
// moment ago and that no other caller in this test binary got. It picks
// from 10000–32767, below the kernel's ephemeral range, so outgoing
// connections never take it, and at random, so test binaries running side
// by side rarely try the same one.
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		port := 10000 + portsRand.IntN(22768)
		if portsGiven[port] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l.Close()
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		u.Close()
		portsGiven[port] = true
		return port
	}
	t.Fatalf("no free port found")
	return 0
}

// Addr returns 127.0.0.1:port for a free port.
func Addr(t testing.TB) string {
	return "127.0.0.1:" + strconv.Itoa(FreePort(t))
}

// WaitFor polls cond until it returns nil or the deadline passes, and fails
// the test with the last error then.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := Poll(timeout, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// Poll polls cond every 20ms until it returns nil or timeout passes.
func Poll(timeout time.Duration, cond func() error) error {
	return PollEvery(context.Background(), timeout, 20*time.Millisecond, cond)
}

// PollEvery polls cond every interval until it returns nil, timeout passes
// or ctx ends; the error then wraps cond's last error.
func PollEvery(ctx context.Context, timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ctx.Err(), err)
		case <-time.After(interval):
		}
	}
}

// WaitListening waits until a TCP connection to addr succeeds.
func WaitListening(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	WaitFor(t, timeout, addr+" to listen", func() error {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// RepoRoot returns the repository's top folder.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatalf("no caller information")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// GatewayBinary builds cmd/gateway once per test binary and returns its path.
func GatewayBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gateway-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "gateway")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", buildPath, "./cmd/gateway")
		cmd.Dir = RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/gateway: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// LookBinary finds a tool the tests need: the environment variable env if
// set, else name on PATH. Tests never skip: a missing tool fails them with
// the command that installs it.
func LookBinary(t testing.TB, env, name, install string) string {
	t.Helper()
	if v := os.Getenv(env); v != "" {
		return v
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (set %s or run %s)", name, env, install)
	}
	return p
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
