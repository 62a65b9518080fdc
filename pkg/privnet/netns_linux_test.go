package privnet

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/rs/zerolog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/threefoldtech/gateway/pkg/zosnet"
)

// addNetNS makes a named network namespace (under /var/run/netns, as zos's
// are) with lo up, removed when the test ends with everything in it. Without
// root the test fails: CI runs as root, and a skipped test would hide that
// the data path was never tested.
func addNetNS(t *testing.T, name string) string {
	t.Helper()
	name = fmt.Sprintf("gwtest-%d-%s", os.Getpid(), name)
	ipCmd(t, "", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ipCmd(t, name, "link", "set", "lo", "up")
	return name
}

// ipCmd runs ip(8) inside namespace ns (none: here), for the fixtures.
func ipCmd(t *testing.T, ns string, args ...string) {
	t.Helper()
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s (the namespace tests run as root)", strings.Join(args, " "), err, out)
	}
}

// inNetNS runs f on a thread inside namespace ns; the thread is thrown away
// afterwards. A socket f makes stays in ns.
func inNetNS(t *testing.T, ns string, f func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with the goroutine.
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// tenantBackend gives namespace ns the tenant address addr and serves on
// addr:8080, only inside ns, an echo that first says who it is.
func tenantBackend(t *testing.T, ns, addr, who string) netip.AddrPort {
	t.Helper()
	ipCmd(t, ns, "addr", "add", addr+"/32", "dev", "lo")
	var ln net.Listener
	var err error
	inNetNS(t, ns, func() { ln, err = net.Listen("tcp4", addr+":8080") })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "%s %s\n", who, c.RemoteAddr())
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return netip.MustParseAddrPort(addr + ":8080")
}

// dialFrom connects to a from inside namespace ns and reads the greeting.
func dialFrom(t *testing.T, ns string, a netip.AddrPort) (net.Conn, string) {
	t.Helper()
	var c net.Conn
	var err error
	inNetNS(t, ns, func() { c, err = net.DialTimeout("tcp", a.String(), 3*time.Second) })
	if err != nil {
		t.Fatalf("dialing %s from %s: %v", a, ns, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading from %s: %v", a, err)
	}
	return c, strings.TrimSpace(line)
}

// echo checks that c still carries bytes both ways.
func echo(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping\n" {
		t.Fatalf("%s: read %q, %v", what, buf, err)
	}
}

// TestKernelDataPath routes from a gateway namespace to backends that
// listen only inside two tenant namespaces with the same tenant range, as
// zos's networks of two twins may have; keeps an open connection across a
// restart of Networks and a second Attach; and removes a link with its last
// route.
func TestKernelDataPath(t *testing.T) {
	gw := addNetNS(t, "gw")
	nsA, nsB := addNetNS(t, "a"), addNetNS(t, "b")
	backA := tenantBackend(t, nsA, "10.77.1.2", "a")
	backB := tenantBackend(t, nsB, "10.77.1.2", "b")

	d := newFakeDaemon(map[string]string{"7:office": "10.77.0.0/16", "8:office": "10.77.0.0/16"})
	d.ns = map[zosnet.NetID]string{zosnet.NetworkID(7, "office"): nsA, zosnet.NetworkID(8, "office"): nsB}
	db := openStore(t, t.TempDir())
	open := func() *Networks {
		n, err := New(Config{Daemon: d, Store: db, HostNamespace: "/var/run/netns/" + gw, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	n := open()
	viaA, err := n.Attach("7-1-web", "office", []netip.AddrPort{backA})
	if err != nil {
		t.Fatal(err)
	}
	viaB, err := n.Attach("8-1-web", "office", []netip.AddrPort{backB})
	if err != nil {
		t.Fatal(err)
	}
	connA, hello := dialFrom(t, gw, viaA[backA])
	// The backend sees the gateway's end of the link, not a tenant address.
	if !strings.HasPrefix(hello, "a 100.64.0.1:") {
		t.Fatalf("through %s: %q, want backend a", viaA[backA], hello)
	}
	if _, hello := dialFrom(t, gw, viaB[backB]); !strings.HasPrefix(hello, "b 100.64.0.5:") {
		t.Fatalf("through %s: %q, want backend b", viaB[backB], hello)
	}
	// The backends are not reachable from the gateway's namespace
	// otherwise.
	inNetNS(t, gw, func() {
		if c, err := net.DialTimeout("tcp", backA.String(), 200*time.Millisecond); err == nil {
			c.Close()
			t.Error("a tenant address is reachable from the gateway's namespace")
		}
	})

	host, err := netlink.NewHandleAt(n.host)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	before, err := host.LinkByName("gwpn0")
	if err != nil {
		t.Fatal(err)
	}

	// A restart of the gateway: Attach again from the store cuts nothing.
	n2 := open()
	again, err := n2.Attach("7-1-web", "office", []netip.AddrPort{backA})
	if err != nil || again[backA] != viaA[backA] {
		t.Fatalf("after a restart: %v, %v; before %v", again, err, viaA)
	}
	if after, err := host.LinkByName("gwpn0"); err != nil || after.Attrs().Index != before.Attrs().Index {
		t.Fatalf("the link was made again: %v", err)
	}
	echo(t, connA, "a connection open across a restart")

	// The last route of a network goes: its link goes, the other stays.
	if err := n2.Detach("7-1-web"); err != nil {
		t.Fatal(err)
	}
	if _, err := host.LinkByName("gwpn0"); err == nil {
		t.Fatal("the link of a network without routes stays")
	}
	if _, hello := dialFrom(t, gw, viaB[backB]); !strings.HasPrefix(hello, "b ") {
		t.Fatalf("after the other network left: %q", hello)
	}
	// And its table in the tenant's namespace.
	if tables := nftTables(t, nsA); slices.Contains(tables, DefaultTable) {
		t.Fatalf("table %s stays in %s", DefaultTable, nsA)
	}
	if tables := nftTables(t, nsB); !slices.Contains(tables, DefaultTable) {
		t.Fatalf("table %s is not in %s: %v", DefaultTable, nsB, tables)
	}
}

// nftTables returns the names of the nftables tables of namespace ns.
func nftTables(t *testing.T, ns string) []string {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := conn.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tb := range tables {
		names = append(names, tb.Name)
	}
	return names
}
