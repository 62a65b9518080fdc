package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// t0 is the start of the fake clock.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fakeClock is a clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeCA answers orders in place of an ACME server: it fails while fail is
// set, else issues a certificate valid from now for 90 days.
type fakeCA struct {
	t     testing.TB
	clock func() time.Time
	mu    sync.Mutex
	fail  error
	// failFor, when set, gives the error of domain's orders; nil: fail.
	failFor func(domain string) error
	calls   map[string]int
	log     []orderSeen
}

// orderSeen is an order the fake CA got.
type orderSeen struct {
	at     time.Time
	domain string
}

func (f *fakeCA) seen() []orderSeen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]orderSeen(nil), f.log...)
}

func (f *fakeCA) obtain(_ context.Context, domain string) ([]byte, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[domain]++
	f.log = append(f.log, orderSeen{at: f.clock(), domain: domain})
	if f.failFor != nil {
		if err := f.failFor(domain); err != nil {
			return nil, nil, err
		}
	}
	if f.fail != nil {
		return nil, nil, f.fail
	}
	now := f.clock()
	cert, key := issue(f.t, domain, now, now.Add(90*24*time.Hour))
	return cert, key, nil
}

func (f *fakeCA) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

func (f *fakeCA) orders(domain string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[domain]
}

// testManager is a Manager on a fake clock and a fake CA.
type testManager struct {
	*Manager
	clock   *fakeClock
	ca      *fakeCA
	changes *int
}

// newTestManager makes a Manager in dir (a new folder when empty) with
// cfg's durations, a fake clock at t0 (or at clock's time) and a fake CA.
func newTestManager(t testing.TB, dir string, cfg Config, clock *fakeClock) testManager {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if clock == nil {
		clock = &fakeClock{now: t0}
	}
	changes := new(int)
	var mu sync.Mutex
	cfg.Dir = dir
	cfg.CAServer = "https://ca.invalid/dir"
	cfg.Logger = zerolog.Nop()
	cfg.OnChange = func() { mu.Lock(); *changes++; mu.Unlock() }
	m, err := newManager(cfg, clock.Now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	ca := &fakeCA{t: t, clock: clock.Now, calls: map[string]int{}}
	m.obtain = ca.obtain
	return testManager{Manager: m, clock: clock, ca: ca, changes: changes}
}

// step plans and runs the order due, as one turn of Run's loop does, and
// returns the domain ordered ("" if none).
func (m testManager) step(t testing.TB) string {
	t.Helper()
	domain, _, changed := m.plan()
	if changed {
		m.changed()
	}
	if domain != "" {
		m.order(context.Background(), domain)
	}
	return domain
}

// testCA signs the certificates of the tests.
var testCA = struct {
	once sync.Once
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	der  []byte
}{}

// issue makes a certificate for domain, signed by a test CA, valid from
// notBefore to notAfter, and returns its chain and key, PEM.
func issue(t testing.TB, domain string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	testCA.once.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "certs test CA"},
			NotBefore: t0.Add(-24 * time.Hour), NotAfter: t0.Add(10 * 365 * 24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		cert, _ := x509.ParseCertificate(der)
		testCA.key, testCA.cert, testCA.der = key, cert, der
	})
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, DNSNames: []string{domain},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, testCA.cert, &key.PublicKey, testCA.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: testCA.der})...)
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM
}

// certFiles returns the files of domain's certificate in dir.
func certFiles(dir, domain string) (string, string) {
	base := filepath.Join(dir, certificatesDir, domain)
	return base + certExt, base + keyExt
}

var errValidation = errors.New("acme: error: 403 :: urn:ietf:params:acme:error:unauthorized :: connection refused")

// tenant owns the domains of the tests that have one owner.
const tenant = "tenant"
