package gateway

import (
	"net/netip"
	"slices"

	"github.com/threefoldtech/gateway/pkg/meter"
)

// Meter counts the bytes each route carries between Traefik and its
// backends, by backend address. The module tells it which addresses belong
// to which workload; it attributes each byte to exactly one workload.
// meter.Meter implements it; a total's Tx is the requests towards the
// backends, its Rx their responses.
type Meter interface {
	// Reset makes the metered workloads exactly routes, with their
	// backend addresses: the module calls it once, at start.
	Reset(routes map[string][]netip.AddrPort) error
	// Assign sets the backend addresses of one workload.
	Assign(wlID string, addrs []netip.AddrPort) error
	// AssignAll sets the backend addresses of several workloads with one
	// change of the counters: all of them, or on error none.
	AssignAll(routes map[string][]netip.AddrPort) error
	// Remove ends the metering of a workload.
	Remove(wlID string) error
	// Totals returns the totals of every metered workload.
	Totals() (map[string]meter.Totals, error)
	// Report returns the totals of every metered workload, and of each
	// one removed since the last Report, for the last time.
	Report() (map[string]meter.Totals, error)
}

var _ Meter = (*meter.Meter)(nil)

// meterAddrs returns the addresses where Traefik reaches the backends of r
// (targets, through a private network as Traefik connects to them): each
// backend, and for a passthrough route also port 80 of each backend
// address, where HTTP-01 challenges for its name go.
func (r route) meterAddrs() []netip.AddrPort {
	addrs := r.targets()
	for i, a := range addrs {
		addrs[i] = r.reach(a)
	}
	slices.SortFunc(addrs, netip.AddrPort.Compare)
	return slices.Compact(addrs)
}
