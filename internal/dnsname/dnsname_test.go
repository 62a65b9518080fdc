package dnsname

import (
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		name, in, want, wantErr string
	}{
		{"lower-cases and drops the trailing dot", "App.Example.COM.", "app.example.com", ""},
		{"max label", strings.Repeat("a", 63) + ".com", strings.Repeat("a", 63) + ".com", ""},
		{"empty", "", "", "empty"},
		{"one label", "localhost", "", "two labels"},
		{"empty label", "a..com", "", "empty label"},
		{"label too long", strings.Repeat("a", 64) + ".com", "", "longer than 63"},
		{"name too long", strings.Repeat("abcdefghi.", 26) + "com", "", "too long"},
		{"hyphen at the edge", "-a.com", "", "hyphen"},
		{"underscore", "a_b.com", "", `holds "_"`},
		{"wildcard", "*.a.com", "", `holds "*"`},
		{"control byte shown in hex", "a\x00.com", "", "0x00"},
		{"non-ASCII", "ä.com", "", "0xc3"},
		// An IP address is not a domain, even where it looks like one.
		{"numeric top-level label", "1.2.3.4", "", "numeric"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Normalize(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Normalize(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestIsUnder(t *testing.T) {
	if !IsUnder("a.gw.example", "gw.example") || !IsUnder("gw.example", "gw.example") || IsUnder("agw.example", "gw.example") {
		t.Fatal("IsUnder")
	}
}

// TestFileStem guards the files named after domains: every valid name gets
// a stem that fits a file name with room for a suffix, short names keep
// theirs, and long names that share a beginning never share a stem.
func TestFileStem(t *testing.T) {
	short := "www.user.example"
	if got := FileStem(short); got != short {
		t.Fatalf("FileStem(%q) = %q", short, got)
	}
	long := strings.Repeat("a", 240) + ".example"
	other := strings.Repeat("a", 239) + "b.example"
	a, b := FileStem(long), FileStem(other)
	if len(a) > 200 || len(b) > 200 || a == b {
		t.Fatalf("stems %q (%d) and %q (%d)", a, len(a), b, len(b))
	}
	if FileStem(long) != a {
		t.Fatal("FileStem is not stable")
	}
}

func TestNormalizeNameLabel(t *testing.T) {
	for _, tc := range []struct {
		name, in, want, wantErr string
	}{
		{"lower-cases", "MyApp", "myapp", ""},
		// zos accepts ^[a-zA-Z0-9-_]+$: every such label up to DNS's
		// length is a name here too.
		{"underscore", "my_App", "my_app", ""},
		{"hyphens at the edges", "-a-", "-a-", ""},
		{"only an underscore", "_", "_", ""},
		{"max label", strings.Repeat("_", 63), strings.Repeat("_", 63), ""},
		{"empty", "", "", "empty"},
		// DNS cannot carry a longer label: no client could look it up.
		{"too long", strings.Repeat("a", 64), "", "longer than 63"},
		{"dot", "a.b", "", `holds "."`},
		{"wildcard", "*", "", `holds "*"`},
		{"backtick", "a`", "", "holds \"`\""},
		{"non-ASCII", "\u212a", "", "0xe2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizeNameLabel(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NormalizeNameLabel(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("NormalizeNameLabel(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}
