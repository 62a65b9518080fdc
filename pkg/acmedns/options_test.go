package acmedns

import (
	"strings"
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Options)
		flag   string // named by the error; "" for none
	}{
		{"defaults", func(*Options) {}, ""},
		{"address without port", func(o *Options) { o.Address = "localhost" }, "--dns.address"},
		{"api without port", func(o *Options) { o.API = "8053" }, "--dns.api"},
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
