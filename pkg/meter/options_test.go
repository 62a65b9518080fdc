package meter

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
		// Config takes zero for the default; a flag set to zero is a mistake.
		{"zero interval", func(o *Options) { o.Interval = 0 }, "--metering.interval"},
		{"negative interval", func(o *Options) { o.Interval = -1 }, "--metering.interval"},
		{"empty table", func(o *Options) { o.Table = "" }, "--metering.table"},
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
