package zosnet

import "net"

// The types below are copies of those of zos's network daemon
// (github.com/threefoldtech/zosbase, pkg/network.go and pkg/gridtypes), as
// far as the gateway reads them. zbus encodes them with msgpack v4: a struct
// is a map keyed by its Go field names (json tags are ignored, embedded
// structs are inlined, MarshalText is not used), so the field names are the
// wire format and must stay zos's.

// IPNet is zos's gridtypes.IPNet: a net.IPNet embedded, so on the wire a map
// {IP, Mask} of two byte strings; both are nil when it is not set.
type IPNet struct{ net.IPNet }

// PublicConfig is zos's pkg.PublicConfig: the configuration of the node's
// public interface, the one the farmer set, as the network daemon reads it
// from the node. Domain is the farmer's domain of the node (a gateway
// domain), empty when none is set.
type PublicConfig struct {
	// Type is zos's IfaceType, "macvlan" or "vlan"; unused here.
	Type string
	// IPv4 and IPv6 are the public interface's addresses with their
	// networks' masks; unset when the node has none of that family.
	IPv4 IPNet
	IPv6 IPNet
	// GW4 and GW6 are the default gateways; unused here.
	GW4 net.IP
	GW6 net.IP
	// Domain is the node's domain name, like gent01.devnet.grid.tf.
	Domain string
}
