package acmedns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Limits of the TCP side of the Server, in connections. Each connection
// holds a file descriptor of the gateway process, whose route writes need
// descriptors too: idle clients must not be able to take them all.
const (
	// DefaultMaxTCPConns is how many TCP connections the Server holds at
	// once when Config.MaxTCPConns is 0. Resolvers come over TCP only for
	// the rare answer truncated over UDP.
	DefaultMaxTCPConns = 128
	// DefaultMaxTCPConnsPerSource is how many of them one source (an IPv4
	// address, an IPv6 /64) may hold when Config.MaxTCPConnsPerSource is 0,
	// so that a few hosts cannot take them all.
	DefaultMaxTCPConnsPerSource = 8
	// nofileShare: the TCP connections take at most 1/nofileShare of the
	// process's open-file limit (RLIMIT_NOFILE); New lowers the limits
	// above to fit.
	nofileShare = 4
)

// Timings of the TCP side. A connection holds its slot at most
// tcpConnLifetime, and a client that sends or reads nothing loses it much
// sooner.
const (
	// tcpReadTimeout bounds the wait for the first query of a connection,
	// from the accept to its last byte.
	tcpReadTimeout = 2 * time.Second
	// tcpIdleTimeout bounds the wait for each next query, from the last
	// answer to its last byte (RFC 7766 suggests seconds; miekg/dns's
	// default).
	tcpIdleTimeout = 8 * time.Second
	// tcpWriteTimeout bounds the writing of one answer, against clients
	// that send queries and read no answers; miekg/dns's server sets no
	// write deadline of its own.
	tcpWriteTimeout = 2 * time.Second
	// tcpConnLifetime bounds the life of a connection, however busy.
	tcpConnLifetime = 30 * time.Second
	// acceptBackoffMin and acceptBackoffMax bound the pause after a failed
	// accept (out of descriptors, say), which miekg/dns's server would
	// otherwise retry at once, in a loop that burns a core.
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// tcpLimits are the connection limits of a Server's TCP side.
type tcpLimits struct {
	conns, perSource int
}

// tcpLimitsFor fills the defaults of maxConns and perSource, rejects
// negative ones, and lowers them to take at most 1/nofileShare of nofile
// (the open-file limit; 0 for none known). clamped tells whether it did.
func tcpLimitsFor(maxConns, perSource int, nofile uint64) (limits tcpLimits, clamped bool, err error) {
	if maxConns < 0 {
		return tcpLimits{}, false, fmt.Errorf("max tcp connections %d is negative", maxConns)
	}
	if perSource < 0 {
		return tcpLimits{}, false, fmt.Errorf("max tcp connections per source %d is negative", perSource)
	}
	if maxConns == 0 {
		maxConns = DefaultMaxTCPConns
	}
	if perSource == 0 {
		perSource = DefaultMaxTCPConnsPerSource
	}
	if share := nofile / nofileShare; nofile > 0 && uint64(maxConns) > share {
		maxConns = int(max(share, 1))
		clamped = true
	}
	return tcpLimits{conns: maxConns, perSource: min(perSource, maxConns)}, clamped, nil
}

// openFileLimit returns the soft RLIMIT_NOFILE of the process (which Go
// raises to the hard one at start), or 0 when there is none.
func openFileLimit() (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("reading the open-file limit: %w", err)
	}
	if rl.Cur == unix.RLIM_INFINITY {
		return 0, nil
	}
	return rl.Cur, nil
}

// limitListener is the net.Listener given to miekg/dns's server: it closes
// at once the connections beyond its limits, counts the others until they
// are closed, and bounds how long each may be held. Accept is called from
// one goroutine, the server's accept loop.
type limitListener struct {
	net.Listener
	limits tcpLimits
	log    zerolog.Logger

	mu       sync.Mutex
	total    int
	bySource map[netip.Addr]int

	refused    rateLog       // connections beyond the limits
	failed     rateLog       // accept errors
	backoff    time.Duration // pause after the last failed accept; Accept's own
	closing    chan struct{} // closed by Close, ends a pause
	closedOnce sync.Once
}

// newLimitListener wraps l with limits.
func newLimitListener(l net.Listener, limits tcpLimits, log zerolog.Logger) *limitListener {
	return &limitListener{
		Listener: l,
		limits:   limits,
		log:      log,
		bySource: make(map[netip.Addr]int),
		closing:  make(chan struct{}),
	}
}

// Accept returns the next connection within the limits, closing those
// beyond them as they come. After a failed accept it pauses before it
// returns the error, longer each time in a row.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.pause(err)
			return nil, err
		}
		l.backoff = 0
		src := sourceOf(c.RemoteAddr())
		if !l.acquire(src) {
			c.Close()
			if n, ok := l.refused.note(time.Now()); ok {
				l.log.Warn().Stringer("source", src).Int("refused", n).
					Int("max_tcp_conns", l.limits.conns).Int("max_tcp_conns_per_source", l.limits.perSource).
					Msg("closing dns tcp connections beyond the limits")
			}
			continue
		}
		return &limitedConn{
			Conn:    c,
			expires: time.Now().Add(tcpConnLifetime),
			release: func() { l.release(src) },
		}, nil
	}
}

// Close closes the listener and ends a pause of Accept. Connections
// accepted stay open. It may be called more than once.
func (l *limitListener) Close() error {
	l.closedOnce.Do(func() { close(l.closing) })
	return l.Listener.Close()
}

// pause waits, after the accept error err, before Accept returns it: once
// the listener is closed not at all, then from acceptBackoffMin doubling
// up to acceptBackoffMax.
func (l *limitListener) pause(err error) {
	if errors.Is(err, net.ErrClosed) {
		return
	}
	if n, ok := l.failed.note(time.Now()); ok {
		l.log.Warn().Err(err).Int("failed", n).Msg("accepting dns tcp connections")
	}
	l.backoff = min(max(2*l.backoff, acceptBackoffMin), acceptBackoffMax)
	t := time.NewTimer(l.backoff)
	defer t.Stop()
	select {
	case <-t.C:
	case <-l.closing:
	}
}

// acquire takes a slot for a connection from src, if any is free.
func (l *limitListener) acquire(src netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.limits.conns || l.bySource[src] >= l.limits.perSource {
		return false
	}
	l.total++
	l.bySource[src]++
	return true
}

// release gives back the slot of a connection from src.
func (l *limitListener) release(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.bySource[src]--; l.bySource[src] <= 0 {
		delete(l.bySource, src)
	}
}

// sourceOf returns the source a connection from addr counts against: its
// IPv4 address (IPv4-mapped ones included), or the /64 of its IPv6
// address, since a single host commonly holds a whole /64.
func sourceOf(addr net.Addr) netip.Addr {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is6() {
		p, _ := ip.WithZone("").Prefix(64) // cannot fail for 64 bits of IPv6
		return p.Addr()
	}
	return ip
}

// limitedConn is a connection accepted by a limitListener: it gives its
// slot back when closed, once however often it is closed, and it keeps
// every deadline within its lifetime and every write within
// tcpWriteTimeout.
type limitedConn struct {
	net.Conn
	expires     time.Time
	release     func()
	releaseOnce sync.Once
}

// Close closes the connection and gives its slot back.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.releaseOnce.Do(c.release)
	return err
}

// Write writes b within tcpWriteTimeout, so that a client that does not
// read cannot hold the connection.
func (c *limitedConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(c.within(time.Now().Add(tcpWriteTimeout))); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// SetDeadline sets the read and write deadlines, no later than the end of
// the connection's lifetime.
func (c *limitedConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.within(t)) }

// SetReadDeadline sets the read deadline, no later than the end of the
// connection's lifetime.
func (c *limitedConn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.within(t))
}

// SetWriteDeadline sets the write deadline, no later than the end of the
// connection's lifetime.
func (c *limitedConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.within(t))
}

// within returns deadline t, or the end of the connection's lifetime when
// t is later or none (zero).
func (c *limitedConn) within(t time.Time) time.Time {
	if t.IsZero() || t.After(c.expires) {
		return c.expires
	}
	return t
}
