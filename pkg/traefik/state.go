package traefik

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/threefoldtech/gateway/internal/atomicfile"
	"github.com/threefoldtech/gateway/internal/quote"
)

// StateDirName is the folder under the module's root that holds Traefik's
// state: the files named below.
const StateDirName = "traefik"

// Names of the files in Traefik's state folder.
const (
	// StaticFileName is Traefik's static configuration, written by
	// WriteState; Traefik runs with --configFile pointing at it.
	StaticFileName = "traefik.yaml"
	// EnvFileName holds Traefik's extra environment as shell "export" lines,
	// written by WriteState for a Traefik supervised outside the gateway
	// (zinit/traefik.yaml sources it). Mode 0600: it holds the password of
	// the httpreq API.
	EnvFileName = "traefik.env"
	// PIDFileName records the Traefik a Process runs, so that the next
	// gateway adopts it.
	PIDFileName = "traefik.pid"
	// LogFileName receives Traefik's stdout and stderr when a Process runs
	// it.
	LogFileName = "traefik.log"

	// acmeHTTPStorageName and acmeDNSStorageName are where Traefik keeps
	// the ACME account and certificates of ResolverHTTP and ResolverDNS.
	acmeHTTPStorageName = "acme-http.json"
	acmeDNSStorageName  = "acme-dns.json"
)

// WriteState writes the static configuration and the environment file into
// Traefik's state folder stateDir, creating it (0755) when needed, and returns
// the path of the static configuration file. Each file is replaced
// crash-consistently. env holds "KEY=value" entries, KEY a shell variable
// name. Calls must not overlap: each removes the temporary files an
// interrupted one left behind.
func WriteState(stateDir string, static []byte, env []string) (configFile string, err error) {
	envFile, err := renderEnvFile(env)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return "", fmt.Errorf("creating traefik state folder: %w", err)
	}
	for _, name := range []string{StaticFileName, EnvFileName} {
		if err := removeStaleTemps(stateDir, name); err != nil {
			return "", err
		}
	}
	// The environment first: an outside supervisor starts Traefik as soon
	// as the static configuration exists, and sources the environment then.
	if err := atomicfile.Write(filepath.Join(stateDir, EnvFileName), envFile, 0o600); err != nil {
		return "", err
	}
	configFile = filepath.Join(stateDir, StaticFileName)
	if err := atomicfile.Write(configFile, static, 0o644); err != nil {
		return "", err
	}
	return configFile, nil
}

// renderEnvFile renders env as lines a shell sources: export KEY='value'.
// Errors never show a value: one is a password.
func renderEnvFile(env []string) ([]byte, error) {
	var b []byte
	for i, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			return nil, fmt.Errorf("traefik environment entry %d: not KEY=value", i)
		case !shellName(k):
			return nil, fmt.Errorf("traefik environment entry %d: key %s is not a shell variable name", i, quote.Short(k))
		case strings.ContainsRune(v, 0):
			return nil, fmt.Errorf("traefik environment entry %s: the value holds a NUL byte", quote.Short(k))
		}
		// Inside single quotes only the quote itself is special.
		b = fmt.Appendf(b, "export %s='%s'\n", k, strings.ReplaceAll(v, "'", `'\''`))
	}
	return b, nil
}

// shellName tells whether s is a POSIX shell variable name: anything else
// after "export" would be run as shell code.
func shellName(s string) bool {
	for i, c := range s {
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

// removeStaleTemps removes the temporary files of an interrupted
// atomicfile.Write of dir/name.
func removeStaleTemps(dir, name string) error {
	stale, err := filepath.Glob(filepath.Join(dir, "."+name+".*"+atomicfile.TempSuffix))
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	for _, f := range stale {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing stale %s: %w", f, err)
		}
	}
	return nil
}
