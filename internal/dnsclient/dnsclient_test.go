package dnsclient

import "testing"

func TestServerAddress(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":         "192.0.2.1:53",
		"192.0.2.1:5353":    "192.0.2.1:5353",
		"2001:db8::1":       "[2001:db8::1]:53",
		"[2001:db8::1]":     "[2001:db8::1]:53", // not [[2001:db8::1]]:53
		"[2001:db8::1]:853": "[2001:db8::1]:853",
		"ns.example":        "ns.example:53",
	} {
		if got := ServerAddress(in); got != want {
			t.Errorf("ServerAddress(%q) = %q, want %q", in, got, want)
		}
	}
}
