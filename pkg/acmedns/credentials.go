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

	"github.com/threefoldtech/gateway/internal/atomicfile"
)

// credentials is the content of a credentials file.
type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
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
	user, pass, err = newCredentials()
	if err != nil {
		return "", "", fmt.Errorf("creating credentials for %s: %w", path, err)
	}
	b, err := json.Marshal(credentials{Username: user, Password: pass})
	if err != nil {
		return "", "", fmt.Errorf("encoding credentials for %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", "", fmt.Errorf("creating credentials file %s: %w", path, err)
	}
	created, err := atomicfile.Create(path, append(b, '\n'), 0o600)
	if err != nil {
		return "", "", fmt.Errorf("creating credentials file %s: %w", path, err)
	}
	if !created {
		// Someone else created it first: theirs are the ones in use.
		return loadCredentials(path)
	}
	return user, pass, nil
}

// newCredentials returns a fresh random username and password: "acme-" and
// 12 hex digits, and 32 random bytes in base64url (no colon, safe in an
// environment variable). Only LoadOrCreateCredentials calls it: credentials
// that are not kept lock out a Traefik started with them once the gateway
// restarts.
func newCredentials() (user, pass string, err error) {
	b := make([]byte, 6+32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("reading random bytes: %w", err)
	}
	return "acme-" + hex.EncodeToString(b[:6]), base64.RawURLEncoding.EncodeToString(b[6:]), nil
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
