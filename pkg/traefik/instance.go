package traefik

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/threefoldtech/gateway/internal/quote"
)

// instance is one Traefik process, our child or adopted.
type instance struct {
	pid   int
	hash  string
	since time.Time

	// child is set when we started it; done is closed once it was reaped,
	// after which child.ProcessState holds the exit status.
	child *exec.Cmd
	done  chan struct{}

	// For an adopted Traefik: a pidfd pinning its identity, -1 when the
	// kernel offers none; argv, our command line, to identify it again
	// before signalling without one.
	pidfd int
	argv  []string

	closeOnce sync.Once
}

// openVerified returns the process pid when it is alive and a Traefik of
// ours (see identify), with how it matches argv, our command line; nil
// otherwise. A recycled pid never matches. notOurs is set when the process
// claims our command line but identify found it is not ours: it must be
// neither adopted nor signalled, and the log should say why.
func openVerified(pid int, argv []string) (inst *instance, match cmdlineMatch, notOurs error) {
	if pid <= 1 || pid == os.Getpid() {
		return nil, cmdlineForeign, nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil, cmdlineForeign, nil
	}
	if err != nil {
		fd = -1 // no pidfd (old kernel): fall back to kill(pid, 0)
	}
	inst = &instance{pid: pid, since: time.Now(), pidfd: fd, argv: argv}
	match, notOurs = identify(pid, argv)
	// The pidfd was opened before /proc was read: if the process it pins is
	// still alive, what was read was its own.
	if inst.exited() {
		inst.close()
		return nil, cmdlineForeign, nil
	}
	if match == cmdlineForeign {
		inst.close()
		return nil, cmdlineForeign, notOurs
	}
	return inst, match, nil
}

// deletedSuffix ends the target of /proc/<pid>/exe when the file the
// process runs was removed or replaced since it started.
const deletedSuffix = " (deleted)"

// identify tells how process pid compares to our Traefik, whose command line
// is argv (argv[0] the binary, absolute, symbolic links resolved). The
// command line alone proves nothing: any program can be started with ours
// (exec -a). A process is ours only when its arguments are ours, it runs as
// the gateway's user (real and effective uid: a Traefik we start inherits
// both) and its executable is the file its argv[0] names. Then it is
// cmdlineSame when that file is our binary, as it is on disk now, even when
// its argv[0] reached it through a symbolic link (a Traefik an earlier
// gateway started), and cmdlineSameConfig otherwise: another binary, or ours
// replaced on disk since (an upgrade), to be replaced. notOurs says why a
// process with our arguments is foreign; it is nil for the others.
func identify(pid int, argv []string) (match cmdlineMatch, notOurs error) {
	cmdline, err := readCmdline(pid)
	if err != nil {
		return cmdlineForeign, nil
	}
	if match = matchCmdline(cmdline, argv); match == cmdlineForeign {
		return cmdlineForeign, nil
	}
	// The owner first: another user's executable is not ours to read.
	uid, euid, err := procUIDs(pid)
	if err != nil {
		return cmdlineForeign, fmt.Errorf("reading its user: %w", err)
	}
	if uid != os.Getuid() || euid != os.Geteuid() {
		return cmdlineForeign, fmt.Errorf("it runs as uid %d (effective %d), the gateway as uid %d (effective %d)", uid, euid, os.Getuid(), os.Geteuid())
	}
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return cmdlineForeign, fmt.Errorf("reading its executable: %w", err)
	}
	exe, deleted := strings.CutSuffix(link, deletedSuffix)
	if !namesFile(cmdline[0], exe) {
		return cmdlineForeign, fmt.Errorf("its command line names %s but it runs %s", quote.Short(cmdline[0]), quote.Short(link))
	}
	if deleted || exe != argv[0] {
		return cmdlineSameConfig, nil
	}
	// Our binary, whatever path its command line took to it.
	return cmdlineSame, nil
}

// namesFile tells whether argv0, a command line's program, names exe, the
// absolute path of the file a process runs. A Traefik started by an earlier
// gateway may name it through a symbolic link.
func namesFile(argv0, exe string) bool {
	if argv0 == exe {
		return true
	}
	if !filepath.IsAbs(argv0) {
		return false
	}
	resolved, err := filepath.EvalSymlinks(argv0)
	return err == nil && resolved == exe
}

// exited tells whether the process is gone (a zombie counts as gone).
func (inst *instance) exited() bool {
	if inst.child != nil {
		select {
		case <-inst.done:
			return true
		default:
			return false
		}
	}
	if inst.pidfd >= 0 {
		fds := []unix.PollFd{{Fd: int32(inst.pidfd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			gone := err != nil || (n > 0 && fds[0].Revents != 0)
			if gone {
				inst.reap()
			}
			return gone
		}
	}
	if err := unix.Kill(inst.pid, 0); errors.Is(err, unix.ESRCH) {
		return true
	}
	state, err := procState(inst.pid)
	if err != nil || state == 'Z' || state == 'X' {
		if state == 'Z' {
			inst.reap()
		}
		return true
	}
	// Without a pidfd, the pid may have been reused since.
	match, _ := identify(inst.pid, inst.argv)
	return match == cmdlineForeign
}

// reap collects the exit status of an adopted process that exited and is
// our child all the same: a Traefik this process started before it
// replaced itself by a new run of the gateway (exec keeps the pid, and with
// it the children), which nothing else waits for. Of a process that is not
// our child the wait fails (ECHILD), harmlessly; a zombie's pid is never
// reused, so the wait cannot reach another process.
func (inst *instance) reap() {
	if inst.pidfd >= 0 {
		var info unix.Siginfo
		_ = unix.Waitid(unix.P_PIDFD, inst.pidfd, &info, unix.WEXITED|unix.WNOHANG, nil)
		return
	}
	_, _ = unix.Wait4(inst.pid, nil, unix.WNOHANG, nil)
}

// wait waits for the process to exit; false when ctx ended first.
func (inst *instance) wait(ctx context.Context) bool {
	if inst.child != nil {
		select {
		case <-inst.done:
			return true
		case <-ctx.Done():
			return false
		}
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !inst.exited() {
		select {
		case <-ctx.Done():
			return inst.exited()
		case <-t.C:
		}
	}
	return true
}

// signal sends sig to the process, never to another that reused its pid.
func (inst *instance) signal(sig syscall.Signal) error {
	switch {
	case inst.child != nil:
		// Unreaped, a child's pid cannot be reused.
		return inst.child.Process.Signal(sig)
	case inst.pidfd >= 0:
		return unix.PidfdSendSignal(inst.pidfd, sig, nil, 0)
	case inst.exited(): // identifies the process again
		return os.ErrProcessDone
	default:
		return unix.Kill(inst.pid, sig)
	}
}

// close releases the pidfd. The process itself is left alone.
func (inst *instance) close() {
	inst.closeOnce.Do(func() {
		if inst.pidfd >= 0 {
			_ = unix.Close(inst.pidfd)
		}
	})
}

// describeExit adds why the process exited to ev. Only a child's exit status
// is known: an adopted process is reaped by whoever is its parent.
func (inst *instance) describeExit(ev *zerolog.Event) *zerolog.Event {
	if inst.child == nil || inst.child.ProcessState == nil {
		return ev.Str("status", "unknown: not our child")
	}
	ws, ok := inst.child.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case ok && ws.Signaled():
		return ev.Str("signal", ws.Signal().String())
	case ok && ws.Exited():
		return ev.Int("exit_code", ws.ExitStatus())
	default:
		return ev.Str("status", inst.child.ProcessState.String())
	}
}

// procState is the state letter of /proc/<pid>/stat ('R', 'S', 'Z', ...).
func procState(pid int) (byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcState(b)
}

// parseProcState reads the state from the content of /proc/<pid>/stat:
// "pid (comm) S ...", where comm may hold spaces and parentheses.
func parseProcState(stat []byte) (byte, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) || stat[i+1] != ' ' {
		return 0, fmt.Errorf("parsing /proc stat %s: no state field", quote.Short(string(stat)))
	}
	return stat[i+2], nil
}

// procStartTime is the start time of process pid, in clock ticks since
// boot: with the pid, it names one process for the life of the system.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStartTime(b)
}

// parseProcStartTime reads field 22, starttime, from the content of
// /proc/<pid>/stat; the fields after comm begin with the third, the state.
func parseProcStartTime(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("parsing /proc stat %s: no command", quote.Short(string(stat)))
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 22-2 {
		return 0, fmt.Errorf("parsing /proc stat %s: no start time", quote.Short(string(stat)))
	}
	start, err := strconv.ParseUint(f[22-3], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing /proc stat start time: %w", err)
	}
	return start, nil
}

// procUIDs reads the real and effective user ids of process pid.
func procUIDs(pid int) (uid, euid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseStatusUIDs(b)
}

// parseStatusUIDs reads the real and effective user ids from the content of
// /proc/<pid>/status, the first two fields of its line
// "Uid:\t<real>\t<effective>\t<saved>\t<filesystem>".
func parseStatusUIDs(status []byte) (uid, euid int, err error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("Uid:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 4 {
			break
		}
		realID, err1 := strconv.ParseUint(f[0], 10, 32)
		effectiveID, err2 := strconv.ParseUint(f[1], 10, 32)
		if err1 != nil || err2 != nil {
			break
		}
		return int(realID), int(effectiveID), nil
	}
	return 0, 0, errors.New("parsing /proc status: no Uid line of four user ids")
}

// cmdlineMatch is how a process's command line compares to ours.
type cmdlineMatch int

const (
	// cmdlineForeign is another program: never adopted nor signalled.
	cmdlineForeign cmdlineMatch = iota
	// cmdlineSameConfig runs our configuration file with another Traefik
	// binary, or ours replaced on disk since (an upgrade): ours, to be
	// replaced.
	cmdlineSameConfig
	// cmdlineSame is exactly our command line.
	cmdlineSame
)

// readCmdline reads the command line of process pid.
func readCmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	return splitCmdline(b), nil
}

// splitCmdline splits the content of /proc/<pid>/cmdline.
func splitCmdline(b []byte) []string {
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}

// matchCmdline compares a command line to ours, want.
func matchCmdline(got, want []string) cmdlineMatch {
	switch {
	case slices.Equal(got, want):
		return cmdlineSame
	case len(got) == len(want) && len(got) >= 2 && slices.Equal(got[1:], want[1:]) && got[0] != "":
		return cmdlineSameConfig
	default:
		return cmdlineForeign
	}
}
