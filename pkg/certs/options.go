package certs

import (
	"fmt"
	"path/filepath"
	"time"

	ptypes "github.com/traefik/paerser/types"

	"github.com/threefoldtech/gateway/pkg/traefik"
)

// Options are the gateway's acme.* flags: the ACME account and server, and
// the pace of orders. Flags, GATEWAY_ACME_* environment variables or the
// acme section of the configuration file fill them (paerser); the daemon
// hands them to Config, and the account and server to Traefik's DNS-01
// resolver as well (traefik.StaticOptions).
type Options struct {
	// Email is Config.Email. Optional.
	Email string `description:"E-mail of the ACME account." json:"email,omitempty" toml:"email,omitempty" yaml:"email,omitempty"`
	// CAServer is Config.CAServer. Default traefik.DefaultACMECAServer,
	// Let's Encrypt production: both resolvers use one ACME server.
	CAServer string `description:"ACME directory URL." json:"caserver,omitempty" toml:"caserver,omitempty" yaml:"caserver,omitempty"`
	// CACertificates are Config.CACertificates, relative to the working
	// folder or absolute (CAFiles). Optional.
	CACertificates []string `description:"PEM files of extra roots to trust for the ACME server (a private CA such as Pebble)." json:"cacertificates,omitempty" toml:"cacertificates,omitempty" yaml:"cacertificates,omitempty"`
	// BackoffMin is Config.BackoffMin. Default DefaultBackoffMin (5m).
	BackoffMin ptypes.Duration `description:"Wait after the first failed attempt to get a user domain's certificate; it doubles after each failure in a row." json:"backoffmin,omitempty" toml:"backoffmin,omitempty" yaml:"backoffmin,omitempty"`
	// BackoffMax is Config.BackoffMax. Default DefaultBackoffMax (24h).
	BackoffMax ptypes.Duration `description:"Longest wait between two attempts to get a user domain's certificate." json:"backoffmax,omitempty" toml:"backoffmax,omitempty" yaml:"backoffmax,omitempty"`
	// KeepRetired is Config.KeepRetired. Default DefaultKeepRetired (24h).
	KeepRetired ptypes.Duration `description:"How long the certificate of a user domain no longer routed is kept, never served nor renewed, so that a route set again meanwhile gets it back without a new order." json:"keepretired,omitempty" toml:"keepretired,omitempty" yaml:"keepretired,omitempty"`
	// OrderLimit is Config.OrderLimit. Default DefaultOrderLimit (300).
	OrderLimit int `description:"Most orders of user-domain certificates the ACME account starts per --acme.orderwindow (a bucket refilled evenly; Let's Encrypt allows 300 new orders per account per 3 hours)." json:"orderlimit,omitempty" toml:"orderlimit,omitempty" yaml:"orderlimit,omitempty"`
	// OrderWindow is Config.OrderWindow. Default DefaultOrderWindow (3h).
	OrderWindow ptypes.Duration `description:"Period of --acme.orderlimit." json:"orderwindow,omitempty" toml:"orderwindow,omitempty" yaml:"orderwindow,omitempty"`
}

// SetDefaults sets every option to its default; paerser calls it before it
// applies the flags.
func (o *Options) SetDefaults() {
	*o = Options{
		CAServer:    traefik.DefaultACMECAServer,
		BackoffMin:  ptypes.Duration(DefaultBackoffMin),
		BackoffMax:  ptypes.Duration(DefaultBackoffMax),
		KeepRetired: ptypes.Duration(DefaultKeepRetired),
		OrderLimit:  DefaultOrderLimit,
		OrderWindow: ptypes.Duration(DefaultOrderWindow),
	}
}

// Validate checks the options; each error is one line that names the flag.
// Unlike Config, whose zero durations mean the defaults, a zero
// --acme.backoffmin is an error: a failing domain would be ordered again at
// once, forever. The e-mail and the server's URL are checked by
// traefik.RenderStatic and New, which receive them.
func (o Options) Validate() error {
	if o.BackoffMin <= 0 || o.BackoffMax < o.BackoffMin {
		return fmt.Errorf("--acme.backoffmin %s and --acme.backoffmax %s: need 0 < backoffmin <= backoffmax", time.Duration(o.BackoffMin), time.Duration(o.BackoffMax))
	}
	if o.KeepRetired < 0 {
		return fmt.Errorf("--acme.keepretired must not be negative")
	}
	if o.OrderLimit <= 0 || o.OrderWindow <= 0 {
		return fmt.Errorf("--acme.orderlimit %d and --acme.orderwindow %s: both must be positive", o.OrderLimit, time.Duration(o.OrderWindow))
	}
	return nil
}

// CAFiles returns CACertificates as absolute paths, as Config and
// traefik.StaticOptions want them.
func (o Options) CAFiles() ([]string, error) {
	files := make([]string, len(o.CACertificates))
	for i, f := range o.CACertificates {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, fmt.Errorf("--acme.cacertificates %q: %w", f, err)
		}
		files[i] = abs
	}
	return files, nil
}
