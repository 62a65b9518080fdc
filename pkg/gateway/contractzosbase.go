package gateway

import (
	"context"

	"github.com/threefoldtech/gateway/pkg/gateway/contracts/zosbase"
)

// ContractZosbase is the bus contract of zos today (contracts/zosbase): each
// Set takes the workload's configuration as zos's grid types hold it. It only
// turns them into the module's requests.
type ContractZosbase struct {
	// M is the module the calls go to.
	M *Module
}

var _ zosbase.Gateway = ContractZosbase{}

// contractZosbase names the contract in the records of the routes it sets.
const contractZosbase = "zosbase"

// SetNamedProxy publishes config's backends at config.Name.<gateway domain>
// and returns that name.
func (c ContractZosbase) SetNamedProxy(wlID string, config zosbase.GatewayNameProxy) (string, error) {
	return c.M.SetRoute(context.Background(), zosbaseRequest(wlID, KindName, config.GatewayBase, func(r *RouteRequest) { r.Name = config.Name }))
}

// SetFQDNProxy publishes config's backends at config.FQDN.
func (c ContractZosbase) SetFQDNProxy(wlID string, config zosbase.GatewayFQDNProxy) error {
	_, err := c.M.SetRoute(context.Background(), zosbaseRequest(wlID, KindFQDN, config.GatewayBase, func(r *RouteRequest) { r.FQDN = config.FQDN }))
	return err
}

// DeleteNamedProxy removes the route of wlID, whatever its kind.
func (c ContractZosbase) DeleteNamedProxy(wlID string) error {
	return c.M.DeleteRoute(context.Background(), wlID)
}

// Metrics returns the bytes served per workload under zosbase's names.
func (c ContractZosbase) Metrics() (zosbase.GatewayMetrics, error) {
	m, err := c.M.Metrics(context.Background())
	return zosbase.GatewayMetrics{Request: m.Request, Response: m.Response}, err
}

// zosbaseRequest is the request of a config's common part; domain sets its
// domain.
func zosbaseRequest(wlID string, kind Kind, base zosbase.GatewayBase, domain func(*RouteRequest)) RouteRequest {
	req := RouteRequest{WorkloadID: wlID, Kind: kind, TLSPassthrough: base.TLSPassthrough, Contract: contractZosbase}
	for _, b := range base.Backends {
		req.Backends = append(req.Backends, string(b))
	}
	if base.Network != nil {
		req.Network = string(*base.Network)
	}
	domain(&req)
	return req
}
