package gateway

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// injections are values that would break out of a Traefik rule, a YAML
// value or a path if they were ever let through.
var injections = []string{
	"a`) || Host(`evil.com",
	"a\") || Host(\"evil.com",
	"a'",
	"a b",
	"a\nb",
	"a\r\nrule: Host(`x`)",
	"a||b",
	"a#b",
	"../etc/passwd",
	"a/b",
	"a\\b",
	"a\x00b",
	"ａ",        // fullwidth a
	"\u212a",   // Kelvin sign, lower-cases to k
	"xn--ls8h", // punycode is fine as a label, kept here as a control
	"a\u200bb", // zero-width space
	"\u202ea",  // right-to-left override
	"{{.}}",
	"${HOME}",
	"*",
	"a:b",
	"a;b",
	"a@file",
}

func TestValidateWorkloadID(t *testing.T) {
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"plain", "123-456-abc", true},
		{"dots and underscores", "w.1_2-x", true},
		{"max length", strings.Repeat("a", 128), true},
		{"empty", "", false},
		// A longer ID would make file and router names unbounded.
		{"too long", strings.Repeat("a", 129), false},
		// Traversal: the ID names a file under proxy/.
		{"dot dot", "a..b", false},
		{"parent", "..", false},
		// Hidden files are skipped by Traefik and by recovery.
		{"hidden", ".a", false},
		{"slash", "a/b", false},
		// '@' separates provider names in Traefik.
		{"at", "a@file", false},
		{"space", "a b", false},
		{"backtick", "a`b", false},
		{"unicode", "äb", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateWorkloadID(tt.id)
			checkField(t, err, tt.ok, "wlID")
		})
	}
	for _, v := range injections {
		if v == "xn--ls8h" {
			continue
		}
		if err := ValidateWorkloadID(v); err == nil && strings.ContainsAny(v, "/\\`\"' \n#|") {
			t.Errorf("ValidateWorkloadID(%q) accepted an injection", v)
		}
	}
}

func TestNormalizePrefix(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
		want   string
	}{
		{"plain", "app", "app"},
		{"lower-cased", "MyApp", "myapp"},
		{"digits and inner hyphen", "a-1", "a-1"},
		{"max label", strings.Repeat("a", 63), strings.Repeat("a", 63)},
		{"empty", "", ""},
		{"too long", strings.Repeat("a", 64), ""},
		// zos accepts a name as ^[a-zA-Z0-9-_]+$: so does the gateway,
		// hyphens at either end and underscores included.
		{"leading hyphen", "-a", "-a"},
		{"trailing hyphen", "a-", "a-"},
		{"underscore", "My_App", "my_app"},
		{"only an underscore", "_", "_"},
		{"only hyphens", "--", "--"},
		// A dot would make a name below another user's name.
		{"two labels", "a.b", ""},
		{"space", "a b", ""},
		{"plus", "a+b", ""},
		{"wildcard", "*", ""},
		// Unicode case folding turns the Kelvin sign into 'k'.
		{"kelvin sign", "\u212a", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizePrefix(tt.prefix)
			checkField(t, err, tt.want != "", "prefix")
			if got != tt.want {
				t.Errorf("NormalizePrefix(%q) = %q, want %q", tt.prefix, got, tt.want)
			}
		})
	}
	for _, v := range injections {
		if got, err := NormalizePrefix(v); err == nil && v != "xn--ls8h" {
			t.Errorf("NormalizePrefix(%q) = %q, want an error", v, got)
		}
	}
}

func TestNormalizeFQDN(t *testing.T) {
	tests := []struct {
		name string
		fqdn string
		want string
	}{
		{"plain", "example.com", "example.com"},
		{"trailing dot stripped", "www.example.com.", "www.example.com"},
		{"lower-cased", "WWW.Example.COM", "www.example.com"},
		{"punycode", "xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"max length", strings.Repeat(strings.Repeat("a", 62)+".", 4)[:249] + ".com", strings.Repeat(strings.Repeat("a", 62)+".", 4)[:249] + ".com"},
		{"too long", strings.Repeat("a.", 127) + "com", ""},
		{"one label", "localhost", ""},
		{"empty", "", ""},
		{"only dot", ".", ""},
		{"two trailing dots", "example.com..", ""},
		{"empty label", "a..com", ""},
		{"leading dot", ".example.com", ""},
		{"label too long", strings.Repeat("a", 64) + ".com", ""},
		{"wildcard", "*.example.com", ""},
		// An IP address is not a domain a certificate can be issued for.
		{"ipv4", "127.0.0.1", ""},
		{"underscore", "_acme.example.com", ""},
		{"hyphen edge", "-a.example.com", ""},
		{"unicode", "bücher.example", ""},
		{"port", "example.com:80", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeFQDN(tt.fqdn)
			checkField(t, err, tt.want != "", "fqdn")
			if got != tt.want {
				t.Errorf("NormalizeFQDN(%q) = %q, want %q", tt.fqdn, got, tt.want)
			}
		})
	}
	for _, v := range injections {
		if got, err := NormalizeFQDN(v + ".example.com"); err == nil && v != "xn--ls8h" {
			t.Errorf("NormalizeFQDN(%q) = %q, want an error", v, got)
		}
	}
}

func TestParseBackend(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		passthrough bool
		want        string // canonical form; empty means refused
	}{
		{"http ipv4", "http://10.0.0.1", false, "http://10.0.0.1"},
		{"http ipv4 port", "http://10.0.0.1:8080", false, "http://10.0.0.1:8080"},
		{"http ipv6", "http://[2a02::1]", false, "http://[2a02::1]"},
		{"http ipv6 port", "http://[2a02::1]:8080", false, "http://[2a02::1]:8080"},
		{"passthrough", "10.0.0.1:443", true, "10.0.0.1:443"},
		{"passthrough https", "https://10.0.0.1:8443", true, "10.0.0.1:8443"},
		{"passthrough ipv6", "[2a02::1]:443", true, "[2a02::1]:443"},
		// Host names could be re-pointed after validation.
		{"hostname", "http://example.com", false, ""},
		{"hostname passthrough", "example.com:443", true, ""},
		// zos's contract: https:// backends without passthrough, Traefik
		// speaks TLS to them.
		{"https", "https://10.0.0.1", false, "https://10.0.0.1"},
		{"https port", "https://10.0.0.1:8443", false, "https://10.0.0.1:8443"},
		{"https ipv6", "https://[2a02::1]", false, "https://[2a02::1]"},
		{"https path", "https://10.0.0.1/x", false, ""},
		{"other scheme", "ftp://10.0.0.1", false, ""},
		{"no scheme", "10.0.0.1:80", false, ""},
		{"passthrough without port", "10.0.0.1", true, ""},
		{"passthrough http scheme", "http://10.0.0.1:80", true, ""},
		{"path", "http://10.0.0.1/x", false, ""},
		{"trailing slash", "http://10.0.0.1/", false, ""},
		{"query", "http://10.0.0.1?a", false, ""},
		{"userinfo", "http://u@10.0.0.1", false, ""},
		{"port zero", "http://10.0.0.1:0", false, ""},
		{"port too big", "http://10.0.0.1:65536", false, ""},
		{"port leading zero", "http://10.0.0.1:080", false, ""},
		{"port sign", "http://10.0.0.1:+80", false, ""},
		{"empty port", "http://10.0.0.1:", false, ""},
		{"ipv6 without brackets", "http://2a02::1", false, ""},
		{"ipv4 in brackets", "http://[10.0.0.1]", false, ""},
		{"zone", "http://[fe80::1%25eth0]", false, ""},
		{"octal ipv4", "http://010.0.0.1", false, ""},
		{"backtick", "http://10.0.0.1`", false, ""},
		{"newline", "http://10.0.0.1\n", false, ""},
		{"space", "http://10.0.0.1 ", false, ""},
		{"empty", "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseBackend("backends[0]", tt.in, tt.passthrough)
			checkField(t, err, tt.want != "", "backends[0]")
			if err == nil && b.String(tt.passthrough) != tt.want {
				t.Errorf("ParseBackend(%q) = %q, want %q", tt.in, b.String(tt.passthrough), tt.want)
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	own := netip.MustParseAddr("203.0.113.7")
	policy := Policy{Own: []netip.Addr{own, netip.MustParseAddr("2001:db8::7")}}
	allowLoopback := Policy{Own: policy.Own, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	// A node's LAN address and a loopback public IP (as the test suites
	// run it), with --backends.allow over all of them.
	lan := Policy{
		Own:   []netip.Addr{netip.MustParseAddr("192.168.1.5"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("fe80::1")},
		Allow: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
	}
	tests := []struct {
		name   string
		policy Policy
		addr   string
		ok     bool
	}{
		{"private", policy, "10.1.2.3", true},
		{"public", policy, "198.51.100.1", true},
		{"ipv6 global", policy, "2a02:1802::1", true},
		{"loopback", policy, "127.0.0.1", false},
		{"loopback v6", policy, "::1", false},
		{"unspecified", policy, "0.0.0.0", false},
		{"this network", policy, "0.1.2.3", false},
		{"unspecified v6", policy, "::", false},
		// Cloud metadata endpoints live at 169.254.169.254.
		{"link-local metadata", policy, "169.254.169.254", false},
		{"link-local v6", policy, "fe80::1", false},
		{"multicast", policy, "224.0.0.1", false},
		{"multicast v6", policy, "ff02::1", false},
		{"broadcast", policy, "255.255.255.255", false},
		// The gateway itself as backend loops forever.
		{"own ipv4", policy, "203.0.113.7", false},
		{"own ipv6", policy, "2001:db8::7", false},
		// IPv4-mapped IPv6 must not smuggle a refused IPv4 through.
		{"mapped loopback", policy, "::ffff:127.0.0.1", false},
		{"mapped metadata", policy, "::ffff:169.254.169.254", false},
		{"allowed loopback", allowLoopback, "127.0.0.5", true},
		{"allow is not everything", allowLoopback, "169.254.169.254", false},
		// --backends.allow never re-admits the node's own addresses ...
		{"own address inside allow", lan, "192.168.1.5", false},
		{"own mapped address inside allow", lan, "::ffff:192.168.1.5", false},
		{"own link-local inside allow", lan, "fe80::1", false},
		{"other address inside allow", lan, "192.168.1.6", true},
		// ... but loopback ones, which the operator allowed on purpose.
		{"own loopback inside allow", lan, "127.0.0.1", true},
		{"own loopback outside allow", Policy{Own: lan.Own}, "127.0.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Backend{Addr: netip.AddrPortFrom(netip.MustParseAddr(tt.addr), 80)}
			err := tt.policy.Check("backends[0]", tt.addr, b)
			checkField(t, err, tt.ok, "backends[0]")
		})
	}
}

func TestParseBackends(t *testing.T) {
	many := make([]string, MaxBackends+1)
	for i := range many {
		many[i] = "http://10.0.0." + string(rune('1'+i%9)) + ":" + string(rune('1'+i/9)) + "0"
	}
	tests := []struct {
		name  string
		in    []string
		field string // empty means accepted
	}{
		{"one", []string{"http://10.0.0.1"}, ""},
		{"max", many[:MaxBackends], ""},
		{"none", nil, "backends"},
		{"too many", many, "backends"},
		{"second bad", []string{"http://10.0.0.1", "http://127.0.0.1"}, "backends[1]"},
		{"duplicate", []string{"http://10.0.0.1:80", "http://10.0.0.1"}, "backends[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseBackends(tt.in, false, Policy{})
			checkField(t, err, tt.field == "", tt.field)
		})
	}
}

// checkField asserts err is nil when ok, and otherwise a FieldError that
// names field.
func checkField(t testing.TB, err error, ok bool, field string) {
	t.Helper()
	if ok {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("want a FieldError for %s, got %v", field, err)
	}
	if fe.Field != field {
		t.Fatalf("error names field %q, want %q: %v", fe.Field, field, err)
	}
	if !strings.Contains(err.Error(), field) {
		t.Fatalf("error text %q does not name the field", err)
	}
}
