package gateway

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/threefoldtech/gateway/pkg/traefik"
)

// safe reports whether s holds only bytes the gateway ever writes into a
// rule, a file name or a YAML value.
func safe(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && !strings.ContainsRune(extra, rune(s[i])) {
			return false
		}
	}
	return true
}

func FuzzValidateWorkloadID(f *testing.F) {
	for _, s := range append(injections, "abc", "a.b-c_d", strings.Repeat("x", 129)) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if ValidateWorkloadID(id) != nil {
			return
		}
		if !safe(id, "-_.") || strings.Contains(id, "..") || strings.HasPrefix(id, ".") || len(id) > MaxWorkloadIDLength {
			t.Fatalf("accepted unsafe wlID %q", id)
		}
	})
}

func FuzzNormalizePrefix(f *testing.F) {
	for _, s := range append(injections, "app", "App-1", "my_app", "-a_", "\u212a_") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, prefix string) {
		got, err := NormalizePrefix(prefix)
		if err != nil {
			return
		}
		if !safe(got, "-_") || got != strings.ToLower(got) || len(got) > 63 || got == "" {
			t.Fatalf("NormalizePrefix(%q) = %q: unsafe", prefix, got)
		}
		if again, err := NormalizePrefix(got); err != nil || again != got {
			t.Fatalf("not idempotent: %q -> %q (%v)", got, again, err)
		}
	})
}

func FuzzNormalizeFQDN(f *testing.F) {
	for _, s := range injections {
		f.Add(s + ".example.com")
	}
	f.Add("www.Example.com.")
	f.Add("a.b")
	f.Fuzz(func(t *testing.T, fqdn string) {
		got, err := NormalizeFQDN(fqdn)
		if err != nil {
			return
		}
		if !safe(got, "-.") || len(got) > 253 || !strings.Contains(got, ".") {
			t.Fatalf("NormalizeFQDN(%q) = %q: unsafe", fqdn, got)
		}
		// Whatever is accepted must survive the trip through a file.
		r := route{id: "w", fqdn: got, kind: KindFQDN, backends: []Backend{{Addr: netip.MustParseAddrPort("10.0.0.1:80"), PortGiven: true}}}
		data, err := traefik.Marshal(r.render())
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := traefik.Unmarshal(data)
		if err != nil {
			t.Fatal(err)
		}
		back, err := parseRoute("w", cfg, "")
		if err != nil || back.fqdn != got {
			t.Fatalf("round trip of %q: %+v, %v", got, back, err)
		}
	})
}

func FuzzParseBackend(f *testing.F) {
	for _, s := range []string{"http://10.0.0.1", "http://[::1]:80", "10.0.0.1:443", "https://[2a02::1]:8443",
		"http://10.0.0.1`", "http://[fe80::1%eth0]", "http://u@1.2.3.4", "http://1.2.3.4:99999"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, passthrough bool) {
		b, err := ParseBackend("backends[0]", s, passthrough)
		if err != nil {
			return
		}
		canon := b.String(passthrough)
		if !safe(canon, ".:/[]") {
			t.Fatalf("ParseBackend(%q) = %q: unsafe", s, canon)
		}
		again, err := ParseBackend("backends[0]", canon, passthrough)
		if err != nil || again != b {
			t.Fatalf("canonical form %q does not parse back: %+v %v", canon, again, err)
		}
	})
}
