package traefik

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// listener is a copy, in the gateway, of a listening TCP socket of a
// Traefik: the same socket, so that the gateway can steer its SO_REUSEPORT
// group while Traefik accepts on it.
type listener struct {
	fd   int
	addr netip.AddrPort
	// inode names the socket: /proc/<pid>/fd/<n> of every process holding
	// it links to "socket:[inode]".
	inode uint64
	// reusePort is SO_REUSEPORT: without it no other socket can join the
	// address, and there is no group to steer.
	reusePort bool
}

// listeners copies the listening TCP sockets of process pid into the
// gateway (pidfd_getfd(2), Linux 5.6, which needs the right to ptrace it:
// root, or the same user). The caller closes them.
func listeners(pid int) ([]listener, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("opening pid %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing the files of pid %d: %w", pid, err)
	}
	var out []listener
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink(dir + "/" + e.Name()); err != nil || !strings.HasPrefix(link, "socket:") {
			continue
		}
		copied, err := unix.PidfdGetfd(pidfd, fd, 0)
		if errors.Is(err, unix.EBADF) {
			continue // closed meanwhile
		}
		if err != nil {
			closeListeners(out)
			return nil, fmt.Errorf("copying socket %d of pid %d: %w", fd, pid, err)
		}
		l, ok := describeListener(copied)
		if !ok {
			_ = unix.Close(copied)
			continue
		}
		l.fd = copied
		out = append(out, l)
	}
	return out, nil
}

// describeListener tells whether fd is a listening TCP socket, and its
// address.
func describeListener(fd int) (listener, bool) {
	if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
		return listener{}, false
	}
	if on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || on != 1 {
		return listener{}, false
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return listener{}, false
	}
	var addr netip.AddrPort
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		addr = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		addr = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	default:
		return listener{}, false // a unix socket
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return listener{}, false
	}
	reuse, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT)
	return listener{addr: addr, inode: st.Ino, reusePort: err == nil && reuse == 1}, true
}

// steer makes the SO_REUSEPORT group of l hand every new connection to the
// socket at index in the group: the order in which its sockets began to
// listen, the oldest at 0. An index past the last socket falls back to the
// kernel's hash over the sockets there are. It attaches to the whole group a
// classic BPF program of one instruction, "return index"
// (SO_ATTACH_REUSEPORT_CBPF).
func (l listener) steer(index uint32) error {
	prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: index}}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(l.fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog); err != nil {
		return fmt.Errorf("steering connections to %s: %w", l.addr, err)
	}
	return nil
}

// unsteer removes the group's program: the kernel's hash chooses again.
func (l listener) unsteer() error {
	err := unix.SetsockoptInt(l.fd, unix.SOL_SOCKET, unix.SO_DETACH_REUSEPORT_BPF, 0)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unsteering connections to %s: %w", l.addr, err)
	}
	return nil
}

// queued returns how many connections wait in l's accept queue: a listening
// socket's TCP_INFO gives it as tcpi_unacked.
func (l listener) queued() (int, error) {
	info, err := unix.GetsockoptTCPInfo(l.fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, fmt.Errorf("reading the accept queue of %s: %w", l.addr, err)
	}
	return int(info.Unacked), nil
}

// closeListeners closes the gateway's copies; the sockets stay open in
// Traefik.
func closeListeners(ls []listener) {
	for _, l := range ls {
		_ = unix.Close(l.fd)
	}
}

// holdsAny tells whether process pid holds one of ls's sockets: whether it
// still listens on them. It reads the links of its file descriptors only,
// not the sockets, which a Traefik with thousands of connections makes
// cheap enough to poll.
func holdsAny(pid int, ls []listener) (bool, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("listing the files of pid %d: %w", pid, err)
	}
	for _, e := range entries {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		rest, ok := strings.CutPrefix(link, "socket:[")
		if !ok {
			continue
		}
		inode, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64)
		if err != nil {
			continue
		}
		for _, l := range ls {
			if l.inode == inode {
				return true, nil
			}
		}
	}
	return false, nil
}
