// Package meter counts the bytes between Traefik and the backends of the
// workloads it routes to, and turns them into per-workload totals that never
// go backwards.
//
// Kernel keeps the counting in the kernel, in an nftables table of its own, so
// that it goes on while Traefik or the gateway is down: two counters (tx,
// towards the backend, and rx, from it) per backend address and port. Ledger
// turns the readings of those counters into totals per workload and keeps
// them, with what it needs to go on after a crash, in a file.
//
// # What a byte is
//
// nftables counts whole IP packets: the IP header, the TCP header and the
// payload. A counted packet carries at most MaxHeaderOverhead4 (IPv4) or
// MaxHeaderOverhead6 (IPv6) bytes of headers besides its payload, so n
// packets that carry P bytes of payload count between P and P + n×overhead
// bytes. The SYN, FIN and pure ACK packets count too: the rx counter of a
// backend that receives a large upload grows by the ACKs it sends back.
// Retransmitted payload counts again. Packets are counted as the stack
// handles them, before segmentation (GSO) on the way out and after
// aggregation (GRO) on the way in, so a 64 KiB aggregate counts one set of
// headers where the wire carried several. Every local connection to or from
// a counted address and port counts, not only Traefik's.
//
// # Driving it
//
// The daemon holds one Kernel and one Ledger. On every change of routes (and
// once at start, with every route):
//
//	final, err := kernel.Sync(union of the backend addresses of all workloads)
//	ledger.Observe(final)         // the last bytes of dropped addresses
//	ledger.Observe(kernel.Read()) // the bytes so far, to the owners so far
//	ledger.Assign(...), ledger.Remove(...)
//	ledger.Save()
//
// Every second or two, ledger.Observe(kernel.Read()) and ledger.Save(); as
// often as it bills, ledger.Report(). The order gives every byte to the
// workload that owned its address when it was counted, to within one Read:
// the final readings of an address count for the workload that drops it,
// and a workload that takes an address over pays from the change on.
package meter
