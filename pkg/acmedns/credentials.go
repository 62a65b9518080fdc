package acmedns

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// credentials is the content of a credentials file.
type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// NewCredentials returns a fresh random username and password for the
// httpreq API: "acme-" and 12 hex digits, and 32 random bytes in base64url
// (no colon, safe in an environment variable).
func NewCredentials() (user, pass string, err error) {
	b := make([]byte, 6+32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("reading random bytes: %w", err)
	}
	return "acme-" + hex.EncodeToString(b[:6]), base64.RawURLEncoding.EncodeToString(b[6:]), nil
}

// LoadOrCreateCredentials returns the httpreq credentials kept in the file
// at path, creating the file with new credentials (mode 0600, atomically)
// when it does not exist. A gateway that restarts so keeps serving a
// Traefik that was started with the credentials. A file that exists but
// cannot be read or parsed is an error: it is never overwritten.
func LoadOrCreateCredentials(path string) (user, pass string, err error) {
	user, pass, err = loadCredentials(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return user, pass, err
	}
	user, pass, err = NewCredentials()
	if err != nil {
		return "", "", fmt.Errorf("creating credentials for %s: %w", path, err)
	}
	created, err := createExclusive(path, credentials{Username: user, Password: pass})
	if err != nil {
		return "", "", fmt.Errorf("creating credentials file %s: %w", path, err)
	}
	if !created {
		// Someone else created it first: theirs are the ones in use.
		return loadCredentials(path)
	}
	return user, pass, nil
}

// loadCredentials reads and checks a credentials file, and narrows its mode
// to 0600 if it was wider.
func loadCredentials(path string) (user, pass string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("reading credentials file: %w", err)
	}
	var c credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return "", "", fmt.Errorf("parsing credentials file %s: %w", path, err)
	}
	if c.Username == "" || c.Password == "" || strings.Contains(c.Username, ":") {
		return "", "", fmt.Errorf("parsing credentials file %s: username or password empty, or username with a colon", path)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return "", "", fmt.Errorf("narrowing mode of credentials file %s: %w", path, err)
		}
	}
	return c.Username, c.Password, nil
}

// createExclusive writes c to path unless path exists: it writes a
// temporary file in the same folder, syncs it and links it to path, so
// that path never holds a partial file and an existing one is never
// replaced. created is false when path existed already.
func createExclusive(path string, c credentials) (created bool, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("creating folder: %w", err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return false, fmt.Errorf("encoding credentials: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return false, fmt.Errorf("creating temporary file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(append(b, '\n'))
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return false, fmt.Errorf("writing temporary file: %w", werr)
	}
	// A hard link, unlike a rename, fails when the target exists, so two
	// gateways starting at once cannot end up with different credentials.
	// Where hard links are not supported, fall back to a rename.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		if _, serr := os.Lstat(path); serr == nil {
			return false, nil
		}
		if rerr := os.Rename(tmp.Name(), path); rerr != nil {
			return false, fmt.Errorf("moving temporary file in place: %w (after link: %v)", rerr, err)
		}
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return true, nil
}
