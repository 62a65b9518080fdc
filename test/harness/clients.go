package harness

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/websocket"
)

// clientTimeout bounds every request of the clients below.
const clientTimeout = 5 * time.Second

// HTTPSClient returns a client that sends every request to addr (Traefik's
// websecure entry point) whatever the URL's host, so that a URL
// https://name.gw.test/ sets both SNI and Host to name.gw.test without any
// name resolution. It does not verify the certificate: without a reachable
// ACME server Traefik serves its default self-signed one. It does not follow
// redirects.
func HTTPSClient(addr string) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         fixedDialer(addr),
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}},
			TLSHandshakeTimeout: clientTimeout,
			MaxIdleConnsPerHost: 16,
		},
		Timeout:       clientTimeout,
		CheckRedirect: noRedirect,
	}
}

// HTTPClient returns a plain HTTP client that sends every request to addr
// (Traefik's web entry point) whatever the URL's host, and does not follow
// redirects.
func HTTPClient(addr string) *http.Client {
	return &http.Client{
		Transport:     &http.Transport{DialContext: fixedDialer(addr), DisableKeepAlives: true},
		Timeout:       clientTimeout,
		CheckRedirect: noRedirect,
	}
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func fixedDialer(addr string) func(ctx context.Context, network, _ string) (net.Conn, error) {
	d := &net.Dialer{Timeout: clientTimeout}
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
}

// DialTLS connects to addr and completes a TLS handshake with SNI sni,
// without verifying the certificate (the caller checks which one it got).
func DialTLS(ctx context.Context, addr, sni string) (*tls.Conn, error) {
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: clientTimeout},
		Config:    &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}},
	}
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// PeerLeaf completes a TLS handshake with addr, SNI sni, and returns the
// certificate the server presented, without verifying it.
func PeerLeaf(ctx context.Context, addr, sni string) (*x509.Certificate, error) {
	c, err := DialTLS(ctx, addr, sni)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	certs := c.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("no certificate from %s (SNI %s)", addr, sni)
	}
	return certs[0], nil
}

// TLSAnswer is what one request over a fresh TLS connection returned.
type TLSAnswer struct {
	// Status is the HTTP status code.
	Status int
	// Backend is the X-Backend header of the answer.
	Backend string
	// Body is the answer's body.
	Body string
	// Leaf is the raw certificate the server presented in the handshake.
	Leaf []byte
}

// TLSGet opens a new TLS connection to addr with SNI sni, sends GET path with
// Host sni and returns the answer and the certificate of the handshake.
// Each call is one TCP connection, so a passthrough route balances it.
func TLSGet(ctx context.Context, addr, sni, path string) (TLSAnswer, error) {
	c, err := DialTLS(ctx, addr, sni)
	if err != nil {
		return TLSAnswer{}, fmt.Errorf("TLS handshake with %s (SNI %s): %w", addr, sni, err)
	}
	defer c.Close()
	_ = c.SetDeadline(contextDeadline(ctx, clientTimeout))
	var ans TLSAnswer
	if certs := c.ConnectionState().PeerCertificates; len(certs) > 0 {
		ans.Leaf = certs[0].Raw
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, sni); err != nil {
		return ans, fmt.Errorf("sending request to %s: %w", sni, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return ans, fmt.Errorf("reading answer of %s: %w (%w)", sni, errNoAnswer, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return ans, fmt.Errorf("reading body of %s: %w", sni, err)
	}
	ans.Status, ans.Backend, ans.Body = resp.StatusCode, resp.Header.Get(HeaderBackend), string(body)
	return ans, nil
}

// DialWebsocket opens a websocket to wss://host+path through addr (Traefik's
// websecure entry point), SNI and Host host.
func DialWebsocket(ctx context.Context, addr, host, path string) (*websocket.Conn, error) {
	c, err := DialTLS(ctx, addr, host)
	if err != nil {
		return nil, err
	}
	cfg, err := websocket.NewConfig("wss://"+host+path, "https://"+host)
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(contextDeadline(ctx, clientTimeout))
	ws, err := websocket.NewClient(cfg, c)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("websocket handshake with %s: %w", host, err)
	}
	_ = c.SetDeadline(time.Time{})
	return ws, nil
}
