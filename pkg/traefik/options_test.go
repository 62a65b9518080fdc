package traefik

import (
	"strings"
	"testing"
	"time"

	ptypes "github.com/traefik/paerser/types"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Options)
		flag   string // named by the error; "" for none
	}{
		{"defaults", func(*Options) {}, ""},
		// Zero turns the timeout off; it is not a mistake.
		{"no read timeout", func(o *Options) { o.ReadTimeout = 0 }, ""},
		{"web without port", func(o *Options) { o.Web = "80" }, "--traefik.web"},
		{"websecure without port", func(o *Options) { o.WebSecure = "443" }, "--traefik.websecure"},
		{"metrics without port", func(o *Options) { o.Metrics = "localhost" }, "--traefik.metrics"},
		{"negative throttle", func(o *Options) { o.Throttle = ptypes.Duration(-time.Second) }, "--traefik.throttle"},
		{"negative read timeout", func(o *Options) { o.ReadTimeout = ptypes.Duration(-time.Second) }, "--traefik.readtimeout"},
		// Shorter than the 2s requests in flight get, a handover would cut them.
		{"drain under 2s", func(o *Options) { o.HandoverDrain = ptypes.Duration(time.Second) }, "--traefik.handoverdrain"},
		{"drain of 2s", func(o *Options) { o.HandoverDrain = ptypes.Duration(2 * time.Second) }, ""},
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
			if err == nil || !strings.Contains(err.Error(), tt.flag) {
				t.Fatalf("err = %v, want one naming %s", err, tt.flag)
			}
		})
	}
}

// The defaults of the flags render a static configuration: they are the
// defaults of StaticOptions.
func TestOptionsDefaultsRender(t *testing.T) {
	var o Options
	o.SetDefaults()
	if !o.Managed || o.Binary != DefaultBinary {
		t.Fatalf("defaults %+v", o)
	}
	_, err := RenderStatic(StaticOptions{
		ProxyDir: "/srv/proxy", StateDir: "/srv/traefik",
		WebAddress: o.Web, WebSecureAddress: o.WebSecure, MetricsAddress: o.Metrics,
		Throttle: time.Duration(o.Throttle), ReadTimeout: new(time.Duration(o.ReadTimeout)),
		HandoverDrain: time.Duration(o.HandoverDrain),
		ACMECAServer:  DefaultACMECAServer,
	})
	if err != nil {
		t.Fatal(err)
	}
}
