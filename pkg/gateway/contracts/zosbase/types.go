package zosbase

// Name is zosbase's gridtypes.Name: a name of the tenant's deployment, here
// the name of one of its networks.
type Name string

// Backend is one backend as zos gives it: "http://ip[:port]", or "ip:port"
// with TLSPassthrough.
type Backend string

// GatewayBase is what both kinds of proxy have.
type GatewayBase struct {
	// TLSPassthrough passes TLS through to the backends.
	TLSPassthrough bool
	// Backends are where traffic goes.
	Backends []Backend
	// Network, when set, names the tenant's network the backends are
	// private IPs of. On the wire: nil when unset, a string when set.
	Network *Name
}

// GatewayNameProxy is a proxy at Name.<gateway domain>. GatewayBase's fields
// are inlined on the wire.
type GatewayNameProxy struct {
	GatewayBase
	// Name is the label under the gateway domain: zos accepts
	// ^[a-zA-Z0-9-_]+$.
	Name string
}

// GatewayFQDNProxy is a proxy at FQDN, a domain the tenant owns.
type GatewayFQDNProxy struct {
	GatewayBase
	// FQDN is the domain.
	FQDN string
}
