//go:build linux

package meter

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// generation returns the generation of the nftables ruleset of the
// Kernel's namespace. The kernel bumps it by one at every commit of a batch
// that changes something, whoever sends the batch: while it stays the same,
// nobody changed the ruleset. google/nftables v0.3.0 does not ask for it
// (NFT_MSG_GETGEN), hence a socket of its own.
func (k *Kernel) generation() (uint32, error) {
	if k.closed {
		return 0, errClosed
	}
	if k.genConn == nil {
		c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: k.netns})
		if err != nil {
			return 0, fmt.Errorf("connecting to nftables: %w", err)
		}
		k.genConn = c
	}
	// Without NLM_F_ACK: the answer is one NFT_MSG_NEWGEN message, or an
	// error.
	msgs, err := k.genConn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, // struct nfgenmsg
	})
	if err != nil {
		return 0, fmt.Errorf("reading the ruleset generation: %w", err)
	}
	if len(msgs) != 1 || len(msgs[0].Data) < 4 {
		return 0, fmt.Errorf("reading the ruleset generation: %d answers, want 1", len(msgs))
	}
	ad, err := netlink.NewAttributeDecoder(msgs[0].Data[4:])
	if err != nil {
		return 0, fmt.Errorf("reading the ruleset generation: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			return ad.Uint32(), nil
		}
	}
	if err := ad.Err(); err != nil {
		return 0, fmt.Errorf("reading the ruleset generation: %w", err)
	}
	return 0, errors.New("reading the ruleset generation: the answer has no NFTA_GEN_ID")
}
