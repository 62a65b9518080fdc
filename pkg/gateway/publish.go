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
	// earlier one. Once it returns the route is live; once a Sync called
	// after it returns, it survives a crash. Any error means nothing
	// changed.
	Publish(id string, cfg *traefik.Configuration) error
	// PublishEach publishes each configuration of cfgs as Publish does,
	// at the cost of one write per group of routes, and returns the error
	// of each route it could not publish (nil: all of them are live).
	PublishEach(cfgs map[string]*traefik.Configuration) map[string]error
	// Unpublish removes route id; one that is not there is not an error.
	// As for Publish, the removal survives a crash once a Sync after it
	// returns; any error means nothing changed.
	Unpublish(id string) error
	// Sync makes what Publish and Unpublish changed before it was called
	// survive a crash. Callers waiting at once share one sync, so the
	// module calls it without holding its lock. An error wraps
	// traefik.ErrNotDurable: the changes are live but may not survive a
	// power cut.
	Sync() error
	// PublishAll makes each configuration of cfgs the live configuration
	// of its route, durably, at the least cost to Traefik, and once they
	// are all live removes what Load read them from in an older layout.
	// It returns how many routes it so converted. An error that wraps
	// traefik.ErrNotDurable means the routes are live; after any error
	// the older layout is left as it is.
	PublishAll(cfgs map[string]*traefik.Configuration) (converted int, err error)
	// PublishAnchor makes cfg the anchor router, the one that carries the
	// resolver of the gateway domain's wildcard certificate, or removes it
	// when cfg is nil, durably. An error that wraps
	// traefik.ErrNotDurable means the change took place; any other means
	// nothing changed.
	PublishAnchor(cfg *traefik.Configuration) error
	// Load calls fn with every published route and its configuration, or
	// with the reason it could not be read back. A route can come twice
	// while a conversion of the layout is unfinished; entries that cannot
	// be routes at all are not passed to fn; Sweep moves them.
	Load(fn func(id string, cfg *traefik.Configuration, err error)) error
	// Quarantine moves whatever is published under id, route or not, to
	// quarantine; nothing there gives none.
	Quarantine(id, reason string) ([]traefik.Quarantined, error)
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
