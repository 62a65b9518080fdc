package meter

import (
	"fmt"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// netns is a network namespace of a test's own, so that the test never
// touches the host's ruleset, with a thread inside it that runs what must
// happen there: making sockets (a socket stays in the namespace it was made
// in, whichever thread uses it later).
type netns struct {
	fd  int
	run chan func()
}

// newNetNS makes a network namespace with lo up, gone when the test ends.
// Without root the test fails: CI runs as root, and a skipped test would
// hide that the meter was never tested.
func newNetNS(t testing.TB) *netns {
	t.Helper()
	ns := &netns{run: make(chan func())}
	ready := make(chan error)
	go func() {
		// The thread is never unlocked: it ends with this goroutine, and
		// the namespace with its last reference.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("creating a network namespace (the kernel tests must run as root, with nf_tables): %w", err)
			return
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ready <- fmt.Errorf("opening the network namespace: %w", err)
			return
		}
		ns.fd = fd
		if err := loUp(); err != nil {
			unix.Close(fd)
			ready <- err
			return
		}
		ready <- nil
		for f := range ns.run {
			f()
		}
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(ns.run)
		unix.Close(ns.fd)
	})
	return ns
}

// do runs f in the namespace and waits for it.
func (ns *netns) do(f func()) {
	done := make(chan struct{})
	ns.run <- func() {
		defer close(done)
		f()
	}
	<-done
}

// loUp brings up the loopback interface of the calling thread's namespace.
func loUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	return nil
}
