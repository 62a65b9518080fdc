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
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A change of the static configuration under load hands Traefik over: not
// one request fails, whether its connection is new or kept alive, and a
// response streamed across the handover runs on after the predecessor was
// told to stop, well past the 2s the drain lasted before, while every new
// connection goes to the successor. Once the stream ends, the predecessor
// exits and the pidfile forgets it.
func TestTraefikHandedOverWithoutDroppingRequests(t *testing.T) {
	s := newTraefikSetup(t)
	p := s.process(t)
	first, _ := s.run(t, p)
	s.waitPing(t, 10*time.Second)
	s.serveApp(t)
	st := s.openStream(t)
	l := startLoad(t, s.web+"/", "app.test")

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
	retired := s.waitRetired(t, first)
	handedOver := time.Since(changed)
	time.Sleep(300 * time.Millisecond)
	l.stop(t)
	t.Logf("handover %d → %d in %s", first, second, handedOver.Round(time.Millisecond))

	// The stream outlives the 2s drain of before, its Traefik with it.
	st.waitFlowing(t, retired.Add(shutdownGrace+2*time.Second))
	if !alive(first) {
		t.Fatalf("the predecessor %d exited while its stream flowed", first)
	}
	st.close()
	waitFor(t, 10*time.Second, "the predecessor's exit once its stream ended", func() bool { return !alive(first) })
	waitFor(t, 5*time.Second, "the pidfile forgets the predecessor", func() bool {
		rec, err := readPidFile(filepath.Join(s.opts.StateDir, PIDFileName))
		return err == nil && rec.PID == second && len(rec.Draining) == 0
	})
}

// A gateway restarted while the Traefik it handed over drains leaves it
// draining: the next gateway adopts the successor, neither adopts nor stops
// the predecessor, whose stream flows on, and notices its exit.
func TestTraefikDrainingSurvivesGatewayRestart(t *testing.T) {
	s := newTraefikSetup(t)
	p1 := s.process(t)
	first, cancel := s.run(t, p1)
	s.waitPing(t, 10*time.Second)
	s.serveApp(t)
	st := s.openStream(t)

	s.opts.LogLevel = "WARN"
	s.writeStatic(t)
	waitFor(t, 30*time.Second, "the successor", func() bool {
		pid := p1.pid()
		return pid != 0 && pid != first
	})
	second := p1.pid()
	killAtCleanup(t, second, p1.argv)
	s.waitRetired(t, first)
	cancel()
	waitFor(t, 5*time.Second, "the first gateway's end", func() bool { return !p1.running.Load() })

	p2 := s.process(t)
	restarted := time.Now()
	if adopted, _ := s.run(t, p2); adopted != second {
		t.Fatalf("the next gateway runs pid %d, want the successor %d adopted", adopted, second)
	}
	st.waitFlowing(t, restarted.Add(3*time.Second))
	if !alive(first) {
		t.Fatalf("the draining predecessor %d was stopped by the next gateway", first)
	}
	if rec, err := readPidFile(filepath.Join(s.opts.StateDir, PIDFileName)); err != nil || len(rec.Draining) != 1 || rec.Draining[0].PID != first {
		t.Errorf("pidfile %+v, %v: want pid %d draining", rec, err, first)
	}
	st.close()
	waitFor(t, 10*time.Second, "the predecessor's exit once its stream ended", func() bool { return !alive(first) })
	waitFor(t, 5*time.Second, "the pidfile forgets the predecessor", func() bool {
		rec, err := readPidFile(filepath.Join(s.opts.StateDir, PIDFileName))
		return err == nil && rec.PID == second && len(rec.Draining) == 0
	})
	if p2.pid() != second {
		t.Errorf("current traefik %d, want %d", p2.pid(), second)
	}
}

// A gateway killed at any step of a handover leaves the next one on the same
// state folder a state it hands over from cleanly: not one request fails,
// through the crash and the next handover, and in the end one Traefik of
// ours listens, with the new configuration, named by the pidfile.
func TestTraefikHandoverCrashAtEachStep(t *testing.T) {
	for _, step := range handoverSteps {
		t.Run(step.String(), func(t *testing.T) {
			s := newTraefikSetup(t)
			p1 := s.process(t)
			p1.crashAt = func(st handoverStep) bool { return st == step }
			first, _ := s.run(t, p1)
			s.waitPing(t, 10*time.Second)
			s.serveApp(t)
			l := startLoad(t, s.web+"/", "app.test")
			time.Sleep(200 * time.Millisecond)

			s.opts.LogLevel = "WARN"
			s.writeStatic(t)
			waitFor(t, 30*time.Second, "the gateway dies at "+step.String(), func() bool { return !p1.running.Load() })
			for _, pid := range ourTraefiks(t, p1.argv) {
				killAtCleanup(t, pid, p1.argv)
			}
			time.Sleep(200 * time.Millisecond) // traffic meanwhile, no gateway

			p2 := s.process(t)
			runProcess(t, p2)
			hash, err := p2.configHash()
			if err != nil {
				t.Fatal(err)
			}
			var last []int
			waitFor(t, 60*time.Second, "one traefik of the new configuration, alone", func() bool {
				rec, err := readPidFile(filepath.Join(s.opts.StateDir, PIDFileName))
				last = ourTraefiks(t, p2.argv)
				return err == nil && rec.Hash == hash && p2.status().state == stateRunning &&
					p2.pid() == rec.PID && len(last) == 1 && last[0] == rec.PID
			})
			if last[0] == first {
				t.Errorf("the first traefik %d still runs, with the old configuration", first)
			}
			s.waitPing(t, 5*time.Second)
			time.Sleep(200 * time.Millisecond)
			l.stop(t)
		})
	}
}

// serveApp routes app.test on web to a backend that answers "ok", and
// streams a line every 50ms on /stream.
func (s *traefikSetup) serveApp(t testing.TB) {
	t.Helper()
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
}

// waitRetired waits until the pidfile names pid as draining and pid listens
// no more, and returns when it saw that.
func (s *traefikSetup) waitRetired(t testing.TB, pid int) time.Time {
	t.Helper()
	waitFor(t, 30*time.Second, "the predecessor retired", func() bool {
		rec, err := readPidFile(filepath.Join(s.opts.StateDir, PIDFileName))
		if err != nil || !slices.ContainsFunc(rec.Draining, func(d drainRecord) bool { return d.PID == pid }) {
			return false
		}
		ls, err := listeners(pid)
		closeListeners(ls)
		return err == nil && len(ls) == 0
	})
	return time.Now()
}

// stream is a response of /stream on app.test, read line by line.
type stream struct {
	cancel   context.CancelFunc
	lastTick atomic.Int64
	end      chan error
}

// openStream opens /stream on app.test through web.
func (s *traefikSetup) openStream(t testing.TB) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.web+"/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "app.test"
	client := &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("opening the stream: %v", err)
	}
	st := &stream{cancel: cancel, end: make(chan error, 1)}
	t.Cleanup(st.close)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			st.lastTick.Store(time.Now().UnixNano())
		}
		st.end <- sc.Err()
	}()
	return st
}

// waitFlowing waits until the stream carried a line after at, and fails if
// it ended first.
func (st *stream) waitFlowing(t testing.TB, at time.Time) {
	t.Helper()
	deadline := time.Now().Add(time.Until(at) + 15*time.Second)
	for time.Unix(0, st.lastTick.Load()).Before(at) {
		select {
		case err := <-st.end:
			t.Fatalf("the stream ended %s before %s: %v", time.Until(at).Round(time.Millisecond), at.Format("15:04:05.000"), err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream stalled: last line at %s", time.Unix(0, st.lastTick.Load()).Format("15:04:05.000"))
		}
	}
}

// close ends the stream from the client's side.
func (st *stream) close() { st.cancel() }

// loadRun sends requests on new connections and on kept-alive ones until stop.
type loadRun struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   []string
	slowest    time.Duration
	done       chan struct{}
	wg         sync.WaitGroup
}

// startLoad starts six clients getting url with Host host, three of them
// keeping their connections alive; each answer must be 200 "ok".
func startLoad(t testing.TB, url, host string) *loadRun {
	l := &loadRun{done: make(chan struct{})}
	run := func(keepAlive bool) {
		defer l.wg.Done()
		client := &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: !keepAlive},
			// A redirect is a failure here, and never followed off loopback.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		defer client.CloseIdleConnections()
		for {
			select {
			case <-l.done:
				return
			default:
			}
			began := time.Now()
			resp, body, err := doGet(client, url, host)
			took := time.Since(began)
			if err == nil && (resp.StatusCode != http.StatusOK || string(body) != "ok") {
				err = errors.New(resp.Status + " " + string(body))
			}
			l.mu.Lock()
			l.slowest = max(l.slowest, took)
			if err != nil {
				l.failed.Add(1)
				if len(l.failures) < 5 {
					l.failures = append(l.failures, time.Now().Format("15:04:05.000")+" "+err.Error())
				}
			} else {
				l.ok.Add(1)
			}
			l.mu.Unlock()
		}
	}
	for i := range 6 {
		l.wg.Add(1)
		go run(i%2 == 0)
	}
	t.Cleanup(func() {
		select {
		case <-l.done:
		default:
			close(l.done)
			l.wg.Wait()
		}
	})
	return l
}

// stop ends the load and fails the test if a request failed or too few
// were served.
func (l *loadRun) stop(t testing.TB) {
	t.Helper()
	close(l.done)
	l.wg.Wait()
	t.Logf("%d requests served, %d failed, slowest %s", l.ok.Load(), l.failed.Load(), l.slowest.Round(time.Millisecond))
	if l.failed.Load() != 0 {
		t.Errorf("%d requests failed, e.g. %v", l.failed.Load(), l.failures)
	}
	if l.ok.Load() < 100 {
		t.Errorf("only %d requests served: the load did not run", l.ok.Load())
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
