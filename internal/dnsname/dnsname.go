// Package dnsname checks host names as RFC 1123 defines them, the rule every
// name the gateway serves, routes or answers for follows, with one wider
// case: the label of a name proxy, as zos accepts it (NormalizeNameLabel).
package dnsname

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Limits of RFC 1035 and RFC 1123.
const (
	// MaxLength bounds a name in presentation form, without the trailing dot.
	MaxLength = 253
	// MaxLabelLength bounds one label.
	MaxLabelLength = 63
)

// Normalize checks a host name (at most MaxLength bytes, labels of 1 to
// MaxLabelLength letters, digits and inner hyphens, at least two labels, a
// top-level label that is not all digits; one trailing dot allowed) and
// returns it lower-cased without the trailing dot. Only ASCII is accepted,
// so no Unicode case folding can turn a look-alike into an allowed letter.
func Normalize(name string) (string, error) {
	n := strings.TrimSuffix(name, ".")
	switch {
	case n == "":
		return "", fmt.Errorf("must not be empty")
	case len(n) > MaxLength:
		return "", fmt.Errorf("name is too long (at most %d bytes)", MaxLength)
	}
	labels := strings.Split(n, ".")
	if len(labels) < 2 {
		return "", fmt.Errorf("needs at least two labels")
	}
	for i, l := range labels {
		norm, err := NormalizeLabel(l)
		if err != nil {
			return "", fmt.Errorf("label %d: %w", i+1, err)
		}
		labels[i] = norm
	}
	if allDigits(labels[len(labels)-1]) {
		return "", fmt.Errorf("top-level label is numeric: an IP address is not a domain")
	}
	return strings.Join(labels, "."), nil
}

// NormalizeLabel checks one label and returns it lower-cased.
func NormalizeLabel(l string) (string, error) {
	switch {
	case l == "":
		return "", fmt.Errorf("empty label")
	case len(l) > MaxLabelLength:
		return "", fmt.Errorf("label longer than %d bytes", MaxLabelLength)
	case l[0] == '-' || l[len(l)-1] == '-':
		return "", fmt.Errorf("label must not start or end with a hyphen")
	}
	b := []byte(l)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
		default:
			return "", fmt.Errorf("label holds %s (only letters, digits and hyphens)", QuoteByte(c))
		}
	}
	return string(b), nil
}

// NormalizeNameLabel checks the label of a name proxy (<label>.<gateway
// domain>) and returns it lower-cased. zos accepts such a label as
// ^[a-zA-Z0-9-_]+$, wider than a host name's label (NormalizeLabel): an
// underscore, or a hyphen at either end, is outside RFC 1123 but DNS carries
// it and clients look it up (docs/API.md). Only the length is narrower than
// zos's: at most MaxLabelLength bytes, the most DNS can carry.
func NormalizeNameLabel(l string) (string, error) {
	switch {
	case l == "":
		return "", fmt.Errorf("empty label")
	case len(l) > MaxLabelLength:
		return "", fmt.Errorf("label longer than %d bytes", MaxLabelLength)
	}
	b := []byte(l)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return "", fmt.Errorf("label holds %s (only letters, digits, '-' and '_')", QuoteByte(c))
		}
	}
	return string(b), nil
}

// IsUnder tells whether name is domain or a name below it; both normalized.
func IsUnder(name, domain string) bool {
	return name == domain || strings.HasSuffix(name, "."+domain)
}

// QuoteByte shows one byte of a refused name: quoted when printable, in hex
// otherwise.
func QuoteByte(c byte) string {
	if c < 0x20 || c >= 0x7f {
		return fmt.Sprintf("0x%02x", c)
	}
	return strconv.Quote(string(rune(c)))
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// maxFileStem bounds the part of a file name FileStem gives: with a suffix
// of up to 50 bytes (a hash, an extension) it fits the 255 bytes a file
// name may have on every Linux file system.
const maxFileStem = 200

// FileStem returns the stem of a file named after name: name itself when
// it is short enough, else its first bytes, '~' and a hash of the whole
// ('~' is in no host name), so that every valid name has a file and two
// names never share one.
func FileStem(name string) string {
	if len(name) <= maxFileStem {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:maxFileStem-33] + "~" + hex.EncodeToString(sum[:16])
}
