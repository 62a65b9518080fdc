package acmedns

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Store defaults.
const (
	// DefaultValueTTL is how long a presented value lives when no cleanup
	// comes for it.
	DefaultValueTTL = 15 * time.Minute
	// DefaultMaxValues is how many values one name may hold at once. ACME
	// needs two at a name (apex and wildcard); the rest is headroom for
	// overlapping orders.
	DefaultMaxValues = 32
)

// ErrTooManyValues is returned by Store.Present when a name already holds
// StoreConfig.MaxValues values.
var ErrTooManyValues = errors.New("too many values at this name")

// StoreConfig configures a Store.
type StoreConfig struct {
	// TTL is how long a presented value lives when no cleanup comes for it.
	// Presenting the same value again restarts its TTL. Default
	// DefaultValueTTL (15 minutes); must not be negative.
	TTL time.Duration
	// MaxValues is how many values one name may hold at once. Default
	// DefaultMaxValues (32); must not be negative.
	MaxValues int
	// Now returns the current time. Default time.Now; tests inject a fake
	// clock.
	Now func() time.Time
}

// Store holds the DNS-01 challenge values presented by Traefik, by name.
// All its methods are safe for concurrent use; names are canonicalised with
// CanonicalName.
type Store struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	names map[string][]entry // in presentation order
	// nextExpiry is the earliest expiry of any value (zero when empty), so
	// that pruning the whole map is skipped while nothing can have expired.
	nextExpiry time.Time
	// version changes (under mu) whenever what the store answers changes;
	// the Handler's answer cache is keyed by it and reads it without the
	// lock.
	version atomic.Uint64
}

type entry struct {
	value   string
	expires time.Time
}

// NewStore returns an empty Store.
func NewStore(cfg StoreConfig) (*Store, error) {
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("store ttl %s is negative", cfg.TTL)
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultValueTTL
	}
	if cfg.MaxValues < 0 {
		return nil, fmt.Errorf("store max values %d is negative", cfg.MaxValues)
	}
	if cfg.MaxValues == 0 {
		cfg.MaxValues = DefaultMaxValues
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Store{
		ttl:   cfg.TTL,
		max:   cfg.MaxValues,
		now:   cfg.Now,
		names: make(map[string][]entry),
	}, nil
}

// Present adds value at fqdn, to be answered until Cleanup removes it or its
// TTL runs out. Presenting a value that is already there only restarts its
// TTL. It fails with ErrTooManyValues when the name is full.
func (s *Store) Present(fqdn, value string) error {
	name := CanonicalName(fqdn)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.pruneLocked(now)
	expires := now.Add(s.ttl)
	entries := s.names[name]
	for i := range entries {
		if entries[i].value == value {
			entries[i].expires = expires
			return nil
		}
	}
	if len(entries) >= s.max {
		return fmt.Errorf("presenting a value at %q: %w (%d)", name, ErrTooManyValues, s.max)
	}
	s.names[name] = append(entries, entry{value: value, expires: expires})
	s.version.Add(1)
	if s.nextExpiry.IsZero() || expires.Before(s.nextExpiry) {
		s.nextExpiry = expires
	}
	return nil
}

// Cleanup removes value from fqdn and leaves any other value there. Removing
// a value that is not there is not an error.
func (s *Store) Cleanup(fqdn, value string) {
	name := CanonicalName(fqdn)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(s.now())
	entries := s.names[name]
	i := slices.IndexFunc(entries, func(e entry) bool { return e.value == value })
	if i < 0 {
		return
	}
	s.version.Add(1)
	entries = slices.Delete(entries, i, i+1)
	if len(entries) == 0 {
		delete(s.names, name)
		return
	}
	s.names[name] = entries
}

// lookup appends the live values at the canonical name to dst. exists
// reports whether the name holds values or is an ancestor of a name that
// does (an empty non-terminal, which exists in DNS terms).
func (s *Store) lookup(name string, dst []string) (values []string, exists bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(s.now())
	entries := s.names[name]
	for _, e := range entries {
		dst = append(dst, e.value)
	}
	if len(entries) > 0 {
		return dst, true
	}
	for n := range s.names {
		if isBelowOrAt(n, name) {
			return dst, true
		}
	}
	return dst, false
}

// state returns the version of the store and the time until which, unless
// the version changes, answers stay the same (zero: forever).
func (s *Store) state() (version uint64, until time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(s.now())
	return s.version.Load(), s.nextExpiry
}

// pruneLocked drops every expired value. The caller holds s.mu.
func (s *Store) pruneLocked(now time.Time) {
	if s.nextExpiry.IsZero() || now.Before(s.nextExpiry) {
		return
	}
	var next time.Time
	for name, entries := range s.names {
		kept := entries[:0]
		for _, e := range entries {
			if !now.Before(e.expires) {
				s.version.Add(1)
				continue
			}
			kept = append(kept, e)
			if next.IsZero() || e.expires.Before(next) {
				next = e.expires
			}
		}
		if len(kept) == 0 {
			delete(s.names, name)
			continue
		}
		clear(entries[len(kept):]) // let dropped values be collected
		s.names[name] = kept
	}
	s.nextExpiry = next
}
