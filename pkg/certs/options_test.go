package certs

import (
	"path/filepath"
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
		{"equal backoffs", func(o *Options) { o.BackoffMax = o.BackoffMin }, ""},
		// A zero wait would order a failing domain again at once, forever.
		{"zero backoff", func(o *Options) { o.BackoffMin = 0 }, "--acme.backoffmin"},
		{"backoff max below min", func(o *Options) { o.BackoffMax = o.BackoffMin - 1 }, "--acme.backoffmax"},
		{"negative keep", func(o *Options) { o.KeepRetired = ptypes.Duration(-time.Hour) }, "--acme.keepretired"},
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

// Config wants absolute paths; a relative --acme.cacertificates is taken
// from the working folder.
func TestOptionsCAFiles(t *testing.T) {
	o := Options{CACertificates: []string{"pebble.pem", "/etc/ca.pem"}}
	got, err := o.CAFiles()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.Abs("pebble.pem")
	if len(got) != 2 || got[0] != want || got[1] != "/etc/ca.pem" {
		t.Fatalf("CAFiles = %q", got)
	}
}
