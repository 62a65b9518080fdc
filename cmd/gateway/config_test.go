package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/traefik/paerser/cli"
	"github.com/traefik/paerser/env"
	"github.com/traefik/paerser/flag"
)

func TestFlagsAndEnvironment(t *testing.T) {
	cfg := defaultConfiguration()
	args := []string{"--broker=tcp://secret@127.0.0.1:6379", "--public.domain=gw.example", "--public.ipv4=198.51.100.7",
		"--backends.allow=127.0.0.0/8,10.0.0.0/8", "--traefik.throttle=50ms", "--traefik.managed=false", "--workers=8",
		"--traefik.readtimeout=0"}
	if err := flag.Decode(args, cfg); err != nil {
		t.Fatal(err)
	}
	vars := env.FindPrefixedEnvVars([]string{"GATEWAY_ACME_EMAIL=ops@example.com"}, "GATEWAY_", cfg)
	if err := env.Decode(vars, "GATEWAY_", cfg); err != nil {
		t.Fatal(err)
	}
	s, err := cfg.check()
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case cfg.Broker != "tcp://secret@127.0.0.1:6379", cfg.Public.Domain != "gw.example", cfg.Workers != 8,
		time.Duration(cfg.Traefik.Throttle) != 50*time.Millisecond, cfg.Traefik.Managed, cfg.ACME.Email != "ops@example.com",
		cfg.Traefik.ReadTimeout != 0,
		len(s.allow) != 2, len(s.publicIPs) != 1:
		t.Fatalf("decoded %+v %+v", cfg, s)
	}
	// Defaults the flags left alone.
	if cfg.Root != "/var/cache/modules/gateway" || cfg.Traefik.WebSecure != ":443" || cfg.DNS.Address != ":53" {
		t.Fatalf("defaults lost: %+v", cfg)
	}
}

// The read timeout is on unless turned off: zero left slow clients holding
// Traefik's connections forever.
func TestReadTimeoutFlag(t *testing.T) {
	tests := []struct {
		args []string
		want time.Duration
	}{
		{nil, 60 * time.Second},
		{[]string{"--traefik.readtimeout=0"}, 0},
		{[]string{"--traefik.readtimeout=5m"}, 5 * time.Minute},
		// paerser reads a bare number as seconds, like Traefik.
		{[]string{"--traefik.readtimeout=90"}, 90 * time.Second},
	}
	for _, tt := range tests {
		cfg := defaultConfiguration()
		if err := flag.Decode(tt.args, cfg); err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if _, err := cfg.check(); err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if got := time.Duration(cfg.Traefik.ReadTimeout); got != tt.want {
			t.Errorf("%v: read timeout %s, want %s", tt.args, got, tt.want)
		}
	}
}

func TestBadFlagValues(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"workers", []string{"--workers=0"}, "--workers"},
		{"broker scheme", []string{"--broker=redis://x"}, "--broker"},
		{"ipv4", []string{"--public.ipv4=1.2.3"}, "--public.ipv4"},
		{"ipv4 family", []string{"--public.ipv4=2001:db8::1"}, "--public.ipv4"},
		{"ipv6 family", []string{"--public.ipv6=1.2.3.4"}, "--public.ipv6"},
		{"allow", []string{"--backends.allow=127.0.0.1"}, "--backends.allow"},
		{"websecure", []string{"--traefik.websecure=443"}, "--traefik.websecure"},
		{"dns address", []string{"--dns.address=localhost"}, "--dns.address"},
		{"negative read timeout", []string{"--traefik.readtimeout=-1s"}, "--traefik.readtimeout"},
		{"metering interval", []string{"--metering.interval=0s"}, "--metering.interval"},
		{"public source", []string{"--public.source=zos"}, "--public.source"},
		{"public interval", []string{"--public.interval=0s"}, "--public.interval"},
		{"metering table", []string{"--metering.table="}, "--metering.table"},
		{"metrics address", []string{"--metrics.address=8083"}, "--metrics.address"},
		// A zero wait would order a failing domain again at once, forever.
		{"zero backoff", []string{"--acme.backoffmin=0s"}, "--acme.backoffmin"},
		{"backoff max below min", []string{"--acme.backoffmin=10m", "--acme.backoffmax=5m"}, "--acme.backoffmax"},
		{"negative keep", []string{"--acme.keepretired=-1h"}, "--acme.keepretired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaultConfiguration()
			if err := flag.Decode(tt.args, cfg); err != nil {
				t.Fatal(err)
			}
			_, err := cfg.check()
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line naming %s", err, tt.want)
			}
		})
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	var out strings.Builder
	if err := newCommand(nil).PrintHelp(&out); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"--broker", "--root", "--workers", "--resolver", "--public.domain", "--public.ipv4", "--public.ipv6", "--public.source", "--public.interval",
		"--routes.sweep", "--backends.allow", "--traefik.readtimeout", "--traefik.binary", "--traefik.managed", "--traefik.web", "--traefik.websecure", "--traefik.metrics",
		"--traefik.throttle", "--traefik.readtimeout", "--acme.email", "--acme.caserver", "--acme.cacertificates", "--acme.backoffmin", "--acme.backoffmax", "--acme.keepretired", "--dns.address", "--dns.api", "--metering.table", "--metering.interval", "--metrics.address", "--log.level", "--configfile"} {
		if !strings.Contains(out.String(), name+" ") {
			t.Errorf("--help does not list %s", name)
		}
	}
}

func TestConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte("root: /srv/gw\npublic:\n  domain: gw.example\ntraefik:\n  throttle: 250ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	execute := func(args ...string) (*Configuration, error) {
		saved := os.Args
		defer func() { os.Args = saved }()
		os.Args = append([]string{"gateway"}, args...)
		var got *Configuration
		err := cli.Execute(newCommand(func(c *Configuration) error { got = c; return nil }))
		return got, err
	}
	cfg, err := execute("--configfile=" + path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Root != "/srv/gw" || cfg.Public.Domain != "gw.example" || time.Duration(cfg.Traefik.Throttle) != 250*time.Millisecond || cfg.Workers != 4 {
		t.Fatalf("from file: %+v", cfg)
	}
	// A configuration file that is not there must not be ignored silently.
	if _, err := execute("--configfile=" + path + ".missing"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: err = %v", err)
	}
}
