package certs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// maxLastError bounds Status.LastError, in bytes.
const maxLastError = 300

// maxSleep bounds a wait of Run, so that a clock that jumps is noticed.
const maxSleep = time.Hour

// Certificate is a usable certificate of a domain.
type Certificate struct {
	// Domain is the one name the certificate is for.
	Domain string
	// CertFile is the PEM file of the full chain, leaf first.
	CertFile string
	// KeyFile is the PEM file of the private key, mode 0600.
	KeyFile string
	// NotAfter is when the certificate expires.
	NotAfter time.Time
	// Issuer is the distinguished name of the certificate's issuer.
	Issuer string
}

// Status is what a Manager knows about a domain.
type Status struct {
	// Certificate is the domain's usable certificate; nil if none.
	Certificate *Certificate
	// Failures counts the consecutive failed orders.
	Failures int
	// LastError is the error of the last failed order, cut to about 300
	// bytes.
	LastError string
	// LastAttempt is when the last order started.
	LastAttempt time.Time
	// NextAttempt is when the next order may start after a failure; zero
	// when none is scheduled. While an order runs, it is when the next one
	// would start should this one fail, and it is kept in Dir: a process
	// that dies during an order waits that long after its restart.
	NextAttempt time.Time
}

// Manager obtains, renews and prunes the certificates of the wanted
// domains. Its methods are safe for concurrent use.
type Manager struct {
	cfg        Config
	log        zerolog.Logger
	store      *store
	challenges *challenges
	metrics    *metrics
	// now, obtain and save are seams for the tests.
	now    func() time.Time
	obtain func(ctx context.Context, domain string) (certPEM, keyPEM []byte, err error)
	save   func(stateFile) error

	wake      chan struct{}
	closed    chan struct{}
	closeOnce sync.Once

	mu        sync.Mutex
	running   bool
	cancelRun context.CancelFunc
	domains   map[string]*domainState // persisted in state.json
	certs     map[string]*stored      // on disk
	budget    budget                  // persisted in state.json
	// turn is, per owner, when its last order started, counted in orders:
	// the owner whose turn is oldest orders next.
	turn  map[string]uint64
	turns uint64
	// paused holds the owners a rateLimited answer stopped, until when.
	paused map[string]time.Time
	// nextCheck is when Run next checks the certificates' files.
	nextCheck time.Time
}

// New fills cfg's defaults, validates it and loads the state kept in
// cfg.Dir: certificates, ACME account key, backoff. It talks to no server:
// Run does.
func New(cfg Config) (*Manager, error) {
	return newManager(cfg, time.Now)
}

// newManager is New on the clock now.
func newManager(cfg Config, now func() time.Time) (*Manager, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		var err error
		if httpClient, err = newHTTPClient(cfg.CACertificates); err != nil {
			return nil, err
		}
	}
	st, err := openStore(cfg.Dir, cfg.Store)
	if err != nil {
		return nil, err
	}
	key, err := st.accountKey()
	if err != nil {
		return nil, err
	}
	reg, err := st.registration()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With().Str("component", "certs").Logger()
	state, err := st.loadState()
	if errors.Is(err, errBadState) {
		// The state holds only schedules: the certificates are files of
		// their own, read below. Losing it costs each failing domain its
		// place in the backoff, never a certificate.
		log.Error().Err(err).Msg("the schedule of certificate orders cannot be read; it is set aside and rebuilt: domains that were backing off are ordered again")
		state, err = &stateFile{Domains: map[string]*domainState{}}, st.setAsideState()
	}
	if err != nil {
		return nil, err
	}
	domains := state.Domains
	routeLegoLog(cfg.Logger)
	m := &Manager{
		cfg:        cfg,
		log:        log,
		store:      st,
		challenges: newChallenges(),
		now:        now,
		wake:       make(chan struct{}, 1),
		closed:     make(chan struct{}),
		domains:    domains,
		budget:     fullBudget(cfg.OrderLimit, now()),
		turn:       map[string]uint64{},
		paused:     map[string]time.Time{},
	}
	if state.Budget != nil {
		m.budget = *state.Budget
	}
	client := &acmeClient{
		store:      st,
		caServer:   cfg.CAServer,
		httpClient: httpClient,
		challenges: m.challenges,
		account:    &account{email: cfg.Email, reg: reg, key: key},
	}
	m.obtain = client.obtain
	m.save = st.saveState

	certs, errs := st.loadCertificates()
	for _, err := range errs {
		log.Warn().Err(err).Msg("ignoring a stored certificate")
	}
	m.certs = certs
	start := m.now()
	for d, c := range certs {
		// A certificate without state (a crash after its files were
		// written, before the state was) is one no longer wanted.
		if _, ok := domains[d]; !ok {
			domains[d] = &domainState{Retired: start}
		}
		if !c.NotAfter.After(start) {
			m.dropCertificate(d)
		}
	}
	for d, s := range domains {
		if !s.Wanted && certs[d] == nil {
			delete(domains, d)
		}
	}
	if err := m.save(m.stateLocked()); err != nil {
		return nil, err
	}
	// Last: a New that fails leaves nothing registered.
	if m.metrics, err = newMetrics(cfg.Registry); err != nil {
		return nil, err
	}
	m.updateMetricsLocked()
	return m, nil
}

// Run obtains certificates for the wanted domains that lack one, one order
// at a time and within each domain's backoff, renews them when a third of
// their lifetime is left and deletes retired ones after KeepRetired. It
// returns nil when ctx ends or Close is called. A Manager runs once.
func (m *Manager) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		return errors.New("certificate manager: Run called twice")
	}
	m.running = true
	m.cancelRun = cancel
	m.mu.Unlock()
	select {
	case <-m.closed:
		return nil
	default:
	}
	for {
		if now := m.now(); !now.Before(m.nextCheck) {
			m.checkFiles()
			m.nextCheck = now.Add(m.cfg.CheckInterval)
		}
		domain, next, changed := m.plan()
		if changed {
			m.changed()
		}
		if domain != "" {
			m.order(ctx, domain)
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		if next.IsZero() || m.nextCheck.Before(next) {
			next = m.nextCheck
		}
		sleep := min(max(next.Sub(m.now()), 0), maxSleep)
		timer := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-m.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// Close stops Run. It is safe to call more than once.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		close(m.closed)
		m.mu.Lock()
		if m.cancelRun != nil {
			m.cancelRun()
		}
		m.mu.Unlock()
	})
	return nil
}

// Want adds domains that need a certificate, for owner, the tenant whose
// routes want them: Run shares the account's orders fairly between owners.
// Wanting a domain again only records its owner. A domain whose retired
// certificate is still kept and valid gets it back at once, without an
// order; the others are ordered by Run, each when its backoff and the
// account's budget allow. Names that are not plain lowercase host names
// are logged and ignored.
func (m *Manager) Want(owner string, domains ...string) {
	want := make(map[string]string, len(domains))
	for _, d := range domains {
		want[d] = owner
	}
	m.update(want, nil)
}

// Unwant drops domains whose route is gone: their certificates stop being
// served at once, are never renewed and are deleted after KeepRetired;
// their backoff is forgotten.
func (m *Manager) Unwant(domains ...string) {
	m.update(nil, domains)
}

// SetWanted makes the domains of wanted, each with its owner (as in Want),
// the whole set of wanted domains: the others are dropped as by Unwant.
func (m *Manager) SetWanted(wanted map[string]string) {
	m.mu.Lock()
	var unwant []string
	for d, s := range m.domains {
		if _, ok := wanted[d]; s.Wanted && !ok {
			unwant = append(unwant, d)
		}
	}
	m.mu.Unlock()
	m.update(wanted, unwant)
}

// update wants the domains of want (domain to owner) and drops those of
// unwant, then saves the state, wakes Run and calls OnChange as needed.
func (m *Manager) update(want map[string]string, unwant []string) {
	changed, wake := false, false
	m.mu.Lock()
	dirty := false
	now := m.now()
	for d, owner := range want {
		if err := checkDomain(d); err != nil {
			m.log.Error().Err(err).Msg("not wanting a certificate for an invalid name")
			continue
		}
		s := m.domains[d]
		if s != nil && s.Wanted {
			if s.Owner != owner {
				s.Owner, dirty = owner, true
			}
			continue
		}
		if s == nil {
			s = &domainState{}
			m.domains[d] = s
		}
		s.Wanted, s.Owner, s.Retired, dirty, wake = true, owner, time.Time{}, true, true
		if c := m.certs[d]; c != nil {
			if c.NotAfter.After(now) {
				changed = true
			} else {
				m.dropCertificate(d)
			}
		}
	}
	for _, d := range unwant {
		s := m.domains[d]
		if s == nil || !s.Wanted {
			continue
		}
		// Run plans the deletion of the retired certificate.
		dirty, wake = true, true
		if c := m.certs[d]; c != nil {
			*s = domainState{Retired: now}
			changed = changed || c.NotAfter.After(now)
		} else {
			delete(m.domains, d)
		}
	}
	if dirty {
		m.saveStateLocked()
		m.updateMetricsLocked()
	}
	m.mu.Unlock()
	if wake {
		m.poke()
	}
	if changed {
		m.changed()
	}
}

// Certificates returns the usable certificates: of wanted domains, not
// expired. Sorted by Domain.
func (m *Manager) Certificates() []Certificate {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var list []Certificate
	for d, c := range m.certs {
		if m.usableLocked(d, c, now) {
			list = append(list, c.Certificate)
		}
	}
	slices.SortFunc(list, func(a, b Certificate) int { return strings.Compare(a.Domain, b.Domain) })
	return list
}

// Status tells what the Manager knows about domain. Its Certificate is the
// usable one, as in Certificates.
func (m *Manager) Status(domain string) Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	var st Status
	if c := m.certs[domain]; c != nil && m.usableLocked(domain, c, m.now()) {
		cert := c.Certificate
		st.Certificate = &cert
	}
	if s := m.domains[domain]; s != nil {
		st.Failures, st.LastError = s.Failures, s.LastError
		st.LastAttempt, st.NextAttempt = s.LastAttempt, s.NextAttempt
	}
	return st
}

// Handler answers the HTTP-01 challenges of the Manager's orders, at
// /.well-known/acme-challenge/<token>, for a request whose host is the
// challenge's domain; 404 otherwise.
func (m *Manager) Handler() http.Handler {
	return m.challenges
}

// Import adopts a certificate obtained elsewhere (Traefik's ACME storage):
// the full chain certPEM, leaf first, and its key keyPEM must match, the
// leaf must name domain and still be valid. It is stored, and served only
// while domain is wanted; a domain not wanted keeps it as retired. A stored
// certificate that lasts at least as long is kept instead.
func (m *Manager) Import(domain string, certPEM, keyPEM []byte) error {
	if err := checkDomain(domain); err != nil {
		return fmt.Errorf("importing certificate: %w", err)
	}
	leaf, err := parsePair(domain, certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("importing certificate of %s: %w", domain, err)
	}
	now := m.now()
	if !leaf.NotAfter.After(now) {
		return fmt.Errorf("importing certificate of %s: it expired on %s", domain, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	m.mu.Lock()
	if c := m.certs[domain]; c != nil && !c.NotAfter.Before(leaf.NotAfter) {
		m.mu.Unlock()
		return nil
	}
	c, err := m.store.writeCertificate(domain, leaf, certPEM, keyPEM)
	if err != nil {
		m.mu.Unlock()
		return fmt.Errorf("importing certificate: %w", err)
	}
	m.certs[domain] = c
	s := m.domains[domain]
	if s == nil {
		s = &domainState{Retired: now}
		m.domains[domain] = s
	}
	changed := s.Wanted
	m.saveStateLocked()
	m.updateMetricsLocked()
	m.mu.Unlock()
	m.log.Info().Str("domain", domain).Time("not_after", leaf.NotAfter).Bool("wanted", changed).Msg("imported certificate")
	m.poke()
	if changed {
		m.changed()
	}
	return nil
}

// plan drops what is due to go (retired certificates older than
// KeepRetired, expired ones) and returns the domain to order now, if any,
// else when to look again (zero: nothing scheduled). changed tells that the
// usable set shrank.
//
// Of the domains due, each owner's is the one due the longest (then by
// name); of the owners, the one whose last order is the oldest goes first,
// one that never ordered before all: however many domains an owner has
// due, another's waits for one order at most. Nothing is ordered while the
// account's budget is spent.
func (m *Manager) plan() (domain string, next time.Time, changed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	dirty := false
	type candidate struct {
		domain string
		due    time.Time
	}
	best := map[string]candidate{}
	for o, until := range m.paused {
		if !until.After(now) {
			delete(m.paused, o)
		}
	}
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for d, s := range m.domains {
		c := m.certs[d]
		if c != nil && !c.NotAfter.After(now) {
			changed = changed || s.Wanted
			m.dropCertificate(d)
			c = nil
		}
		if !s.Wanted {
			if c == nil {
				delete(m.domains, d)
				dirty = true
				continue
			}
			if gone := s.Retired.Add(m.cfg.KeepRetired); !gone.After(now) {
				m.dropCertificate(d)
				delete(m.domains, d)
				dirty = true
				m.log.Info().Str("domain", d).Msg("deleted retired certificate")
				continue
			} else {
				soonest(gone)
			}
			continue
		}
		at := s.NextAttempt
		if c != nil {
			soonest(c.NotAfter)
			if r := c.renewAt(); r.After(at) {
				at = r
			}
		}
		if until, ok := m.paused[s.Owner]; ok && until.After(at) {
			at = until
		}
		if at.After(now) {
			soonest(at)
			continue
		}
		if c, ok := best[s.Owner]; !ok || at.Before(c.due) || (at.Equal(c.due) && d < c.domain) {
			best[s.Owner] = candidate{domain: d, due: at}
		}
	}
	if len(best) > 0 {
		if at := m.budget.availableAt(m.cfg.OrderLimit, m.cfg.OrderWindow, now); at.After(now) {
			soonest(at)
		} else {
			owner, first := "", true
			for o := range best {
				if first || m.turn[o] < m.turn[owner] || (m.turn[o] == m.turn[owner] && o < owner) {
					owner, first = o, false
				}
			}
			domain = best[owner].domain
		}
	}
	if dirty || changed {
		m.saveStateLocked()
		m.updateMetricsLocked()
	}
	return domain, next, changed
}

// order runs one order for domain and records its outcome.
func (m *Manager) order(ctx context.Context, domain string) {
	m.mu.Lock()
	s := m.domains[domain]
	if s == nil || !s.Wanted {
		m.mu.Unlock()
		return
	}
	attempt := s.Failures + 1
	renewal := m.certs[domain] != nil
	owner := s.Owner
	s.LastAttempt = m.now()
	m.budget.take(m.cfg.OrderLimit, m.cfg.OrderWindow, s.LastAttempt)
	m.turns++
	m.turn[owner] = m.turns
	// Should the process die during the order, the next start waits as
	// after a failure: a crash loop does not become an order storm.
	s.NextAttempt = s.LastAttempt.Add(backoff(m.cfg.BackoffMin, m.cfg.BackoffMax, attempt))
	m.saveStateLocked()
	m.mu.Unlock()

	log := m.log.With().Str("domain", domain).Int("attempt", attempt).Bool("renewal", renewal).Logger()
	log.Info().Msg("ordering certificate")
	start := m.now()
	certPEM, keyPEM, err := m.obtain(ctx, domain)
	var c *stored
	if err == nil {
		c, err = m.store.writeObtained(domain, certPEM, keyPEM)
	}
	if err != nil && ctx.Err() != nil {
		// Cut short by the shutdown: not the domain's fault.
		log.Info().Msg("order interrupted by shutdown")
		return
	}

	m.mu.Lock()
	now := m.now()
	s = m.domains[domain]
	changed := false
	var next time.Time
	var limited *rateLimitedError
	if errors.As(err, &limited) {
		// Refused before any validation: not the domain's failure. The
		// domain and its owner wait as the server asked, and the account
		// waits for a new token.
		wait := limited.retryAfter
		if wait <= 0 {
			wait = m.cfg.BackoffMin
		}
		next = now.Add(min(wait, m.cfg.BackoffMax))
		if next.After(m.paused[owner]) {
			m.paused[owner] = next
		}
		m.budget.drain(now)
		if s != nil && s.Wanted {
			s.LastError = shorten("rate limited by the ACME server: " + err.Error())
			s.NextAttempt = next
		}
	} else if err == nil {
		old := m.certs[domain]
		m.certs[domain] = c
		if s == nil {
			// Unwanted during the order: kept as retired.
			s = &domainState{Retired: now}
			m.domains[domain] = s
		} else if s.Wanted {
			s.Failures, s.LastError, s.NextAttempt = 0, "", time.Time{}
			changed = true
		} else if old == nil {
			s.Retired = now
		}
	} else if s != nil && s.Wanted {
		s.Failures++
		s.LastError = shorten(err.Error())
		s.NextAttempt = now.Add(backoff(m.cfg.BackoffMin, m.cfg.BackoffMax, s.Failures))
		next = s.NextAttempt
	}
	m.saveStateLocked()
	m.updateMetricsLocked()
	m.mu.Unlock()

	took := m.now().Sub(start).Round(time.Millisecond)
	if limited != nil {
		m.metrics.order(resultRateLimited)
		log.Warn().Err(errors.New(shorten(err.Error()))).Dur("took", took).Str("owner", owner).Time("next_attempt", next).Msg("certificate order refused by the ACME server's rate limit; the owner's orders wait")
		return
	}
	if err != nil {
		m.metrics.order(resultFailed)
		ev := log.Warn().Err(errors.New(shorten(err.Error()))).Dur("took", took)
		if !next.IsZero() {
			ev = ev.Time("next_attempt", next)
		}
		ev.Msg("certificate order failed")
		return
	}
	m.metrics.order(resultIssued)
	log.Info().Dur("took", took).Time("not_after", c.NotAfter).Str("issuer", c.Issuer).Msg("certificate obtained")
	if changed {
		m.changed()
	}
}

// backoff returns the wait after the n-th consecutive failure (n >= 1):
// lo doubled n-1 times, at most hi.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// shorten makes an error text one line of at most maxLastError bytes.
func shorten(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxLastError {
		s = strings.ToValidUTF8(s[:maxLastError], "") + "…"
	}
	return s
}

// usableLocked tells whether c, the certificate of d, is served.
func (m *Manager) usableLocked(d string, c *stored, now time.Time) bool {
	s := m.domains[d]
	return s != nil && s.Wanted && c.NotAfter.After(now)
}

// checkFiles drops the certificates whose files were deleted, cut or
// replaced by hand since they were written: a wanted domain is then ordered
// again, as one without a certificate, and OnChange stops its files being
// served. Files whose mark changed but still hold the certificate (touched,
// copied back) are kept. The files are read outside m.mu.
func (m *Manager) checkFiles() {
	m.mu.Lock()
	list := make([]*stored, 0, len(m.certs))
	for _, c := range m.certs {
		list = append(list, c)
	}
	m.mu.Unlock()
	type damage struct {
		c   *stored
		err error
	}
	var damaged []damage
	fresh := map[*stored][2]fileMark{}
	for _, c := range list {
		if !c.changedOnDisk() {
			continue
		}
		// A copy: c is shared with m.certs, which only m.mu guards.
		cp := *c
		if err := cp.reread(); err != nil {
			damaged = append(damaged, damage{c, err})
		} else {
			fresh[c] = cp.marks
		}
	}
	if len(damaged)+len(fresh) == 0 {
		return
	}
	changed := false
	m.mu.Lock()
	for c, marks := range fresh {
		if m.certs[c.Domain] == c {
			c.marks = marks
		}
	}
	for _, dm := range damaged {
		d := dm.c.Domain
		if m.certs[d] != dm.c {
			continue // replaced meanwhile by an order
		}
		wanted := m.domains[d] != nil && m.domains[d].Wanted
		m.log.Error().Err(dm.err).Str("domain", d).Bool("wanted", wanted).Msg("the files of a certificate were deleted or damaged; it is no longer served and, if wanted, ordered again")
		m.dropCertificate(d)
		if wanted {
			changed = true
		} else {
			delete(m.domains, d)
		}
	}
	m.saveStateLocked()
	m.updateMetricsLocked()
	m.mu.Unlock()
	if changed {
		m.poke()
		m.changed()
	}
}

// dropCertificate forgets the certificate of d and deletes its files.
// m.mu is held.
func (m *Manager) dropCertificate(d string) {
	delete(m.certs, d)
	if err := m.store.removeCertificate(d); err != nil {
		m.log.Warn().Err(err).Str("domain", d).Msg("deleting certificate")
	}
}

// saveStateLocked writes state.json; a failure is logged, the state in
// memory stays right. m.mu is held.
func (m *Manager) saveStateLocked() {
	if err := m.save(m.stateLocked()); err != nil {
		m.log.Error().Err(err).Msg("saving certificate state")
	}
}

// stateLocked is what saveStateLocked keeps. m.mu is held.
func (m *Manager) stateLocked() stateFile {
	b := m.budget
	return stateFile{Domains: m.domains, Budget: &b}
}

// updateMetricsLocked sets the gauges. m.mu is held.
func (m *Manager) updateMetricsLocked() {
	now := m.now()
	usable, failing := 0, 0
	for d, s := range m.domains {
		if c := m.certs[d]; c != nil && m.usableLocked(d, c, now) {
			usable++
		}
		if s.Wanted && s.Failures > 0 {
			failing++
		}
	}
	m.metrics.set(usable, failing)
}

// poke wakes Run without blocking.
func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// changed calls OnChange; never under m.mu.
func (m *Manager) changed() {
	if m.cfg.OnChange != nil {
		m.cfg.OnChange()
	}
}
