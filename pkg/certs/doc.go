// Package certs obtains, renews and prunes the certificates of user domains
// with ACME HTTP-01, so that the gateway can hand them to Traefik as
// certificate files instead of leaving them to Traefik's ACME resolver.
//
// Traefik's resolver starts a new order for every router that lacks a
// certificate at every configuration reload, so one failing domain costs an
// order and a failed validation on every route change of every tenant, and
// it renews every certificate it ever stored, routes deleted long ago
// included. A Manager instead orders only for the domains it is told are
// wanted (Want, SetWanted), one order at a time, and backs off per domain.
//
// # Backoff
//
// After the n-th consecutive failed order of a domain, the next one starts
// no earlier than BackoffMin * 2^(n-1) later, capped at BackoffMax: with the
// defaults 5m, 10m, 20m, 40m, 1h20m, 2h40m, 5h20m, 10h40m, 21h20m, then 24h
// between attempts. A success resets the count. The schedule is kept in
// Dir and survives a restart, so a gateway in a crash loop does not order
// again at every start; calls to Want do not shorten it. Unwant drops it.
//
// # Renewal and retirement
//
// A wanted certificate is renewed (a new order, with a new key) once less
// than a third of its lifetime is left: 30 days before the end of a 90-day
// Let's Encrypt certificate. A failed renewal backs off like a first order;
// the old certificate is served until it expires. A domain that is no
// longer wanted (Unwant) stops being served at once and is never renewed;
// its certificate stays on disk for KeepRetired, so that a route created
// again meanwhile gets it back without an order, and is then deleted.
//
// # Files
//
// Dir holds the ACME account (account/key.pem, account/registration.json),
// the certificates (certificates/<domain>.crt with the full chain, and
// certificates/<domain>.key, mode 0600) and the per-domain state
// (state.json). Every file is replaced atomically. A renewal replaces the
// key, then the certificate: a reader between the two renames would see a
// pair that does not match, so the files are for reading after OnChange
// (Traefik reads them when its configuration is rewritten), not on a timer.
//
// The challenge answers are served by Handler, which the gateway mounts
// under /.well-known/acme-challenge/ of its plain HTTP entry point.
package certs
