//go:build e2e

package certs_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/threefoldtech/gateway/pkg/certs"
	"github.com/threefoldtech/gateway/test/harness"
)

// orderTimeout bounds one successful order against Pebble: lego polls the
// authorization after 2.5 to 7.5 s, as Pebble sends no Retry-After.
const orderTimeout = 30 * time.Second

// tenant owns the domains of the tests that have one owner.
const tenant = "tenant"

// pebbleEnv is a Pebble that validates HTTP-01 on the port of a server
// answering from a Manager's Handler, and resolves names with a
// pebble-challtestsrv.
type pebbleEnv struct {
	pebble    *harness.Pebble
	challtest *harness.ChallTestSrv
	httpPort  int
	handler   *handlerSlot
}

// handlerSlot lets the HTTP-01 server start before the Manager it serves.
type handlerSlot struct {
	mu    sync.Mutex
	h     http.Handler
	stall string // a host whose requests hang, so that its order lasts
}

func (s *handlerSlot) set(h http.Handler) { s.mu.Lock(); s.h = h; s.mu.Unlock() }

func (s *handlerSlot) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	h, stall := s.h, s.stall
	s.mu.Unlock()
	if stall != "" && strings.HasPrefix(r.Host, stall) {
		select {
		case <-r.Context().Done():
		case <-time.After(20 * time.Second):
		}
		http.NotFound(w, r)
		return
	}
	if h == nil {
		http.NotFound(w, r)
		return
	}
	h.ServeHTTP(w, r)
}

func startPebbleEnv(t *testing.T) *pebbleEnv {
	t.Helper()
	env := &pebbleEnv{handler: &handlerSlot{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: env.handler, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	env.httpPort = harness.PortOf(t, l.Addr().String())
	env.challtest = harness.StartChallTestSrv(t)
	env.pebble = harness.StartPebble(t, harness.PebbleOptions{HTTPPort: env.httpPort, DNSServer: env.challtest.DNSAddr})
	return env
}

// runningManager is a Manager whose Run goroutine ends with the test.
type runningManager struct {
	*certs.Manager
	changes chan struct{}
	stop    func() time.Duration // stops Run and says how long it took
}

func (env *pebbleEnv) startManager(t *testing.T, dir string, cfg certs.Config) *runningManager {
	t.Helper()
	rm := &runningManager{changes: make(chan struct{}, 100)}
	cfg.Dir = dir
	cfg.CAServer = env.pebble.DirectoryURL
	cfg.CACertificates = []string{env.pebble.CAFile}
	cfg.Logger = zerolog.Nop()
	if testing.Verbose() {
		cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	}
	cfg.OnChange = func() {
		select {
		case rm.changes <- struct{}{}:
		default:
		}
	}
	m, err := certs.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	rm.Manager = m
	env.handler.set(m.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	var took time.Duration
	rm.stop = func() time.Duration {
		once.Do(func() {
			start := time.Now()
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			took = time.Since(start)
			m.Close()
		})
		return took
	}
	t.Cleanup(func() { rm.stop() })
	return rm
}

// waitCertificate waits until m serves a certificate for domain and
// returns its leaf, checked against Pebble's roots.
func (env *pebbleEnv) waitCertificate(t *testing.T, m *runningManager, domain string, timeout time.Duration) *x509.Certificate {
	t.Helper()
	var c *certs.Certificate
	harness.WaitFor(t, timeout, "a certificate for "+domain, func() error {
		st := m.Status(domain)
		if st.Certificate == nil {
			return fmt.Errorf("none yet; status %+v", st)
		}
		c = st.Certificate
		return nil
	})
	data, err := os.ReadFile(c.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	var chain []*x509.Certificate
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", c.CertFile, err)
		}
		chain = append(chain, cert)
	}
	if len(chain) < 2 {
		t.Fatalf("%s holds %d certificates, want the leaf and its issuer", c.CertFile, len(chain))
	}
	inter := x509.NewCertPool()
	for _, ic := range chain[1:] {
		inter.AddCert(ic)
	}
	leaf := chain[0]
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: domain, Roots: env.pebble.Roots(t), Intermediates: inter}); err != nil {
		t.Errorf("certificate of %s does not verify against Pebble's root: %v", domain, err)
	}
	if !slices.Equal(leaf.DNSNames, []string{domain}) || len(leaf.IPAddresses)+len(leaf.URIs)+len(leaf.EmailAddresses) > 0 {
		t.Errorf("certificate names DNS %q IPs %v URIs %v, want exactly %q", leaf.DNSNames, leaf.IPAddresses, leaf.URIs, domain)
	}
	if !slices.Contains(env.pebble.Issued(), harness.SerialHex(leaf)) {
		t.Errorf("certificate of %s (serial %s) is not one Pebble issued: %v", domain, harness.SerialHex(leaf), env.pebble.Issued())
	}
	if !leaf.NotAfter.Equal(c.NotAfter) || c.Issuer != leaf.Issuer.String() {
		t.Errorf("Certificate %+v does not describe its file (NotAfter %s, issuer %s)", c, leaf.NotAfter, leaf.Issuer)
	}
	return leaf
}

// validations counts the HTTP-01 challenges Pebble validated for domain.
// Pebble validates each from several perspectives (three fetches of one
// URL, one log line each): distinct URLs, one token each, are counted.
func (env *pebbleEnv) validations(domain string) int {
	prefix := "Attempting to validate w/ HTTP: http://" + domain + ":" + strconv.Itoa(env.httpPort) + "/"
	urls := map[string]bool{}
	for line := range strings.Lines(env.pebble.Proc.Output()) {
		if _, url, ok := strings.Cut(line, prefix); ok {
			urls[strings.TrimSpace(url)] = true
		}
	}
	return len(urls)
}

// TestPebbleIssuesCertificate: a wanted domain gets a certificate Pebble
// issued for exactly that name, by HTTP-01 through Handler; a restart
// reuses the ACME account.
func TestPebbleIssuesCertificate(t *testing.T) {
	const name = "ok.certs.test"
	env := startPebbleEnv(t)
	env.challtest.AddA(t, name, "127.0.0.1")
	dir := filepath.Join(t.TempDir(), "certs")
	m := env.startManager(t, dir, certs.Config{})

	start := time.Now()
	m.Want(tenant, name)
	env.waitCertificate(t, m, name, orderTimeout)
	t.Logf("certificate after %s", time.Since(start).Round(time.Millisecond))
	if n := env.validations(name); n != 1 {
		t.Errorf("Pebble validated %s %d times, want 1", name, n)
	}
	select {
	case <-m.changes:
	default:
		t.Errorf("OnChange was not called")
	}
	if got := m.Certificates(); len(got) != 1 || got[0].Domain != name {
		t.Errorf("Certificates: %+v", got)
	}
	t.Logf("Run stopped %s after its context ended", m.stop().Round(time.Millisecond))

	// A new Manager on the same folder serves the certificate at once and
	// orders the next one with the same account.
	m2 := env.startManager(t, dir, certs.Config{})
	if got := m2.Certificates(); len(got) != 1 || got[0].Domain != name {
		t.Errorf("after restart, Certificates: %+v", got)
	}
	const second = "two.certs.test"
	env.challtest.AddA(t, second, "127.0.0.1")
	m2.Want(tenant, second)
	env.waitCertificate(t, m2, second, orderTimeout)
	if n := strings.Count(env.pebble.Proc.Output(), " accounts in memory"); n != 1 {
		t.Errorf("Pebble created %d accounts, want 1", n)
	}
	if n := env.pebble.Orders(); n != 2 {
		t.Errorf("Pebble got %d orders, want 2", n)
	}
}

// TestPebbleBackoff guards the order storm: a domain whose validation
// fails is ordered again only on the backoff schedule, however often it is
// wanted, still retried on its own, and gets its certificate once it can be
// validated, without a restart.
func TestPebbleBackoff(t *testing.T) {
	const name = "bad.certs.test"
	const lo, hi = time.Second, 4 * time.Second
	env := startPebbleEnv(t)
	// No A record yet: Pebble cannot reach the name and the order fails.
	m := env.startManager(t, filepath.Join(t.TempDir(), "certs"), certs.Config{BackoffMin: lo, BackoffMax: hi})

	start := time.Now()
	for range 30 {
		m.Want(tenant, name)
		time.Sleep(500 * time.Millisecond)
	}
	elapsed := time.Since(start)
	got := env.validations(name)
	// The most attempts the schedule allows in elapsed, were orders to
	// take no time: at 0, 1 s, 3 s, 7 s, 11 s, 15 s...
	allowed, at, wait := 0, time.Duration(0), lo
	for at <= elapsed {
		allowed++
		at += wait
		wait = min(2*wait, hi)
	}
	st := m.Status(name)
	t.Logf("%d validations in %s (schedule allows %d); status %+v", got, elapsed.Round(time.Millisecond), allowed, st)
	if got > allowed {
		t.Errorf("Pebble validated %s %d times in %s, the schedule allows %d", name, got, elapsed, allowed)
	}
	if got < 2 {
		t.Errorf("Pebble validated %s %d times in %s: no retry", name, got, elapsed)
	}
	if st.Failures < 2 || st.LastError == "" || st.Certificate != nil || st.LastAttempt.IsZero() {
		t.Errorf("status %+v, want at least 2 failures and the last error", st)
	}
	if n := env.pebble.Orders(); n > allowed {
		t.Errorf("Pebble got %d orders, the schedule allows %d", n, allowed)
	}

	// The name now reaches the Handler: the next attempt succeeds.
	env.challtest.AddA(t, name, "127.0.0.1")
	fixed := time.Now()
	env.waitCertificate(t, m, name, hi+orderTimeout)
	t.Logf("certificate %s after the name was fixed", time.Since(fixed).Round(time.Millisecond))
	if st := m.Status(name); st.Failures != 0 || st.LastError != "" || !st.NextAttempt.IsZero() {
		t.Errorf("after success: %+v", st)
	}
}

// TestPebbleShutdownDuringOrder: ending Run's context during an order
// returns soon, and the next start waits as after a failure instead of
// ordering again at once (a crash loop is not an order storm).
func TestPebbleShutdownDuringOrder(t *testing.T) {
	const name = "slow.certs.test"
	const lo = 30 * time.Second
	env := startPebbleEnv(t)
	env.challtest.AddA(t, name, "127.0.0.1")
	// Pebble's fetch of the token hangs: the order lasts, lego polls.
	env.handler.mu.Lock()
	env.handler.stall = name
	env.handler.mu.Unlock()
	dir := filepath.Join(t.TempDir(), "certs")
	m := env.startManager(t, dir, certs.Config{BackoffMin: lo, BackoffMax: 2 * lo})
	m.Want(tenant, name)
	// The order is under way once Pebble tries to validate it.
	harness.WaitFor(t, orderTimeout, "Pebble to validate "+name, func() error {
		if env.validations(name) == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	took := m.stop()
	t.Logf("Run returned %s after its context ended during an order", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("Run took %s to return during an order", took)
	}

	m2 := env.startManager(t, dir, certs.Config{BackoffMin: lo, BackoffMax: 2 * lo})
	st := m2.Status(name)
	// An order cut by the shutdown is not the domain's failure.
	if st.Failures != 0 {
		t.Errorf("the interrupted order counted as a failure: %+v", st)
	}
	if until := time.Until(st.NextAttempt); until < lo-15*time.Second {
		t.Errorf("after a restart, the next order is due in %s, want about %s: %+v", until, lo, st)
	}
	m2.SetWanted(map[string]string{name: tenant})
	time.Sleep(2 * time.Second)
	if n := env.pebble.Orders(); n != 1 {
		t.Errorf("Pebble got %d orders, want 1: the restart ordered again", n)
	}
}
