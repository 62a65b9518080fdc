// Package traefik holds the gateway's side of Traefik: a small typed model of
// Traefik's dynamic and static configuration, its rendering to YAML, the
// crash-consistent writer of the folder Traefik watches, the supervision of
// the Traefik process (with its own counters), the scrape of its Prometheus
// metrics and the questions to its API, which it serves on loopback only. It
// knows nothing of zbus.
package traefik

// The types below copy the names of Traefik's own dynamic configuration
// (github.com/traefik/traefik/v3/pkg/config/dynamic), only the parts the
// gateway writes. Yaml tags are Traefik's camelCase keys.

// Configuration is one dynamic-configuration file.
type Configuration struct {
	HTTP *HTTPConfiguration `yaml:"http,omitempty"`
	TCP  *TCPConfiguration  `yaml:"tcp,omitempty"`
	// TLS is only ever in the reserved file (layout.go): it sets the
	// default certificate.
	TLS *TLSConfiguration `yaml:"tls,omitempty"`
}

// TLSConfiguration holds the TLS stores, by name; the gateway sets the
// default certificate of the store named "default", the one every router
// uses.
type TLSConfiguration struct {
	// Certificates are served to the clients whose SNI they name.
	Certificates []*TLSCertificate    `yaml:"certificates,omitempty"`
	Stores       map[string]*TLSStore `yaml:"stores,omitempty"`
}

// TLSStore is a TLS store.
type TLSStore struct {
	DefaultCertificate *TLSCertificate `yaml:"defaultCertificate,omitempty"`
}

// TLSCertificate is a certificate and its key, as paths of PEM files.
type TLSCertificate struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
}

// DefaultStore names the TLS store every router uses.
const DefaultStore = "default"

// HTTPConfiguration holds HTTP routers and services, keyed by name.
type HTTPConfiguration struct {
	Routers     map[string]*Router     `yaml:"routers,omitempty"`
	Middlewares map[string]*Middleware `yaml:"middlewares,omitempty"`
	Services    map[string]*Service    `yaml:"services,omitempty"`
}

// Router is an HTTP router.
type Router struct {
	EntryPoints []string         `yaml:"entryPoints,omitempty"`
	Middlewares []string         `yaml:"middlewares,omitempty"`
	Rule        string           `yaml:"rule"`
	Service     string           `yaml:"service"`
	TLS         *RouterTLSConfig `yaml:"tls,omitempty"`
}

// Middleware is an HTTP middleware; the gateway uses Retry only.
type Middleware struct {
	Retry   *Retry   `yaml:"retry,omitempty"`
	Headers *Headers `yaml:"headers,omitempty"`
}

// Headers sets headers of requests and responses.
type Headers struct {
	// CustomResponseHeaders are set on every response.
	CustomResponseHeaders map[string]string `yaml:"customResponseHeaders,omitempty"`
}

// Retry sends a request again, to the next server of the service, when the
// server could not be reached (never after it answered).
type Retry struct {
	// Attempts counts the first one.
	Attempts int `yaml:"attempts"`
}

// RouterTLSConfig makes an HTTP router terminate TLS with a certificate from
// CertResolver covering Domains.
type RouterTLSConfig struct {
	CertResolver string   `yaml:"certResolver,omitempty"`
	Domains      []Domain `yaml:"domains,omitempty"`
}

// Domain is a certificate's main name and its subject alternative names.
type Domain struct {
	Main string   `yaml:"main"`
	SANs []string `yaml:"sans,omitempty"`
}

// Service is an HTTP service.
type Service struct {
	LoadBalancer *ServersLoadBalancer `yaml:"loadBalancer,omitempty"`
}

// ServersLoadBalancer balances requests over Servers.
type ServersLoadBalancer struct {
	Servers            []Server            `yaml:"servers"`
	PassiveHealthCheck *PassiveHealthCheck `yaml:"passiveHealthCheck,omitempty"`
}

// PassiveHealthCheck takes a server out of the balance for FailureWindow
// once MaxFailedAttempts requests in a row failed on it within that window
// (it could not be reached, or it answered 5xx).
type PassiveHealthCheck struct {
	FailureWindow     Duration `yaml:"failureWindow"`
	MaxFailedAttempts int      `yaml:"maxFailedAttempts"`
}

// Server is one HTTP backend.
type Server struct {
	URL string `yaml:"url"`
}

// TCPConfiguration holds TCP routers and services, keyed by name.
type TCPConfiguration struct {
	Routers  map[string]*TCPRouter  `yaml:"routers,omitempty"`
	Services map[string]*TCPService `yaml:"services,omitempty"`
}

// TCPRouter is a TCP router.
type TCPRouter struct {
	EntryPoints []string            `yaml:"entryPoints,omitempty"`
	Rule        string              `yaml:"rule"`
	Service     string              `yaml:"service"`
	TLS         *RouterTCPTLSConfig `yaml:"tls,omitempty"`
}

// RouterTCPTLSConfig configures TLS on a TCP router.
type RouterTCPTLSConfig struct {
	// Passthrough sends the TLS stream to the backend undecrypted.
	Passthrough bool `yaml:"passthrough"`
}

// TCPService is a TCP service.
type TCPService struct {
	LoadBalancer *TCPServersLoadBalancer `yaml:"loadBalancer,omitempty"`
}

// TCPServersLoadBalancer balances connections over Servers.
type TCPServersLoadBalancer struct {
	Servers     []TCPServer     `yaml:"servers"`
	HealthCheck *TCPHealthCheck `yaml:"healthCheck,omitempty"`
}

// TCPHealthCheck connects to every server each Interval: a server that does
// not accept the connection within Timeout is out of the balance until it
// does again.
type TCPHealthCheck struct {
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
}

// TCPServer is one TCP backend, as host:port.
type TCPServer struct {
	Address string `yaml:"address"`
}
