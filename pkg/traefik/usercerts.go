package traefik

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/threefoldtech/gateway/internal/atomicfile"
	"github.com/threefoldtech/gateway/internal/dnsname"
)

// CertificatesDirName is the folder, under the state folder, of the
// certificates Traefik serves beside its default one (CertificateFiles).
const CertificatesDirName = "certificates"

// PEMPair is a certificate chain and its private key, PEM encoded.
type PEMPair struct {
	// Name says whose it is, for errors and file names: a domain.
	Name      string
	Cert, Key []byte
}

// CertificateFiles keeps the certificates Traefik serves from the reserved
// file as files named after their content: a file Traefik reads never
// changes under it, whatever reload reads it, so a certificate and its key
// always match.
type CertificateFiles struct {
	// Dir holds the files, <name>-<hash>.crt and .key; created 0700.
	Dir string
}

// Install writes the files of pairs that are not there yet, checking that
// each certificate matches its key. It returns the files of the pairs in
// their order, and the error of each pair it left out.
func (c CertificateFiles) Install(pairs []PEMPair) ([]*TLSCertificate, error) {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", c.Dir, err)
	}
	var out []*TLSCertificate
	var errs []error
	for _, p := range pairs {
		if p.Name == "" || strings.ContainsAny(p.Name, `/\`) || strings.HasPrefix(p.Name, ".") {
			errs = append(errs, fmt.Errorf("certificate %q: not a name for a file", p.Name))
			continue
		}
		if _, err := tls.X509KeyPair(p.Cert, p.Key); err != nil {
			errs = append(errs, fmt.Errorf("certificate of %s: %w", p.Name, err))
			continue
		}
		sum := sha256.New()
		sum.Write(p.Cert)
		sum.Write(p.Key)
		base := filepath.Join(c.Dir, dnsname.FileStem(p.Name)+"-"+hex.EncodeToString(sum.Sum(nil)[:8]))
		files := &TLSCertificate{CertFile: base + ".crt", KeyFile: base + ".key"}
		if err := writeUnlessWhole(files.KeyFile, p.Key, 0o600); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := writeUnlessWhole(files.CertFile, p.Cert, 0o644); err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, files)
	}
	return out, errors.Join(errs...)
}

// Prune removes the files of every certificate but those of keep: once the
// reserved file no longer names them, Traefik's next reload no longer reads
// them.
func (c CertificateFiles) Prune(keep []*TLSCertificate) error {
	kept := make(map[string]bool, 2*len(keep))
	for _, k := range keep {
		kept[k.CertFile], kept[k.KeyFile] = true, true
	}
	entries, err := os.ReadDir(c.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing %s: %w", c.Dir, err)
	}
	var errs []error
	for _, e := range entries {
		path := filepath.Join(c.Dir, e.Name())
		if !kept[path] && (strings.HasSuffix(e.Name(), ".crt") || strings.HasSuffix(e.Name(), ".key")) {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("removing %s: %w", path, err))
			}
		}
	}
	return errors.Join(errs...)
}

// writeUnlessWhole writes data to path unless a file of its size is there:
// its name says what it holds. One deleted or cut short by hand is written
// again.
func writeUnlessWhole(path string, data []byte, perm os.FileMode) error {
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Size() == int64(len(data)) {
		return nil
	}
	if err := atomicfile.Write(path, data, perm); err != nil && !errors.Is(err, atomicfile.ErrNotDurable) {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// LegacyHTTPStorage returns the certificates of the storage of ResolverHTTP,
// which obtained the certificates of user domains before the gateway did, so
// that the gateway takes them over; none when it is gone.
func LegacyHTTPStorage(stateDir string) ([]ACMECertificate, error) {
	return ReadACMEStorage(filepath.Join(stateDir, acmeHTTPStorageName))
}

// RetireLegacyHTTPStorage renames the storage of ResolverHTTP once its
// certificates are taken over: Traefik no longer reads it, and the gateway
// imports it only once. The file is kept, as <name>.imported.
func RetireLegacyHTTPStorage(stateDir string) error {
	path := filepath.Join(stateDir, acmeHTTPStorageName)
	err := os.Rename(path, path+".imported")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
