package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// goTestTimeout bounds one `go test` run, compilation included.
const goTestTimeout = 10 * time.Minute

// acmeTestArgs runs the ACME end-to-end tests that time certificates: the
// gateway, Traefik and Pebble, as in CI.
var acmeTestArgs = []string{"test", "-tags", "e2e", "-count=1", "-v", "-run",
	"^(TestWildcardCertificate|TestFQDNCertificateHTTP01)$", "./test/acme/"}

// acmeTimings are the lines the ACME tests log with t.Logf. They are the
// tests' own words, read back; the numbers are wall-clock times from the
// zbus call to the first handshake verified against Pebble's root.
var acmeTimings = map[string]*regexp.Regexp{
	"wildcard (DNS-01)":     regexp.MustCompile(`wildcard certificate after (\S+)`),
	"user domain (HTTP-01)": regexp.MustCompile(`HTTP-01 certificate after (\S+)`),
	"after a Traefik SIGKILL, stored certificate served again": regexp.MustCompile(`certificate served again (\S+) after SIGKILL`),
}

// benchACME runs the ACME tests runs times and collects their timings.
func benchACME(ctx context.Context, repo string, runs int, logf func(string, ...any)) (ACMEResult, error) {
	r := ACMEResult{Runs: runs, Command: "go " + strings.Join(acmeTestArgs, " ")}
	samples := map[string][]time.Duration{}
	for i := range runs {
		logf("ACME run %d/%d: %s", i+1, runs, r.Command)
		out, err := runGo(ctx, repo, acmeTestArgs)
		if err != nil {
			return r, err
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			for name, re := range acmeTimings {
				m := re.FindStringSubmatch(sc.Text())
				if m == nil {
					continue
				}
				d, err := time.ParseDuration(m[1])
				if err != nil {
					return r, fmt.Errorf("reading %q: %w", sc.Text(), err)
				}
				samples[name] = append(samples[name], d)
			}
		}
	}
	for name := range acmeTimings {
		s := samples[name]
		if len(s) == 0 {
			return r, fmt.Errorf("the ACME tests logged no %q timing", name)
		}
		slices.Sort(s)
		r.Rows = append(r.Rows, ACMERow{Name: name, Samples: len(s), Min: Duration(s[0].Round(time.Millisecond)),
			Median: Duration(s[len(s)/2].Round(time.Millisecond)), Max: Duration(s[len(s)-1].Round(time.Millisecond))})
	}
	slices.SortFunc(r.Rows, func(a, b ACMERow) int { return strings.Compare(a.Name, b.Name) })
	return r, nil
}

// runGo runs go with args in repo, in a process group of its own that is
// killed as a whole if ctx ends, and returns its output.
func runGo(ctx context.Context, repo string, args []string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, goTestTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = repo
	cmd.Env = os.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, tailLines(out.Bytes(), 30))
	}
	return out.Bytes(), nil
}

// tailLines returns the last n lines of b.
func tailLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
