package gateway

import "github.com/threefoldtech/gateway/pkg/traefik"

// Publisher is where routes are published for Traefik and read back when the
// module starts. How routes are laid out (files, names, folders) is its
// business alone; traefik.Routes is the implementation the daemon uses.
//
// Nothing may be published that the module's index does not account for:
// Traefik would serve it, or, for a file it cannot parse, stop applying
// every change. What the module does not hold goes to quarantine, out of
// Traefik's sight and kept for an operator, never overwritten nor deleted.
type Publisher interface {
	// Publish makes cfg the live configuration of route id, replacing any
	// earlier one. Once it returns the route survives a crash. An error
	// that wraps traefik.ErrNotDurable means the route is live but may not
	// survive a power cut; any other error means nothing changed.
	Publish(id string, cfg *traefik.Configuration) error
	// Unpublish removes route id; one that is not there is not an error.
	// Errors are as for Publish: traefik.ErrNotDurable means it is gone.
	Unpublish(id string) error
	// Load calls fn with every published route and its configuration, or
	// with the reason it could not be read back. Entries that cannot be
	// routes at all are not passed to fn; Sweep moves them.
	Load(fn func(id string, cfg *traefik.Configuration, err error)) error
	// Quarantine moves whatever is published under id, route or not, to
	// quarantine; nothing there gives nil.
	Quarantine(id, reason string) (*traefik.Quarantined, error)
	// Sweep moves to quarantine everything published that is not a route
	// keep accepts, and returns what it moved or failed to move.
	Sweep(keep func(id string) bool) ([]traefik.Quarantined, error)
	// Locate says where route id is published, for log lines an operator
	// follows.
	Locate(id string) string
	// Published tells whether route id is published now.
	Published(id string) (bool, error)
}

var _ Publisher = (*traefik.Routes)(nil)
