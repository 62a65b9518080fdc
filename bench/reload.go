package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"
)

// defCertName is the dynamic file, in the per-file floor's folder, that
// gives its Traefik a default certificate for the diagnostic samples.
const defCertName = "bench-default-certificate"

// defaultCert is a self-signed certificate for Traefik's default TLS store.
// Without one Traefik generates a self-signed RSA-2048 certificate on every
// reload (pkg/tls/tlsmanager.go, getDefaultCertificate); this one is RSA-2048
// too, so the probes' handshakes cost the same.
type defaultCert struct {
	certFile, keyFile string
}

// newDefaultCert writes the certificate and its key in dir.
func newDefaultCert(dir string) (defaultCert, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return defaultCert{}, fmt.Errorf("generating the default certificate's key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "bench default certificate"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return defaultCert{}, fmt.Errorf("creating the default certificate: %w", err)
	}
	c := defaultCert{certFile: filepath.Join(dir, "default-cert.pem"), keyFile: filepath.Join(dir, "default-key.pem")}
	if err := os.WriteFile(c.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return defaultCert{}, fmt.Errorf("writing the default certificate: %w", err)
	}
	keyDER := x509.MarshalPKCS1PrivateKey(key)
	if err := os.WriteFile(c.keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return defaultCert{}, fmt.Errorf("writing the default certificate's key: %w", err)
	}
	return c, nil
}

// tlsFile is the part of Traefik's dynamic configuration that sets the
// default certificate.
type tlsFile struct {
	TLS struct {
		Stores map[string]tlsStore `yaml:"stores"`
	} `yaml:"tls"`
}

type tlsStore struct {
	DefaultCertificate certFiles `yaml:"defaultCertificate"`
}

type certFiles struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
}

// render returns the dynamic file that makes c Traefik's default
// certificate.
func (c defaultCert) render() ([]byte, error) {
	var f tlsFile
	f.TLS.Stores = map[string]tlsStore{"default": {DefaultCertificate: certFiles{CertFile: c.certFile, KeyFile: c.keyFile}}}
	data, err := yaml.Marshal(&f)
	if err != nil {
		return nil, fmt.Errorf("rendering the default certificate file: %w", err)
	}
	return data, nil
}

// measureKeygen times n RSA-2048 key generations in this process: what
// Traefik does on every reload when no default certificate is configured
// (pkg/tls/generate, DefaultCertificate), with the same Go.
func measureKeygen(ctx context.Context, n int) ([]time.Duration, error) {
	var ds []time.Duration
	for range n {
		if err := ctx.Err(); err != nil {
			return ds, err
		}
		start := time.Now()
		if _, err := rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return ds, fmt.Errorf("generating an RSA key: %w", err)
		}
		ds = append(ds, time.Since(start))
	}
	return ds, nil
}
