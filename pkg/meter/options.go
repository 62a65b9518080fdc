package meter

import (
	"fmt"

	ptypes "github.com/traefik/paerser/types"
)

// Options are the gateway's metering.* flags. Flags, GATEWAY_METERING_*
// environment variables or the metering section of the configuration file
// fill them (paerser); the daemon hands them to Config.
type Options struct {
	// Table is Config.Table. Default DefaultTable ("gateway_meter").
	Table string `description:"nftables table (family inet) that counts the bytes of each backend address; the gateway creates it and leaves it in place when it stops, so that counting goes on." json:"table,omitempty" toml:"table,omitempty" yaml:"table,omitempty"`
	// Interval is Config.Interval. Default DefaultInterval (1s).
	Interval ptypes.Duration `description:"How often the counters are read and the totals saved: at most this much traffic is lost if the node loses power." json:"interval,omitempty" toml:"interval,omitempty" yaml:"interval,omitempty"`
}

// SetDefaults sets every option to its default; paerser calls it before it
// applies the flags.
func (o *Options) SetDefaults() {
	*o = Options{Table: DefaultTable, Interval: ptypes.Duration(DefaultInterval)}
}

// Validate checks the options; each error is one line that names the flag.
// Unlike Config, whose zero values mean the defaults, an empty table or a
// zero interval given as a flag is an error.
func (o Options) Validate() error {
	if o.Interval <= 0 {
		return fmt.Errorf("--metering.interval must be positive")
	}
	if o.Table == "" {
		return fmt.Errorf("--metering.table must not be empty")
	}
	return nil
}
