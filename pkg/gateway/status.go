package gateway

import (
	"context"
	"crypto/tls"
	"slices"
	"strings"
	"time"

	"github.com/threefoldtech/gateway/pkg/certs"
	"github.com/threefoldtech/gateway/pkg/traefik"
)

// DefaultStatusInterval is how often Run reads the state of every route
// from Traefik for List. At 10,000 routes one reading costs Traefik and the
// gateway a few tens of milliseconds of CPU.
const DefaultStatusInterval = 15 * time.Second

// statusTimeout bounds one reading.
const statusTimeout = 10 * time.Second

// StatusSource tells how Traefik serves the routes, for List.
type StatusSource interface {
	// Snapshot returns the state of every router and service.
	Snapshot(ctx context.Context) (traefik.Snapshot, error)
	// Certificates returns the certificates Traefik holds.
	Certificates() ([]traefik.ACMECertificate, error)
}

// statusView is the status of every route at one reading.
type statusView struct {
	routes map[string]*RouteStatus
}

// readStatus asks Traefik for the state of every route the index holds and
// keeps it for List. A route set since appears without status until the
// next reading.
func (m *Module) readStatus(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	snap, err := m.cfg.Status.Snapshot(ctx)
	if err != nil {
		m.status.Store(nil)
		return err
	}
	certs, err := m.cfg.Status.Certificates()
	if err != nil {
		m.log.Warn().Err(err).Msg("reading the certificates Traefik holds, for the status of routes")
	}
	at := time.Now().UTC()
	m.mu.Lock()
	routes := make([]route, 0, len(m.idx.byID))
	for _, r := range m.idx.byID {
		routes = append(routes, r)
	}
	m.mu.Unlock()
	leaves := parseLeaves(certs)
	view := &statusView{routes: make(map[string]*RouteStatus, len(routes))}
	for _, r := range routes {
		view.routes[r.id] = statusOf(r, snap, leaves, at)
	}
	m.status.Store(view)
	return nil
}

// statusOf is the status of route r in snap.
func statusOf(r route, snap traefik.Snapshot, leaves []leaf, at time.Time) *RouteStatus {
	st := &RouteStatus{CheckedAt: at}
	router, rok := snap.HTTPRouters[r.id]
	service, sok := snap.HTTPServices[r.id]
	if r.passthrough {
		var tr traefik.RouterState
		var ts traefik.ServiceState
		tr, rok = snap.TCPRouters[r.id]
		ts, sok = snap.TCPServices[r.id]
		router = tr
		service = ts
	}
	switch {
	case !rok:
		st.Problems = append(st.Problems, "Traefik has not loaded the route yet")
	case router.Status == "enabled":
		st.Live = true
	default:
		st.Problems = append(st.Problems, "router "+router.Status)
	}
	st.Problems = append(st.Problems, router.Errors...)
	if sok {
		st.Problems = append(st.Problems, service.Errors...)
		// Traefik reports every HTTP server UP (its passive health
		// check, the one HTTP routes have, says nothing of whom it rests)
		// and the servers of a service it does not check UP too: only
		// the TCP health check of a passthrough route with several
		// backends tells.
		if r.passthrough && len(r.backends) > 1 && len(service.Servers) > 0 {
			st.Backends = service.Servers
		}
	}
	if r.kind == KindName && !r.passthrough {
		// An FQDN proxy's comes from Config.Certificates, at List.
		st.Certificate = certificateFor(r.fqdn, leaves)
	}
	return st
}

// withACME returns st, or a new status, with the certificate of an FQDN
// proxy's domain and where the gateway stands in getting it, as acme says
// now; st, shared by every List until the next reading, is not changed.
func withACME(st *RouteStatus, acme certs.Status) *RouteStatus {
	var out RouteStatus
	if st != nil {
		out = *st
	}
	out.Certificate, out.ACME = nil, nil
	if c := acme.Certificate; c != nil {
		out.Certificate = &CertificateStatus{Issuer: c.Issuer, Names: []string{c.Domain}, NotAfter: c.NotAfter.UTC()}
	}
	if acme.Certificate == nil || acme.Failures > 0 {
		out.ACME = &ACMEStatus{Failures: acme.Failures, LastError: acme.LastError, LastAttempt: utc(acme.LastAttempt), NextAttempt: utc(acme.NextAttempt)}
	}
	return &out
}

// utc is t in UTC, the zero time kept.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

// leaf is a certificate Traefik holds, parsed.
type leaf struct {
	names  []string
	status CertificateStatus
}

// parseLeaves parses the certificates of certs, leaving out those that do
// not parse.
func parseLeaves(certs []traefik.ACMECertificate) []leaf {
	var out []leaf
	for _, c := range certs {
		pair, err := tls.X509KeyPair(c.Certificate, c.Key)
		if err != nil || pair.Leaf == nil {
			continue
		}
		names := slices.Clone(pair.Leaf.DNSNames)
		out = append(out, leaf{names: names, status: CertificateStatus{Issuer: pair.Leaf.Issuer.CommonName, Names: names, NotAfter: pair.Leaf.NotAfter.UTC()}})
	}
	return out
}

// certificateFor returns the certificate that serves name and expires last,
// nil when none does.
func certificateFor(name string, leaves []leaf) *CertificateStatus {
	var best *CertificateStatus
	for i := range leaves {
		l := &leaves[i]
		if !slices.ContainsFunc(l.names, func(n string) bool { return covers(n, name) }) {
			continue
		}
		if best == nil || l.status.NotAfter.After(best.NotAfter) {
			s := l.status
			best = &s
		}
	}
	return best
}

// covers tells whether a certificate name (possibly a wildcard) covers name.
func covers(certName, name string) bool {
	certName, name = strings.ToLower(certName), strings.ToLower(name)
	if certName == name {
		return true
	}
	rest, ok := strings.CutPrefix(certName, "*.")
	if !ok {
		return false
	}
	label, parent, found := strings.Cut(name, ".")
	return found && label != "" && parent == rest
}

// watchStatus reads the status at once, then every StatusInterval, until
// ctx ends.
func (m *Module) watchStatus(ctx context.Context) {
	t := time.NewTicker(m.cfg.StatusInterval)
	defer t.Stop()
	failing := false
	for {
		if err := m.readStatus(ctx); err != nil && ctx.Err() == nil {
			if !failing {
				m.log.Warn().Err(err).Msg("reading the status of routes from Traefik; List returns them without until it answers")
			}
			failing = true
		} else {
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
