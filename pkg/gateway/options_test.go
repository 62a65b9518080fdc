package gateway

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Options)
		flag   string // named by the error; "" for none
	}{
		{"defaults", func(*Options) {}, ""},
		{"tcp broker", func(o *Options) { o.Broker = "tcp://secret@127.0.0.1:6379" }, ""},
		{"no workers", func(o *Options) { o.Workers = 0 }, "--workers"},
		{"no root", func(o *Options) { o.Root = "" }, "--root"},
		{"broker scheme", func(o *Options) { o.Broker = "redis://x" }, "--broker"},
		{"ipv4", func(o *Options) { o.Public.IPv4 = "1.2.3" }, "--public.ipv4"},
		{"ipv4 family", func(o *Options) { o.Public.IPv4 = "2001:db8::1" }, "--public.ipv4"},
		{"ipv6 family", func(o *Options) { o.Public.IPv6 = "1.2.3.4" }, "--public.ipv6"},
		{"public source", func(o *Options) { o.Public.Source = "zos" }, "--public.source"},
		{"public source flags", func(o *Options) { o.Public.Source = PublicSourceFlags }, ""},
		// Zero would ask the network daemon in a busy loop.
		{"zero public interval", func(o *Options) { o.Public.Interval = 0 }, "--public.interval"},
		{"allow without length", func(o *Options) { o.Backends.Allow = []string{"127.0.0.1"} }, "--backends.allow"},
		{"metrics address without port", func(o *Options) { o.Metrics.Address = "8083" }, "--metrics.address"},
		{"zero status", func(o *Options) { o.Routes.Status = 0 }, "--routes.status"},
		{"zero sweep", func(o *Options) { o.Routes.Sweep = 0 }, "--routes.sweep"},
		{"unknown log level", func(o *Options) { o.Log.Level = "loud" }, "--log.level"},
		// zerolog reads "" as no level at all, which would log nothing.
		{"empty log level", func(o *Options) { o.Log.Level = "" }, "--log.level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o Options
			o.SetDefaults()
			tt.change(&o)
			err := o.Validate()
			if tt.flag == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.flag) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line naming %s", err, tt.flag)
			}
		})
	}
}

func TestOptionsParsedValues(t *testing.T) {
	var o Options
	o.SetDefaults()
	o.Public.IPv4, o.Public.IPv6 = "198.51.100.7", "2001:db8::7"
	o.Backends.Allow = []string{"10.1.2.3/8", " 127.0.0.0/8"}
	o.Log.Level = "warn"
	o.Resolver = "192.0.2.53"
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	// IPv4 first, whatever the order of a map.
	if got, want := o.PublicIPs(), []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::7")}; !slices.Equal(got, want) {
		t.Errorf("PublicIPs = %v, want %v", got, want)
	}
	if got, want := o.AllowedNetworks(), []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")}; !slices.Equal(got, want) {
		t.Errorf("AllowedNetworks = %v, want %v", got, want)
	}
	if o.LogLevel() != zerolog.WarnLevel {
		t.Errorf("LogLevel = %v", o.LogLevel())
	}
	if got, err := o.ResolverServer(); err != nil || got != "192.0.2.53:53" {
		t.Errorf("ResolverServer = %q, %v", got, err)
	}
}

// The network daemon is asked only when no flag gives any of the public
// identity: a flag given wins, and then the flags are all of it.
func TestPublicFromNetwork(t *testing.T) {
	tests := []struct {
		name   string
		change func(*PublicOptions)
		want   bool
	}{
		// A zos node runs the gateway without public.* flags.
		{"no flags", func(*PublicOptions) {}, true},
		{"domain given", func(p *PublicOptions) { p.Domain = "gw.example" }, false},
		// An IP alone is a node without a domain: no lookup of one.
		{"ipv4 given", func(p *PublicOptions) { p.IPv4 = "198.51.100.7" }, false},
		{"ipv6 given", func(p *PublicOptions) { p.IPv6 = "2001:db8::7" }, false},
		// A node without zos's network daemon.
		{"source flags", func(p *PublicOptions) { p.Source = PublicSourceFlags }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o Options
			o.SetDefaults()
			tt.change(&o.Public)
			if got := o.Public.FromNetwork(); got != tt.want {
				t.Fatalf("FromNetwork() = %v, want %v", got, tt.want)
			}
		})
	}
}
