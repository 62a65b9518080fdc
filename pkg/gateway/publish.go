package gateway

import "github.com/threefoldtech/gateway/pkg/traefik"

// Publisher is where routes are published for Traefik and read back when the
// module starts. How routes are laid out (files, names, folders) is its
// business alone; traefik.Routes is the implementation the daemon uses.
type Publisher interface {
	// Publish makes cfg the live configuration of route id, replacing any
	// earlier one. Once it returns the route survives a crash.
	Publish(id string, cfg *traefik.Configuration) error
	// Unpublish removes route id; one that is not there is not an error.
	Unpublish(id string) error
	// Load calls fn with every published route and its configuration, or
	// with the reason it could not be read back.
	Load(fn func(id string, cfg *traefik.Configuration, err error)) error
	// Locate says where route id is published, for log lines an operator
	// follows.
	Locate(id string) string
}

var _ Publisher = (*traefik.Routes)(nil)
