package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/traefik/paerser/cli"
)

// execute runs the command line as main does, with args, and returns the
// configuration run would get.
func execute(t *testing.T, args ...string) (*Configuration, error) {
	t.Helper()
	saved := os.Args
	t.Cleanup(func() { os.Args = saved })
	os.Args = append([]string{"gateway"}, args...)
	var got *Configuration
	err := cli.Execute(newCommand(func(c *Configuration) error { got = c; return nil }))
	return got, err
}

// The defaults each package sets are those the gateway always had: moving
// them out of cmd/gateway must not change what an empty command line means.
func TestDefaultsUnchanged(t *testing.T) {
	cfg := defaultConfiguration()
	got := map[string]any{
		"broker": cfg.Broker, "root": cfg.Root, "workers": cfg.Workers, "resolver": cfg.Resolver,
		"public.domain": cfg.Public.Domain, "public.source": cfg.Public.Source, "public.interval": time.Duration(cfg.Public.Interval),
		"backends.allow": len(cfg.Backends.Allow),
		"routes.sweep":   time.Duration(cfg.Routes.Sweep), "routes.status": time.Duration(cfg.Routes.Status),
		"traefik.binary": cfg.Traefik.Binary, "traefik.managed": cfg.Traefik.Managed, "traefik.web": cfg.Traefik.Web,
		"traefik.websecure": cfg.Traefik.WebSecure, "traefik.metrics": cfg.Traefik.Metrics,
		"traefik.throttle": time.Duration(cfg.Traefik.Throttle), "traefik.debug": cfg.Traefik.Debug,
		"traefik.readtimeout": time.Duration(cfg.Traefik.ReadTimeout),
		"acme.email":          cfg.ACME.Email, "acme.caserver": cfg.ACME.CAServer, "acme.cacertificates": len(cfg.ACME.CACertificates),
		"acme.backoffmin": time.Duration(cfg.ACME.BackoffMin), "acme.backoffmax": time.Duration(cfg.ACME.BackoffMax),
		"acme.keepretired": time.Duration(cfg.ACME.KeepRetired),
		"dns.address":      cfg.DNS.Address, "dns.api": cfg.DNS.API,
		"metering.table": cfg.Metering.Table, "metering.interval": time.Duration(cfg.Metering.Interval),
		"metrics.address": cfg.Metrics.Address, "log.level": cfg.Log.Level,
	}
	want := map[string]any{
		"broker": "unix:///var/run/redis.sock", "root": "/var/cache/modules/gateway", "workers": uint(4), "resolver": "",
		"public.domain": "", "public.source": "network", "public.interval": 30 * time.Second,
		"backends.allow": 0,
		"routes.sweep":   5 * time.Second, "routes.status": 15 * time.Second,
		"traefik.binary": "traefik", "traefik.managed": true, "traefik.web": ":80",
		"traefik.websecure": ":443", "traefik.metrics": "127.0.0.1:8082",
		"traefik.throttle": 100 * time.Millisecond, "traefik.debug": false,
		"traefik.readtimeout": 60 * time.Second,
		"acme.email":          "", "acme.caserver": "https://acme-v02.api.letsencrypt.org/directory", "acme.cacertificates": 0,
		"acme.backoffmin": 5 * time.Minute, "acme.backoffmax": 24 * time.Hour,
		"acme.keepretired": 24 * time.Hour,
		"dns.address":      ":53", "dns.api": "127.0.0.1:8053",
		"metering.table": "gateway_meter", "metering.interval": time.Second,
		"metrics.address": "127.0.0.1:8083", "log.level": "info",
	}
	for flag, w := range want {
		if got[flag] != w {
			t.Errorf("--%s defaults to %v, want %v", flag, got[flag], w)
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("the defaults are refused: %v", err)
	}
}

// The gateway's own options are embedded, not a group: their environment
// variables and file keys have no prefix, as before.
func TestEmbeddedOptionsFromEnvironmentAndFile(t *testing.T) {
	t.Setenv("GATEWAY_WORKERS", "9")
	t.Setenv("GATEWAY_PUBLIC_IPV6", "2001:db8::7")
	t.Setenv("GATEWAY_LOG_LEVEL", "debug")
	t.Setenv("GATEWAY_DNS_API", "127.0.0.1:9053")
	cfg, err := execute(t)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Workers != 9 || cfg.Public.IPv6 != "2001:db8::7" || cfg.Log.Level != "debug" || cfg.DNS.API != "127.0.0.1:9053" {
		t.Fatalf("from the environment: %+v", cfg)
	}

	os.Unsetenv("GATEWAY_WORKERS")
	path := filepath.Join(t.TempDir(), "gateway.toml")
	file := "broker = \"tcp://127.0.0.1:6379\"\nworkers = 2\n[backends]\nallow = [\"10.0.0.0/8\"]\n[metering]\ntable = \"m\"\n[acme]\nbackoffmax = \"1h\"\n"
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	if cfg, err = execute(t, "--configfile="+path); err != nil {
		t.Fatal(err)
	}
	if cfg.Broker != "tcp://127.0.0.1:6379" || cfg.Workers != 2 || strings.Join(cfg.Backends.Allow, ",") != "10.0.0.0/8" ||
		cfg.Metering.Table != "m" || time.Duration(cfg.ACME.BackoffMax) != time.Hour || cfg.Traefik.Web != ":80" {
		t.Fatalf("from %s: %+v", path, cfg)
	}
}

// --log.level is checked with the other flags, before anything starts.
func TestLogLevelChecked(t *testing.T) {
	cfg := defaultConfiguration()
	cfg.Log.Level = "loud"
	if _, err := cfg.check(); err == nil || !strings.Contains(err.Error(), "--log.level") {
		t.Fatalf("err = %v, want one naming --log.level", err)
	}
}
