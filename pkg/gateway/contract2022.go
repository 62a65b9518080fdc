package gateway

import (
	"context"
	"strconv"
	"strings"

	"github.com/threefoldtech/gateway/pkg/gateway/contracts/zos2022"
)

// Contract2022 is the bus contract of zos between 2021 and zosbase
// (contracts/zos2022): SetNamedProxy names the caller's twin as a fifth
// argument; SetFQDNProxy is the 2021 one. It only turns its arguments into
// the module's requests.
type Contract2022 struct {
	// M is the module the calls go to.
	M *Module
}

var _ zos2022.Gateway = Contract2022{}

// contract2022 names the contract in the records of the routes it sets.
const contract2022 = "2022"

// SetNamedProxy publishes backends at prefix.<gateway domain> and returns
// that name. twinID must be the twin of wlID (<twin>-<deployment>-<name>):
// zos checked on the chain that the twin owned the name; the gateway, which
// has no chain, checks that the call and the workload agree.
func (c Contract2022) SetNamedProxy(wlID string, prefix string, backends []string, TLSPassthrough bool, twinID uint32) (string, error) {
	twin, err := WorkloadTwin(wlID)
	if err != nil {
		return "", err
	}
	if twin != twinID {
		return "", fieldError("twinID", strconv.FormatUint(uint64(twinID), 10), "is not the twin %d of wlID %q", twin, wlID)
	}
	return c.M.SetRoute(context.Background(), RouteRequest{
		WorkloadID: wlID, Kind: KindName, Name: prefix, Backends: backends, TLSPassthrough: TLSPassthrough, Contract: contract2022,
	})
}

// SetFQDNProxy publishes backends at fqdn.
func (c Contract2022) SetFQDNProxy(wlID string, fqdn string, backends []string, TLSPassthrough bool) error {
	_, err := c.M.SetRoute(context.Background(), RouteRequest{
		WorkloadID: wlID, Kind: KindFQDN, FQDN: fqdn, Backends: backends, TLSPassthrough: TLSPassthrough, Contract: contract2022,
	})
	return err
}

// DeleteNamedProxy removes the route of wlID, whatever its kind.
func (c Contract2022) DeleteNamedProxy(wlID string) error {
	return c.M.DeleteRoute(context.Background(), wlID)
}

// Metrics returns the bytes served per workload under the names of 2022.
func (c Contract2022) Metrics() (zos2022.GatewayMetrics, error) {
	m, err := c.M.Metrics(context.Background())
	return zos2022.GatewayMetrics{Sent: m.Sent, Received: m.Received}, err
}

// WorkloadTwin returns the twin of a zos workload ID, its first part:
// zos writes a workload ID <twin>-<deployment>-<name>.
func WorkloadTwin(wlID string) (uint32, error) {
	first, _, ok := strings.Cut(wlID, "-")
	twin, err := strconv.ParseUint(first, 10, 32)
	if !ok || err != nil {
		return 0, fieldError("wlID", wlID, "a zos workload ID is <twin>-<deployment>-<name>, and this one names no twin")
	}
	return uint32(twin), nil
}
