package harness

import (
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/threefoldtech/gateway/pkg/meter"
)

// MeterTable returns the name of an nftables table of the test's own for
// the byte counters, and removes that table when the test ends: a gateway
// leaves its table in place when it stops, so that counting goes on.
// Counters live in the host's network namespace; each test's backends have
// ports of their own, so no two tests count the same address.
func MeterTable(t testing.TB) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "gwtest_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		k, err := meter.OpenKernel(meter.KernelConfig{Table: name})
		if err != nil {
			t.Errorf("removing nftables table %s: %v", name, err)
			return
		}
		if err := k.Remove(); err != nil {
			t.Errorf("removing nftables table %s: %v", name, err)
		}
	})
	return name
}
