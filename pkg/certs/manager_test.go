package certs

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

const domain = "app.example.test"

func TestBackoffSchedule(t *testing.T) {
	tests := []struct {
		lo, hi time.Duration
		n      int
		want   time.Duration
	}{
		{5 * time.Minute, 24 * time.Hour, 1, 5 * time.Minute},
		{5 * time.Minute, 24 * time.Hour, 2, 10 * time.Minute},
		{5 * time.Minute, 24 * time.Hour, 3, 20 * time.Minute},
		{5 * time.Minute, 24 * time.Hour, 9, 21*time.Hour + 20*time.Minute},
		{5 * time.Minute, 24 * time.Hour, 10, 24 * time.Hour},
		// Many failures must neither overflow nor exceed the cap.
		{5 * time.Minute, 24 * time.Hour, 1000, 24 * time.Hour},
		{time.Second, 4 * time.Second, 3, 4 * time.Second},
		{time.Second, 4 * time.Second, 4, 4 * time.Second},
	}
	for _, tt := range tests {
		if got := backoff(tt.lo, tt.hi, tt.n); got != tt.want {
			t.Errorf("backoff(%s, %s, %d) = %s, want %s", tt.lo, tt.hi, tt.n, got, tt.want)
		}
	}
}

// TestFailedOrderBacksOff guards the order storm: a failing domain is
// ordered again only when its backoff ends, whatever Want calls arrive.
func TestFailedOrderBacksOff(t *testing.T) {
	m := newTestManager(t, "", Config{BackoffMin: time.Minute, BackoffMax: 4 * time.Minute}, nil)
	m.ca.setFail(errValidation)
	m.Want(tenant, domain)
	waits := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 4 * time.Minute}
	for i, wait := range waits {
		if got := m.step(t); got != domain {
			t.Fatalf("attempt %d: ordered %q, want %q", i+1, got, domain)
		}
		st := m.Status(domain)
		if st.Failures != i+1 || !st.NextAttempt.Equal(m.clock.Now().Add(wait)) || !st.LastAttempt.Equal(m.clock.Now()) {
			t.Fatalf("after failure %d: %+v, want next attempt in %s", i+1, st, wait)
		}
		if !strings.Contains(st.LastError, "unauthorized") {
			t.Errorf("LastError %q", st.LastError)
		}
		m.clock.Add(wait - time.Second)
		m.Want(tenant, domain)
		m.SetWanted(map[string]string{domain: tenant})
		if got := m.step(t); got != "" {
			t.Fatalf("ordered %q one second before the backoff ends", got)
		}
		m.clock.Add(time.Second)
	}
	if n := m.ca.orders(domain); n != len(waits) {
		t.Errorf("%d orders, want %d", n, len(waits))
	}

	// A success resets the backoff and serves the certificate.
	m.ca.setFail(nil)
	if got := m.step(t); got != domain {
		t.Fatalf("ordered %q, want %q", got, domain)
	}
	st := m.Status(domain)
	if st.Failures != 0 || st.LastError != "" || !st.NextAttempt.IsZero() || st.Certificate == nil {
		t.Errorf("after success: %+v", st)
	}
	if *m.changes != 1 {
		t.Errorf("OnChange called %d times, want 1", *m.changes)
	}
}

// TestBackoffSurvivesRestart guards the crash loop: a new Manager on the
// same folder keeps the backoff, and the state wanting the domain.
func TestBackoffSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, dir, Config{}, nil)
	m.ca.setFail(errValidation)
	m.Want(tenant, domain)
	m.step(t)
	m.clock.Add(DefaultBackoffMin)
	m.step(t)
	want := m.Status(domain)
	if want.Failures != 2 {
		t.Fatalf("status %+v, want 2 failures", want)
	}
	m.Close()

	m2 := newTestManager(t, dir, Config{}, m.clock)
	if got := m2.Status(domain); !statusEqual(got, want) {
		t.Fatalf("after restart: %+v, want %+v", got, want)
	}
	m2.SetWanted(map[string]string{domain: tenant})
	if got := m2.step(t); got != "" {
		t.Fatalf("restart ordered %q during the backoff", got)
	}
	m2.clock.Add(2 * DefaultBackoffMin)
	if got := m2.step(t); got != domain {
		t.Fatalf("ordered %q after the backoff, want %q", got, domain)
	}
}

func statusEqual(a, b Status) bool {
	return a.Failures == b.Failures && a.LastError == b.LastError &&
		a.LastAttempt.Equal(b.LastAttempt) && a.NextAttempt.Equal(b.NextAttempt) &&
		(a.Certificate == nil) == (b.Certificate == nil)
}

// TestCertificateSurvivesRestart: a restart serves the certificates of the
// wanted domains at once, without an order.
func TestCertificateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, dir, Config{}, nil)
	m.Want(tenant, domain)
	m.step(t)
	before := m.Certificates()
	m.Close()
	m2 := newTestManager(t, dir, Config{}, m.clock)
	if got := m2.Certificates(); !slices.Equal(got, before) || len(got) != 1 {
		t.Fatalf("after restart %+v, want %+v", got, before)
	}
	if got := m2.step(t); got != "" {
		t.Errorf("ordered %q after restart", got)
	}
}

func TestImportValidation(t *testing.T) {
	m := newTestManager(t, "", Config{}, nil)
	cert, key := issue(t, domain, t0.Add(-time.Hour), t0.Add(90*24*time.Hour))
	_, otherKey := issue(t, domain, t0.Add(-time.Hour), t0.Add(90*24*time.Hour))
	otherName, otherNameKey := issue(t, "other.example.test", t0.Add(-time.Hour), t0.Add(90*24*time.Hour))
	expired, expiredKey := issue(t, domain, t0.Add(-48*time.Hour), t0.Add(-time.Hour))
	tests := []struct {
		name      string
		domain    string
		cert, key []byte
		want      string
	}{
		{"key of another certificate", domain, cert, otherKey, "private key does not match"},
		{"certificate of another name", domain, otherName, otherNameKey, "is valid for other.example.test"},
		{"expired", domain, expired, expiredKey, "expired"},
		{"not PEM", domain, []byte("x"), key, "failed to find"},
		// Names become file names.
		{"path in the name", "../" + domain, cert, key, "domain"},
		{"uppercase name", "App.example.test", cert, key, "lowercase"},
		{"empty name", "", cert, key, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := m.Import(tt.domain, tt.cert, tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Import: %v, want an error with %q", err, tt.want)
			}
		})
	}
	entries, _ := os.ReadDir(m.store.dir + "/" + certificatesDir)
	if len(entries) != 0 {
		t.Errorf("refused imports left files: %v", entries)
	}
}

// TestImportServedOnlyWhenWanted: an imported certificate is stored but
// served only while its domain is wanted, and spares the order.
func TestImportServedOnlyWhenWanted(t *testing.T) {
	m := newTestManager(t, "", Config{}, nil)
	cert, key := issue(t, domain, t0.Add(-time.Hour), t0.Add(90*24*time.Hour))
	if err := m.Import(domain, cert, key); err != nil {
		t.Fatal(err)
	}
	if got := m.Certificates(); len(got) != 0 {
		t.Fatalf("Certificates before Want: %+v", got)
	}
	m.Want(tenant, domain)
	got := m.Certificates()
	if len(got) != 1 || got[0].Domain != domain || !got[0].NotAfter.Equal(t0.Add(90*24*time.Hour).Truncate(time.Second)) {
		t.Fatalf("Certificates after Want: %+v", got)
	}
	data, err := os.ReadFile(got[0].CertFile)
	if err != nil || string(data) != string(cert) {
		t.Errorf("CertFile %s: %v", got[0].CertFile, err)
	}
	if fi, err := os.Stat(got[0].KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("KeyFile %s: %v %v", got[0].KeyFile, fi.Mode(), err)
	}
	if d := m.step(t); d != "" || m.ca.orders(domain) != 0 {
		t.Errorf("ordered %q for an imported certificate", d)
	}
}

// TestRetireAndWantAgain: Unwant stops serving at once; a route created
// again within KeepRetired gets the certificate back without an order;
// after KeepRetired the files are gone and a new Want orders.
func TestRetireAndWantAgain(t *testing.T) {
	m := newTestManager(t, "", Config{KeepRetired: time.Hour}, nil)
	m.Want(tenant, domain, "b.example.test")
	m.step(t)
	m.step(t)
	if n := len(m.Certificates()); n != 2 {
		t.Fatalf("%d certificates, want 2", n)
	}
	*m.changes = 0

	m.Unwant(domain)
	if got := m.Certificates(); len(got) != 1 || got[0].Domain != "b.example.test" {
		t.Fatalf("after Unwant: %+v", got)
	}
	if m.Status(domain).Certificate != nil {
		t.Errorf("Status still shows the retired certificate")
	}
	if *m.changes != 1 {
		t.Errorf("Unwant: OnChange called %d times, want 1", *m.changes)
	}
	certFile, keyFile := certFiles(m.store.dir, domain)
	if _, err := os.Stat(certFile); err != nil {
		t.Fatalf("retired certificate deleted at once: %v", err)
	}

	m.clock.Add(59 * time.Minute)
	m.step(t)
	m.Want(tenant, domain)
	if got := m.Certificates(); len(got) != 2 {
		t.Fatalf("after Want again: %+v", got)
	}
	if *m.changes != 2 {
		t.Errorf("Want again: OnChange called %d times, want 2", *m.changes)
	}
	if d := m.step(t); d != "" || m.ca.orders(domain) != 1 {
		t.Errorf("Want again ordered %q (%d orders)", d, m.ca.orders(domain))
	}

	// Renewal is not due yet, and never for a retired certificate.
	m.Unwant(domain)
	m.clock.Add(time.Hour)
	if d := m.step(t); d != "" {
		t.Errorf("ordered %q", d)
	}
	for _, f := range []string{certFile, keyFile} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after KeepRetired: %v", f, err)
		}
	}
	m.Want(tenant, domain)
	if d := m.step(t); d != domain {
		t.Errorf("Want after deletion ordered %q, want %q", d, domain)
	}
}

// TestRenewal: a wanted certificate is ordered again once a third of its
// lifetime is left, and served meanwhile; an unwanted one is not.
func TestRenewal(t *testing.T) {
	m := newTestManager(t, "", Config{}, nil)
	m.Want(tenant, domain)
	m.step(t)
	first := m.Status(domain).Certificate
	m.clock.Add(59 * 24 * time.Hour)
	if d := m.step(t); d != "" {
		t.Fatalf("renewed %q 31 days before expiry", d)
	}
	m.clock.Add(2 * 24 * time.Hour)
	m.ca.setFail(errValidation)
	if d := m.step(t); d != domain {
		t.Fatalf("renewal not ordered 29 days before expiry")
	}
	// A failed renewal keeps the old certificate served.
	if st := m.Status(domain); st.Certificate == nil || st.Failures != 1 {
		t.Fatalf("after failed renewal: %+v", st)
	}
	m.ca.setFail(nil)
	m.clock.Add(DefaultBackoffMin)
	if d := m.step(t); d != domain {
		t.Fatalf("renewal not retried")
	}
	if st := m.Status(domain); st.Certificate == nil || !st.Certificate.NotAfter.After(first.NotAfter) {
		t.Fatalf("after renewal: %+v, first %+v", st.Certificate, first)
	}
}

// TestRun: Want wakes Run, which orders, and Close stops it.
func TestRun(t *testing.T) {
	m := newTestManager(t, "", Config{}, nil)
	changed := make(chan struct{}, 10)
	m.cfg.OnChange = func() { changed <- struct{}{} }
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	m.Want(tenant, domain)
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("no certificate 10 s after Want")
	}
	if got := m.Certificates(); len(got) != 1 || got[0].Domain != domain {
		t.Fatalf("Certificates: %+v", got)
	}
	m.Close()
	m.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still running 10 s after Close")
	}
}

func TestWantRefusesBadNames(t *testing.T) {
	m := newTestManager(t, "", Config{}, nil)
	m.Want(tenant, "", "../x.test", "a/b.test", "UPPER.test", "*.wild.test")
	if d := m.step(t); d != "" {
		t.Errorf("ordered %q", d)
	}
}

// TestDamagedFilesOrderedAgain guards issue 18: a certificate whose files
// were deleted or cut short by hand stayed "usable" until its renewal. The
// check drops it (OnChange: it is no longer served) and the domain is
// ordered again; a file only touched keeps its certificate.
func TestDamagedFilesOrderedAgain(t *testing.T) {
	tests := []struct {
		name   string
		damage func(certFile, keyFile string) error
		lost   bool
	}{
		{"certificate deleted", func(c, _ string) error { return os.Remove(c) }, true},
		{"key cut short", func(_, k string) error { return os.Truncate(k, 12) }, true},
		{"certificate replaced by garbage of its size", func(c, _ string) error {
			fi, err := os.Stat(c)
			if err != nil {
				return err
			}
			return os.WriteFile(c, []byte(strings.Repeat("x", int(fi.Size()))), 0o600)
		}, true},
		// Touched or copied back whole: nothing to do.
		{"touched", func(c, _ string) error {
			return os.Chtimes(c, time.Now(), time.Now().Add(time.Hour))
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestManager(t, "", Config{}, nil)
			m.Want(tenant, domain)
			m.step(t)
			before := *m.changes
			certFile, keyFile := certFiles(m.store.dir, domain)
			if err := tt.damage(certFile, keyFile); err != nil {
				t.Fatal(err)
			}
			m.checkFiles()
			if lost := m.Status(domain).Certificate == nil; lost != tt.lost {
				t.Fatalf("certificate lost: %v, want %v", lost, tt.lost)
			}
			if changed := *m.changes > before; changed != tt.lost {
				t.Errorf("OnChange called: %v, want %v", changed, tt.lost)
			}
			want := ""
			if tt.lost {
				want = domain
			}
			if d := m.step(t); d != want {
				t.Fatalf("ordered %q, want %q", d, want)
			}
			if st := m.Status(domain); st.Certificate == nil || st.Failures != 0 {
				t.Errorf("after the check: %+v", st)
			}
			// Checked again: all is well now.
			m.checkFiles()
			if d := m.step(t); d != "" {
				t.Errorf("ordered %q again", d)
			}
		})
	}
}
