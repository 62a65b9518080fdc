package meter

import (
	"net/netip"
	"testing"
)

func TestObjNameRoundTrip(t *testing.T) {
	for _, s := range []string{"10.0.0.1:80", "[fd00::1]:443", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"} {
		a := netip.MustParseAddrPort(s)
		for _, d := range directions {
			name := objName(d, a, "0123456789abcdef")
			if len(name) > 67 {
				t.Errorf("name %q is longer than the 67 bytes documented", name)
			}
			gd, ga, nonce, ok := parseName(name)
			if !ok || gd != d || ga != a || nonce != "0123456789abcdef" {
				t.Errorf("parseName(%q) = %v, %v, %q, %v", name, gd, ga, nonce, ok)
			}
		}
	}
}

func FuzzParseName(f *testing.F) {
	for _, s := range []string{
		"tx/10.0.0.1:80/0123456789abcdef", "rx/[fd00::1]:443/0123456789abcdef", "tx", "tx/", "tx//",
		"tx/[::ffff:10.0.0.1]:80/0123456789abcdef", "rx/[fe80::1%eth0]:80/0123456789abcdef",
		"tx/10.0.0.1:80/0123456789ABCDEF", "xx/10.0.0.1:80/0123456789abcdef", "tx/10.0.0.1:80/0123",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		d, a, nonce, ok := parseName(name)
		if ok && objName(d, a, nonce) != name {
			t.Errorf("parseName(%q) gave %v %v %q, which name %q", name, d, a, nonce, objName(d, a, nonce))
		}
	})
}
