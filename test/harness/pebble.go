package harness

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// pebbleInstall is the command that installs Pebble and pebble-challtestsrv.
const pebbleInstall = "scripts/install-deps.sh"

// pebbleReadyTimeout bounds the wait for Pebble and pebble-challtestsrv to
// answer after their start.
const pebbleReadyTimeout = 15 * time.Second

// Pebble is a Pebble ACME server of the test's own, on loopback. Its state is
// in memory: every start makes a new root, so the ACME storage of a Traefik
// is only good for the Pebble it was filled by.
type Pebble struct {
	// Proc is the Pebble process, nil until Start.
	Proc *Proc
	// DirectoryURL is the ACME directory, for --acme.caserver:
	// https://127.0.0.1:port/dir.
	DirectoryURL string
	// ManagementURL is Pebble's management interface (roots, intermediates):
	// https://127.0.0.1:port.
	ManagementURL string
	// CAFile is the PEM file of the CA that signed the certificate of Pebble's
	// HTTPS listeners, for --acme.cacertificates. It is not the CA that signs
	// the certificates Pebble issues: see Roots.
	CAFile string

	dir        string
	listenAddr string
	mgmtAddr   string
	certFile   string
	keyFile    string
	client     *http.Client // trusts CAFile
}

// PebbleOptions are the choices of a test for Pebble.
type PebbleOptions struct {
	// HTTPPort is the port Pebble connects to, on the address a name
	// resolves to, to validate HTTP-01 challenges: the gateway's web entry
	// point. Default: a free port, so that HTTP-01 fails.
	HTTPPort int
	// DNSServer is the "ip:port" DNS server Pebble resolves names and looks
	// up DNS-01 TXT records with (UDP and TCP): the gateway's --dns.address
	// or a ChallTestSrv. Required, so Pebble never asks the host's resolver.
	DNSServer string
}

// NewPebble prepares a Pebble without starting it: its addresses, its TLS
// certificate and CAFile are chosen, so a gateway that needs the directory
// URL can start first and give Pebble the ports it validates on.
func NewPebble(t testing.TB) *Pebble {
	t.Helper()
	p := &Pebble{
		dir:        t.TempDir(),
		listenAddr: Addr(t),
		mgmtAddr:   Addr(t),
	}
	p.DirectoryURL = "https://" + p.listenAddr + "/dir"
	p.ManagementURL = "https://" + p.mgmtAddr
	p.CAFile = filepath.Join(p.dir, "ca.pem")
	p.certFile = filepath.Join(p.dir, "cert.pem")
	p.keyFile = filepath.Join(p.dir, "key.pem")
	pool, err := writeListenerCertificates(p.CAFile, p.certFile, p.keyFile)
	if err != nil {
		t.Fatalf("pebble: TLS certificate: %v", err)
	}
	p.client = &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true},
		Timeout:   clientTimeout,
	}
	return p
}

// StartPebble starts a Pebble with opts and waits until its directory
// answers. It is NewPebble then Start.
func StartPebble(t testing.TB, opts PebbleOptions) *Pebble {
	t.Helper()
	p := NewPebble(t)
	p.Start(t, opts)
	return p
}

// pebbleConfig is Pebble's JSON configuration file.
type pebbleConfig struct {
	Pebble pebbleSettings `json:"pebble"`
}

type pebbleSettings struct {
	ListenAddress           string `json:"listenAddress"`
	ManagementListenAddress string `json:"managementListenAddress"`
	Certificate             string `json:"certificate"`
	PrivateKey              string `json:"privateKey"`
	HTTPPort                int    `json:"httpPort"`
	TLSPort                 int    `json:"tlsPort"`
	OCSPResponderURL        string `json:"ocspResponderURL"`
	KeyAlgorithm            string `json:"keyAlgorithm"`
}

// Start runs Pebble with opts and waits until its directory and management
// interface answer. Pebble is stopped by PID when the test ends.
func (p *Pebble) Start(t testing.TB, opts PebbleOptions) {
	t.Helper()
	if p.Proc != nil {
		t.Fatalf("pebble: already started (pid %d)", p.Proc.PID())
	}
	if opts.DNSServer == "" {
		t.Fatalf("pebble: PebbleOptions.DNSServer is required")
	}
	bin := LookBinary(t, "PEBBLE_BIN", "pebble", pebbleInstall)
	httpPort := opts.HTTPPort
	if httpPort == 0 {
		httpPort = FreePort(t)
	}
	cfg := pebbleConfig{Pebble: pebbleSettings{
		ListenAddress:           p.listenAddr,
		ManagementListenAddress: p.mgmtAddr,
		Certificate:             p.certFile,
		PrivateKey:              p.keyFile,
		HTTPPort:                httpPort,
		// TLS-ALPN-01 is not used: a port nothing listens on.
		TLSPort:      FreePort(t),
		KeyAlgorithm: "ecdsa",
	}}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatalf("pebble: configuration: %v", err)
	}
	cfgFile := filepath.Join(p.dir, "pebble-config.json")
	if err := os.WriteFile(cfgFile, data, 0o644); err != nil {
		t.Fatalf("pebble: writing %s: %v", cfgFile, err)
	}
	env := []string{
		// Validate at once instead of after a random 0-5s sleep.
		"PEBBLE_VA_NOSLEEP=1",
		// Never reject a good nonce: lego would retry, but it costs time.
		"PEBBLE_WFE_NONCEREJECT=0",
		// Every order validates its challenges afresh.
		"PEBBLE_AUTHZREUSE=0",
		// Whatever the environment of the test says, really validate.
		"PEBBLE_VA_ALWAYS_VALID=0",
	}
	p.Proc = Start(t, bin, env, "-config", cfgFile, "-dnsserver", opts.DNSServer)
	WaitFor(t, pebbleReadyTimeout, "pebble to answer", func() error {
		select {
		case <-p.Proc.Done():
			return fmt.Errorf("pebble exited: %v\n%s", p.Proc.err, p.Proc.Output())
		default:
		}
		if _, err := p.get(p.DirectoryURL); err != nil {
			return err
		}
		_, err := p.get(p.ManagementURL + "/roots/0")
		return err
	})
}

// Roots fetches the roots that sign the certificates Pebble issues, as a
// pool to verify them with.
func (p *Pebble) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	body := p.RootPEM(t)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(body) {
		t.Fatalf("pebble: no certificate in its root %q", truncate(body))
	}
	return pool
}

// RootPEM returns the root Pebble issues under, in PEM, for clients that
// read it from a file.
func (p *Pebble) RootPEM(t testing.TB) []byte {
	t.Helper()
	body, err := p.get(p.ManagementURL + "/roots/0")
	if err != nil {
		t.Fatalf("pebble: fetching its root: %v", err)
	}
	return body
}

// Orders is the number of orders Pebble received so far, read from its log.
func (p *Pebble) Orders() int {
	return strings.Count(p.Proc.Output(), "Added order ")
}

// Issued returns the serial numbers, in lowercase hex, of the certificates
// Pebble issued so far, read from its log.
func (p *Pebble) Issued() []string {
	const prefix = "Issued certificate serial "
	var serials []string
	for line := range strings.Lines(p.Proc.Output()) {
		_, rest, ok := strings.Cut(line, prefix)
		if !ok {
			continue
		}
		if serial, _, ok := strings.Cut(rest, " "); ok {
			serials = append(serials, serial)
		}
	}
	return serials
}

// SerialHex formats a certificate's serial number the way Pebble logs it.
func SerialHex(c *x509.Certificate) string {
	return fmt.Sprintf("%x", c.SerialNumber.Bytes())
}

// get fetches url from Pebble with a client that trusts CAFile.
func (p *Pebble) get(url string) ([]byte, error) {
	resp, err := p.client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %q", url, resp.Status, truncate(body))
	}
	return body, nil
}

// ChallTestSrv is a pebble-challtestsrv of the test's own, used only as a DNS
// server: it answers the A records the test adds and nothing else (no
// default address, no AAAA), so a name resolves only if the test says so.
// Its HTTP-01, HTTPS-01, TLS-ALPN-01 and DoH servers are off.
type ChallTestSrv struct {
	// Proc is the pebble-challtestsrv process.
	Proc *Proc
	// DNSAddr is 127.0.0.1:port, UDP and TCP: for Pebble's -dnsserver and
	// the gateway's --resolver.
	DNSAddr string
	// ManagementURL is its management API: http://127.0.0.1:port.
	ManagementURL string
}

// StartChallTestSrv starts a pebble-challtestsrv and waits until its DNS
// server answers over UDP and TCP and its management API listens.
func StartChallTestSrv(t testing.TB) *ChallTestSrv {
	t.Helper()
	bin := LookBinary(t, "PEBBLE_CHALLTESTSRV_BIN", "pebble-challtestsrv", pebbleInstall)
	mgmt := Addr(t)
	s := &ChallTestSrv{DNSAddr: Addr(t), ManagementURL: "http://" + mgmt}
	s.Proc = Start(t, bin, nil,
		"-defaultIPv4", "", "-defaultIPv6", "",
		"-dnsserver", s.DNSAddr, "-management", mgmt,
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")
	WaitFor(t, pebbleReadyTimeout, "pebble-challtestsrv to answer", func() error {
		select {
		case <-s.Proc.Done():
			return fmt.Errorf("pebble-challtestsrv exited: %v\n%s", s.Proc.err, s.Proc.Output())
		default:
		}
		for _, network := range []string{"udp", "tcp"} {
			m := new(dns.Msg)
			m.SetQuestion("ready.test.", dns.TypeA)
			c := &dns.Client{Net: network, Timeout: 500 * time.Millisecond}
			if _, _, err := c.Exchange(m, s.DNSAddr); err != nil {
				return fmt.Errorf("DNS over %s: %w", network, err)
			}
		}
		conn, err := net.DialTimeout("tcp", mgmt, 200*time.Millisecond)
		if err != nil {
			return err
		}
		return conn.Close()
	})
	return s
}

// SetA makes host resolve to the IPv4 addresses addrs, and only them.
func (s *ChallTestSrv) SetA(t testing.TB, host string, addrs ...string) {
	t.Helper()
	s.post(t, "/clear-a", struct {
		Host string `json:"host"`
	}{dns.Fqdn(host)})
	s.AddA(t, host, addrs...)
}

// post sends body as JSON to path of the management API and fails t unless
// it answers 200.
func (s *ChallTestSrv) post(t testing.TB, path string, body any) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ManagementURL+path, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("pebble-challtestsrv: %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		t.Fatalf("pebble-challtestsrv: %s: %s: %q", path, resp.Status, msg)
	}
}

// AddA adds the IPv4 addresses addrs to those host resolves to.
func (s *ChallTestSrv) AddA(t testing.TB, host string, addrs ...string) {
	t.Helper()
	body, err := json.Marshal(struct {
		Host      string   `json:"host"`
		Addresses []string `json:"addresses"`
	}{dns.Fqdn(host), addrs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ManagementURL+"/add-a", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("pebble-challtestsrv: adding A %s %v: %v", host, addrs, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		t.Fatalf("pebble-challtestsrv: adding A %s %v: %s: %q", host, addrs, resp.Status, msg)
	}
}

// writeListenerCertificates makes a CA and a certificate it signs for
// 127.0.0.1, ::1 and localhost, for Pebble's HTTPS listeners, and writes
// them as PEM. Made at each start rather than taken from Pebble's module, so
// the tests need neither the module cache nor certificates that expire.
func writeListenerCertificates(caFile, certFile, keyFile string) (*x509.CertPool, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gateway tests: Pebble listener CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	files := []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{
		{caFile, "CERTIFICATE", caDER, 0o644},
		{certFile, "CERTIFICATE", der, 0o644},
		{keyFile, "PRIVATE KEY", keyDER, 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return nil, fmt.Errorf("writing %s: %w", f.path, err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, nil
}

// truncate shortens b for an error message.
func truncate(b []byte) string {
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

// errNoCertificate is returned by VerifiedHandshake when the server sent no
// certificate.
var errNoCertificate = errors.New("no certificate")

// VerifiedHandshake connects to addr and completes a TLS handshake with SNI
// sni, verifying the chain against roots and the name against sni. It
// returns the leaf certificate.
func VerifiedHandshake(ctx context.Context, addr, sni string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: clientTimeout},
		Config:    &tls.Config{ServerName: sni, RootCAs: roots, NextProtos: []string{"http/1.1"}},
	}
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("TLS handshake with %s (SNI %s): %w", addr, sni, err)
	}
	defer c.Close()
	certs := c.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("TLS handshake with %s (SNI %s): %w", addr, sni, errNoCertificate)
	}
	return certs[0], nil
}

// VerifiedHTTPSClient returns a client that sends every request to addr
// (Traefik's websecure entry point) whatever the URL's host, and verifies
// the certificate against roots and the URL's host. It does not follow
// redirects.
func VerifiedHTTPSClient(addr string, roots *x509.CertPool) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         fixedDialer(addr),
			TLSClientConfig:     &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}},
			TLSHandshakeTimeout: clientTimeout,
			DisableKeepAlives:   true,
		},
		Timeout:       clientTimeout,
		CheckRedirect: noRedirect,
	}
}

// PortOf returns the port of a host:port address, or fails the test.
func PortOf(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: port: %v", addr, err)
	}
	return n
}
