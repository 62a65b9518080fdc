package meter

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
)

// direction is the way a counter counts: to the backend (tx) or from it (rx).
type direction int

const (
	tx direction = iota
	rx
)

var directions = [...]direction{tx, rx}

func (d direction) String() string {
	if d == tx {
		return "tx"
	}
	return "rx"
}

// nonceLen is the length of the hexadecimal nonce in object names.
const nonceLen = 16

// objName names the counter of a in direction d, and the chain that counts
// into it: "tx/10.0.0.1:80/0123456789abcdef", "rx/[fd00::1]:443/…". The
// kernel takes any byte but NUL in a name; nft quotes these.
func objName(d direction, a netip.AddrPort, nonce string) string {
	return d.String() + "/" + a.String() + "/" + nonce
}

// parseName undoes objName; ok is false for the names of other objects.
func parseName(name string) (d direction, a netip.AddrPort, nonce string, ok bool) {
	dir, rest, ok := strings.Cut(name, "/")
	if !ok {
		return 0, netip.AddrPort{}, "", false
	}
	switch dir {
	case "tx":
		d = tx
	case "rx":
		d = rx
	default:
		return 0, netip.AddrPort{}, "", false
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return 0, netip.AddrPort{}, "", false
	}
	nonce = rest[i+1:]
	if len(nonce) != nonceLen || strings.Trim(nonce, "0123456789abcdef") != "" {
		return 0, netip.AddrPort{}, "", false
	}
	a, err := netip.ParseAddrPort(rest[:i])
	if err != nil || a != normalize(a) || a.String() != rest[:i] { // objName's form only
		return 0, netip.AddrPort{}, "", false
	}
	return d, a, nonce, true
}

// newNonce makes the nonce of a new pair of counters.
func newNonce() (string, error) {
	var b [nonceLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making a nonce: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
