package acmedns

import (
	"fmt"
	"net"
)

// Options are the gateway's dns.* flags: where the embedded DNS server of
// the _acme-challenge zone and its httpreq API listen. Flags,
// GATEWAY_DNS_* environment variables or the dns section of the
// configuration file fill them (paerser); the daemon hands them to
// ServiceConfig.
type Options struct {
	// Address is ServiceConfig.Address. Default DefaultAddress (":53").
	Address string `description:"UDP and TCP address of the DNS server that answers the _acme-challenge zone delegated to the node." json:"address,omitempty" toml:"address,omitempty" yaml:"address,omitempty"`
	// API is ServiceConfig.APIAddress. Default DefaultAPIAddress
	// ("127.0.0.1:8053").
	API string `description:"Loopback address where Traefik presents and cleans DNS-01 challenges (lego's httpreq provider)." json:"api,omitempty" toml:"api,omitempty" yaml:"api,omitempty"`
}

// SetDefaults sets every option to its default; paerser calls it before it
// applies the flags.
func (o *Options) SetDefaults() {
	*o = Options{Address: DefaultAddress, API: DefaultAPIAddress}
}

// Validate checks the options; each error is one line that names the flag.
func (o Options) Validate() error {
	for _, a := range []struct{ flag, addr string }{{"--dns.address", o.Address}, {"--dns.api", o.API}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%s %q: expected [host]:port", a.flag, a.addr)
		}
	}
	return nil
}
