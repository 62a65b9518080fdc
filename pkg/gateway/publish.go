package gateway

import "github.com/threefoldtech/gateway/pkg/traefik"

// Publisher is where routes are published for Traefik. What it publishes is
// derived from the module's store, never read back as routes (but once, to
// import what an earlier version left). How routes are laid out (files,
// names, folders) is its business alone; traefik.Routes is the
// implementation the daemon uses.
//
// Nothing may be published that the module's index does not account for:
// Traefik would serve it, or, for a file it cannot parse, stop applying
// every change. What the module does not hold goes to quarantine, out of
// Traefik's sight and kept for an operator, never overwritten nor deleted.
type Publisher interface {
	// Publish makes cfg the live configuration of route id, replacing any
	// earlier one. Once it returns the route is live; it need not survive
	// a power cut (the store does, and Reset writes it again at start).
	// Any error means nothing changed.
	Publish(id string, cfg *traefik.Configuration) error
	// PublishEach publishes each configuration of cfgs as Publish does,
	// at the cost of one write per group of routes, and returns the error
	// of each route it could not publish (nil: all of them are live).
	PublishEach(cfgs map[string]*traefik.Configuration) map[string]error
	// Unpublish removes route id; one that is not there is not an error.
	// As for Publish, the removal is live once it returns; any error means
	// nothing changed.
	Unpublish(id string) error
	// Reset makes the published routes exactly cfgs, durably, at start,
	// writing only what differs, and returns how many files it changed.
	Reset(cfgs map[string]*traefik.Configuration) (changed int, err error)
	// Importables returns what earlier versions published, for the first
	// start with a store; KeepImported keeps a copy of each file routes
	// were imported from, before Reset and ImportDone write over or remove
	// it.
	Importables() ([]traefik.Importable, error)
	KeepImported(files []traefik.Importable) error
	// ImportDone removes the imported files Reset does not write over.
	ImportDone(files []traefik.Importable) error
	// HoldReloads makes Traefik keep what it serves, refusing every
	// reload, until release: an import's many changes cost it one.
	HoldReloads() (release func() error, err error)
	// PublishAnchor makes cfg the anchor router, the one that carries the
	// resolver of the gateway domain's wildcard certificate, or removes it
	// when cfg is nil, durably. An error that wraps
	// traefik.ErrNotDurable means the change took place; any other means
	// nothing changed.
	PublishAnchor(cfg *traefik.Configuration) error
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
