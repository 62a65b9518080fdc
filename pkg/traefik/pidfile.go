package traefik

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/threefoldtech/gateway/internal/atomicfile"
)

// pidRecord is the content of the pidfile: the Traefik a Process runs and the
// hash of the configuration it runs with, so that the next gateway adopts it
// only when nothing changed.
type pidRecord struct {
	PID  int    `json:"pid"`
	Hash string `json:"hash"`
}

// readPidFile reads a pidfile; a missing one gives an error wrapping
// fs.ErrNotExist.
func readPidFile(path string) (pidRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return pidRecord{}, fmt.Errorf("reading traefik pidfile: %w", err)
	}
	var rec pidRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return pidRecord{}, fmt.Errorf("reading traefik pidfile %q: %w", path, err)
	}
	if rec.PID <= 0 {
		return pidRecord{}, fmt.Errorf("reading traefik pidfile %q: pid %d", path, rec.PID)
	}
	return rec, nil
}

// writePidFile replaces the pidfile crash-consistently: a torn one would make
// the next gateway replace the running Traefik instead of adopting it.
func writePidFile(path string, rec pidRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("writing traefik pidfile: %w", err)
	}
	return atomicfile.Write(path, append(b, '\n'), 0o644)
}
