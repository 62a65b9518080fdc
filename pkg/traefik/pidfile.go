package traefik

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/threefoldtech/gateway/internal/atomicfile"
)

// pidRecord is the content of the pidfile: the Traefik a Process runs and the
// hash of the configuration it runs with, so that the next gateway adopts it
// only when nothing changed, and the predecessors still draining, so that
// it neither adopts nor stops them.
type pidRecord struct {
	PID      int           `json:"pid"`
	Hash     string        `json:"hash"`
	Draining []drainRecord `json:"draining,omitempty"`
}

// drainRecord names a Traefik handed over and told to stop, which keeps its
// connections until they end or Until passes (see ProcessConfig.HandoverDrain).
type drainRecord struct {
	PID int `json:"pid"`
	// Start is the process's start time, in clock ticks since boot
	// (/proc/<pid>/stat): a pid reused by another Traefik of ours is not
	// taken for it.
	Start uint64 `json:"start"`
	// Until is when the gateway kills it if it still runs.
	Until time.Time `json:"until"`
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
