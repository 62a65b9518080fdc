package gateway

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"
)

// LocalNets returns the networks the kernel delivers to the node itself:
// the local routes of its local routing table, IPv4 and IPv6. Beside the
// addresses of the interfaces, they hold those a node takes without an
// interface address (`ip route add local 203.0.113.0/24 dev lo`, AnyIP):
// a backend there makes Traefik connect to itself all the same.
func LocalNets() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, family := range []int{syscall.AF_INET, syscall.AF_INET6} {
		data, err := syscall.NetlinkRIB(syscall.RTM_GETROUTE, family)
		if err != nil {
			return nil, fmt.Errorf("reading the local routing table: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(data)
		if err != nil {
			return nil, fmt.Errorf("reading the local routing table: %w", err)
		}
		for _, m := range msgs {
			if p, ok := localRoute(m); ok {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// localRoute returns the destination of m when it is a route of type local
// in the local table.
func localRoute(m syscall.NetlinkMessage) (netip.Prefix, bool) {
	if m.Header.Type != syscall.RTM_NEWROUTE || len(m.Data) < syscall.SizeofRtMsg {
		return netip.Prefix{}, false
	}
	// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope,
	// type, flags.
	dstLen, table, typ := int(m.Data[1]), uint32(m.Data[4]), m.Data[7]
	if typ != syscall.RTN_LOCAL {
		return netip.Prefix{}, false
	}
	attrs, err := syscall.ParseNetlinkRouteAttr(&m)
	if err != nil {
		return netip.Prefix{}, false
	}
	var dst netip.Addr
	for _, a := range attrs {
		switch a.Attr.Type {
		case syscall.RTA_DST:
			dst, _ = netip.AddrFromSlice(a.Value)
		case syscall.RTA_TABLE:
			if len(a.Value) == 4 {
				table = binary.NativeEndian.Uint32(a.Value)
			}
		}
	}
	if table != syscall.RT_TABLE_LOCAL || !dst.IsValid() {
		return netip.Prefix{}, false
	}
	p, err := dst.Unmap().Prefix(dstLen)
	if err != nil {
		return netip.Prefix{}, false
	}
	return p, true
}
