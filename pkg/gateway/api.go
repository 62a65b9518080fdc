// Package gateway is the control plane of a node's web gateway: a zbus object
// that validates proxy requests, keeps an index of the routes it holds, and
// turns each route into a Traefik dynamic-configuration file.
package gateway

//go:generate go run github.com/threefoldtech/zbus/zbusc -module gateway -version 0.0.1 -name gateway -package stubs github.com/threefoldtech/gateway/pkg/gateway+Gateway stubs/gateway_stub.go
//go:generate go run github.com/threefoldtech/zbus/zbusc -module gateway -version 0.0.1 -name manager -package zos github.com/threefoldtech/gateway/pkg/gateway+Gateway zos/gateway_stub.go

import "time"

// Bus names of the object, as other node modules address it.
const (
	// ModuleName is the zbus module the gateway serves.
	ModuleName = "gateway"
	// ObjectName is the documented name of the one object the module
	// serves.
	ObjectName = "gateway"
	// ZosObjectName is the name zos's own gateway daemon gave the object
	// and that zos's generated stub calls: the module serves the same
	// object under it too.
	ZosObjectName = "manager"
	// ObjectVersion is the version of the object's contract.
	ObjectVersion = "0.0.1"
)

// Gateway is the contract the module serves on zbus. Other node modules
// depend on these exact names and signatures.
type Gateway interface {
	// SetNamedProxy publishes backends at prefix.<gateway domain> and returns
	// that name.
	SetNamedProxy(wlID string, prefix string, backends []string, TLSPassthrough bool) (string, error)
	// SetFQDNProxy publishes backends at fqdn, a domain the caller owns that
	// resolves to the node's public IPs.
	SetFQDNProxy(wlID string, fqdn string, backends []string, TLSPassthrough bool) error
	// DeleteNamedProxy removes the route of wlID, whatever its kind. An
	// unknown wlID is not an error.
	DeleteNamedProxy(wlID string) error
	// Metrics returns the bytes served per workload.
	Metrics() (GatewayMetrics, error)
	// List returns every route the module holds, sorted by workload ID.
	List() ([]Proxy, error)
}

// GatewayMetrics holds the bytes Traefik counted per workload.
//
// zbus encodes it with msgpack by field name, and a caller decodes only the
// names its own copy of the type has. zos's callers of the first contract
// read Sent and Received, later ones Request and Response: the module fills
// both pairs, so that every caller reads the real numbers.
type GatewayMetrics struct {
	// Request is the bytes received from clients, keyed by workload ID.
	Request map[string]float64
	// Response is the bytes sent back to clients, keyed by workload ID.
	Response map[string]float64
	// Sent is Response under its earlier name: bytes sent to clients.
	Sent map[string]float64
	// Received is Request under its earlier name: bytes received from
	// clients.
	Received map[string]float64
}

// Kind tells how a route's domain was given.
type Kind string

const (
	// KindName is a route at prefix.<gateway domain>.
	KindName Kind = "name"
	// KindFQDN is a route at a domain the caller owns.
	KindFQDN Kind = "fqdn"
)

// Proxy is one route as the module holds it.
type Proxy struct {
	// WorkloadID is the caller's workload ID; it names the route.
	WorkloadID string
	// FQDN is the domain the route answers for, lower-cased, no trailing dot.
	FQDN string
	// Kind is KindName or KindFQDN.
	Kind Kind
	// Backends are the addresses traffic is balanced over, as given.
	Backends []string
	// TLSPassthrough is true when the backends terminate TLS themselves.
	TLSPassthrough bool
	// Status is how Traefik serves the route, as last read (every
	// StatusInterval); nil until first read, or when Traefik cannot be
	// asked.
	Status *RouteStatus
}

// RouteStatus is what a tenant wants to know of a deployed route.
type RouteStatus struct {
	// Live is set when Traefik serves the route: its router (the TCP one
	// for passthrough) is enabled.
	Live bool
	// Problems are what Traefik reports wrong with the route's router or
	// service, if anything.
	Problems []string
	// Certificate is the certificate that serves the route's domain: the
	// wildcard of the gateway domain for a name proxy, the domain's own,
	// which the gateway obtains, for an FQDN proxy; nil when there is none
	// yet, and for passthrough (the backends present theirs).
	Certificate *CertificateStatus
	// ACME is where the gateway stands in getting the certificate of an
	// FQDN proxy's domain, while it has none or after an attempt failed;
	// nil otherwise, and for other routes.
	ACME *ACMEStatus
	// Backends maps each backend of a passthrough route with several, as
	// IP:port, to "UP" or "DOWN" as Traefik's TCP health check last saw
	// it; empty for other routes, whose backends Traefik does not report
	// on (HTTP routes have a passive health check, which tells nobody).
	Backends map[string]string
	// CheckedAt is when Traefik was asked.
	CheckedAt time.Time
}

// ACMEStatus is where the gateway stands in getting a domain's certificate.
// After a failed attempt it waits before the next, longer after each
// failure (docs/OPERATIONS.md, "Certificates").
type ACMEStatus struct {
	// Failures counts the attempts that failed in a row.
	Failures int
	// LastError says why the last attempt failed.
	LastError string
	// LastAttempt is when the last attempt started; zero if none did.
	LastAttempt time.Time
	// NextAttempt is when the next one starts; zero when one is under way
	// or due now.
	NextAttempt time.Time
}

// CertificateStatus describes a certificate.
type CertificateStatus struct {
	// Issuer is the common name of the certificate's issuer.
	Issuer string
	// Names are the names it is valid for.
	Names []string
	// NotAfter is when it expires. It is renewed when a third of its
	// lifetime is left: 30 days before, for Let's Encrypt's 90.
	NotAfter time.Time
}
