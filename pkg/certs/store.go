package certs

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-acme/lego/v4/certcrypto"
	"github.com/go-acme/lego/v4/registration"

	"github.com/threefoldtech/gateway/internal/atomicfile"
	"github.com/threefoldtech/gateway/internal/dnsname"
	"github.com/threefoldtech/gateway/internal/quote"
	statestore "github.com/threefoldtech/gateway/pkg/store"
)

// Names inside Config.Dir.
const (
	accountDir       = "account"
	accountKeyFile   = "key.pem"
	registrationFile = "registration.json"
	certificatesDir  = "certificates"
	stateFileName    = "state.json"
	// StoreBucket and StoreKey place the schedules of orders in the
	// gateway's store.
	StoreBucket = "certs"
	StoreKey    = "state"
	certExt     = ".crt"
	keyExt      = ".key"
)

// checkDomain refuses a domain that is not a plain lowercase host name: it
// becomes a file name.
func checkDomain(domain string) error {
	norm, err := dnsname.Normalize(domain)
	if err != nil {
		return fmt.Errorf("domain %s: %w", quote.Short(domain), err)
	}
	if norm != domain {
		return fmt.Errorf("domain %s: must be lowercase, without a trailing dot", quote.Short(domain))
	}
	return nil
}

// domainState is what a Manager keeps about a domain, in state.json.
type domainState struct {
	// Wanted: the domain has a route and its certificate is served.
	Wanted bool `json:"wanted,omitempty"`
	// Owner is the tenant whose route wants the domain: orders are shared
	// fairly between owners.
	Owner string `json:"owner,omitempty"`
	// Retired is when the domain stopped being wanted while it had a
	// certificate; zero while wanted.
	Retired     time.Time `json:"retired,omitzero"`
	Failures    int       `json:"failures,omitempty"`
	LastError   string    `json:"lastError,omitempty"`
	LastAttempt time.Time `json:"lastAttempt,omitzero"`
	NextAttempt time.Time `json:"nextAttempt,omitzero"`
}

// stateFile is the content of state.json.
type stateFile struct {
	Domains map[string]*domainState `json:"domains"`
	// Budget is the account's allowance of orders; nil: a full one.
	Budget *budget `json:"budget,omitempty"`
}

// stored is a certificate on disk.
type stored struct {
	Certificate
	notBefore time.Time
	// marks are the certificate's and the key's files as last checked.
	marks [2]fileMark
}

// fileMark is what a file looked like, to notice that it changed without
// reading it.
type fileMark struct {
	size    int64
	modTime time.Time
}

// markOf returns the mark of path; the zero mark when it cannot be read.
func markOf(path string) fileMark {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return fileMark{}
	}
	return fileMark{size: fi.Size(), modTime: fi.ModTime()}
}

// changedOnDisk tells whether the files of c are no longer as marked.
func (c *stored) changedOnDisk() bool {
	return markOf(c.CertFile) != c.marks[0] || markOf(c.KeyFile) != c.marks[1]
}

// reread checks the files of c again and marks them; it returns why they
// no longer hold c's certificate, nil when they do.
func (c *stored) reread() error {
	certPEM, err1 := os.ReadFile(c.CertFile)
	keyPEM, err2 := os.ReadFile(c.KeyFile)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	leaf, err := parsePair(c.Domain, certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", c.CertFile, err)
	}
	if !leaf.NotAfter.Equal(c.NotAfter) {
		return fmt.Errorf("%s: replaced by another certificate, expiring %s", c.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	c.marks = [2]fileMark{markOf(c.CertFile), markOf(c.KeyFile)}
	return nil
}

// renewAt is when less than a third of the certificate's lifetime is left.
func (c *stored) renewAt() time.Time {
	return c.NotAfter.Add(-c.NotAfter.Sub(c.notBefore) / 3)
}

// store is a Manager's folder.
type store struct {
	// state keeps the schedules of orders in the gateway's store; unset,
	// they are kept in state.json.
	state statestore.Blob
	dir   string
}

// openStore creates the folders of dir that are missing, with mode 0700,
// and removes the temporary files an interrupted write left behind.
func openStore(dir string, db *statestore.Store) (*store, error) {
	s := &store{dir: dir}
	if db != nil {
		s.state = statestore.Blob{Store: db, Bucket: StoreBucket, Key: StoreKey, Legacy: filepath.Join(dir, stateFileName)}
	}
	for _, d := range []string{dir, filepath.Join(dir, accountDir), filepath.Join(dir, certificatesDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating certificate folder: %w", err)
		}
		tmps, _ := filepath.Glob(filepath.Join(d, ".*"+atomicfile.TempSuffix))
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	return s, nil
}

func (s *store) statePath() string { return filepath.Join(s.dir, stateFileName) }

// certPaths returns the certificate and key files of domain.
func (s *store) certPaths(domain string) (certFile, keyFile string) {
	base := filepath.Join(s.dir, certificatesDir, dnsname.FileStem(domain))
	return base + certExt, base + keyExt
}

// loadState reads the state, from the gateway's store or from state.json
// without one; none is an empty state.
func (s *store) loadState() (*stateFile, error) {
	var data []byte
	var err error
	if s.state.Store != nil {
		data, err = s.state.Load()
	} else if data, err = os.ReadFile(s.statePath()); errors.Is(err, fs.ErrNotExist) {
		data, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading certificate state: %w", err)
	}
	if data == nil {
		return &stateFile{Domains: map[string]*domainState{}}, nil
	}
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadState, err)
	}
	domains := make(map[string]*domainState, len(f.Domains))
	for d, st := range f.Domains {
		if st != nil && checkDomain(d) == nil {
			domains[d] = st
		}
	}
	return &stateFile{Domains: domains, Budget: f.Budget}, nil
}

// errBadState says the state does not read back.
var errBadState = errors.New("the schedule of certificate orders does not read back")

// setAsideState keeps a state that does not read back beside where it was,
// with its bytes, and leaves none.
func (s *store) setAsideState() error {
	aside := s.statePath() + ".bad-" + time.Now().UTC().Format("20060102T150405Z")
	if s.state.Store != nil {
		data, err := s.state.Load()
		if err != nil {
			return err
		}
		if err := atomicfile.Write(aside, data, 0o600); err != nil {
			return fmt.Errorf("setting the certificate state aside: %w", err)
		}
		return s.state.Save(nil)
	}
	if err := os.Rename(s.statePath(), aside); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("setting the certificate state aside: %w", err)
	}
	return nil
}

// saveState replaces the state, in the gateway's store or in state.json
// without one.
func (s *store) saveState(f stateFile) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding certificate state: %w", err)
	}
	if s.state.Store != nil {
		return s.state.Save(data)
	}
	return atomicfile.Write(s.statePath(), data, 0o600)
}

// parsePair checks that certPEM (a full chain, leaf first) and keyPEM
// belong together and that the leaf names domain, and returns the leaf.
func parsePair(domain string, certPEM, keyPEM []byte) (*x509.Certificate, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, err
		}
	}
	if err := leaf.VerifyHostname(domain); err != nil {
		return nil, err
	}
	return leaf, nil
}

// newStored describes the files of domain holding leaf, as they are now.
func (s *store) newStored(domain string, leaf *x509.Certificate) *stored {
	certFile, keyFile := s.certPaths(domain)
	return &stored{
		Certificate: Certificate{
			Domain:   domain,
			CertFile: certFile,
			KeyFile:  keyFile,
			NotAfter: leaf.NotAfter,
			Issuer:   leaf.Issuer.String(),
		},
		notBefore: leaf.NotBefore,
		marks:     [2]fileMark{markOf(certFile), markOf(keyFile)},
	}
}

// writeCertificate replaces the files of domain with a pair parsePair
// accepted: the key first, so that a crash in between leaves a pair that
// does not match, which loadCertificates drops.
func (s *store) writeCertificate(domain string, leaf *x509.Certificate, certPEM, keyPEM []byte) (*stored, error) {
	certFile, keyFile := s.certPaths(domain)
	if err := atomicfile.Write(keyFile, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("storing the certificate of %s: %w", domain, err)
	}
	if err := atomicfile.Write(certFile, certPEM, 0o600); err != nil {
		return nil, fmt.Errorf("storing the certificate of %s: %w", domain, err)
	}
	return s.newStored(domain, leaf), nil
}

// removeCertificate deletes the files of domain.
func (s *store) removeCertificate(domain string) error {
	certFile, keyFile := s.certPaths(domain)
	if err := atomicfile.Remove(certFile); err != nil {
		return err
	}
	return atomicfile.Remove(keyFile)
}

// loadCertificates reads every certificate in the folder. A pair that does
// not parse, match or name its domain is skipped and reported.
func (s *store) loadCertificates() (map[string]*stored, []error) {
	certs := map[string]*stored{}
	var errs []error
	files, err := filepath.Glob(filepath.Join(s.dir, certificatesDir, "*"+certExt))
	if err != nil {
		return certs, []error{err}
	}
	for _, f := range files {
		domain := strings.TrimSuffix(filepath.Base(f), certExt)
		if strings.Contains(domain, "~") {
			// A long domain's file: its name is in the certificate.
			domain = domainOf(f)
		}
		if err := checkDomain(domain); err != nil {
			errs = append(errs, fmt.Errorf("loading certificate %s: %w", f, err))
			continue
		}
		certFile, keyFile := s.certPaths(domain)
		certPEM, err := os.ReadFile(certFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("loading certificate: %w", err))
			continue
		}
		keyPEM, err := os.ReadFile(keyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("loading certificate: %w", err))
			continue
		}
		leaf, err := parsePair(domain, certPEM, keyPEM)
		if err != nil {
			errs = append(errs, fmt.Errorf("loading certificate %s: %w", certFile, err))
			continue
		}
		certs[domain] = s.newStored(domain, leaf)
	}
	return certs, errs
}

// domainOf returns the first DNS name of the certificate in file, "" when
// it has none.
func domainOf(file string) string {
	data, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return ""
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil || len(leaf.DNSNames) == 0 {
		return ""
	}
	return leaf.DNSNames[0]
}

// accountKey reads the ACME account's key, or makes and stores one (EC
// P-256) when there is none.
func (s *store) accountKey() (crypto.PrivateKey, error) {
	path := filepath.Join(s.dir, accountDir, accountKeyFile)
	data, err := os.ReadFile(path)
	if err == nil {
		key, err := certcrypto.ParsePEMPrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("reading ACME account key %s: %w", path, err)
		}
		return key, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading ACME account key: %w", err)
	}
	key, err := certcrypto.GeneratePrivateKey(certcrypto.EC256)
	if err != nil {
		return nil, fmt.Errorf("making ACME account key: %w", err)
	}
	if err := atomicfile.Write(path, certcrypto.PEMEncode(key), 0o600); err != nil {
		return nil, fmt.Errorf("storing ACME account key: %w", err)
	}
	return key, nil
}

// registration reads the ACME account's registration; nil when there is
// none yet.
func (s *store) registration() (*registration.Resource, error) {
	path := filepath.Join(s.dir, accountDir, registrationFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading ACME registration: %w", err)
	}
	var reg registration.Resource
	if err := json.Unmarshal(data, &reg); err != nil {
		return nil, fmt.Errorf("reading ACME registration %s: %w", path, err)
	}
	return &reg, nil
}

// saveRegistration stores the ACME account's registration; nil removes it.
func (s *store) saveRegistration(reg *registration.Resource) error {
	path := filepath.Join(s.dir, accountDir, registrationFile)
	if reg == nil {
		return atomicfile.Remove(path)
	}
	data, err := json.MarshalIndent(reg, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding ACME registration: %w", err)
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("storing ACME registration: %w", err)
	}
	return nil
}

// writeObtained checks and stores a pair the ACME server issued for domain.
func (s *store) writeObtained(domain string, certPEM, keyPEM []byte) (*stored, error) {
	leaf, err := parsePair(domain, certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("checking the certificate issued for %s: %w", domain, err)
	}
	return s.writeCertificate(domain, leaf, certPEM, keyPEM)
}
