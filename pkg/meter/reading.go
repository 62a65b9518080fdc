package meter

import "net/netip"

// Header overhead of one counted packet beyond its TCP payload, in bytes: the
// IP header (20 bytes for IPv4 without options, 40 for IPv6 without extension
// headers; the gateway's own connections carry neither) and the TCP header
// with the largest options (60 bytes).
const (
	MaxHeaderOverhead4 = 20 + 60
	MaxHeaderOverhead6 = 40 + 60
)

// The headers of a typical packet of an established Linux connection: IP,
// TCP, and the 12 bytes of the timestamp option Linux sends by default.
const (
	TypicalHeader4 = 20 + 20 + 12
	TypicalHeader6 = 40 + 20 + 12
)

// Reading is the value of the two counters of one backend address.
type Reading struct {
	// Tx is the number of bytes sent to the address, headers included.
	Tx uint64
	// Rx is the number of bytes received from the address, headers included.
	Rx uint64
	// TxPackets and RxPackets count the packets of Tx and Rx. Only the
	// bytes are billed; the packets tell how much of them is headers
	// (TypicalHeader4 or TypicalHeader6 a packet).
	TxPackets, RxPackets uint64
	// Instance names the lifetime of the counters: counters deleted and
	// created again, or created again after a reboot, have another Instance,
	// and start again from zero.
	Instance string
}

// normalize gives an address the one form under which the kernel counts it:
// an IPv4 address mapped into IPv6 travels as IPv4, and a zone is not part of
// what a packet carries.
func normalize(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap().WithZone(""), a.Port())
}
