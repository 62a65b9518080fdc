package main

import (
	"net/netip"

	"github.com/threefoldtech/gateway/pkg/acmedns"
	"github.com/threefoldtech/gateway/pkg/certs"
	"github.com/threefoldtech/gateway/pkg/gateway"
	"github.com/threefoldtech/gateway/pkg/meter"
	"github.com/threefoldtech/gateway/pkg/traefik"
)

// Configuration is the command line of the gateway. Flags, GATEWAY_*
// environment variables and --configfile fill it, as in Traefik. It only
// composes the options of the packages that use the values: each package
// gives its flags' names, descriptions and defaults, and validates them.
type Configuration struct {
	ConfigFile string `description:"Configuration file (YAML or TOML) to read the other options from." json:"-" toml:"-" yaml:"-"`
	// Options are the gateway's own flags, at the top of the command line.
	gateway.Options
	Traefik  traefik.Options `description:"The Traefik process and its entry points." json:"traefik,omitempty" toml:"traefik,omitempty" yaml:"traefik,omitempty"`
	ACME     certs.Options   `description:"Certificates." json:"acme,omitempty" toml:"acme,omitempty" yaml:"acme,omitempty"`
	DNS      acmedns.Options `description:"The embedded DNS server of the _acme-challenge zone." json:"dns,omitempty" toml:"dns,omitempty" yaml:"dns,omitempty"`
	Metering meter.Options   `description:"Byte counting of every route, for billing." json:"metering,omitempty" toml:"metering,omitempty" yaml:"metering,omitempty"`
}

// SetDefaults sets every option to the default of its package.
func (c *Configuration) SetDefaults() {
	c.ConfigFile = ""
	c.Options.SetDefaults()
	c.Traefik.SetDefaults()
	c.ACME.SetDefaults()
	c.DNS.SetDefaults()
	c.Metering.SetDefaults()
}

// Validate validates the options of every package; each error is one line
// that names the flag.
func (c *Configuration) Validate() error {
	for _, opts := range []interface{ Validate() error }{c.Options, c.Traefik, c.ACME, c.DNS, c.Metering} {
		if err := opts.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// defaultConfiguration is what an empty command line means.
func defaultConfiguration() *Configuration {
	cfg := &Configuration{}
	cfg.SetDefaults()
	return cfg
}

// settings are the values of a valid Configuration that its packages
// parsed to check them.
type settings struct {
	publicIPs []netip.Addr
	allow     []netip.Prefix
}

// check validates the configuration and returns what was parsed on the way.
func (c *Configuration) check() (settings, error) {
	if err := c.Validate(); err != nil {
		return settings{}, err
	}
	return settings{publicIPs: c.PublicIPs(), allow: c.AllowedNetworks()}, nil
}
