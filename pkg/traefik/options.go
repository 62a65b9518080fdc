package traefik

import (
	"fmt"
	"net"
	"time"

	ptypes "github.com/traefik/paerser/types"
)

// DefaultManaged is the default Options.Managed: the gateway runs and
// supervises Traefik itself.
const DefaultManaged = true

// Options are the gateway's traefik.* flags: the Traefik process and its
// entry points. Flags, GATEWAY_TRAEFIK_* environment variables or the
// traefik section of the configuration file fill them (paerser); the
// daemon hands them to StaticOptions, ProcessConfig and API.
type Options struct {
	// Binary is the Traefik executable, looked up on PATH. Default
	// DefaultBinary ("traefik").
	Binary string `description:"Traefik binary to run." json:"binary,omitempty" toml:"binary,omitempty" yaml:"binary,omitempty"`
	// Managed runs and supervises Traefik (Process). False leaves it to an
	// outside supervisor. Default DefaultManaged (true).
	Managed bool `description:"Run and supervise Traefik. False leaves it to an outside supervisor (see zinit/traefik.yaml)." json:"managed,omitempty" toml:"managed,omitempty" yaml:"managed,omitempty"`
	// Web is StaticOptions.WebAddress. Default DefaultWebAddress (":80").
	Web string `description:"Address of the plain HTTP entry point; it redirects to HTTPS." json:"web,omitempty" toml:"web,omitempty" yaml:"web,omitempty"`
	// WebSecure is StaticOptions.WebSecureAddress. Default
	// DefaultWebSecureAddress (":443").
	WebSecure string `description:"Address of the HTTPS entry point." json:"websecure,omitempty" toml:"websecure,omitempty" yaml:"websecure,omitempty"`
	// Metrics is StaticOptions.MetricsAddress, where APIURL finds Traefik's
	// API. Default DefaultMetricsAddress ("127.0.0.1:8082").
	Metrics string `description:"Address of the Prometheus metrics and ping entry point; never public." json:"metrics,omitempty" toml:"metrics,omitempty" yaml:"metrics,omitempty"`
	// Throttle is StaticOptions.Throttle. Default DefaultThrottle (100ms).
	Throttle ptypes.Duration `description:"Traefik's providersThrottleDuration: how long it waits after a change before reloading." json:"throttle,omitempty" toml:"throttle,omitempty" yaml:"throttle,omitempty"`
	// Debug is StaticOptions.Debug. Default false.
	Debug bool `description:"Serve Go's profiles of Traefik at /debug/pprof/ on the metrics entry point (loopback only), to find where its time goes." json:"debug,omitempty" toml:"debug,omitempty" yaml:"debug,omitempty"`
	// ReadTimeout is StaticOptions.ReadTimeout; zero means no timeout.
	// Default DefaultReadTimeout (60s).
	ReadTimeout ptypes.Duration `description:"readTimeout of the web and websecure entry points: the time a client has to send its TLS ClientHello and request head, and each whole request, body included. It bounds slow or silent clients, and uploads too: a request body still streaming at its end is cut (Traefik has no timeout of the head alone). Server-sent events, websockets and passthrough routes are not cut. 0: no timeout, and slow clients hold connections forever." json:"readtimeout,omitempty" toml:"readtimeout,omitempty" yaml:"readtimeout,omitempty"`
	// HandoverDrain is StaticOptions.HandoverDrain and
	// ProcessConfig.HandoverDrain: how long a replaced Traefik keeps its
	// websockets, streams and passthrough connections. Default
	// DefaultHandoverDrain (10m); at least 2s.
	HandoverDrain ptypes.Duration `description:"How long a Traefik replaced by a handover (an upgrade, a change of these flags) keeps the connections it holds, websockets, streams and passthrough connections included, while its successor takes every new connection; it exits when the last one ends, and closes those left when this ends. At least 2s. A restart of the gateway meanwhile leaves it draining." json:"handoverdrain,omitempty" toml:"handoverdrain,omitempty" yaml:"handoverdrain,omitempty"`
}

// SetDefaults sets every option to its default; paerser calls it before it
// applies the flags.
func (o *Options) SetDefaults() {
	*o = Options{
		Binary:        DefaultBinary,
		Managed:       DefaultManaged,
		Web:           DefaultWebAddress,
		WebSecure:     DefaultWebSecureAddress,
		Metrics:       DefaultMetricsAddress,
		Throttle:      ptypes.Duration(DefaultThrottle),
		ReadTimeout:   ptypes.Duration(DefaultReadTimeout),
		HandoverDrain: ptypes.Duration(DefaultHandoverDrain),
	}
}

// Validate checks the options; each error is one line that names the flag.
// RenderStatic checks the entry points further (a public metrics address,
// two entry points on one port).
func (o Options) Validate() error {
	for _, a := range []struct{ flag, addr string }{
		{"--traefik.web", o.Web}, {"--traefik.websecure", o.WebSecure}, {"--traefik.metrics", o.Metrics},
	} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%s %q: expected [host]:port", a.flag, a.addr)
		}
	}
	if o.Throttle < 0 {
		return fmt.Errorf("--traefik.throttle must not be negative")
	}
	if o.ReadTimeout < 0 {
		return fmt.Errorf("--traefik.readtimeout must not be negative (0 means no timeout)")
	}
	if time.Duration(o.HandoverDrain) < shutdownGrace {
		return fmt.Errorf("--traefik.handoverdrain %s: must be at least %s", time.Duration(o.HandoverDrain), shutdownGrace)
	}
	return nil
}
