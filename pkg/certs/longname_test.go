package certs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// longDomain returns a valid domain of n bytes: labels of 50 letters under
// "example".
func longDomain(n int) string {
	var b strings.Builder
	for b.Len() < n-len(".example")-51 {
		b.WriteString(strings.Repeat("a", 50) + ".")
	}
	b.WriteString(strings.Repeat("b", n-len(".example")-b.Len()))
	return b.String() + ".example"
}

// TestLongDomainsHaveFiles guards the certificates of long domains: a
// valid domain of up to 253 bytes gets its files (no "file name too long"),
// they are found again at the next start, and two long domains with one
// beginning never share a file.
func TestLongDomainsHaveFiles(t *testing.T) {
	for _, n := range []int{225, 253} {
		d := longDomain(n)
		if err := checkDomain(d); err != nil || len(d) != n {
			t.Fatalf("test domain of %d bytes: %v", n, err)
		}
		dir := t.TempDir()
		m := newTestManager(t, dir, Config{}, nil)
		m.Want(tenant, d)
		if got := m.step(t); got != d {
			t.Fatalf("%d bytes: ordered %q", n, got)
		}
		if certs := m.Certificates(); len(certs) != 1 {
			t.Fatalf("%d bytes: certificates %v", n, certs)
		}
		for _, c := range m.Certificates() {
			if len(filepath.Base(c.CertFile)) > 255 {
				t.Fatalf("file name of %d bytes", len(filepath.Base(c.CertFile)))
			}
		}
		m.Close()
		m2 := newTestManager(t, dir, Config{}, nil)
		m2.SetWanted(map[string]string{d: tenant})
		if len(m2.Certificates()) != 1 || m2.ca.orders(d) != 0 {
			t.Fatalf("%d bytes: the certificate was not found again", n)
		}
		other := "b" + d[1:]
		st := &store{dir: dir}
		c1, _ := st.certPaths(d)
		c2, _ := st.certPaths(other)
		if c1 == c2 {
			t.Fatalf("two domains share %s", c1)
		}
		if _, err := os.Stat(c1); err != nil {
			t.Fatal(err)
		}
	}
}
