package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/threefoldtech/gateway/pkg/certs"
	"github.com/threefoldtech/gateway/pkg/traefik"
)

// fakeStatus is a StatusSource of fixed answers.
type fakeStatus struct {
	snap  traefik.Snapshot
	certs []traefik.ACMECertificate
	err   error
}

func (f fakeStatus) Snapshot(context.Context) (traefik.Snapshot, error) { return f.snap, f.err }
func (f fakeStatus) Certificates() ([]traefik.ACMECertificate, error)   { return f.certs, nil }

// issued returns an ACME certificate for names, issued by issuer.
func issued(t testing.TB, issuer string, notAfter time.Time, names ...string) traefik.ACMECertificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: names[0]}, Issuer: pkix.Name{CommonName: issuer},
		DNSNames: names, NotBefore: notAfter.Add(-90 * 24 * time.Hour), NotAfter: notAfter}
	parent := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: issuer}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return traefik.ACMECertificate{Main: names[0], SANs: names[1:],
		Certificate: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})}
}

// TestListCarriesStatus guards the status of routes in List: live or not
// and why, the certificate that serves the domain (the wildcard for a name
// proxy, the domain's own for an FQDN proxy, none for passthrough) and the
// backends' health, all from one reading of Traefik.
func TestListCarriesStatus(t *testing.T) {
	root := t.TempDir()
	expires := time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)
	src := &fakeStatus{
		snap: traefik.Snapshot{
			HTTPRouters:  map[string]traefik.RouterState{"wl-name": {Status: "enabled"}, "wl-broken": {Status: "disabled", Errors: []string{"bad rule"}}},
			HTTPServices: map[string]traefik.ServiceState{"wl-name": {Status: "enabled", Servers: map[string]string{"http://10.0.0.1": "UP"}}},
			TCPRouters:   map[string]traefik.RouterState{"wl-pass": {Status: "enabled"}},
			TCPServices:  map[string]traefik.ServiceState{"wl-pass": {Status: "enabled", Servers: map[string]string{"10.0.0.3:443": "UP", "10.0.0.4:443": "DOWN"}}},
		},
		certs: []traefik.ACMECertificate{
			issued(t, "Pebble Intermediate", expires, "gw.example", "*.gw.example"),
			issued(t, "Other CA", expires, "other.example"),
		},
	}
	m, _ := newModuleWith(t, root, func(c *Config) { c.Status = src })
	for _, s := range []struct {
		id, prefix  string
		backends    []string
		passthrough bool
	}{
		{"wl-name", "app", []string{"http://10.0.0.1"}, false},
		{"wl-broken", "broken", []string{"http://10.0.0.2"}, false},
		{"wl-pass", "pass", []string{"10.0.0.3:443", "10.0.0.4:443"}, true},
		{"wl-new", "new", []string{"http://10.0.0.5"}, false},
	} {
		if _, err := c21(m).SetNamedProxy(s.id, s.prefix, s.backends, s.passthrough); err != nil {
			t.Fatal(err)
		}
	}

	if list, _ := c21(m).List(); slices.ContainsFunc(list, func(p Proxy) bool { return p.Status != nil }) {
		t.Fatal("status before any reading")
	}
	if err := m.readStatus(context.Background()); err != nil {
		t.Fatal(err)
	}
	list, _ := c21(m).List()
	got := map[string]*RouteStatus{}
	for _, p := range list {
		got[p.WorkloadID] = p.Status
	}
	if st := got["wl-name"]; st == nil || !st.Live || st.Certificate == nil || st.Certificate.Issuer != "Pebble Intermediate" ||
		!st.Certificate.NotAfter.Equal(expires) || st.Backends != nil || len(st.Problems) != 0 {
		t.Errorf("wl-name: %+v", st)
	}
	if st := got["wl-broken"]; st == nil || st.Live || !slices.Contains(st.Problems, "bad rule") {
		t.Errorf("wl-broken: %+v", st)
	}
	if st := got["wl-pass"]; st == nil || !st.Live || st.Certificate != nil || st.Backends["10.0.0.4:443"] != "DOWN" {
		t.Errorf("wl-pass: %+v", st)
	}
	if st := got["wl-new"]; st == nil || st.Live || len(st.Problems) != 1 {
		t.Errorf("wl-new: %+v", st)
	}

	// Traefik cannot be asked: no status rather than an old one.
	src.err = context.DeadlineExceeded
	if err := m.readStatus(context.Background()); err == nil {
		t.Fatal("readStatus without Traefik succeeded")
	}
	if list, _ := c21(m).List(); slices.ContainsFunc(list, func(p Proxy) bool { return p.Status != nil }) {
		t.Fatal("an old status listed while Traefik cannot be asked")
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		cert, name string
		want       bool
	}{
		{"a.example", "a.example", true},
		{"A.example", "a.EXAMPLE", true},
		{"*.gw.example", "app.gw.example", true},
		{"*.gw.example", "gw.example", false},
		{"*.gw.example", "a.b.gw.example", false},
		{"*.gw.example", ".gw.example", false},
		{"gw.example", "app.gw.example", false},
	} {
		if got := covers(tc.cert, tc.name); got != tc.want {
			t.Errorf("covers(%q, %q) = %v", tc.cert, tc.name, got)
		}
	}
}

// An FQDN proxy's certificate and where the gateway stands in getting it
// come from its certificate manager; the status read from Traefik, shared
// by every List, is not changed.
func TestWithACME(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	shared := &RouteStatus{Live: true, CheckedAt: now}
	got := withACME(shared, certs.Status{Failures: 2, LastError: "refused", NextAttempt: now.Add(time.Hour)})
	if got == shared || shared.ACME != nil {
		t.Fatalf("the shared status was changed")
	}
	if !got.Live || got.Certificate != nil || got.ACME == nil || got.ACME.Failures != 2 || got.ACME.LastError != "refused" || !got.ACME.NextAttempt.Equal(now.Add(time.Hour)) {
		t.Errorf("failing: %+v %+v", got, got.ACME)
	}
	c := &certs.Certificate{Domain: "shop.example", Issuer: "R11", NotAfter: now.Add(90 * 24 * time.Hour)}
	got = withACME(nil, certs.Status{Certificate: c})
	if got.ACME != nil || got.Certificate == nil || got.Certificate.Issuer != "R11" || got.Certificate.Names[0] != "shop.example" {
		t.Errorf("issued: %+v", got)
	}
	// Not yet ordered: no certificate, and ACME says so.
	if got := withACME(nil, certs.Status{}); got.ACME == nil || got.Certificate != nil {
		t.Errorf("not yet ordered: %+v", got)
	}
}
