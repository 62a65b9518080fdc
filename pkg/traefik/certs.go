package traefik

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/threefoldtech/gateway/internal/atomicfile"
)

// ACMECertificate is a certificate Traefik's ACME resolver keeps in its
// storage file.
type ACMECertificate struct {
	// Resolver is the resolver that obtained it.
	Resolver string
	// Main and SANs are the names it was ordered for.
	Main string
	SANs []string
	// Certificate is the PEM chain, Key the PEM private key.
	Certificate, Key []byte
}

// maxStorageBytes bounds what ReadACMEStorage takes in: a few kilobytes per
// certificate.
const maxStorageBytes = 256 << 20

// ReadACMEStorage returns the certificates of Traefik's ACME storage file at
// path. A missing or empty file holds none: Traefik creates it with its first
// account.
func ReadACMEStorage(path string) ([]ACMECertificate, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the ACME storage: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStorageBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the ACME storage %s: %w", path, err)
	}
	if len(data) > maxStorageBytes {
		return nil, fmt.Errorf("reading the ACME storage %s: larger than %d bytes", path, maxStorageBytes)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, nil
	}
	// Traefik's layout (pkg/provider/acme, LocalStore): by resolver, its
	// account and its certificates; []byte fields are base64 in JSON.
	var stored map[string]*struct {
		Certificates []struct {
			Domain struct {
				Main string   `json:"main"`
				SANs []string `json:"sans"`
			} `json:"domain"`
			Certificate []byte `json:"certificate"`
			Key         []byte `json:"key"`
		}
	}
	if err := json.Unmarshal(data, &stored); err != nil {
		return nil, fmt.Errorf("reading the ACME storage %s: %w", path, err)
	}
	var out []ACMECertificate
	for _, resolver := range slices.Sorted(maps.Keys(stored)) {
		if stored[resolver] == nil {
			continue
		}
		for _, c := range stored[resolver].Certificates {
			out = append(out, ACMECertificate{Resolver: resolver, Main: c.Domain.Main, SANs: c.Domain.SANs, Certificate: c.Certificate, Key: c.Key})
		}
	}
	return out, nil
}

// DefaultCertificate keeps the certificate Traefik presents to a client whose
// SNI matches none it has: the wildcard certificate of the gateway domain
// once the DNS resolver holds it, a self-signed one (EC P-256, made once and
// kept) before that and on a node without a domain. Without one Traefik
// makes a new RSA-2048 certificate at every reload of its configuration.
//
// The files live in the state folder: default-self.crt and .key, and
// default-<hash>.crt and .key for the wildcard, named after their content
// so that the dynamic configuration changes, and Traefik reloads, when the
// certificate does. Keys are 0600.
type DefaultCertificate struct {
	dir     string
	storage string
	domain  string

	mu sync.Mutex
	// stamp is the storage file's when it was last read.
	stamp Stamp
	// current is what Current last returned.
	current *TLSCertificate
}

// defaultSelfName names the files of the self-signed default certificate.
const defaultSelfName = "default-self"

// defaultCertValidity is how long the self-signed certificate is valid: no
// client trusts it, so it need not expire; a client that looks sees a date.
const defaultCertValidity = 10 * 365 * 24 * time.Hour

// NewDefaultCertificate keeps the default certificate of a gateway whose
// state folder is stateDir and whose domain is domain ("" for none).
func NewDefaultCertificate(stateDir, domain string) *DefaultCertificate {
	return &DefaultCertificate{dir: stateDir, storage: filepath.Join(stateDir, acmeDNSStorageName), domain: domain}
}

// Current returns the default certificate to configure, making its files
// when needed. It reads the ACME storage only when the file changed.
func (d *DefaultCertificate) Current() (*TLSCertificate, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, exists, err := statStamp(d.storage)
	if err != nil {
		return nil, err
	}
	if d.current != nil && st == d.stamp {
		return d.current, nil
	}
	var cert *TLSCertificate
	if d.domain != "" && exists {
		certPEM, keyPEM, err := d.wildcard()
		if err != nil {
			return nil, err
		}
		if certPEM != nil {
			sum := sha256.Sum256(append(slices.Clone(certPEM), keyPEM...))
			if cert, err = d.write("default-"+hex.EncodeToString(sum[:6]), certPEM, keyPEM); err != nil {
				return nil, err
			}
		}
	}
	if cert == nil {
		if cert, err = d.selfSigned(); err != nil {
			return nil, err
		}
	}
	d.prune(cert)
	d.current, d.stamp = cert, st
	return cert, nil
}

// IsWildcard tells whether cert is the wildcard certificate of the domain,
// not the self-signed one.
func (d *DefaultCertificate) IsWildcard(cert *TLSCertificate) bool {
	return cert != nil && !strings.HasPrefix(filepath.Base(cert.CertFile), defaultSelfName+".")
}

// wildcard returns the PEM certificate and key of the domain's wildcard from
// the ACME storage, if it holds one valid now.
func (d *DefaultCertificate) wildcard() (certPEM, keyPEM []byte, err error) {
	certs, err := ReadACMEStorage(d.storage)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range certs {
		if c.Resolver != ResolverDNS || !strings.EqualFold(c.Main, d.domain) || !slices.ContainsFunc(c.SANs, func(s string) bool { return strings.EqualFold(s, "*."+d.domain) }) {
			continue
		}
		pair, err := tls.X509KeyPair(c.Certificate, c.Key)
		if err != nil {
			continue
		}
		if now := time.Now(); now.Before(pair.Leaf.NotBefore) || now.After(pair.Leaf.NotAfter) {
			continue
		}
		return c.Certificate, c.Key, nil
	}
	return nil, nil, nil
}

// selfSigned returns the self-signed default certificate, making it when its
// files are missing or do not load.
func (d *DefaultCertificate) selfSigned() (*TLSCertificate, error) {
	cert := d.files(defaultSelfName)
	if _, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile); err == nil {
		return cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("making the default certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("making the default certificate: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "gateway default certificate"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(defaultCertValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("making the default certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("making the default certificate: %w", err)
	}
	return d.write(defaultSelfName,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}

// files returns the paths of the default certificate named name.
func (d *DefaultCertificate) files(name string) *TLSCertificate {
	return &TLSCertificate{CertFile: filepath.Join(d.dir, name+".crt"), KeyFile: filepath.Join(d.dir, name+".key")}
}

// write writes the files of the default certificate named name, the key
// first, so that a certificate file never names a key that is not there.
func (d *DefaultCertificate) write(name string, certPEM, keyPEM []byte) (*TLSCertificate, error) {
	cert := d.files(name)
	if err := atomicfile.Write(cert.KeyFile, keyPEM, 0o600); err != nil && !errors.Is(err, atomicfile.ErrNotDurable) {
		return nil, fmt.Errorf("writing the default certificate: %w", err)
	}
	if err := atomicfile.Write(cert.CertFile, certPEM, 0o644); err != nil && !errors.Is(err, atomicfile.ErrNotDurable) {
		return nil, fmt.Errorf("writing the default certificate: %w", err)
	}
	return cert, nil
}

// prune removes the files of earlier wildcard certificates. The self-signed
// one stays: it is the fallback if the storage loses the wildcard.
func (d *DefaultCertificate) prune(keep *TLSCertificate) {
	names, _ := filepath.Glob(filepath.Join(d.dir, "default-*"))
	for _, p := range names {
		base := filepath.Base(p)
		if strings.HasPrefix(base, defaultSelfName+".") || p == keep.CertFile || p == keep.KeyFile {
			continue
		}
		if strings.HasSuffix(base, ".crt") || strings.HasSuffix(base, ".key") {
			os.Remove(p)
		}
	}
}

// statStamp returns the stamp of the file at path, and whether it exists.
func statStamp(path string) (Stamp, bool, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Stamp{}, false, nil
	case err != nil:
		return Stamp{}, false, fmt.Errorf("looking at %s: %w", path, err)
	}
	return stampOf(fi), true, nil
}

// Observer tells how Traefik serves the routes: the state of its routers
// and services from its API, and the certificates of its ACME storage.
type Observer struct {
	API API
	// StateDir is the folder of the storage files (StateDirName under the
	// module's root).
	StateDir string
}

// Snapshot returns the state of every router and service of the file
// provider.
func (o Observer) Snapshot(ctx context.Context) (Snapshot, error) { return o.API.Snapshot(ctx) }

// Certificates returns the certificates of the ACME storage: the wildcard
// of the gateway domain.
func (o Observer) Certificates() ([]ACMECertificate, error) {
	var out []ACMECertificate
	for _, name := range []string{acmeDNSStorageName} {
		certs, err := ReadACMEStorage(filepath.Join(o.StateDir, name))
		if err != nil {
			return out, err
		}
		out = append(out, certs...)
	}
	return out, nil
}
