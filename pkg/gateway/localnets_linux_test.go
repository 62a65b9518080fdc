package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLocalNetsReadsAnyIP guards the node's own addresses against the ones
// it takes without an interface address: a local route of a network of its
// own namespace (AnyIP, `ip route add local … dev lo`) is read from the
// kernel, and a backend there is refused as the node's own.
func TestLocalNetsReadsAnyIP(t *testing.T) {
	name := fmt.Sprintf("gwtest-local-%d", time.Now().UnixNano()%1e9)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("creating a network namespace (the test runs as root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"route", "add", "local", "203.0.113.0/24", "dev", "lo"},
		{"-6", "route", "add", "local", "2001:db8:7::/64", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	nets := inNetNS(t, name, LocalNets)
	for _, want := range []string{"203.0.113.0/24", "2001:db8:7::/64"} {
		if !slices.Contains(nets, netip.MustParsePrefix(want)) {
			t.Fatalf("LocalNets = %v, want %s among them", nets, want)
		}
	}

	m, _ := newModuleWith(t, t.TempDir(), func(c *Config) {
		c.NodeNets = func() ([]netip.Prefix, error) { return nets, nil }
	})
	_, err := m.SetRoute(context.Background(), RouteRequest{WorkloadID: "wl", Kind: KindName, Name: "app", Backends: []string{"http://203.0.113.9:8080"}})
	if err == nil || !strings.Contains(err.Error(), "is the node's own address") {
		t.Fatalf("err = %v, want the backend refused as the node's own", err)
	}
}

// inNetNS runs f on a thread in the named network namespace.
func inNetNS[T any](t testing.TB, name string, f func() (T, error)) T {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	done := make(chan result)
	go func() {
		// The thread is never unlocked: it ends with this goroutine.
		runtime.LockOSThread()
		fd, err := os.Open("/var/run/netns/" + name)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer fd.Close()
		if err := unix.Setns(int(fd.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{err: err}
			return
		}
		v, err := f()
		done <- result{v, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}
