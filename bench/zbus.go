package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// goBenchTimeout bounds one `go test -bench` run, compilation included.
const goBenchTimeout = 10 * time.Minute

// The go test benchmarks the report quotes, as run.
var (
	zbusBenchArgs     = []string{"test", "-tags", "integration", "-run", "^$", "-bench", "BenchmarkZbus", "-benchtime", "2000x", "./test/integration/"}
	dirWriteBenchArgs = []string{"test", "-run", "^$", "-bench", "BenchmarkDirWrite", "-benchtime", "500x", "./pkg/traefik"}
)

// zbusResult is the cost of a call through zbus.
type zbusResult struct {
	// Noop and SetNamedProxy are ns/op of BenchmarkZbus/noop and
	// BenchmarkZbus/SetNamedProxy: a call that does nothing and the real
	// call, through the same broker.
	Noop, SetNamedProxy float64
	// DirWrite is ns/op of BenchmarkDirWrite: the crash-consistent write
	// alone (temporary file, fsync, rename, fsync of the folder).
	DirWrite float64
}

// benchZbus runs the zbus and writer benchmarks of the repository at repo as
// subprocesses and reads their ns/op.
func benchZbus(ctx context.Context, repo string, logf func(string, ...any)) (zbusResult, error) {
	var r zbusResult
	logf("running go %s", strings.Join(zbusBenchArgs, " "))
	got, err := runGoBench(ctx, repo, zbusBenchArgs)
	if err != nil {
		return r, err
	}
	var ok1, ok2 bool
	r.Noop, ok1 = got["BenchmarkZbus/noop"]
	r.SetNamedProxy, ok2 = got["BenchmarkZbus/SetNamedProxy"]
	if !ok1 || !ok2 {
		return r, fmt.Errorf("go %s: no ns/op for BenchmarkZbus/noop and BenchmarkZbus/SetNamedProxy in %v", strings.Join(zbusBenchArgs, " "), got)
	}
	logf("running go %s", strings.Join(dirWriteBenchArgs, " "))
	got, err = runGoBench(ctx, repo, dirWriteBenchArgs)
	if err != nil {
		return r, err
	}
	if r.DirWrite, ok1 = got["BenchmarkDirWrite"]; !ok1 {
		return r, fmt.Errorf("go %s: no ns/op for BenchmarkDirWrite in %v", strings.Join(dirWriteBenchArgs, " "), got)
	}
	return r, nil
}

// runGoBench runs go with args in repo and returns ns/op per benchmark name
// (without the -GOMAXPROCS suffix).
func runGoBench(ctx context.Context, repo string, args []string) (map[string]float64, error) {
	out, err := runGo(ctx, repo, args)
	if err != nil {
		return nil, err
	}
	return parseGoBench(out), nil
}

// parseGoBench reads the ns/op of each benchmark line of go test's output:
// "BenchmarkX/sub-2  2000  93245 ns/op [more value unit pairs]".
func parseGoBench(out []byte) map[string]float64 {
	res := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		for i := 2; i+1 < len(f); i += 2 {
			if f[i+1] != "ns/op" {
				continue
			}
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				res[name] = v
			}
		}
	}
	return res
}

// tailLines returns the last n lines of b.
func tailLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
