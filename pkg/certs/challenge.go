package certs

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/go-acme/lego/v4/challenge"
)

// challengePrefix is the path under which HTTP-01 tokens are fetched.
const challengePrefix = ChallengePath

// pending is an HTTP-01 challenge being validated.
type pending struct {
	domain, keyAuth string
}

// challenges holds the HTTP-01 challenges of the Manager's orders: lego
// presents and cleans them up, Handler answers them.
type challenges struct {
	mu     sync.Mutex
	tokens map[string]pending
}

var _ challenge.Provider = (*challenges)(nil)

func newChallenges() *challenges {
	return &challenges{tokens: map[string]pending{}}
}

// Present makes token answerable for domain.
func (c *challenges) Present(domain, token, keyAuth string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tokens[token] = pending{domain: strings.ToLower(domain), keyAuth: keyAuth}
	return nil
}

// CleanUp forgets token.
func (c *challenges) CleanUp(domain, token, keyAuth string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.tokens, token)
	return nil
}

// ServeHTTP answers GET /.well-known/acme-challenge/<token> with the key
// authorization of a pending challenge whose domain is the request's host.
func (c *challenges) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, challengePrefix)
	if !ok || token == "" || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		http.NotFound(w, r)
		return
	}
	c.mu.Lock()
	p, ok := c.tokens[token]
	c.mu.Unlock()
	if !ok || p.domain != requestHost(r) {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, p.keyAuth)
}

// requestHost returns the request's host, lowercase, without port or
// trailing dot.
func requestHost(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}
