package traefik

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/threefoldtech/gateway/internal/testcert"
)

// testCert returns a PEM certificate and key for names, valid from nb to na.
func testCert(t testing.TB, names []string, nb, na time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	return testcert.SelfSigned(t, names, nb, na)
}

// writeStorage writes an ACME storage file as Traefik does, for resolver.
func writeStorage(t testing.TB, path, resolver string, certs ...ACMECertificate) {
	t.Helper()
	type domain struct {
		Main string   `json:"main,omitempty"`
		SANs []string `json:"sans,omitempty"`
	}
	type cert struct {
		Domain      domain `json:"domain,omitempty"`
		Certificate []byte `json:"certificate,omitempty"`
		Key         []byte `json:"key,omitempty"`
		Store       string
	}
	var cs []cert
	for _, c := range certs {
		cs = append(cs, cert{domain{c.Main, c.SANs}, c.Certificate, c.Key, "default"})
	}
	data, err := json.Marshal(map[string]any{resolver: map[string]any{"Account": map[string]any{"Email": "x@y"}, "Certificates": cs}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestReadACMEStorage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "acme.json")
	if certs, err := ReadACMEStorage(path); err != nil || certs != nil {
		t.Fatalf("missing file: %v, %v", certs, err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if certs, err := ReadACMEStorage(path); err != nil || certs != nil {
		t.Fatalf("empty file: %v, %v", certs, err)
	}
	c, k := testCert(t, []string{"a.example"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	writeStorage(t, path, ResolverHTTP, ACMECertificate{Main: "a.example", Certificate: c, Key: k})
	certs, err := ReadACMEStorage(path)
	if err != nil || len(certs) != 1 || certs[0].Resolver != ResolverHTTP || certs[0].Main != "a.example" || string(certs[0].Certificate) != string(c) || string(certs[0].Key) != string(k) {
		t.Fatalf("got %+v, %v", certs, err)
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadACMEStorage(path); err == nil {
		t.Fatal("a broken file read without error")
	}
}

// TestDefaultCertificate guards the default certificate: a self-signed EC
// P-256 one, kept across restarts, until the DNS resolver's storage holds a
// valid wildcard of the domain, which then replaces it under a new name (so
// that Traefik reloads), and whose earlier files are pruned.
func TestDefaultCertificate(t *testing.T) {
	dir := t.TempDir()
	d := NewDefaultCertificate(dir, "gw.example")
	self, err := d.Current()
	if err != nil {
		t.Fatal(err)
	}
	if d.IsWildcard(self) {
		t.Fatalf("%+v taken for the wildcard", self)
	}
	pair, err := tls.LoadX509KeyPair(self.CertFile, self.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := pair.Leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Fatalf("self-signed key is %T", pair.Leaf.PublicKey)
	}
	if fi, err := os.Stat(self.KeyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi.Mode(), err)
	}
	again, err := NewDefaultCertificate(dir, "gw.example").Current()
	if err != nil || *again != *self {
		t.Fatalf("after a restart: %+v, %v, want %+v", again, err, self)
	}
	if data, _ := os.ReadFile(again.CertFile); string(data) != string(pemOf(t, pair)) {
		t.Fatal("the self-signed certificate was made again")
	}

	storage := filepath.Join(dir, acmeDNSStorageName)
	now := time.Now()
	expired, expiredKey := testCert(t, []string{"gw.example", "*.gw.example"}, now.Add(-2*time.Hour), now.Add(-time.Hour))
	other, otherKey := testCert(t, []string{"other.example", "*.other.example"}, now.Add(-time.Hour), now.Add(time.Hour))
	writeStorage(t, storage, ResolverDNS,
		ACMECertificate{Main: "gw.example", SANs: []string{"*.gw.example"}, Certificate: expired, Key: expiredKey},
		ACMECertificate{Main: "other.example", SANs: []string{"*.other.example"}, Certificate: other, Key: otherKey})
	if got, err := d.Current(); err != nil || *got != *self {
		t.Fatalf("with no valid wildcard: %+v, %v", got, err)
	}

	wild, wildKey := testCert(t, []string{"gw.example", "*.gw.example"}, now.Add(-time.Hour), now.Add(time.Hour))
	writeStorage(t, storage, ResolverDNS, ACMECertificate{Main: "gw.example", SANs: []string{"*.gw.example"}, Certificate: wild, Key: wildKey})
	touchLater(t, storage)
	first, err := d.Current()
	if err != nil || !d.IsWildcard(first) {
		t.Fatalf("with the wildcard: %+v, %v", first, err)
	}
	if data, _ := os.ReadFile(first.CertFile); string(data) != string(wild) {
		t.Fatal("the default certificate is not the wildcard")
	}

	renewed, renewedKey := testCert(t, []string{"gw.example", "*.gw.example"}, now.Add(-time.Minute), now.Add(2*time.Hour))
	writeStorage(t, storage, ResolverDNS, ACMECertificate{Main: "gw.example", SANs: []string{"*.gw.example"}, Certificate: renewed, Key: renewedKey})
	touchLater(t, storage)
	second, err := d.Current()
	if err != nil || !d.IsWildcard(second) || second.CertFile == first.CertFile {
		t.Fatalf("after a renewal: %+v, %v (before %+v)", second, err, first)
	}
	for _, p := range []string{first.CertFile, first.KeyFile} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s of the earlier wildcard not pruned: %v", p, err)
		}
	}
	if _, err := os.Stat(self.CertFile); err != nil {
		t.Errorf("the self-signed certificate was pruned: %v", err)
	}
}

// touchLater moves path's modification time on, so that its stamp changes
// even within the file system's time granularity.
func touchLater(t testing.TB, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	later := fi.ModTime().Add(time.Second)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
}

func pemOf(t testing.TB, pair tls.Certificate) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pair.Certificate[0]})
}

// TestTLSSectionOnlyInReservedFile guards Traefik's TLS stores: only the
// reserved file may set them. A route configuration with a tls section is
// refused, a group file edited to hold one is moved to quarantine and written
// again without it, and the reserved file takes the default certificate with
// or without the anchor router, but nothing else there.
func TestTLSSectionOnlyInReservedFile(t *testing.T) {
	r, _ := openTestRoutes(t)
	cert := &TLSCertificate{CertFile: "/s/default-self.crt", KeyFile: "/s/default-self.key"}
	tlsCfg := &TLSConfiguration{Stores: map[string]*TLSStore{DefaultStore: {DefaultCertificate: cert}}}

	withTLS := testRoute("a", 0)
	withTLS.TLS = tlsCfg
	if err := r.Publish("a", withTLS); err == nil {
		t.Fatal("a route with a tls section was published")
	}

	if err := r.Publish("a", testRoute("a", 0)); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(r.Locate("a"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, r.Locate("a"), string(data)+"tls:\n  stores:\n    default:\n      defaultCertificate:\n        certFile: /tmp/evil.crt\n        keyFile: /tmp/evil.key\n")
	moved, err := r.Sweep(func(string) bool { return true })
	if err != nil || len(moved) != 1 {
		t.Fatalf("Sweep moved %v, %v; want the edited group file", moved, err)
	}
	data, err = os.ReadFile(r.Locate("a"))
	if err != nil || strings.Contains(string(data), "tls:\n") {
		t.Fatalf("group file after the sweep: %v\n%s", err, data)
	}
	if ok, err := r.Published("a"); err != nil || !ok {
		t.Fatalf("route a lost: %v, %v", ok, err)
	}

	if err := r.PublishAnchor(&Configuration{TLS: tlsCfg}); err != nil {
		t.Fatalf("the default certificate alone: %v", err)
	}
	other := &Configuration{TLS: &TLSConfiguration{Stores: map[string]*TLSStore{"other": {DefaultCertificate: cert}}}}
	if err := r.PublishAnchor(other); err == nil {
		t.Fatal("the reserved file took another store")
	}
}
