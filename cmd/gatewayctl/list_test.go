package main

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/threefoldtech/gateway/pkg/gateway"
)

func TestPrintRoutes(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	routes := []gateway.Proxy{
		{WorkloadID: "wl-1", FQDN: "app.gw.example", Kind: gateway.KindName, Backends: []string{"http://10.0.0.1:80", "http://10.0.0.2:80"},
			Status: &gateway.RouteStatus{Live: true, CheckedAt: now, Backends: map[string]string{"http://10.0.0.2:80": "DOWN", "http://10.0.0.1:80": "UP"},
				Certificate: &gateway.CertificateStatus{Issuer: "R11", NotAfter: now.Add(60 * 24 * time.Hour)}}},
		{WorkloadID: "wl-2", FQDN: "shop.example", Kind: gateway.KindFQDN, Backends: []string{"10.0.0.3:443"}, TLSPassthrough: true,
			Status: &gateway.RouteStatus{CheckedAt: now, Problems: []string{"Traefik has not loaded the route yet"}}},
		{WorkloadID: "wl-3", FQDN: "new.gw.example", Kind: gateway.KindName, Backends: []string{"http://10.0.0.4"}},
		// Its certificate failing, and Traefik not asked yet.
		{WorkloadID: "wl-4", FQDN: "moved.example", Kind: gateway.KindFQDN, Backends: []string{"http://10.0.0.5"},
			Status: &gateway.RouteStatus{ACME: &gateway.ACMEStatus{Failures: 2, LastError: "invalid authorization", NextAttempt: now.Add(10 * time.Minute)}}},
	}
	var b strings.Builder
	if err := printRoutes(&b, routes, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	for i, want := range [][]string{
		{"WLID", "LIVE", "CERTIFICATE", "BACKENDS", "PROBLEMS"},
		{"wl-1", "yes", "R11, expires 2027-01-25", "http://10.0.0.1:80 UP, http://10.0.0.2:80 DOWN"},
		{"wl-2", "name", "no", "backend's own", "Traefik has not loaded the route yet"},
		{"wl-3", "?", "http://10.0.0.4"},
		{"wl-4", "?", "failing (2 in a row), next try ", "certificate: invalid authorization"},
	} {
		for _, w := range want {
			if w == "name" {
				w = "fqdn, passthrough"
			}
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d %q lacks %q", i, lines[i], w)
			}
		}
	}
}

func TestParseInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "")
	broker := fs.String("broker", "", "")
	rest := parseInterspersed(fs, []string{"--broker", "unix:///x", "set-name", "wl", "app", "http://10.0.0.1", "--json", "http://10.0.0.2"})
	if !*asJSON || *broker != "unix:///x" || strings.Join(rest, " ") != "set-name wl app http://10.0.0.1 http://10.0.0.2" {
		t.Fatalf("json %v, broker %q, rest %q", *asJSON, *broker, rest)
	}
}
