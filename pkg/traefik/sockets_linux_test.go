package traefik

import (
	"context"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listenReusePort listens on addr with SO_REUSEPORT, as Traefik's entry
// points with reusePort do.
func listenReusePort(t testing.TB, addr string) *net.TCPListener {
	t.Helper()
	// Plain TCP: Go listens with MPTCP by default, whose sockets refuse
	// socket options of BPF.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	lc.SetMultipathTCP(false)
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.(*net.TCPListener)
}

// accepted connects n times to addr and counts the connections each of ls
// accepted.
func accepted(t testing.TB, addr string, n int, ls ...*net.TCPListener) []int {
	t.Helper()
	for range n {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	counts := make([]int, len(ls))
	for i, l := range ls {
		for {
			_ = l.SetDeadline(time.Now().Add(50 * time.Millisecond))
			c, err := l.Accept()
			if err != nil {
				break
			}
			c.Close()
			counts[i]++
		}
	}
	return counts
}

// The gateway finds this process's listening sockets, sees SO_REUSEPORT,
// and steers every new connection of the group to the socket it names.
func TestListenersSteer(t *testing.T) {
	first := listenReusePort(t, "127.0.0.1:0")
	addr := first.Addr().String()
	second := listenReusePort(t, addr)

	ls, err := listeners(os.Getpid())
	if err != nil {
		t.Fatalf("listeners: %v", err)
	}
	defer closeListeners(ls)
	want := netip.MustParseAddrPort(addr)
	var group []listener
	for _, l := range ls {
		if l.addr == want {
			group = append(group, l)
		}
	}
	if len(group) != 2 || !group[0].reusePort || !group[1].reusePort {
		t.Fatalf("listeners on %s: %+v, want two with SO_REUSEPORT", addr, group)
	}

	if err := group[0].steer(0); err != nil {
		t.Fatal(err)
	}
	if got := accepted(t, addr, 50, first, second); got[0] != 50 {
		t.Errorf("steered to index 0: accepted %v, want all 50 by the first", got)
	}
	if err := group[1].steer(1); err != nil {
		t.Fatal(err)
	}
	if got := accepted(t, addr, 50, first, second); got[1] != 50 {
		t.Errorf("steered to index 1: accepted %v, want all 50 by the second", got)
	}
	if err := group[0].unsteer(); err != nil {
		t.Fatal(err)
	}
	if got := accepted(t, addr, 200, first, second); got[0] == 0 || got[1] == 0 {
		t.Errorf("unsteered: accepted %v, want both to take some", got)
	}
}

// queued reads how many connections wait in a listening socket's accept
// queue.
func TestListenerQueued(t *testing.T) {
	l := listenReusePort(t, "127.0.0.1:0")
	ls, err := listeners(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer closeListeners(ls)
	var ours listener
	for _, x := range ls {
		if x.addr.String() == l.Addr().String() {
			ours = x
		}
	}
	for range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	if n, err := ours.queued(); err != nil || n != 3 {
		t.Fatalf("queued: %d, %v; want 3", n, err)
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n, err := ours.queued(); err != nil || n != 2 {
		t.Errorf("after one accept: %d, %v; want 2", n, err)
	}
}
