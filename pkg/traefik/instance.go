package traefik

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
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
	// kernel offers none; argv to re-check before signalling without one.
	pidfd int
	argv  []string

	closeOnce sync.Once
}

// openVerified returns the process pid when it is alive and runs the
// configuration file of argv, our command line, with how its command line
// matches ours; nil otherwise. A recycled pid never matches.
func openVerified(pid int, argv []string) (*instance, cmdlineMatch) {
	if pid <= 1 || pid == os.Getpid() {
		return nil, cmdlineForeign
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil, cmdlineForeign
	}
	if err != nil {
		fd = -1 // no pidfd (old kernel): fall back to kill(pid, 0)
	}
	inst := &instance{pid: pid, since: time.Now(), pidfd: fd, argv: argv}
	cmdline, err := readCmdline(pid)
	if err != nil {
		inst.close()
		return nil, cmdlineForeign
	}
	match := matchCmdline(cmdline, argv)
	// The pidfd was opened before the command line was read: if the process
	// it pins is still alive, the command line was its own.
	if match == cmdlineForeign || inst.exited() {
		inst.close()
		return nil, cmdlineForeign
	}
	return inst, match
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
			return err != nil || (n > 0 && fds[0].Revents != 0)
		}
	}
	if err := unix.Kill(inst.pid, 0); errors.Is(err, unix.ESRCH) {
		return true
	}
	state, err := procState(inst.pid)
	if err != nil || state == 'Z' || state == 'X' {
		return true
	}
	// Without a pidfd, the pid may have been reused since.
	cmdline, err := readCmdline(inst.pid)
	return err != nil || matchCmdline(cmdline, inst.argv) == cmdlineForeign
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
	case inst.exited(): // re-checks the command line
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

// cmdlineMatch is how a process's command line compares to ours.
type cmdlineMatch int

const (
	// cmdlineForeign is another program: never adopted nor signalled.
	cmdlineForeign cmdlineMatch = iota
	// cmdlineSameConfig runs our configuration file with another Traefik
	// binary (an upgrade): ours, to be replaced.
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
