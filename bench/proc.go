package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/threefoldtech/gateway/test/harness"
)

// clockTick is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on
// Linux).
const clockTick = 10 * time.Millisecond

// becomeSubreaper makes the bench the parent of every orphan among its
// descendants: Traefik, which outlives the gateway on purpose, and whatever
// an interrupted `go test` leaves behind. reapOrphans stops them by PID.
func becomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// reapOrphans stops every live process whose parent is the bench:
// descendants orphaned on the way. It is the last line; the normal paths stop
// everything they start themselves.
func reapOrphans(logf func(format string, args ...any)) {
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
		if err != nil || st.ppid != os.Getpid() || !harness.ProcessAlive(pid) {
			continue
		}
		logf("stopping leftover process %d (%s)", pid, st.comm)
		harness.KillPID(pid)
	}
}

// procStat is the part of /proc/<pid>/stat the bench reads.
type procStat struct {
	comm string
	ppid int
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
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	ppid, err1 := strconv.Atoi(f[1])
	utime, err2 := strconv.ParseUint(f[11], 10, 64)
	stime, err3 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, fmt.Errorf("parsing /proc/%d/stat: %w", pid, err)
	}
	return procStat{comm: string(b[open+1 : end]), ppid: ppid, cpu: utime + stime}, nil
}

// cpuTime is the CPU time pid has used, 0 if it cannot be read.
func cpuTime(pid int) time.Duration {
	st, err := readStat(pid)
	if err != nil {
		return 0
	}
	return time.Duration(st.cpu) * clockTick
}

// cpuTotals are the machine's CPU time and the part of it that was busy, in
// clock ticks, from the first line of /proc/stat; irq false leaves the time
// spent in interrupts out of busy (the softirq work of loopback traffic is
// not accounted to the processes that cause it).
func cpuTotals(irq bool) (busy, total uint64, err error) {
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
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
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

// waitIdle waits until the processes pids have used, together, no more
// than quietTicks of CPU over quietWindow. It returns false if that took
// more than timeout.
func waitIdle(ctx context.Context, pids []int, timeout time.Duration) bool {
	type point struct {
		at  time.Time
		cpu uint64
	}
	var points []point
	gone := false
	err := harness.PollEvery(ctx, timeout, 20*time.Millisecond, func() error {
		var cpu uint64
		for _, pid := range pids {
			st, err := readStat(pid)
			if err != nil {
				gone = true
				return nil
			}
			cpu += st.cpu
		}
		now := time.Now()
		points = append(points, point{now, cpu})
		for len(points) > 1 && now.Sub(points[1].at) >= quietWindow {
			points = points[1:]
		}
		if now.Sub(points[0].at) >= quietWindow && cpu-points[0].cpu <= quietTicks {
			return nil
		}
		return errors.New("busy")
	})
	return err == nil && !gone
}
