// Package zosbase is the gateway's bus contract as zos calls it today
// (github.com/threefoldtech/zosbase, pkg/gateway.go): each Set takes the
// workload's configuration, a struct of zos's grid types
// (pkg/gridtypes/zos/gw.go, gw_name.go, gw_fqdn.go), copied here with their
// exact Go field names and nothing else.
package zosbase

//go:generate go run github.com/threefoldtech/zbus/zbusc -module gateway -version 0.0.1 -name manager -package stubs github.com/threefoldtech/gateway/pkg/gateway/contracts/zosbase+Gateway stubs/gateway_stub.go

// GatewayMetrics is zosbase's type: bytes per workload ID.
type GatewayMetrics struct {
	// Request is the bytes received from clients.
	Request map[string]float64
	// Response is the bytes sent back to clients.
	Response map[string]float64
}

// Gateway is the contract as zosbase calls it on manager@0.0.1.
type Gateway interface {
	// SetNamedProxy publishes config's backends at config.Name.<gateway
	// domain> and returns that name.
	SetNamedProxy(wlID string, config GatewayNameProxy) (string, error)
	// SetFQDNProxy publishes config's backends at config.FQDN.
	SetFQDNProxy(wlID string, config GatewayFQDNProxy) error
	// DeleteNamedProxy removes the route of wlID.
	DeleteNamedProxy(wlID string) error
	// Metrics returns the bytes served per workload.
	Metrics() (GatewayMetrics, error)
}
