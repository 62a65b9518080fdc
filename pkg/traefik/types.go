// Package traefik holds the gateway's side of Traefik: a small typed model of
// Traefik's dynamic and static configuration, its rendering to YAML, the
// crash-consistent writer of the folder Traefik watches, the supervision of
// the Traefik process and the scrape of its Prometheus metrics. It knows
// nothing of zbus.
package traefik

// The types below copy the names of Traefik's own dynamic configuration
// (github.com/traefik/traefik/v3/pkg/config/dynamic), only the parts the
// gateway writes. Yaml tags are Traefik's camelCase keys.

// Configuration is one dynamic-configuration file.
type Configuration struct {
	HTTP *HTTPConfiguration `yaml:"http,omitempty"`
	TCP  *TCPConfiguration  `yaml:"tcp,omitempty"`
}

// HTTPConfiguration holds HTTP routers and services, keyed by name.
type HTTPConfiguration struct {
	Routers  map[string]*Router  `yaml:"routers,omitempty"`
	Services map[string]*Service `yaml:"services,omitempty"`
}

// Router is an HTTP router.
type Router struct {
	EntryPoints []string         `yaml:"entryPoints,omitempty"`
	Rule        string           `yaml:"rule"`
	Priority    int              `yaml:"priority,omitempty"`
	Service     string           `yaml:"service"`
	TLS         *RouterTLSConfig `yaml:"tls,omitempty"`
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
	Servers []Server `yaml:"servers"`
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
	Servers []TCPServer `yaml:"servers"`
}

// TCPServer is one TCP backend, as host:port.
type TCPServer struct {
	Address string `yaml:"address"`
}
