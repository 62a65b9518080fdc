//go:build integration

package traefik

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A change of the static configuration under load hands Traefik over: not
// one request fails, whether its connection is new or kept alive, and a
// response streamed across the handover runs on until the predecessor's
// drain ends, then ends cleanly.
func TestTraefikHandedOverWithoutDroppingRequests(t *testing.T) {
	s := newTraefikSetup(t)
	p := s.process(t)
	first, _ := s.run(t, p)
	s.waitPing(t, 10*time.Second)

	// A backend that answers, and streams a line every 50ms on /stream.
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stream" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		for {
			if _, err := io.WriteString(w, "tick\n"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = backend.Serve(l) }()
	t.Cleanup(func() { _ = backend.Close() })
	s.writeRoutes(t, "app", &Configuration{HTTP: &HTTPConfiguration{
		Routers:  map[string]*Router{"app": {EntryPoints: []string{EntryPointWeb}, Rule: "Host(`app.test`)", Service: "app"}},
		Services: map[string]*Service{"app": {LoadBalancer: &ServersLoadBalancer{Servers: []Server{{URL: "http://" + l.Addr().String()}}}}},
	}})
	waitFor(t, 10*time.Second, "the route is served", func() bool {
		resp, body, err := get(s.web+"/", "app.test")
		return err == nil && resp.StatusCode == http.StatusOK && string(body) == "ok"
	})

	// The stream, opened before the handover.
	stream, err := http.NewRequest(http.MethodGet, s.web+"/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	stream.Host = "app.test"
	streamClient := &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := streamClient.Do(stream)
	if err != nil {
		t.Fatalf("opening the stream: %v", err)
	}
	var lastTick atomic.Int64
	streamEnd := make(chan error, 1)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lastTick.Store(time.Now().UnixNano())
		}
		streamEnd <- sc.Err()
	}()

	// Load: new connections and kept-alive ones.
	var (
		ok, failed atomic.Int64
		mu         sync.Mutex
		failures   []error
		slowest    time.Duration
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	load := func(keepAlive bool) {
		defer wg.Done()
		client := &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: !keepAlive},
			// A redirect is a failure here, and never followed off loopback.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		defer client.CloseIdleConnections()
		for {
			select {
			case <-stop:
				return
			default:
			}
			began := time.Now()
			resp, body, err := doGet(client, s.web+"/", "app.test")
			took := time.Since(began)
			mu.Lock()
			slowest = max(slowest, took)
			if err == nil && (resp.StatusCode != http.StatusOK || string(body) != "ok") {
				err = errors.New(resp.Status + " " + string(body))
			}
			if err != nil {
				failed.Add(1)
				if len(failures) < 5 {
					failures = append(failures, err)
				}
			} else {
				ok.Add(1)
			}
			mu.Unlock()
		}
	}
	for i := range 6 {
		wg.Add(1)
		go load(i%2 == 0)
	}

	time.Sleep(300 * time.Millisecond)
	changed := time.Now()
	s.opts.LogLevel = "WARN"
	s.writeStatic(t)
	waitFor(t, 30*time.Second, "the successor", func() bool {
		pid := p.pid()
		return pid != 0 && pid != first
	})
	second := p.pid()
	killAtCleanup(t, second, p.argv)
	waitFor(t, 15*time.Second, "the predecessor's exit", func() bool { return !alive(first) })
	handedOver := time.Since(changed)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	t.Logf("handover %d → %d in %s; %d requests served, %d failed, slowest %s", first, second, handedOver.Round(time.Millisecond), ok.Load(), failed.Load(), slowest.Round(time.Millisecond))
	if failed.Load() != 0 {
		t.Errorf("%d requests failed during the handover, e.g. %v", failed.Load(), failures)
	}
	if ok.Load() < 100 {
		t.Errorf("only %d requests served: the load did not run", ok.Load())
	}
	select {
	case err := <-streamEnd:
		// Old Traefik closed it when its drain ended: a clean end of the
		// body, or at worst an unexpected EOF, never a reset.
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("the stream ended with %v", err)
		}
		if last := time.Unix(0, lastTick.Load()); last.Before(changed.Add(shutdownGrace)) {
			t.Errorf("the stream's last line came %s after the change, before the drain (%s) ended", last.Sub(changed), shutdownGrace)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("the stream outlived its Traefik")
	}
}

// doGet fetches url with Host host through client.
func doGet(client *http.Client, url, host string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// Stop during a handover is answered by the goroutine running it, once the
// handover gave up: the successor is stopped, then the predecessor, the
// pidfile is removed and Run returns. No Traefik of ours is left running.
func TestTraefikStoppedDuringHandover(t *testing.T) {
	s := newTraefikSetup(t)
	p := s.process(t)
	first, _ := s.run(t, p)
	s.waitPing(t, 10*time.Second)

	s.opts.LogLevel = "WARN"
	s.writeStatic(t)
	waitFor(t, 5*time.Second, "the handover begins", func() bool {
		return p.status().state == stateHandingOver
	})
	installed := p.pid() != first // the successor already took over
	stopped := time.Now()
	if err := p.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("Stop took %s (successor installed before it: %v)", time.Since(stopped).Round(time.Millisecond), installed)
	if st := p.status(); st != (snapshot{state: stateStopped}) {
		t.Errorf("after Stop: %v pid %d, want stopped without a pid", st.state, st.pid)
	}
	waitFor(t, 5*time.Second, "Run returns", func() bool { return !p.running.Load() })
	if alive(first) {
		t.Errorf("the predecessor %d runs after Stop", first)
	}
	if left := ourTraefiks(t, p.argv); len(left) != 0 {
		for _, pid := range left {
			killAtCleanup(t, pid, p.argv)
		}
		t.Errorf("traefik %v still runs after Stop", left)
	}
	if _, err := readPidFile(filepath.Join(s.opts.StateDir, PIDFileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pidfile after Stop: %v, want none", err)
	}
}

// ourTraefiks lists the live processes running argv.
func ourTraefiks(t testing.TB, argv []string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cmdline, err := readCmdline(pid); err == nil && matchCmdline(cmdline, argv) == cmdlineSame && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}
