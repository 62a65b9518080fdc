package gateway

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// A batch of Sets, or a Delete, is one change set: what it does to each
// route. The parts that follow the routes (the meter, the certificates, the
// observer) see it through one small interface, Hook, instead of the commit
// knowing each of them: the commit prepares every hook, commits the store,
// publishes, then commits the hooks, or rolls back those it prepared.

// change is what a commit does to one route: old is the route before (held
// says there was one), new after (deleted says there is none).
type change struct {
	old     route
	held    bool
	new     route
	deleted bool
}

// id returns the workload the change is about.
func (c change) id() string {
	if c.deleted {
		return c.old.id
	}
	return c.new.id
}

// Hook follows the changes of routes.
type Hook interface {
	// Prepare readies cs before the store commits it, or refuses it
	// whole: then nothing changes.
	Prepare(cs []change) error
	// Commit tells that cs is committed and published.
	Commit(cs []change, at time.Time)
	// Rollback undoes what Prepare did for cs, which did not take place.
	Rollback(cs []change)
}

// prepareHooks prepares every hook for cs; when one refuses, those it
// prepared are rolled back and the error names the refusal.
func prepareHooks(hooks []Hook, cs []change) error {
	for i, h := range hooks {
		if err := h.Prepare(cs); err != nil {
			for _, done := range slices.Backward(hooks[:i]) {
				done.Rollback(cs)
			}
			return err
		}
	}
	return nil
}

// meterHook starts counting the bytes of a route before traffic can flow:
// a byte is never carried unmetered. A deleted route's counting ends once
// it is unpublished; its bytes so far stay for the next Metrics call.
type meterHook struct{ m *Module }

func (h meterHook) Prepare(cs []change) error {
	assign := make(map[string][]netip.AddrPort)
	for _, c := range cs {
		if c.deleted {
			continue
		}
		addrs := c.new.meterAddrs()
		if !c.held || !slices.Equal(addrs, c.old.meterAddrs()) {
			assign[c.new.id] = addrs
		}
	}
	if len(assign) == 0 {
		return nil
	}
	if err := h.m.meter.AssignAll(assign); err != nil {
		return fmt.Errorf("metering: %w", err)
	}
	return nil
}

func (h meterHook) Commit(cs []change, _ time.Time) {
	for _, c := range cs {
		if !c.deleted {
			continue
		}
		if err := h.m.meter.Remove(c.old.id); err != nil {
			h.m.log.Error().Err(err).Str("wlID", c.old.id).Msg("route deleted, but its metering could not end; the next start ends it")
		}
	}
}

func (h meterHook) Rollback(cs []change) {
	for _, c := range cs {
		if c.deleted || (c.held && slices.Equal(c.new.meterAddrs(), c.old.meterAddrs())) {
			continue
		}
		var err error
		if c.held {
			err = h.m.meter.Assign(c.old.id, c.old.meterAddrs())
		} else {
			err = h.m.meter.Remove(c.new.id)
		}
		if err != nil {
			h.m.log.Error().Err(err).Str("wlID", c.id()).Msg("setting back the metering of a route that could not be written")
		}
	}
}

// twinOf returns the twin of a workload ID, "twin-deployment-name": the
// tenant among whom the certificates' orders are shared.
func twinOf(wlID string) string {
	twin, _, _ := strings.Cut(wlID, "-")
	return twin
}

// certsHook tells the certificates which user domains are routed.
type certsHook struct{ c Certificates }

func (certsHook) Prepare([]change) error { return nil }
func (certsHook) Rollback([]change)      {}

func (h certsHook) Commit(cs []change, _ time.Time) {
	for _, c := range cs {
		if c.held && c.old.acme() && (c.deleted || !c.new.acme() || c.old.fqdn != c.new.fqdn) {
			h.c.Unwant(c.old.fqdn)
		}
		if !c.deleted && c.new.acme() {
			h.c.Want(twinOf(c.new.id), c.new.fqdn)
		}
	}
}

// observerHook watches new routes until Traefik serves them.
type observerHook struct{ o *observer }

func (observerHook) Prepare([]change) error { return nil }
func (observerHook) Rollback([]change)      {}

func (h observerHook) Commit(cs []change, at time.Time) {
	for _, c := range cs {
		switch {
		case c.deleted:
			h.o.deleted(c.old.id)
		case !c.held:
			h.o.created(c.new.id, c.new.passthrough, at)
		}
	}
}
