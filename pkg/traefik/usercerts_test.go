package traefik

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Install writes each certificate once under a name of its content,
// refuses a pair that does not match, and Prune removes what is not kept.
func TestCertificateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), CertificatesDirName)
	c := CertificateFiles{Dir: dir}
	now := time.Now()
	certA, keyA := testCert(t, []string{"a.example"}, now.Add(-time.Hour), now.Add(time.Hour))
	certB, keyB := testCert(t, []string{"b.example"}, now.Add(-time.Hour), now.Add(time.Hour))

	files, err := c.Install([]PEMPair{{Name: "a.example", Cert: certA, Key: keyA}, {Name: "b.example", Cert: certB, Key: keyA}})
	if err == nil || len(files) != 1 {
		t.Fatalf("a certificate with another's key: files %v, error %v; want it left out with an error", files, err)
	}
	if b, _ := os.ReadFile(files[0].KeyFile); string(b) != string(keyA) {
		t.Errorf("key file holds %q", b)
	}
	if fi, err := os.Stat(files[0].KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	// Renewed: a new name, the old files stay until pruned.
	certA2, keyA2 := testCert(t, []string{"a.example"}, now.Add(-time.Hour), now.Add(2*time.Hour))
	renewed, err := c.Install([]PEMPair{{Name: "a.example", Cert: certA2, Key: keyA2}, {Name: "b.example", Cert: certB, Key: keyB}})
	if err != nil || len(renewed) != 2 {
		t.Fatalf("Install: %v %v", renewed, err)
	}
	if renewed[0].CertFile == files[0].CertFile {
		t.Fatalf("a renewed certificate kept the name %s: a reload could read the new certificate with the old key", files[0].CertFile)
	}
	if _, err := os.Stat(files[0].CertFile); err != nil {
		t.Errorf("the files still named by the reserved file were removed before it changed: %v", err)
	}
	if err := c.Prune(renewed[1:]); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(left) != 2 || left[0] != renewed[1].CertFile || left[1] != renewed[1].KeyFile {
		t.Errorf("after Prune: %v, want only %s", left, renewed[1].CertFile)
	}
	if _, err := c.Install([]PEMPair{{Name: "../x", Cert: certB, Key: keyB}}); err == nil {
		t.Errorf("a name with a path was accepted")
	}
}

// The reserved file may list certificates beside the default one, and name
// the challenge router and service; nothing else.
func TestCheckAnchorCertificates(t *testing.T) {
	cert := &TLSCertificate{CertFile: "/c", KeyFile: "/k"}
	ok := []*Configuration{
		{TLS: &TLSConfiguration{Certificates: []*TLSCertificate{cert}}},
		{TLS: &TLSConfiguration{Certificates: []*TLSCertificate{cert}, Stores: map[string]*TLSStore{DefaultStore: {DefaultCertificate: cert}}}},
		{HTTP: &HTTPConfiguration{
			Routers:  map[string]*Router{ChallengeName: {Rule: "PathPrefix(`/.well-known/acme-challenge/`)", Service: ChallengeName}, AnchorName: {Service: ServiceNoop}},
			Services: map[string]*Service{ChallengeName: {LoadBalancer: &ServersLoadBalancer{Servers: []Server{{URL: "http://127.0.0.1:8083"}}}}},
		}},
	}
	for i, cfg := range ok {
		if err := checkAnchor(cfg); err != nil {
			t.Errorf("%d: %v", i, err)
		}
	}
	bad := []*Configuration{
		{TLS: &TLSConfiguration{}},
		{TLS: &TLSConfiguration{Certificates: []*TLSCertificate{nil}}},
		{TLS: &TLSConfiguration{Stores: map[string]*TLSStore{"other": {DefaultCertificate: cert}}}},
		{HTTP: &HTTPConfiguration{Routers: map[string]*Router{"wl-1": {Service: "wl-1"}}}},
	}
	for i, cfg := range bad {
		if err := checkAnchor(cfg); err == nil {
			t.Errorf("%d: accepted", i)
		}
	}
}

// TestCertificateFilesOfLongDomains guards the files of a long domain's
// certificate: a valid domain of 225 or 253 bytes installs (no "file name
// too long" at every sweep), and Prune keeps it.
func TestCertificateFilesOfLongDomains(t *testing.T) {
	dir := filepath.Join(t.TempDir(), CertificatesDirName)
	c := CertificateFiles{Dir: dir}
	now := time.Now()
	for _, n := range []int{225, 253} {
		name := strings.Repeat(strings.Repeat("a", 49)+".", (n-60)/50)
		name += strings.Repeat("b", n-len(name)-len(".example")) + ".example"
		cert, key := testCert(t, []string{"long.example"}, now.Add(-time.Hour), now.Add(time.Hour))
		files, err := c.Install([]PEMPair{{Name: name, Cert: cert, Key: key}})
		if err != nil || len(files) != 1 {
			t.Fatalf("%d bytes: files %v, error %v", len(name), files, err)
		}
		if err := c.Prune(files); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(files[0].CertFile); err != nil {
			t.Fatalf("%d bytes: %v", len(name), err)
		}
	}
}
