package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/threefoldtech/gateway/internal/quote"
	statestore "github.com/threefoldtech/gateway/pkg/store"
)

// ChallengePath is the path under which Handler answers HTTP-01
// challenges.
const ChallengePath = "/.well-known/acme-challenge/"

// DirName is the folder of a Manager's state under the gateway's root.
const DirName = "certs"

// Defaults of Config.
const (
	// DefaultBackoffMin is the wait after the first failed order of a
	// domain.
	DefaultBackoffMin = 5 * time.Minute
	// DefaultBackoffMax caps the wait between two orders of a failing
	// domain.
	DefaultBackoffMax = 24 * time.Hour
	// DefaultKeepRetired is how long the certificate of a domain no longer
	// wanted stays on disk.
	DefaultKeepRetired = 24 * time.Hour
	// DefaultOrderLimit and DefaultOrderWindow are Let's Encrypt's "New
	// Orders per Account" limit: 300 orders per 3 hours, a bucket that
	// refills one order every 36 seconds
	// (https://letsencrypt.org/docs/rate-limits/).
	DefaultOrderLimit  = 300
	DefaultOrderWindow = 3 * time.Hour
	// DefaultCheckInterval is how often Run checks that the files of the
	// certificates it serves are still there and whole.
	DefaultCheckInterval = time.Minute
)

// Timeouts of the ACME client's HTTP requests. lego has no context: these
// bound how long an order holds up a shutdown.
const (
	dialTimeout    = 10 * time.Second
	requestTimeout = 30 * time.Second
)

// Config configures a Manager.
type Config struct {
	// Dir holds the Manager's state: the ACME account, the certificates
	// and the backoff state. Absolute; created with mode 0700 when missing.
	// Required.
	Dir string
	// Store, when set, keeps the schedule of orders (bucket StoreBucket);
	// Dir/state.json, where an earlier version kept it, is imported once.
	// Without it the schedule is kept in Dir/state.json.
	Store *statestore.Store
	// CAServer is the URL of the ACME directory, https. Required.
	CAServer string
	// CACertificates are absolute paths of PEM files whose certificates are
	// trusted, on top of the system's roots, for CAServer's HTTPS (a
	// private CA such as Pebble's). Optional.
	CACertificates []string
	// Email is the contact of the ACME account. Optional.
	Email string
	// BackoffMin is the wait after the first failed order of a domain; the
	// wait doubles with each further failure. Default DefaultBackoffMin
	// (5 minutes).
	BackoffMin time.Duration
	// BackoffMax caps the wait between two orders of a failing domain.
	// Default DefaultBackoffMax (24 hours).
	BackoffMax time.Duration
	// KeepRetired is how long the certificate of a domain no longer wanted
	// is kept on disk, never served nor renewed, before it is deleted.
	// Default DefaultKeepRetired (24 hours).
	KeepRetired time.Duration
	// OrderLimit is how many orders the account may start in OrderWindow:
	// a bucket of OrderLimit orders refilled one every
	// OrderWindow/OrderLimit, renewals included. Default DefaultOrderLimit
	// (300).
	OrderLimit int
	// OrderWindow is the period of OrderLimit. Default DefaultOrderWindow
	// (3 hours).
	OrderWindow time.Duration
	// CheckInterval is how often Run checks the files of the certificates:
	// one deleted or damaged by hand is dropped and ordered again. Default
	// DefaultCheckInterval (1 minute).
	CheckInterval time.Duration
	// Logger receives the Manager's events, with component=certs.
	Logger zerolog.Logger
	// Registry receives the Manager's metrics (gateway_certs_orders_total,
	// gateway_certs_certificates). Nil: no metrics are registered.
	Registry prometheus.Registerer
	// OnChange is called, never under a lock, after the set of usable
	// certificates changed: one obtained, renewed, imported, retired or
	// expired. It runs on Run's goroutine or on that of the Want, Unwant,
	// SetWanted or Import call that made the change, so possibly on
	// several at once. Optional.
	OnChange func()
	// HTTPClient talks to CAServer. Nil: a client with bounded timeouts
	// that trusts the system's roots and CACertificates.
	HTTPClient *http.Client
}

// withDefaults returns cfg with its zero durations set to the defaults.
func (cfg Config) withDefaults() Config {
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.KeepRetired == 0 {
		cfg.KeepRetired = DefaultKeepRetired
	}
	if cfg.OrderLimit == 0 {
		cfg.OrderLimit = DefaultOrderLimit
	}
	if cfg.OrderWindow == 0 {
		cfg.OrderWindow = DefaultOrderWindow
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	return cfg
}

// validate rejects a configuration the Manager cannot work with. Defaults
// must be filled first.
func (cfg Config) validate() error {
	if cfg.Dir == "" || !filepath.IsAbs(cfg.Dir) {
		return fmt.Errorf("certs config: Dir %s must be an absolute path", quote.Short(cfg.Dir))
	}
	u, err := url.Parse(cfg.CAServer)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("certs config: CAServer %s must be an https URL", quote.Short(cfg.CAServer))
	}
	for _, f := range cfg.CACertificates {
		if !filepath.IsAbs(f) {
			return fmt.Errorf("certs config: CACertificates: %s must be an absolute path", quote.Short(f))
		}
	}
	if cfg.BackoffMin < 0 {
		return fmt.Errorf("certs config: BackoffMin %s must be positive", cfg.BackoffMin)
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		return fmt.Errorf("certs config: BackoffMax %s must be at least BackoffMin %s", cfg.BackoffMax, cfg.BackoffMin)
	}
	if cfg.KeepRetired < 0 {
		return fmt.Errorf("certs config: KeepRetired %s must be positive", cfg.KeepRetired)
	}
	if cfg.OrderLimit < 0 || cfg.OrderWindow < 0 {
		return fmt.Errorf("certs config: OrderLimit %d and OrderWindow %s must be positive", cfg.OrderLimit, cfg.OrderWindow)
	}
	if cfg.CheckInterval < 0 {
		return fmt.Errorf("certs config: CheckInterval %s must be positive", cfg.CheckInterval)
	}
	return nil
}

// newHTTPClient returns a client for the ACME server that trusts the
// system's roots and the PEM files caFiles.
func newHTTPClient(caFiles []string) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	for _, f := range caFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("certs config: CACertificates: %w", err)
		}
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("certs config: CACertificates: no PEM certificate in %s", quote.Short(f))
		}
	}
	return &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   dialTimeout,
			ResponseHeaderTimeout: requestTimeout,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   2,
		},
	}, nil
}
