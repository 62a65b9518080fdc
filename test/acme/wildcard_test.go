//go:build e2e

package acme

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/threefoldtech/gateway/pkg/traefik"
	"github.com/threefoldtech/gateway/test/harness"
)

// TestWildcardCertificate checks the default certificate (self-signed, then
// the wildcard), sets two name proxies and checks that both are served with
// one wildcard certificate obtained by DNS-01: Traefik presents
// the challenges to the gateway's httpreq API, the gateway's DNS server
// answers them to Pebble. Then it kills Traefik and checks that the Traefik
// the gateway starts again serves the same certificate from its ACME storage
// without a new order.
func TestWildcardCertificate(t *testing.T) {
	t.Parallel()
	redis := harness.StartRedis(t)
	// The gateway's resolver answers NXDOMAIN to everything: its delegation
	// check must not ask the host's resolver.
	resolver := harness.StartDNS(t)
	pebble := harness.NewPebble(t)
	gw := harness.StartGateway(t, harness.GatewayOptions{
		Redis:          redis,
		Domain:         "gw.test",
		Resolver:       resolver.Addr,
		CAServer:       pebble.DirectoryURL,
		CACertificates: pebble.CAFile,
		Extra:          []string{"--routes.status=300ms"},
	})
	// Pebble looks the TXT records up at the gateway's own DNS server, the
	// one _acme-challenge.gw.test would be delegated to.
	pebble.Start(t, harness.PebbleOptions{HTTPPort: harness.PortOf(t, gw.WebAddr), DNSServer: gw.DNSAddr})
	roots := pebble.Roots(t)

	// Before the wildcard exists, a name Traefik has no certificate for
	// gets the gateway's self-signed default certificate, the one it keeps
	// in its state folder.
	self := defaultLeaf(t, gw)
	selfFile, err := os.ReadFile(filepath.Join(gw.Root, traefik.StateDirName, "default-self.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if block, _ := pem.Decode(selfFile); block == nil || !bytes.Equal(block.Bytes, self.Raw) {
		t.Fatalf("the default certificate served (CN %q) is not the one in default-self.crt", self.Subject.CommonName)
	}
	if key, ok := self.PublicKey.(*ecdsa.PublicKey); !ok || key.Curve != elliptic.P256() {
		t.Errorf("the default certificate's key is %T, want EC P-256", self.PublicKey)
	}

	alpha := harness.StartHTTPBackend(t, "alpha-backend")
	beta := harness.StartHTTPBackend(t, "beta-backend")
	under := harness.StartHTTPBackend(t, "underscore-backend")
	start := time.Now()
	alphaName := gw.SetNamedProxy(t, "wl-alpha", "alpha", []string{alpha.URL()}, false)
	betaName := gw.SetNamedProxy(t, "wl-beta", "beta", []string{beta.URL()}, false)
	// zos accepts '_' in a name, and so does the gateway.
	underName := gw.SetNamedProxy(t, "wl-under", "My_App", []string{under.URL()}, false)
	if alphaName != "alpha.gw.test" || betaName != "beta.gw.test" || underName != "my_app.gw.test" {
		t.Fatalf("SetNamedProxy returned %q, %q and %q, want alpha.gw.test, beta.gw.test and my_app.gw.test", alphaName, betaName, underName)
	}

	leaf := waitCertificate(t, gw.WebSecureAddr, alphaName, roots, acmeTimeout)
	t.Logf("wildcard certificate after %s (%s key)", time.Since(start).Round(time.Millisecond), leaf.PublicKeyAlgorithm)
	betaLeaf := waitCertificate(t, gw.WebSecureAddr, betaName, roots, routeTimeout)

	if !leaf.Equal(betaLeaf) {
		t.Errorf("the two names are served with two certificates (serials %s and %s), want one", harness.SerialHex(leaf), harness.SerialHex(betaLeaf))
	}
	// Traefik presents the wildcard for a name with an underscore, and Go's
	// crypto/x509 verifies it for that name.
	if underLeaf := waitCertificate(t, gw.WebSecureAddr, underName, roots, routeTimeout); !leaf.Equal(underLeaf) {
		t.Errorf("%s is served with another certificate (serial %s) than the wildcard (serial %s)", underName, harness.SerialHex(underLeaf), harness.SerialHex(leaf))
	}
	checkWildcard(t, leaf, "gw.test")
	// List tells the tenant which certificate serves the route.
	harness.WaitFor(t, routeTimeout, "List to show the certificate of "+alphaName, func() error {
		list, err := gw.List()
		if err != nil {
			return err
		}
		for _, p := range list {
			if p.WorkloadID != "wl-alpha" {
				continue
			}
			if p.Status == nil || p.Status.Certificate == nil {
				return fmt.Errorf("status %+v", p.Status)
			}
			if c := p.Status.Certificate; c.Issuer != leaf.Issuer.CommonName || !c.NotAfter.Equal(leaf.NotAfter) || !slices.Contains(c.Names, "*.gw.test") {
				return fmt.Errorf("certificate %+v, want the one served (issuer %q, expires %s)", c, leaf.Issuer.CommonName, leaf.NotAfter)
			}
			return nil
		}
		return fmt.Errorf("wl-alpha not listed")
	})
	// The wildcard becomes the default certificate, within one sweep.
	harness.WaitFor(t, routeTimeout, "the wildcard to be the default certificate", func() error {
		got, err := harness.PeerLeaf(context.Background(), gw.WebSecureAddr, "unknown.invalid")
		if err != nil {
			return err
		}
		if !got.Equal(leaf) {
			return fmt.Errorf("SNI unknown.invalid gets %q (serial %s)", got.Subject.CommonName, harness.SerialHex(got))
		}
		return nil
	})
	if !slices.Contains(pebble.Issued(), harness.SerialHex(leaf)) {
		t.Errorf("the certificate served (serial %s) is not one Pebble issued: %v", harness.SerialHex(leaf), pebble.Issued())
	}
	// Both routers ask for the same domains: one order covers them.
	if n := pebble.Orders(); n != 1 {
		t.Errorf("Pebble received %d orders, want 1", n)
	}

	client := harness.VerifiedHTTPSClient(gw.WebSecureAddr, roots)
	for _, tc := range []struct{ name, backend string }{{alphaName, alpha.Name}, {betaName, beta.Name}, {underName, under.Name}} {
		a, err := get(client, "https://"+tc.name+"/hello")
		if err != nil {
			t.Fatalf("HTTPS to %s: %v", tc.name, err)
		}
		if a.status != http.StatusOK || a.backend != tc.backend || a.body != tc.backend+"\n" {
			t.Errorf("HTTPS to %s: status %d backend %q body %q, want 200 from %s", tc.name, a.status, a.backend, a.body, tc.backend)
		}
	}

	// lego cleans both TXT values up once the order is valid; a value left
	// behind would be served for ever.
	harness.WaitFor(t, routeTimeout, "the challenge TXT records to be removed", func() error {
		txt, err := lookupTXT(gw.DNSAddr, "_acme-challenge.gw.test.")
		if err != nil {
			return err
		}
		if len(txt) > 0 {
			return fmt.Errorf("still served: %q", txt)
		}
		return nil
	})

	t.Run("UnderscoreWithOtherClients", func(t *testing.T) {
		testUnderscoreWithOtherClients(t, gw, pebble, underName, alphaName)
	})
	t.Run("TraefikRestartKeepsCertificate", func(t *testing.T) {
		testRestartKeepsCertificate(t, gw, pebble, roots, alphaName, leaf)
	})
}

// testUnderscoreWithOtherClients records what clients other than Go's do
// with a name with an underscore under the wildcard (docs/API.md, "Names"):
// curl, which checks the name itself, verifies it and reaches the route;
// OpenSSL's own check (X509_check_host, as openssl s_client
// -verify_hostname and the TLS libraries built on it do) matches '*' only to
// letters, digits and '-', and refuses it. The name without one verifies
// with both.
func testUnderscoreWithOtherClients(t *testing.T, gw *harness.Gateway, pebble *harness.Pebble, underName, plainName string) {
	root := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(root, pebble.RootPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	port := harness.PortOf(t, gw.WebSecureAddr)
	t.Run("curl", func(t *testing.T) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			t.Skip("no curl on this machine")
		}
		for _, name := range []string{plainName, underName} {
			out, err := exec.Command(curl, "-sS", "--max-time", "5", "--cacert", root, "--resolve", fmt.Sprintf("%s:%d:127.0.0.1", name, port),
				fmt.Sprintf("https://%s:%d/", name, port)).CombinedOutput()
			if err != nil || !strings.HasSuffix(string(out), "-backend\n") {
				t.Fatalf("curl to %s: %v: %s", name, err, out)
			}
		}
	})
	t.Run("openssl", func(t *testing.T) {
		openssl, err := exec.LookPath("openssl")
		if err != nil {
			t.Skip("no openssl on this machine")
		}
		check := func(name string) (string, error) {
			cmd := exec.Command(openssl, "s_client", "-connect", fmt.Sprintf("127.0.0.1:%d", port), "-servername", name,
				"-verify_hostname", name, "-CAfile", root, "-verify_return_error", "-brief")
			cmd.Stdin = strings.NewReader("")
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		if out, err := check(plainName); err != nil {
			t.Fatalf("openssl to %s: %v: %s", plainName, err, out)
		}
		out, err := check(underName)
		if err == nil || !strings.Contains(out, "hostname mismatch") {
			t.Fatalf("openssl to %s: %v: %s; want OpenSSL's hostname mismatch", underName, err, out)
		}
		for line := range strings.Lines(out) {
			if strings.Contains(line, "hostname mismatch") {
				t.Logf("openssl s_client -verify_hostname %s: %s", underName, strings.TrimSpace(line))
				break
			}
		}
	})
}

// testRestartKeepsCertificate kills Traefik with SIGKILL and checks that the
// Traefik the gateway starts in its place serves the same certificate, read
// from the ACME storage, and orders none.
func testRestartKeepsCertificate(t *testing.T, gw *harness.Gateway, pebble *harness.Pebble, roots *x509.CertPool, name string, want *x509.Certificate) {
	oldPID := gw.TraefikPID()
	if oldPID == 0 {
		t.Fatalf("no running Traefik in %s", gw.PIDFile())
	}
	orders := pebble.Orders()
	logPath := gw.TraefikLogPath()
	offset := fileSize(t, logPath)

	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatalf("killing Traefik (pid %d): %v", oldPID, err)
	}
	killed := time.Now()
	harness.WaitFor(t, restartTimeout, "the gateway to start another Traefik", func() error {
		if pid := gw.TraefikPID(); pid == 0 || pid == oldPID {
			return fmt.Errorf("pidfile names pid %d", pid)
		}
		return nil
	})
	leaf := waitCertificate(t, gw.WebSecureAddr, name, roots, restartTimeout)
	t.Logf("certificate served again %s after SIGKILL of Traefik", time.Since(killed).Round(time.Millisecond))
	if !leaf.Equal(want) {
		t.Errorf("after the restart Traefik serves serial %s, want the stored %s", harness.SerialHex(leaf), harness.SerialHex(want))
	}
	// The new Traefik says it found the domains in its storage; by then it
	// has decided, so an order would already have reached Pebble.
	text := waitLog(t, logPath, offset, "No ACME certificate generation required for domains", routeTimeout)
	if strings.Contains(text, "Domains need ACME certificates generation") {
		t.Errorf("the new Traefik wants to order certificates again although its storage has them")
	}
	if n := pebble.Orders(); n != orders {
		t.Errorf("Pebble received %d new orders after the restart, want none", n-orders)
	}
}

// checkWildcard checks that c names exactly domain and *.domain, and nothing
// else.
func checkWildcard(t testing.TB, c *x509.Certificate, domain string) {
	t.Helper()
	sans := slices.Sorted(slices.Values(c.DNSNames))
	if want := []string{"*." + domain, domain}; !slices.Equal(sans, want) {
		t.Errorf("certificate DNS names %q, want exactly %q", sans, want)
	}
	if len(c.IPAddresses)+len(c.URIs)+len(c.EmailAddresses) > 0 {
		t.Errorf("certificate has other names: IPs %v, URIs %v, e-mails %v", c.IPAddresses, c.URIs, c.EmailAddresses)
	}
}

// lookupTXT asks server for the TXT records of name over UDP.
func lookupTXT(server, name string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	c := &dns.Client{Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, _, err := c.ExchangeContext(ctx, m, server)
	if err != nil {
		return nil, fmt.Errorf("TXT %s at %s: %w", name, server, err)
	}
	var values []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			values = append(values, txt.Txt...)
		}
	}
	return values, nil
}

// defaultLeaf returns the certificate Traefik presents to a name it has no
// certificate for.
func defaultLeaf(t testing.TB, gw *harness.Gateway) *x509.Certificate {
	t.Helper()
	var leaf *x509.Certificate
	harness.WaitFor(t, routeTimeout, "the default certificate", func() error {
		got, err := harness.PeerLeaf(context.Background(), gw.WebSecureAddr, "unknown.invalid")
		if err != nil {
			return err
		}
		if got.Subject.CommonName != "gateway default certificate" {
			return fmt.Errorf("SNI unknown.invalid gets %q", got.Subject.CommonName)
		}
		leaf = got
		return nil
	})
	return leaf
}
