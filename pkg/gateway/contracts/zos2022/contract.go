// Package zos2022 is the gateway's bus contract as zos
// (github.com/threefoldtech/zos, pkg/gateway.go) defined it between 2021 and
// zosbase: SetNamedProxy gained the caller's twin, SetFQDNProxy kept its four
// arguments, Metrics still answered Sent and Received.
package zos2022

//go:generate go run github.com/threefoldtech/zbus/zbusc -module gateway -version 0.0.1 -name manager -package stubs github.com/threefoldtech/gateway/pkg/gateway/contracts/zos2022+Gateway stubs/gateway_stub.go

// GatewayMetrics is zos's type of the time: bytes per workload ID.
type GatewayMetrics struct {
	// Sent is the bytes sent back to clients.
	Sent map[string]float64
	// Received is the bytes received from clients.
	Received map[string]float64
}

// Gateway is the contract as zos called it on manager@0.0.1.
type Gateway interface {
	// SetNamedProxy publishes backends at prefix.<gateway domain> for the
	// workload wlID of twin twinID, and returns that name.
	SetNamedProxy(wlID string, prefix string, backends []string, TLSPassthrough bool, twinID uint32) (string, error)
	// SetFQDNProxy publishes backends at fqdn.
	SetFQDNProxy(wlID string, fqdn string, backends []string, TLSPassthrough bool) error
	// DeleteNamedProxy removes the route of wlID.
	DeleteNamedProxy(wlID string) error
	// Metrics returns the bytes served per workload.
	Metrics() (GatewayMetrics, error)
}
