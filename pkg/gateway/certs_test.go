package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/threefoldtech/gateway/internal/testcert"
	"github.com/threefoldtech/gateway/pkg/certs"
	"github.com/threefoldtech/gateway/pkg/traefik"
)

// fakeCertificates records what the module asks of its certificates.
type fakeCertificates struct {
	mu     sync.Mutex
	wanted map[string]bool
	calls  []string
	certs  []certs.Certificate
	status map[string]certs.Status
}

func newFakeCertificates() *fakeCertificates {
	return &fakeCertificates{wanted: map[string]bool{}, status: map[string]certs.Status{}}
}

func (f *fakeCertificates) Want(_ string, ds ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range ds {
		f.wanted[d] = true
		f.calls = append(f.calls, "want "+d)
	}
}

func (f *fakeCertificates) Unwant(ds ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range ds {
		delete(f.wanted, d)
		f.calls = append(f.calls, "unwant "+d)
	}
}

func (f *fakeCertificates) SetWanted(ds map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wanted = map[string]bool{}
	for d := range ds {
		f.wanted[d] = true
	}
	sorted := slices.Sorted(maps.Keys(ds))
	f.calls = append(f.calls, "set "+joinOr(sorted, "-"))
}

func (f *fakeCertificates) Certificates() []certs.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.certs)
}

func (f *fakeCertificates) Status(d string) certs.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status[d]
}

func (f *fakeCertificates) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func joinOr(ss []string, empty string) string {
	if len(ss) == 0 {
		return empty
	}
	out := ss[0]
	for _, s := range ss[1:] {
		out += "," + s
	}
	return out
}

// withCertificates gives a module fake certificates, served through the
// reserved file from root/traefik/certificates.
func withCertificates(root string, f *fakeCertificates) func(*Config) {
	return func(c *Config) {
		c.Certificates = f
		c.CertificateFiles = traefik.CertificateFiles{Dir: filepath.Join(root, "traefik", traefik.CertificatesDirName)}
		c.ChallengeURL = "http://127.0.0.1:8083"
	}
}

// The module tells its certificates which user domains need one: FQDN
// proxies that terminate TLS, from start on, and as routes come, change and
// go. Name proxies and passthrough routes never need one.
func TestModuleWantsCertificates(t *testing.T) {
	root := t.TempDir()
	f := newFakeCertificates()
	m, recs := newModuleWith(t, root, withCertificates(root, f))
	recs.set("user.example", "198.51.100.7")
	recs.set("other.example", "198.51.100.7")
	if got := f.take(); !slices.Equal(got, []string{"set -"}) {
		t.Fatalf("at start on an empty root: %q", got)
	}
	steps := []struct {
		name string
		do   func() error
		want []string
	}{
		{"an FQDN proxy", func() error { return c21(m).SetFQDNProxy("wl-1", "user.example", []string{"http://10.0.0.1"}, false) }, []string{"want user.example"}},
		{"the same again changes nothing", func() error { return c21(m).SetFQDNProxy("wl-1", "user.example", []string{"http://10.0.0.1"}, false) }, nil},
		{"another backend keeps the domain", func() error { return c21(m).SetFQDNProxy("wl-1", "user.example", []string{"http://10.0.0.2"}, false) }, []string{"want user.example"}},
		{"another domain", func() error { return c21(m).SetFQDNProxy("wl-1", "other.example", []string{"http://10.0.0.2"}, false) }, []string{"unwant user.example", "want other.example"}},
		{"passthrough needs none", func() error { return c21(m).SetFQDNProxy("wl-1", "other.example", []string{"10.0.0.2:443"}, true) }, []string{"unwant other.example"}},
		{"a name proxy needs none", func() error {
			_, err := c21(m).SetNamedProxy("wl-2", "app", []string{"http://10.0.0.3"}, false)
			return err
		}, nil},
		{"terminated again", func() error { return c21(m).SetFQDNProxy("wl-1", "other.example", []string{"http://10.0.0.2"}, false) }, []string{"want other.example"}},
		{"deleted", func() error { return c21(m).DeleteNamedProxy("wl-1") }, []string{"unwant other.example"}},
		{"set again", func() error { return c21(m).SetFQDNProxy("wl-3", "user.example", []string{"http://10.0.0.1"}, false) }, []string{"want user.example"}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := f.take(); !slices.Equal(got, s.want) {
			t.Errorf("%s: calls %q, want %q", s.name, got, s.want)
		}
	}

	// A restart tells the whole set at once.
	f2 := newFakeCertificates()
	newModuleWith(t, root, withCertificates(root, f2))
	if got := f2.take(); !slices.Equal(got, []string{"set user.example"}) {
		t.Errorf("at restart: %q", got)
	}
}

// The reserved file lists the certificates of user domains as files named
// after their content, and the challenge router; a certificate that goes
// leaves the file, then its files go.
func TestAnchorListsUserCertificates(t *testing.T) {
	root := t.TempDir()
	f := newFakeCertificates()
	src := t.TempDir()
	f.certs = []certs.Certificate{writePair(t, src, "user.example")}
	m, _ := newModuleWith(t, root, withCertificates(root, f))

	anchor := readAnchor(t, root)
	if anchor.TLS == nil || len(anchor.TLS.Certificates) != 1 {
		t.Fatalf("reserved file's tls: %+v", anchor.TLS)
	}
	files := anchor.TLS.Certificates[0]
	for _, p := range []string{files.CertFile, files.KeyFile} {
		if filepath.Dir(p) != filepath.Join(root, "traefik", traefik.CertificatesDirName) {
			t.Errorf("%s is not in traefik/%s", p, traefik.CertificatesDirName)
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the file the reserved file names: %v", err)
		}
	}
	if rt := anchor.HTTP.Routers[traefik.ChallengeName]; rt == nil || rt.EntryPoints[0] != traefik.EntryPointWeb || anchor.HTTP.Services[traefik.ChallengeName] == nil {
		t.Errorf("no challenge router and service in the reserved file: %+v", anchor.HTTP)
	}

	// Retired: gone from the file at the next publish, then from disk.
	f.mu.Lock()
	f.certs = nil
	f.mu.Unlock()
	m.certsStale = true
	if err := m.publishAnchor(); err != nil {
		t.Fatal(err)
	}
	if anchor := readAnchor(t, root); anchor.TLS != nil && len(anchor.TLS.Certificates) > 0 {
		t.Errorf("the reserved file still lists %+v", anchor.TLS.Certificates)
	}
	if _, err := os.Stat(files.CertFile); !os.IsNotExist(err) {
		t.Errorf("the retired certificate's file is still there: %v", err)
	}
}

// readAnchor reads the reserved file under root.
func readAnchor(t testing.TB, root string) *traefik.Configuration {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "proxy", "gateway~anchor.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := traefik.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// writePair writes a self-signed certificate for name and its key in dir.
func writePair(t testing.TB, dir, name string) certs.Certificate {
	t.Helper()
	notAfter := time.Now().Add(90 * 24 * time.Hour)
	certPEM, keyPEM := testcert.SelfSigned(t, []string{name}, time.Now().Add(-time.Hour), notAfter)
	c := certs.Certificate{Domain: name, CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key"), NotAfter: notAfter, Issuer: name}
	if err := os.WriteFile(c.CertFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.KeyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDamagedCertificateFiles guards issue 18: a certificate file Traefik
// reads, deleted or cut short by hand, was never written again, and List
// went on showing the certificate. The next sweep installs it again; a
// certificate that cannot be installed is not shown by List.
func TestDamagedCertificateFiles(t *testing.T) {
	const fqdn = "user.example"
	root := t.TempDir()
	f := newFakeCertificates()
	c := writePair(t, t.TempDir(), fqdn)
	f.certs = []certs.Certificate{c}
	f.status[fqdn] = certs.Status{Certificate: &c}
	m, recs := newModuleWith(t, root, func(cfg *Config) {
		withCertificates(root, f)(cfg)
		cfg.SweepInterval = 20 * time.Millisecond
	})
	recs.set(fqdn, "198.51.100.7")
	if err := c21(m).SetFQDNProxy("7-1-web", fqdn, []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	shown := func() bool {
		list, err := m.List(context.Background())
		if err != nil || len(list) != 1 {
			t.Fatalf("List: %+v %v", list, err)
		}
		return list[0].Status != nil && list[0].Status.Certificate != nil
	}
	if !shown() {
		t.Fatal("List does not show the certificate the reserved file names")
	}
	files := readAnchor(t, root).TLS.Certificates[0]
	want := map[string][]byte{}
	for _, p := range []string{files.CertFile, files.KeyFile} {
		want[p], _ = os.ReadFile(p)
	}
	damage := []struct {
		name string
		do   func() error
	}{
		{"certificate deleted", func() error { return os.Remove(files.CertFile) }},
		{"key cut short", func() error { return os.Truncate(files.KeyFile, 10) }},
	}
	for _, d := range damage {
		if err := d.do(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "the files installed again after "+d.name, func() error {
			for p, data := range want {
				if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
					return fmt.Errorf("%s: %d bytes, %v", p, len(got), err)
				}
			}
			return nil
		})
		if !shown() {
			t.Errorf("%s: List does not show the certificate installed again", d.name)
		}
	}

	// The gateway's own copy is gone too: nothing can be installed, and
	// List says so.
	os.Remove(c.CertFile)
	waitFor(t, 5*time.Second, "List to stop showing a certificate Traefik cannot read", func() error {
		// Again at each look: a sweep that had read the gateway's copy
		// before it went may still write Traefik's once more.
		os.Remove(files.CertFile)
		if shown() {
			return errors.New("still shown")
		}
		return nil
	})
	list, _ := m.List(context.Background())
	if list[0].Status.ACME == nil {
		t.Errorf("no ACME status for a domain without a certificate: %+v", list[0].Status)
	}
}

// waitFor calls check until it returns nil, failing the test with its last
// error after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %s for %s: %v", timeout, what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
