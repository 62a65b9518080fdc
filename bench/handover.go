package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/threefoldtech/gateway/test/harness"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Handover settings.
const (
	// handoverClients send requests without pause, half on a new TLS
	// connection each, half on a kept one.
	handoverClients = 4
	// handoverBefore and handoverAfter are the load before the gateway's
	// restart and after the predecessor's exit.
	handoverBefore = time.Second
	handoverAfter  = time.Second
	// handoverTimeout bounds the whole handover.
	handoverTimeout = 2 * time.Minute
)

// handoverResult is one handover of Traefik under load.
type handoverResult struct {
	requests, failed int64
	// firstFailure is the first failed request's error; failedFrom and
	// failedTo are when the failures began and ended, from the stop.
	firstFailure         string
	failedFrom, failedTo time.Duration
	// slowest and p99 are over every request of the load.
	slowest, p99 time.Duration
	// readyAfter is from the successor's start to serving every router,
	// total to the predecessor's exit, as the gateway logs them.
	readyAfter, total time.Duration
	// wall is from the gateway's stop to the predecessor's exit.
	wall time.Duration
}

// handover restarts the gateway with another --traefik.readtimeout, which
// changes Traefik's static configuration, under continuous HTTPS load on the
// first route present: the new gateway hands Traefik over to a successor.
func (r *routeRun) handover(ctx context.Context, ot *target, size int) (handoverResult, error) {
	s := r.s
	var res handoverResult
	_, prefix := popName(0)
	host := prefix + "." + benchDomain
	ctx, cancel := context.WithTimeout(ctx, handoverTimeout)
	defer cancel()

	var (
		mu        sync.Mutex
		latencies []time.Duration
		failed    atomic.Int64
	)
	// stopped is when the gateway was stopped; failures are timed from it.
	var stopped time.Time
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range handoverClients {
		keep := i%2 == 1
		wg.Go(func() {
			client := handoverClient(s.gw.WebSecureAddr, keep)
			defer client.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				began := time.Now()
				err := handoverGet(ctx, client, host)
				took := time.Since(began)
				mu.Lock()
				latencies = append(latencies, took)
				if err != nil {
					at := time.Since(stopped)
					if failed.Add(1) == 1 {
						res.firstFailure, res.failedFrom = err.Error(), at
					}
					res.failedTo = at
					if r.o.verbose {
						r.logf("handover: request failed %s after the stop: %v", at.Round(time.Millisecond), err)
					}
				}
				mu.Unlock()
			}
		})
	}
	halt := func() {
		close(stop)
		wg.Wait()
	}

	if !sleepCtx(ctx, handoverBefore) {
		halt()
		return res, ctx.Err()
	}
	first := s.gw.traefik
	r.logf("size %d: handover of traefik (pid %d) under load", size, first)
	began := time.Now()
	mu.Lock()
	stopped = began
	mu.Unlock()
	if _, err := s.restartGateway(ctx, "--traefik.readtimeout=59s"); err != nil {
		halt()
		return res, err
	}
	err := harness.PollEvery(ctx, handoverTimeout, 20*time.Millisecond, func() error {
		pid := s.gw.TraefikPID()
		if pid == 0 || pid == first || harness.ProcessAlive(first) {
			return fmt.Errorf("waiting for the predecessor traefik %d to exit and its successor to be named", first)
		}
		s.gw.traefik = pid
		return nil
	})
	res.wall = time.Since(began)
	if err == nil {
		sleepCtx(ctx, handoverAfter)
	}
	halt()
	if err != nil {
		return res, err
	}
	ot.pid = s.gw.traefik

	res.requests, res.failed = int64(len(latencies)), failed.Load()
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		res.slowest = latencies[n-1]
		res.p99 = latencies[(n*99)/100]
	}
	res.readyAfter, res.total, err = lastHandover(s.gw.Proc.Output())
	if err != nil {
		return res, err
	}
	r.logf("size %d: handover %d → %d: %d requests, %d failed, slowest %s, successor ready after %s", size, first, s.gw.traefik,
		res.requests, res.failed, ms(Duration(res.slowest)), ms(Duration(res.readyAfter)))
	return res, nil
}

// handoverClient sends requests to websecure at addr, on a kept connection
// or a new one for each.
func handoverClient(addr string, keep bool) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, network, addr)
			},
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			DisableKeepAlives: !keep,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// handoverGet asks host for / and checks the bench backend answered.
func handoverGet(ctx context.Context, client *http.Client, host string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(harness.HeaderBackend) == "" {
		return fmt.Errorf("status %s, backend header %q", resp.Status, resp.Header.Get(harness.HeaderBackend))
	}
	return nil
}

// lastHandover reads the gateway's log for its last "traefik handed over"
// line and returns its ready_after and total.
func lastHandover(log string) (readyAfter, total time.Duration, err error) {
	found := false
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), "traefik handed over") {
			continue
		}
		var entry struct {
			Message    string `json:"message"`
			ReadyAfter string `json:"ready_after"`
			Total      string `json:"total"`
		}
		if json.Unmarshal(line, &entry) != nil || entry.Message != "traefik handed over" {
			continue
		}
		ra, err1 := time.ParseDuration(entry.ReadyAfter)
		tt, err2 := time.ParseDuration(entry.Total)
		if err := errors.Join(err1, err2); err != nil {
			return 0, 0, fmt.Errorf("reading the gateway's log: %w", err)
		}
		readyAfter, total, found = ra, tt, true
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if !found {
		return 0, 0, errors.New("no handover in the gateway's log: traefik was stopped before its successor started")
	}
	return readyAfter, total, nil
}

// sleepCtx waits d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
